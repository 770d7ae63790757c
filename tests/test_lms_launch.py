"""LTI 1.3 launches against the local platform, without a hub: a good launch passes, every forgery is refused.

The platform (``hub.lms.testing.platform``, on ``lti1p3platform``) serves
https on localhost with a certificate made here; the tool's side is
``hub.lms.launch.LaunchVerifier``, which the hub's authenticator calls.  Each
forged launch changes one thing of a real one (or signs it with another
key) and must be refused with its reason, leaving the nonce unused.
"""

from __future__ import annotations

import html
import re
import time
from urllib.parse import parse_qsl, urlparse

import pytest
import requests
from jwcrypto import jwk
from ltiauthenticator.lti13.handlers import _serialize_state, get_nonce, make_nonce_state

from hub.lms import roles
from hub.lms.launch import CLAIM, Launch, LaunchRefused, LaunchVerifier, authentication_request
from hub.lms.nonces import NonceStore
from hub.lms.registrations import Platform, RegistrationError, load_platforms, save_platforms
from hub.lms.testing.platform import LocalPlatform, new_person
from hub.lms.testing.tls import make_localhost_certificate

TOOL = "https://tool.test/hub"
REDIRECT = f"{TOOL}/lti13/oauth_callback"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    tls = make_localhost_certificate(tmp_path_factory.mktemp("tls"))
    lms = LocalPlatform(tls).start()
    lms.register_tool(f"{TOOL}/lti13/oauth_login", REDIRECT, TOOL, jwks={"keys": []})
    lms.add_course("bio101", "Biology 101")
    lms.add_link("bio101", "link-1", "U-Net assignment")
    yield lms
    lms.stop()


@pytest.fixture
def verifier(platform, tmp_path):
    return LaunchVerifier([Platform(**{**platform.tool_registration(),
                                       "deployment_ids": (platform.deployment_id,)})],
                          NonceStore(tmp_path / "nonces.sqlite"), default_assignment="unet_segmentation")


class Browser:
    """What the person's browser carries through one launch: the cookies the tool set, and the posted form."""

    def __init__(self, state: str, nonce_state: str, form: dict[str, str]):
        self.state_cookie, self.nonce_cookie, self.form = state, nonce_state, form


def launch(platform: LocalPlatform, person, link: str = "link-1") -> Browser:
    """A person clicks the link in the LMS; the tool's login step (as jupyterhub-ltiauthenticator's) answers."""
    start = requests.get(f"{platform.issuer}/course/bio101/launch/{link}", params={"user": person.sub},
                         allow_redirects=False, verify=str(platform.tls.ca), timeout=30)
    assert start.status_code == 302, start.text
    login = dict(parse_qsl(urlparse(start.headers["Location"]).query))
    assert login["iss"] == platform.issuer and login["login_hint"] == person.sub
    nonce_state = make_nonce_state()
    state = _serialize_state({"state_id": "x", "next_url": None})
    registration = Platform(**{**platform.tool_registration(), "deployment_ids": (platform.deployment_id,)})
    auth = requests.get(authentication_request(registration, login, REDIRECT, state, get_nonce(nonce_state)),
                        verify=str(platform.tls.ca), timeout=30)
    assert auth.status_code == 200, auth.text
    form = {k: html.unescape(v) for k, v in re.findall(r'name="(\w+)" value="([^"]*)"', auth.text)}
    assert set(form) == {"id_token", "state"}
    return Browser(state, nonce_state, form)


def verify(verifier: LaunchVerifier, browser: Browser, id_token: str | None = None) -> Launch:
    return verifier.verify(id_token or browser.form["id_token"], browser.form["state"], browser.state_cookie,
                           browser.nonce_cookie)


def claims_of(platform: LocalPlatform, browser: Browser) -> dict:
    import jwt

    return jwt.decode(browser.form["id_token"], options={"verify_signature": False})


@pytest.fixture
def student(platform):
    return platform.enrol("bio101", new_person("Ada", "Lovelace"))


def test_a_real_launch_is_accepted_with_who_and_where(platform, verifier, student):
    result = verify(verifier, launch(platform, student))
    assert (result.sub, result.role, result.email) == (student.sub, roles.STUDENT, "ada.lovelace@example.edu")
    assert (result.given_name, result.family_name, result.name) == ("Ada", "Lovelace", "Ada Lovelace")
    assert (result.context_id, result.context_title, result.resource_link_id) == ("bio101", "Biology 101", "link-1")
    assert result.assignment == "unet_segmentation"
    assert result.lineitems_url == f"{platform.issuer}/api/bio101/lineitems"
    assert result.nrps_url == f"{platform.issuer}/api/bio101/memberships"
    assert "https://purl.imsglobal.org/spec/lti-ags/scope/score" in result.ags_scopes


def test_the_roles_that_grade(platform, verifier):
    for role, expected in [("Instructor", roles.GRADER), ("TeachingAssistant", roles.GRADER),
                           ("ContentDeveloper", roles.GRADER), ("Learner", roles.STUDENT)]:
        person = platform.enrol("bio101", new_person("Role", role, role=role))
        assert verify(verifier, launch(platform, person)).role == expected, role
    mentor = platform.enrol("bio101", new_person("Meg", "Mentor", role="Mentor"))
    with pytest.raises(LaunchRefused, match="role in this LMS course gives no access"):
        verify(verifier, launch(platform, mentor))


