"""The LMS platforms this hub trusts: one registration per (issuer, client id), root-only in the state folder.

An instructor registers the tool in the LMS (docs/lms.md) and copies what
the LMS shows into ``<state>/lms/platforms.json``::

    [{"name": "Canvas", "issuer": "https://canvas.instructure.com",
      "client_id": "10000000000123", "deployment_ids": ["1:abc..."],
      "authorize_url": "https://sso.canvaslms.com/api/lti/authorize_redirect",
      "token_url": "https://sso.canvaslms.com/login/oauth2/token",
      "jwks_url": "https://sso.canvaslms.com/api/lti/security/jwks",
      "course_context_id": "4dde05e8ca1973bcca9bffc13e1548820eee93a3", "course_deployment_id": "1:abc..."}]

The last two bind this hub's course to one LMS course (``hub.lms.binding``).
A launch from an issuer, client id or deployment not listed is refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from hub.lms.keys import write_private


class RegistrationError(ValueError):
    """The registrations file is missing or wrong; the message names the file and the field."""


@dataclass(frozen=True)
class Platform:
    """One LMS registration of this tool."""

    issuer: str
    client_id: str
    authorize_url: str
    token_url: str
    jwks_url: str
    deployment_ids: tuple[str, ...] = ()
    name: str = ""
    # The audience of client assertions when the LMS wants one other than its token URL (Moodle, Canvas: none).
    token_audience: str = ""
    # A CA bundle to trust for this platform's https (a local test platform); empty: the system's.
    ca_bundle: str = ""
    # The LMS course this hub's course is bound to (hub.lms.binding): its context id and deployment.
    course_context_id: str = ""
    course_deployment_id: str = ""

    @property
    def verify(self) -> str | bool:
        """What ``requests`` takes as ``verify``."""
        return self.ca_bundle or True


REQUIRED = ("issuer", "client_id", "authorize_url", "token_url", "jwks_url", "deployment_ids")


def load_platforms(path: Path) -> list[Platform]:
    """The registrations in ``path``; a clear error for each problem."""
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        raise RegistrationError(f"{path} is missing: register the tool in your LMS and list it there "
                                "(docs/lms.md)") from None
    except json.JSONDecodeError as error:
        raise RegistrationError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(entries, list):
        raise RegistrationError(f"{path} must hold a list of registrations, not {type(entries).__name__}")
    platforms = []
    for index, entry in enumerate(entries):
        missing = [k for k in REQUIRED if not entry.get(k)]
        if missing:
            raise RegistrationError(f"{path}, registration {index + 1}: {', '.join(missing)} missing")
        for key in ("issuer", "authorize_url", "token_url", "jwks_url"):
            if not str(entry[key]).startswith("https://"):
                raise RegistrationError(f"{path}, registration {index + 1}: {key} must be an https URL, "
                                        f"not {entry[key]!r}")
        known = {f for f in Platform.__dataclass_fields__}
        unknown = set(entry) - known
        if unknown:
            raise RegistrationError(f"{path}, registration {index + 1}: unknown field(s) {', '.join(sorted(unknown))}")
        platform = Platform(**{**entry, "deployment_ids": tuple(str(d) for d in entry["deployment_ids"])})
        if bool(platform.course_context_id) != bool(platform.course_deployment_id):
            raise RegistrationError(f"{path}, registration {index + 1}: a course is bound by both "
                                    "course_context_id and course_deployment_id (docs/lms.md)")
        if platform.course_deployment_id and platform.course_deployment_id not in platform.deployment_ids:
            raise RegistrationError(f"{path}, registration {index + 1}: course_deployment_id "
                                    f"{platform.course_deployment_id!r} is not one of its deployment_ids")
        platforms.append(platform)
    if sum(bool(p.course_context_id) for p in platforms) > 1:
        raise RegistrationError(f"{path}: more than one registration binds the course; a hub course is bound to "
                                "exactly one LMS course (docs/lms.md)")
    return platforms


def save_platforms(path: Path, platforms: list[Platform]) -> None:
    """Write the registrations, root-only."""
    write_private(path, json.dumps([asdict(p) for p in platforms], indent=2) + "\n")


def find_platform(platforms: list[Platform], issuer: str, client_id: str | None) -> Platform | None:
    """The registration of ``issuer`` (and ``client_id`` when given, or when the issuer has several)."""
    of_issuer = [p for p in platforms if p.issuer == issuer]
    if client_id:
        return next((p for p in of_issuer if p.client_id == client_id), None)
    return of_issuer[0] if len(of_issuer) == 1 else None
