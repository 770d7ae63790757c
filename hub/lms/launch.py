"""Verifying an LTI 1.3 launch as the specification requires, before anything is created.

``LaunchVerifier.verify`` takes what the LMS posted (``id_token``, ``state``)
and the two cookies the login step set, and returns a ``Launch`` or raises
``LaunchRefused`` with a sentence for the person.  It checks, in order:

- ``state`` equals the state cookie (the launch was started in this browser);
- the token's issuer and audience are a registered platform;
- the signature, against the platform's JWKS (RS256 only; ``hub.lms.key_sets``:
  fetched asynchronously, cached, at most once per interval per platform),
  and ``iss``, ``aud``, ``exp``, ``iat``;
- ``jupyterhub-ltiauthenticator``'s checks: the required claims, version
  1.3.0, the message type, the resource link, ``iat`` not older than
  ``max_age``, and ``azp`` when there are several audiences;
- ``azp``, when present, is our client id; the ``deployment_id`` is registered;
- only resource-link launches (a deep-linking request is refused);
- the person's course role gives access (``hub.lms.roles``);
- the launch comes from the LMS course (issuer, client id, deployment,
  context) this hub's course is bound to (``hub.lms.binding``);
- the nonce is the hash of the nonce cookie and has not been used before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
from ltiauthenticator.lti13.error import ValidationError
from ltiauthenticator.lti13.handlers import get_nonce
from ltiauthenticator.lti13.validator import LTI13LaunchValidator

from hub.lms import roles as lms_roles
from hub.lms.binding import binding_of, unbound_reason
from hub.lms.key_sets import KeySets, KeyUnavailable
from hub.lms.nonces import NonceStore
from hub.lms.registrations import Platform, find_platform

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
RESOURCE_LINK = "LtiResourceLinkRequest"
ASSIGNMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class LaunchRefused(Exception):
    """The launch is not accepted; ``str()`` is what the person reads, ``status`` the HTTP status."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Launch:
    """A verified launch: who, from which LMS course, to which assignment, and the course's LTI services."""

    platform: Platform
    sub: str
    deployment_id: str
    role: str
    roles: tuple[str, ...]
    name: str
    given_name: str
    family_name: str
    email: str
    context_id: str
    context_title: str
    resource_link_id: str
    assignment: str
    lineitems_url: str
    lineitem_url: str
    ags_scopes: tuple[str, ...]
    nrps_url: str
    # The student's own due date, when the link's custom parameters ask the LMS for it (hub.lms.due_dates).
    due_at: str = ""

    @property
    def issuer(self) -> str:
        return self.platform.issuer