def test_roles_of_the_institution_do_not_count():
    institution = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Instructor"
    assert roles.course_role([institution, roles.MEMBERSHIP + "#Learner"]) == roles.STUDENT
    assert roles.course_role([institution]) is None
    assert roles.course_role(["Instructor"]) == roles.GRADER  # an LTI simple name


def test_a_replayed_launch_is_refused_even_with_its_cookies(platform, verifier, student):
    browser = launch(platform, student)
    verify(verifier, browser)
    with pytest.raises(LaunchRefused, match="already used once"):
        verify(verifier, browser)


def test_a_launch_without_this_browsers_cookies_or_state_is_refused(platform, verifier, student):
    browser = launch(platform, student)
    with pytest.raises(LaunchRefused, match="no login cookie"):
        verifier.verify(browser.form["id_token"], browser.form["state"], "", "")
    with pytest.raises(LaunchRefused, match="state does not match"):
        verifier.verify(browser.form["id_token"], browser.form["state"], "another", browser.nonce_cookie)
    with pytest.raises(LaunchRefused, match="nonce does not match"):
        verifier.verify(browser.form["id_token"], browser.form["state"], browser.state_cookie, make_nonce_state())
    verify(verifier, browser)  # none of these used up the nonce


def forged(platform, browser, **changes) -> str:
    claims = {**claims_of(platform, browser), **changes}
    return platform.sign({k: v for k, v in claims.items() if v is not None})


@pytest.mark.parametrize(("changes", "reason"), [
    ({"iss": "https://evil.example"}, "no registration"),
    ({"aud": "someone-else"}, "no registration"),
    ({"aud": [LocalPlatform.client_id, "other"], "azp": "other"}, "azp"),
    ({"azp": "other"}, "issued for another tool"),
    ({"exp": int(time.time()) - 60}, "expired"),
    ({"iat": int(time.time()) - 3600}, "issued too long ago"),
    ({CLAIM + "deployment_id": "deployment-9"}, "deployment 'deployment-9'"),
    ({CLAIM + "message_type": "LtiDeepLinkingRequest"}, "accepts only assignment links"),
    ({CLAIM + "message_type": "LtiSomethingElse"}, "accepts only assignment links"),
    ({CLAIM + "version": "1.1"}, "version"),
    ({CLAIM + "roles": None}, "roles"),
    ({"nonce": "0" * 64}, "nonce does not match"),
    ({"sub": ""}, "names nobody"),
    ({CLAIM + "custom": {"assignment": "../../etc"}}, "no assignment name"),
    ({CLAIM + "context": None}, "names no LMS course"),
])
def test_a_forged_launch_is_refused_with_its_reason(platform, verifier, student, changes, reason):
    browser = launch(platform, student)
    with pytest.raises(LaunchRefused, match=re.escape(reason)):
        verify(verifier, browser, forged(platform, browser, **changes))
    verify(verifier, browser)  # the real one still passes: the forgery used nothing up


def test_a_launch_signed_with_another_key_or_none_is_refused(platform, verifier, student):
    import jwt

    browser = launch(platform, student)
    claims = claims_of(platform, browser)
    other = jwk.JWK.generate(kty="RSA", size=2048).export_to_pem(private_key=True, password=None).decode()
    kid = jwk.JWK.from_pem(platform.private_pem.encode()).thumbprint()
    cases = [
        (platform.sign(claims, private_pem=other), "signature or claims are not valid"),  # same kid, other key
        (platform.sign(claims, private_pem=other, headers={"kid": "unknown"}), "cannot be checked"),
        (platform.sign(claims, private_pem="s" * 40, headers={"kid": kid}, algorithm="HS256"), "not valid"),
        (jwt.encode(claims, None, algorithm="none", headers={"kid": kid}), "not valid"),
        ("not-a-token", "no readable id_token"),
    ]
    for token, reason in cases:
        with pytest.raises(LaunchRefused, match=reason):
            verify(verifier, browser, token)
    verify(verifier, browser)


def test_the_registrations_file_says_what_is_wrong(tmp_path, platform):
    path = tmp_path / "platforms.json"
    with pytest.raises(RegistrationError, match="is missing"):
        load_platforms(path)
    good = Platform(**{**platform.tool_registration(), "deployment_ids": ("d1",)})
    save_platforms(path, [good])
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_platforms(path) == [good]
    path.write_text('[{"issuer": "http://lms.example", "client_id": "1", "authorize_url": "https://a", '
                    '"token_url": "https://t", "jwks_url": "https://j", "deployment_ids": ["d"]}]')
    with pytest.raises(RegistrationError, match="issuer must be an https URL"):
        load_platforms(path)
    path.write_text('[{"issuer": "https://lms.example"}]')
    with pytest.raises(RegistrationError, match="registration 1: client_id, authorize_url"):
        load_platforms(path)
