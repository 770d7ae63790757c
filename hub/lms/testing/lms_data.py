"""The local LMS's data: courses, people, links, line items, scores, and its LTI 1.3 registration.

``PlatformState`` is what the LMS holds and how it signs; ``lms_http`` serves
it and ``platform.LocalPlatform`` runs the server.  The LTI parts
(preflight URL, launch message, access tokens) are ``lti1p3platform``'s.
"""

from __future__ import annotations

import html
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests
from jwcrypto import jwk
from lti1p3platform.ltiplatform import LTI1P3PlatformConfAbstract
from lti1p3platform.message_launch import LTIAdvantageMessageLaunchAbstract
from lti1p3platform.oidc_login import OIDCLoginAbstract
from lti1p3platform.registration import Registration

from hub.lms.testing.tls import TlsFiles

LIS = "http://purl.imsglobal.org/vocab/lis/v2/membership#"
ROLE_URIS = {"Learner": LIS + "Learner", "Instructor": LIS + "Instructor",
             "TeachingAssistant": "http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant",
             "ContentDeveloper": LIS + "ContentDeveloper", "Mentor": LIS + "Mentor"}
SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/"
LINEITEM, SCORE, RESULT = SCOPE + "lineitem", SCOPE + "score", SCOPE + "result.readonly"
LINEITEM_READ = SCOPE + "lineitem.readonly"
MEMBERSHIP = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
PAGE = 2  # small pages, so that paging is always exercised



@dataclass
class Person:
    """A person of the LMS in one course."""

    sub: str
    given_name: str
    family_name: str
    email: str
    role: str = "Learner"
    status: str = "Active"

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()


@dataclass
class Course:
    """A course (an LTI context) with its people, assignment links, line items and scores."""

    id: str
    title: str
    people: dict[str, Person] = field(default_factory=dict)
    # link id -> (title, the assignment it opens, or "" for the default)
    links: dict[str, tuple[str, str]] = field(default_factory=dict)
    lineitems: dict[str, dict[str, Any]] = field(default_factory=dict)
    # line item id -> user -> the last score posted
    scores: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # sub -> the person's own due date (ISO 8601), sent as the custom parameter due_at as Canvas does
    # when the link asks for $Canvas.assignment.dueAt.iso8601
    due_at: dict[str, str] = field(default_factory=dict)


class _Config(LTI1P3PlatformConfAbstract):
    def init_platform_config(self, **kwargs: Any) -> None:
        self._platform_registration: Registration = kwargs["registration"]

    def get_registration_by_params(self, **kwargs: Any) -> Registration:
        return self._platform_registration


class _Login(OIDCLoginAbstract):
    def set_lti_message_hint(self, **kwargs: Any) -> None:
        self._lti_message_hint = kwargs["hint"]

    def get_redirect(self, url: str) -> str:
        return url


class _Launch(LTIAdvantageMessageLaunchAbstract):
    def __init__(self, preflight: dict[str, Any], config: _Config):
        super().__init__(None, config)
        self._preflight = preflight

    def get_preflight_response(self) -> dict[str, Any]:
        return self._preflight

    def render_launch_form(self, launch_data: dict[str, Any], **kwargs: Any) -> str:
        fields = "".join(f'<input type="hidden" name="{k}" value="{html.escape(str(launch_data[k]))}">'
                         for k in ("id_token", "state"))
        return (f'<!doctype html><html><body><p>Opening the tool...</p>'
                f'<form id="launch" method="post" action="{html.escape(str(launch_data["launch_url"]))}">'
                f'{fields}<noscript><button>Continue</button></noscript></form>'
                f'<script>document.getElementById("launch").submit()</script></body></html>')


