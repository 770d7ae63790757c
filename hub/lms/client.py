"""The tool's calls to the LMS (AGS line items and scores, NRPS memberships), on ``pylti1p3next``.

pylti1p3next (the maintained fork of pylti1p3) makes the token exchange as
LTI's security framework asks (a client assertion signed with the tool's
key, RS256, with a ``kid``), follows the ``Link: rel="next"`` pages, and
speaks AGS and NRPS.  Around it, this module adds what a course needs:

- each service asks for exactly the scopes it uses: the gradebook
  ``lineitem`` and ``score`` (only what the LMS's launch offered), the
  roster ``contextmembership.readonly``;
- a timeout on every request, and the platform's CA bundle where one is set;
- tokens kept in memory until shortly before they expire, never logged;
- every failure sorted into ``Retry`` (unreachable, slow, 429 and 5xx, with
  the LMS's Retry-After, and any refused token request) or ``Refused`` (any
  other 4xx, with the LMS's words).
"""

from __future__ import annotations

import time
from typing import Any

import requests
from pylti1p3.assignments_grades import AssignmentsGradesService
from pylti1p3.exception import LtiServiceException
from pylti1p3.grade import Grade
from pylti1p3.lineitem import LineItem
from pylti1p3.names_roles import NamesRolesProvisioningService
from pylti1p3.registration import Registration
from pylti1p3.service_connector import ServiceConnector

from hub.lms.keys import ToolKey
from hub.lms.registrations import Platform

SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/"
LINEITEM, LINEITEM_READ, SCORE = SCOPE + "lineitem", SCOPE + "lineitem.readonly", SCOPE + "score"
MEMBERSHIP = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
TIMEOUT = 20.0


class LmsError(Exception):
    """A call to the LMS failed; ``str()`` says what, never with a token in it."""


class Retry(LmsError):
    """Worth trying again later (the LMS is down, slow, busy, or failed itself); ``after``: its Retry-After."""

    def __init__(self, message: str, after: float | None = None):
        super().__init__(message)
        self.after = after


class Refused(LmsError):
    """The LMS refused the call (4xx): trying again changes nothing until someone acts."""


class _Session(requests.Session):
    """Every request with a timeout and the platform's CA bundle: pylti1p3next sets neither."""

    def __init__(self, verify: str | bool):
        super().__init__()
        self.verify = verify
        self.headers["User-Agent"] = "unet-hub (pylti1p3next)"

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        # Explicitly: requests lets REQUESTS_CA_BUNDLE override a session's own CA bundle otherwise.
        kwargs.setdefault("verify", self.verify)
        return super().request(*args, **kwargs)


class _ToolRegistration(Registration):
    def __init__(self, kid: str):
        self._kid = kid

    def get_kid(self) -> str:
        return self._kid


class _Connector(ServiceConnector):
    """pylti1p3next's connector with the token cache it leaves to the application (in memory, per scope set)."""

    def __init__(self, registration: Registration, session: requests.Session):
        super().__init__(registration, session)
        self._tokens: dict[str, tuple[str, float]] = {}

    def _get_cached_access_token(self, scope_key: str) -> str | None:
        token, until = self._tokens.get(scope_key, ("", 0.0))
        return token if token and time.time() < until else None

    def _cache_access_token(self, scope_key: str, access_token: str, expires_in: float) -> None:
        # A minute early, so that a token never expires on its way; at most an hour.
        self._tokens[scope_key] = (access_token, time.time() + min(float(expires_in or 300), 3600.0) - 60)

    def forget_tokens(self) -> None:
        self._tokens.clear()