def authentication_request(platform: Platform, login: dict[str, str], redirect_uri: str, state: str,
                           nonce: str) -> str:
    """The URL the login initiation sends the browser to: the platform's OIDC authentication request.

    ``login`` is what the LMS sent to the login initiation URL (``login_hint``, ``lti_message_hint``).
    """
    args = {"response_type": "id_token", "scope": "openid", "response_mode": "form_post", "prompt": "none",
            "client_id": platform.client_id, "redirect_uri": redirect_uri, "login_hint": login["login_hint"],
            "nonce": nonce, "state": state}
    if login.get("lti_message_hint"):
        args["lti_message_hint"] = login["lti_message_hint"]
    return f"{platform.authorize_url}{'&' if '?' in platform.authorize_url else '?'}{urlencode(args)}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class LaunchVerifier:
    """Checks launches against ``platforms``; ``nonces`` remembers the nonces already used."""

    def __init__(self, platforms: list[Platform], nonces: NonceStore, default_assignment: str,
                 max_age: int = 600, leeway: int = 5, keys: KeySets | None = None):
        self.platforms, self.nonces, self.default_assignment = platforms, nonces, default_assignment
        self.validator = LTI13LaunchValidator(max_age=max_age, time_leeway=leeway)
        self.leeway = leeway
        # Shared by the verifiers made as the registrations change: the fetch rate stays bounded across them.
        self.keys = keys or KeySets()
        self.binding = binding_of(platforms)

    def platform_for_login(self, issuer: str, client_id: str | None) -> Platform:
        """The registration a login initiation names, or ``LaunchRefused``."""
        platform = find_platform(self.platforms, issuer, client_id)
        if platform is None:
            raise LaunchRefused(f"This hub has no registration for the LMS {issuer!r}"
                                f"{f' with client id {client_id!r}' if client_id else ''}: ask your "
                                "instructor to register it (docs/lms.md).", 403)
        return platform

    async def _decode(self, id_token: str) -> tuple[Platform, dict[str, Any]]:
        try:
            unverified = jwt.decode(id_token, options={"verify_signature": False})
            kid = jwt.get_unverified_header(id_token).get("kid")
        except jwt.PyJWTError:
            raise LaunchRefused("The launch carries no readable id_token.") from None
        audience = unverified.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        platform = next((p for a in audiences if isinstance(a, str)
                         if (p := find_platform(self.platforms, _text(unverified.get("iss")), a))), None)
        if platform is None:
            raise LaunchRefused(f"The launch comes from an LMS or client id this hub has no registration for "
                                f"(issuer {unverified.get('iss')!r}, audience {audience!r}).", 403)
        try:
            key = (await self.keys.signing_key(platform, kid if isinstance(kid, str) else None)).key
        except KeyUnavailable as error:
            raise LaunchRefused(f"The launch's signature cannot be checked: {error}.", 403) from None
        try:
            claims = jwt.decode(id_token, key, algorithms=["RS256"], audience=platform.client_id,
                                issuer=platform.issuer, leeway=self.leeway,
                                options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]})
        except jwt.ExpiredSignatureError:
            raise LaunchRefused("The launch has expired: open the link in the LMS again.") from None
        except jwt.PyJWTError as error:
            raise LaunchRefused(f"The launch's signature or claims are not valid: {error}.", 403) from None
        return platform, claims

    async def verify(self, id_token: str, state: str, state_cookie: str, nonce_cookie: str) -> Launch:
        """The verified launch, or ``LaunchRefused``; nothing is recorded but the nonce of a good launch."""
        if not state_cookie or not nonce_cookie:
            raise LaunchRefused("This launch was not started from this browser (no login cookie): open the "
                                "link in the LMS again, and allow cookies for the hub.")
        if state != state_cookie:
            raise LaunchRefused("The launch's state does not match the one this browser started: open the link "
                                "in the LMS again.")
        platform, claims = await self._decode(id_token)
        if claims.get(CLAIM + "message_type") != RESOURCE_LINK:
            raise LaunchRefused(f"This tool accepts only assignment links ({RESOURCE_LINK}), not "
                                f"{claims.get(CLAIM + 'message_type')!r}.")
        try:
            self.validator.validate_id_token(claims)
            self.validator.validate_azp_claim(claims, {platform.client_id})
        except ValidationError as error:
            raise LaunchRefused(f"The launch is not a valid LTI 1.3 launch: {error}.") from None
        if "azp" in claims and claims["azp"] != platform.client_id:
            raise LaunchRefused(f"The launch was issued for another tool (azp {claims['azp']!r}).", 403)
        deployment = _text(claims.get(CLAIM + "deployment_id"))
        if deployment not in platform.deployment_ids:
            raise LaunchRefused(f"The deployment {deployment!r} of {platform.name or platform.issuer} is not "
                                "registered on this hub: ask your instructor to add it.", 403)
        if claims["nonce"] != get_nonce(nonce_cookie):
            raise LaunchRefused("The launch's nonce does not match this browser's login: open the link in the "
                                "LMS again.")
        launch = self._launch(platform, claims, deployment)
        if self.binding is None or not self.binding.covers(platform.issuer, launch.context_id, platform.client_id,
                                                           deployment):
            # Roles count only in the bound LMS course: an instructor of any other course on a shared
            # (account- or site-level) deployment is nobody here.
            raise LaunchRefused(unbound_reason(platform.issuer, launch.context_id, launch.context_title,
                                               deployment, self.binding), 403)
        # Last: a launch refused for another reason must not use up its nonce.
        if not self.nonces.use(f"{platform.issuer} {claims['nonce']}"):
            raise LaunchRefused("This launch was already used once (a replayed launch): open the link in the "
                                "LMS again.", 403)
        return launch

    def _launch(self, platform: Platform, claims: dict[str, Any], deployment: str) -> Launch:
        roles = tuple(r for r in claims.get(CLAIM + "roles", []) if isinstance(r, str))
        role = lms_roles.course_role(roles)
        if role is None:
            raise LaunchRefused("Your role in this LMS course gives no access to the assignment (only learners, "
                                "instructors, teaching assistants and content developers have one).", 403)
        context = claims.get(CLAIM + "context") or {}
        custom = claims.get(CLAIM + "custom") or {}
        ags = claims.get(AGS_CLAIM) or {}
        nrps = claims.get(NRPS_CLAIM) or {}
        if not _text(claims["sub"]):
            raise LaunchRefused("The launch names nobody (an empty sub claim): anonymous launches are not accepted.")
        assignment = _text(custom.get("assignment")) or self.default_assignment
        if not ASSIGNMENT_NAME.fullmatch(assignment):
            raise LaunchRefused(f"The link names the assignment {assignment!r}, which is no assignment name: fix "
                                "the link's custom parameter assignment= in the LMS.")
        if not _text(context.get("id")):
            raise LaunchRefused("The launch names no LMS course (context claim): add the link inside a course.")
        return Launch(
            platform=platform, sub=_text(claims["sub"]), deployment_id=deployment, role=role, roles=roles,
            name=_text(claims.get("name")), given_name=_text(claims.get("given_name")),
            family_name=_text(claims.get("family_name")), email=_text(claims.get("email")),
            context_id=_text(context.get("id")), context_title=_text(context.get("title")),
            resource_link_id=_text((claims.get(CLAIM + "resource_link") or {}).get("id")),
            assignment=assignment,
            lineitems_url=_text(ags.get("lineitems")), lineitem_url=_text(ags.get("lineitem")),
            ags_scopes=tuple(s for s in ags.get("scope", []) if isinstance(s, str)),
            nrps_url=_text(nrps.get("context_memberships_url")),
            due_at=_text(custom.get("due_at")),
        )