class PlatformState:
    """What the LMS holds: ``issuer`` is its https URL; the tool is registered with ``register_tool``."""

    client_id = "unet-hub-tool"
    deployment_id = "deployment-1"

    def __init__(self, tls: TlsFiles, port: int = 0):
        self.tls, self.port = tls, port
        key = jwk.JWK.generate(kty="RSA", size=2048)
        self.private_pem = key.export_to_pem(private_key=True, password=None).decode()
        self.public_pem = key.export_to_pem().decode()
        self.courses: dict[str, Course] = {}
        self.lock = threading.RLock()
        self.answers: list[int] = []
        self.delay = 0.0
        # Seconds the key set (JWKS) endpoint waits before it answers.
        self.keys_delay = 0.0
        self.keys_requests = 0
        self.token_requests: list[list[str]] = []
        self.score_posts: list[dict[str, Any]] = []
        self.lineitem_creations = 0
        # Seconds each score post takes before the LMS records it (a slow LMS; a tool killed meanwhile).
        self.score_delay = 0.0
        self.score_arrivals = 0
        self.issued_tokens: list[str] = []
        self._jtis: set[str] = set()
        self.tool: dict[str, Any] = {}

    # -- the LMS's own data ---------------------------------------------------------------------------------------
    @property
    def issuer(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def add_course(self, course_id: str, title: str) -> Course:
        with self.lock:
            return self.courses.setdefault(course_id, Course(course_id, title))

    def enrol(self, course_id: str, person: Person) -> Person:
        with self.lock:
            self.courses[course_id].people[person.sub] = person
        return person

    def unenrol(self, course_id: str, sub: str) -> None:
        """The person leaves the course: NRPS lists them as Deleted, and their scores are refused."""
        with self.lock:
            self.courses[course_id].people[sub].status = "Deleted"

    def set_due_date(self, course_id: str, sub: str, due_at: str) -> None:
        """The person's own due date (an override), sent in their launches from now on."""
        with self.lock:
            self.courses[course_id].due_at[sub] = due_at

    def add_link(self, course_id: str, link_id: str, title: str, assignment: str = "") -> None:
        with self.lock:
            self.courses[course_id].links[link_id] = (title, assignment)

    def register_tool(self, login_url: str, redirect_uri: str, target_link_uri: str,
                      jwks: dict[str, Any] | None = None, jwks_url: str = "") -> None:
        """What an instructor types into the LMS's developer key / tool registration."""
        self.tool = {"login_url": login_url, "redirect_uri": redirect_uri, "target_link_uri": target_link_uri,
                     "jwks": jwks, "jwks_url": jwks_url}

    def tool_registration(self) -> dict[str, Any]:
        """What the LMS shows the instructor to register it on the tool's side (``hub.lms.registrations``)."""
        return {"name": "Local LTI 1.3 platform", "issuer": self.issuer, "client_id": self.client_id,
                "deployment_ids": [self.deployment_id], "authorize_url": f"{self.issuer}/auth",
                "token_url": f"{self.issuer}/token", "jwks_url": f"{self.issuer}/jwks", "ca_bundle": str(self.tls.ca)}

    def bound_registration(self, course_id: str, deployment_ids: tuple[str, ...] = ()) -> dict[str, Any]:
        """The registration with this hub's course bound to ``course_id`` (on the platform's deployment)."""
        return {**self.tool_registration(), "deployment_ids": deployment_ids or (self.deployment_id,),
                "course_context_id": course_id, "course_deployment_id": self.deployment_id}

    def _registration(self) -> Registration:
        registration = (Registration().set_iss(self.issuer).set_client_id(self.client_id)
                        .set_deployment_id(self.deployment_id).set_oidc_login_url(self.tool["login_url"])
                        .set_launch_url(self.tool["target_link_uri"]).set_platform_private_key(self.private_pem)
                        .set_platform_public_key(self.public_pem))
        registration.set_tool_key_set(self._tool_keys())
        return registration

    def _tool_keys(self) -> Any:
        """The tool's public keys: as registered, or fetched once from its JWKS URL (as an LMS caches them)."""
        if self.tool.get("jwks"):
            return self.tool["jwks"]
        response = requests.get(self.tool["jwks_url"], timeout=10, verify=str(self.tls.ca))
        response.raise_for_status()
        self.tool["jwks"] = response.json()
        return response.json()

    def sign(self, claims: dict[str, Any], private_pem: str | None = None, headers: dict[str, Any] | None = None,
             algorithm: str = "RS256") -> str:
        """A token with exactly ``claims``, signed with this platform's key (or another): for forged launches."""
        kid = jwk.JWK.from_pem(self.private_pem.encode()).thumbprint()
        return jwt.encode(claims, private_pem or self.private_pem, algorithm=algorithm,
                          headers=headers if headers is not None else {"kid": kid})

    # -- reading what the tool did --------------------------------------------------------------------------------
    def gradebook(self, course_id: str) -> dict[str, dict[str, float | None]]:
        """Line item label -> person's name -> score given (what the gradebook page shows)."""
        with self.lock:
            course = self.courses[course_id]
            return {item["label"]: {course.people[u].name: s.get("scoreGiven")
                                    for u, s in course.scores.get(item_id, {}).items()}
                    for item_id, item in course.lineitems.items()}


def new_person(given: str, family: str, role: str = "Learner") -> Person:
    """A person with a sub the LMS made (opaque, as real ones are)."""
    return Person(sub=uuid.uuid4().hex, given_name=given, family_name=family,
                  email=f"{given.lower()}.{family.lower()}@example.edu", role=role)
