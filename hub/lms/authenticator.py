"""The hub's login from the LMS: ``jupyterhub-ltiauthenticator``'s LTI 1.3 flow, with this course's checks and set-up.

``CourseLTI13Authenticator`` keeps the library's login initiation (state
and nonce cookies) and callback, and changes four things:

- the platform comes from the registrations in ``<state>/lms/platforms.json``
  (read again when it changes), not from one fixed issuer;
- the callback's token is checked by ``hub.lms.launch.LaunchVerifier``
  (deployment, ``azp``, single-use nonce, roles, the bound LMS course...),
  without blocking the hub (the platform's keys are fetched asynchronously),
  and a refused launch ends on the hub's error page with the reason, having
  created nothing;
- login and launch are accepted only over https (the address given to the
  LMS), not on the hub's internal plain-http port;
- the state and nonce cookies are ``SameSite=None; Secure``: the LMS posts
  the launch from another site, where a browser withholds any other cookie;
- a verified launch sets the person up (``hub.lms.provision``) and sends a
  student to the assignment's notebook in JupyterLab and a grader to
  formgrader;
- a grader role lasts ``grader_launch_hours`` after the launch that gave it
  (``hub.lms.grader_launches``): then the person loses the graders' group
  until they launch again, and the LMS says again what they are.

It also serves the tool's public key at ``/hub/lti13/jwks`` and a Canvas
JSON configuration at ``/hub/lti13/config`` (docs/lms.md).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
from pathlib import Path
from typing import Any

from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import url_path_join
from ltiauthenticator.lti13.auth import LTI13Authenticator
from ltiauthenticator.lti13.handlers import LTI13CallbackHandler, LTI13LoginInitHandler
from ltiauthenticator.utils import convert_request_to_dict
from tornado.web import HTTPError
from traitlets import Float, Unicode

from hub.accounts import AccountError
from hub.layout import ASSIGNMENT, HubLayout
from hub.lms import roles
from hub.lms.grader_launches import GraderLaunches, groups_after_refresh
from hub.lms.key_sets import KeySets
from hub.lms.keys import ensure_tool_key
from hub.lms.launch import Launch, LaunchRefused, LaunchVerifier, authentication_request
from hub.lms.nonces import NonceStore
from hub.lms.provision import Provisioned, ProvisionError, provision
from hub.lms.registrations import RegistrationError, load_platforms
from hub.lms.scopes import TOOL_SCOPES


def require_https(handler: BaseHandler) -> None:
    """Refuse an LTI request that did not come in on the hub's https address.

    The proxy that ends TLS (JupyterHub's own, or one in front) says https in
    ``X-Forwarded-Proto``, which the hub takes as the request's protocol; a
    request straight to the hub's internal plain-http port (127.0.0.1) says
    http, and its cookies would travel in clear.  (A header forged by a local
    user gains nothing: the launch must still be signed by the LMS.)
    """
    if handler.request.protocol != "https":
        raise HTTPError(403, "LTI launches are accepted only on the hub's https address, the one given to the "
                             "LMS (docs/lms.md).")


async def _maybe_awaited(result: Any) -> None:
    """The library's handler methods are plain functions in one version and coroutines in another."""
    if inspect.isawaitable(result):
        await result


class LoginHandler(LTI13LoginInitHandler):
    """The login initiation: the library's, with the platform looked up by issuer and client id."""

    async def get(self) -> None:
        require_https(self)
        await _maybe_awaited(super().get())

    async def post(self) -> None:
        require_https(self)
        await _maybe_awaited(super().post())

    def authorize_redirect(self, redirect_uri: str, login_hint: str, nonce: str, client_id: str, state: str,
                           lti_message_hint: str | None = None) -> None:
        args = convert_request_to_dict(self.request.arguments)
        try:
            platform = self.authenticator.verifier().platform_for_login(args.get("iss", ""), client_id)
        except LaunchRefused as error:
            raise HTTPError(error.status, str(error)) from None
        self.redirect(authentication_request(platform, {"login_hint": login_hint,
                                                        "lti_message_hint": lti_message_hint or ""},
                                             redirect_uri, state, nonce))

    def _set_oauth_cookie(self, key: str, value: str) -> None:
        self._set_cookie(key, value, expires_days=1, httponly=True, encrypted=True, samesite="None", secure=True)


class CallbackHandler(LTI13CallbackHandler):
    """The launch: verified by ``LaunchVerifier``, then the person is set up and sent where they work."""

    async def post(self) -> None:
        require_https(self)
        args = convert_request_to_dict(self.request.arguments)
        try:
            launch = await self.authenticator.verifier().verify(
                args.get("id_token", ""), args.get("state", ""), self._get_state_cookie(),
                self._get_nonce_state_cookie())
        except LaunchRefused as error:
            self.log.warning("LTI launch refused: %s", error)
            raise HTTPError(error.status, str(error)) from None
        user = await self.login_user({"launch": launch})
        if user is None:
            raise HTTPError(403, "The launch was not accepted.")
        await self.redirect_to_next_url(user)

    async def redirect_to_next_url(self, user) -> None:
        self.redirect(self.authenticator.next_url(user.name))


class JwksHandler(BaseHandler):
    """The tool's public key, for the LMS to check its client assertions."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(self.authenticator.tool_key.public_jwks()))


class ConfigHandler(BaseHandler):
    """The tool's registration as Canvas's "Paste JSON" takes it (Developer Keys, LTI Key)."""

    def get(self) -> None:
        base = f"https://{self.request.host}{self.hub.base_url}"
        layout = self.authenticator.layout
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({
            "title": f"{layout.course_id} (JupyterHub)",
            "description": "The U-Net segmentation assignment in JupyterLab, graded on submit",
            "oidc_initiation_url": url_path_join(base, "lti13/oauth_login"),
            "target_link_uri": base.rstrip("/"),
            "public_jwk_url": url_path_join(base, "lti13/jwks"),
            "scopes": TOOL_SCOPES,
            "extensions": [{"platform": "canvas.instructure.com", "privacy_level": "public", "settings": {
                # In a new tab: the hub refuses to be shown in a frame (JupyterHub 4.1 and later).
                "placements": [{"placement": p, "message_type": "LtiResourceLinkRequest", "windowTarget": "_blank"}
                               for p in ("link_selection", "assignment_selection")]}}],
            "custom_fields": {"assignment": "unet_segmentation"},
        }, indent=2))


class CourseLTI13Authenticator(LTI13Authenticator):
    """LTI 1.3 for this course's hub (see the module's docstring)."""

    login_handler = LoginHandler
    callback_handler = CallbackHandler
    state_folder = Unicode(help="The hub's state folder (hub.json, lms/)").tag(config=True)
    grader_launch_hours = Float(8.0, help="Hours a grader role lasts after the launch that gave it; then the "
                                          "person must launch again from the LMS to grade").tag(config=True)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.layout = HubLayout.load(Path(self.state_folder))
        self.tool_key = ensure_tool_key(self.layout.lms_dir / "tool-key.pem")
        self.nonces = NonceStore(self.layout.lms_dir / "nonces.sqlite")
        self.grader_launches = GraderLaunches(self.layout.lms_dir / "grader_launches.sqlite")
        self.key_sets = KeySets()
        self._verifier: tuple[float, LaunchVerifier] | None = None
        self._next: dict[str, str] = {}

    def verifier(self) -> LaunchVerifier:
        """The verifier for the registrations as the file holds them now."""
        path = self.layout.lms_dir / "platforms.json"
        try:
            changed = path.stat().st_mtime
        except FileNotFoundError:
            changed = 0.0
        if self._verifier is None or self._verifier[0] != changed:
            try:
                platforms = load_platforms(path)
            except RegistrationError as error:
                raise HTTPError(503, f"The hub's LMS registrations cannot be read: {error}") from None
            self._verifier = (changed, LaunchVerifier(platforms, self.nonces, default_assignment=ASSIGNMENT,
                                                             keys=self.key_sets))
        return self._verifier[1]

    def get_handlers(self, app) -> list:
        return super().get_handlers(app)[:2] + [("lti13/jwks", JwksHandler), ("lti13/config", ConfigHandler)]

    async def authenticate(self, handler, data: dict[str, Any] | None = None) -> dict[str, Any]:
        launch: Launch = (data or {})["launch"]
        try:
            person: Provisioned = await asyncio.to_thread(provision, self.layout, launch)
        except (ProvisionError, AccountError, subprocess.SubprocessError, OSError) as error:
            self.log.error("setting up %s %s failed: %s", launch.issuer, launch.sub, error)
            raise HTTPError(500, "Your account on the hub could not be set up; your instructor can see why in "
                                 "the hub's log.") from None
        await asyncio.to_thread(self.grader_launches.record, person.account, launch.role == roles.GRADER)
        self._next[person.account] = self._destination(person, launch)
        return {"name": person.account, "groups": person.groups(self.layout)}

    async def refresh_user(self, user, handler=None) -> bool | dict[str, Any]:
        """JupyterHub's periodic re-check: a grader whose grader launch is too old loses the graders' group."""
        groups = {group.name for group in user.groups}
        if self.layout.instructors_group not in groups:
            return True
        age = await asyncio.to_thread(self.grader_launches.age, user.name)
        kept = groups_after_refresh(groups, self.layout.instructors_group, age, self.grader_launch_hours * 3600)
        if kept is None:
            return True
        self.log.warning("%s: last launched as a grader %s; grading again needs a new launch from the LMS",
                         user.name, "never" if age is None else f"{age / 3600:.1f} hours ago")
        return {"name": user.name, "groups": kept}

    def _destination(self, person: Provisioned, launch: Launch) -> str:
        if launch.role == roles.GRADER:
            return f"/services/{self.layout.course_id}/formgrader"
        home = Path(f"/home/{person.account}") / launch.assignment
        notebooks = sorted(p.name for p in home.glob("*.ipynb")) if home.is_dir() else []
        target = f"{launch.assignment}/{notebooks[0]}" if len(notebooks) == 1 else launch.assignment
        return f"/hub/user-redirect/lab/tree/{target}"

    def next_url(self, account: str) -> str:
        return self._next.pop(account, "/hub/home")