def _classify(error: Exception, token_url: str) -> LmsError:
    if isinstance(error, LtiServiceException):
        response = error.response
        status = response.status_code
        what = f"the LMS answered {status} to {response.request.method} {response.url}"
        body = (response.text or "").strip().replace("\n", " ")[:300]
        # No token: nothing reached the LMS, and the cause (its copy of the tool's key, a registration
        # being fixed) may pass; so it is tried again, with the LMS's words on the instructor's page.
        if status == 429 or status >= 500 or response.url.split("?")[0] == token_url:
            after = response.headers.get("Retry-After", "")
            return Retry(f"{what}{f': {body}' if body else ''}", float(after) if after.isdigit() else None)
        return Refused(f"{what}{f': {body}' if body else ''}")
    if isinstance(error, requests.Timeout):
        return Retry(f"the LMS did not answer within {TIMEOUT:.0f} s")
    if isinstance(error, requests.ConnectionError):
        return Retry(f"the LMS cannot be reached ({type(error).__name__})")
    return Retry(f"{type(error).__name__}: {error}")


class LmsClient:
    """One platform's AGS and NRPS, for the tool's key."""

    def __init__(self, platform: Platform, key: ToolKey):
        registration = (_ToolRegistration(key.kid).set_issuer(platform.issuer).set_client_id(platform.client_id)
                        .set_auth_token_url(platform.token_url).set_tool_private_key(key.pem))
        if platform.token_audience:
            registration.set_auth_audience(platform.token_audience)
        self.platform = platform
        self.connector = _Connector(registration, _Session(platform.verify))

    def _call(self, function, *args: Any) -> Any:
        """``function(*args)``, once more with a fresh token after a 401; failures as ``Retry``/``Refused``."""
        for attempt in (1, 2):
            try:
                return function(*args)
            except (LtiServiceException, requests.RequestException) as error:
                if (attempt == 1 and isinstance(error, LtiServiceException)
                        and error.response.status_code == 401):
                    self.connector.forget_tokens()
                    continue
                raise _classify(error, self.platform.token_url) from None
        raise AssertionError("unreachable")

    def _ags(self, lineitems_url: str, offered: tuple[str, ...], needs: tuple[str, ...]) -> AssignmentsGradesService:
        scopes = [s for s in needs if s in offered]
        if not scopes:
            raise Refused(f"the LMS's launch offers none of the scopes {', '.join(needs)} for this course")
        data: Any = {"scope": scopes, "lineitems": lineitems_url}
        return AssignmentsGradesService(self.connector, data)

    def find_line_item(self, lineitems_url: str, offered: tuple[str, ...], resource_id: str) -> str | None:
        """The URL of the course's line item with ``resource_id``; the oldest if the LMS holds several."""
        ags = self._ags(lineitems_url, offered, (LINEITEM,) if LINEITEM in offered else (LINEITEM_READ,))
        found = self._call(lambda: [item for item in ags.get_lineitems() if item.get("resourceId") == resource_id])
        return found[0]["id"] if found else None

    def create_line_item(self, lineitems_url: str, offered: tuple[str, ...], label: str, maximum: float,
                         resource_id: str, tag: str) -> str:
        ags = self._ags(lineitems_url, offered, (LINEITEM,))
        item = (LineItem().set_label(label).set_score_maximum(maximum).set_resource_id(resource_id).set_tag(tag))
        created = self._call(ags.create_lineitem, item)
        return created.get_id()

    def post_score(self, lineitem_url: str, offered: tuple[str, ...], score: dict[str, Any]) -> None:
        if SCORE not in offered:
            raise Refused("the LMS's launch does not offer the score scope for this course")
        data: Any = {"scope": [SCORE], "lineitem": lineitem_url}
        ags = AssignmentsGradesService(self.connector, data)
        grade = (Grade().set_user_id(score["userId"]).set_timestamp(score["timestamp"])
                 .set_activity_progress(score["activityProgress"]).set_grading_progress(score["gradingProgress"])
                 .set_score_maximum(score["scoreMaximum"]))
        if score.get("scoreGiven") is not None:
            grade.set_score_given(score["scoreGiven"])
        if score.get("submission", {}).get("submittedAt"):
            grade.set_submitted_at(score["submission"]["submittedAt"])
        self._call(ags.put_grade, grade)

    def members(self, memberships_url: str) -> list[dict[str, Any]]:
        """Everyone the LMS lists in the course (all pages)."""
        nrps = NamesRolesProvisioningService(self.connector, {"context_memberships_url": memberships_url})
        return self._call(nrps.get_members)
