"""LTI 1.3 launches against the local platform, without a hub: a good launch passes, every forgery is refused.

The platform (``hub.lms.testing.platform``, on ``lti1p3platform``) serves
https on localhost with a certificate made here; the tool's side is
``hub.lms.launch.LaunchVerifier``, which the hub's authenticator calls.  Each
forged launch changes one thing of a real one (or signs it with another
key) and must be refused with its reason, leaving the nonce unused.
"""

from __future__ import annotations

import asyncio
import html
import json
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
    # Another course on the same deployment (a tool installed for a whole Canvas account or Moodle site).
    lms.add_course("sandbox", "Someone's sandbox")
    lms.add_link("sandbox", "link-s", "U-Net assignment (copied)")
    yield lms
    lms.stop()


OTHER_DEPLOYMENT = "deployment-2"


@pytest.fixture
def verifier(platform, tmp_path):
    """The hub's course bound to bio101 on deployment-1; deployment-2 of the same platform is registered too."""
    bound = Platform(**platform.bound_registration("bio101", (platform.deployment_id, OTHER_DEPLOYMENT)))
    return LaunchVerifier([bound], NonceStore(tmp_path / "nonces.sqlite"), default_assignment="unet_segmentation")


class Browser:
    """What the person's browser carries through one launch: the cookies the tool set, and the posted form."""

    def __init__(self, state: str, nonce_state: str, form: dict[str, str]):
        self.state_cookie, self.nonce_cookie, self.form = state, nonce_state, form


def launch(platform: LocalPlatform, person, link: str = "link-1", course: str = "bio101") -> Browser:
    """A person clicks the link in the LMS; the tool's login step (as jupyterhub-ltiauthenticator's) answers."""
    start = requests.get(f"{platform.issuer}/course/{course}/launch/{link}", params={"user": person.sub},
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
    return verify_with(verifier, id_token or browser.form["id_token"], browser.form["state"], browser.state_cookie,
                       browser.nonce_cookie)


def verify_with(verifier: LaunchVerifier, *args: str) -> Launch:
    return asyncio.run(verifier.verify(*args))


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
        verify_with(verifier, browser.form["id_token"], browser.form["state"], "", "")
    with pytest.raises(LaunchRefused, match="state does not match"):
        verify_with(verifier, browser.form["id_token"], browser.form["state"], "another", browser.nonce_cookie)
    with pytest.raises(LaunchRefused, match="nonce does not match"):
        verify_with(verifier, browser.form["id_token"], browser.form["state"], browser.state_cookie,
                    make_nonce_state())
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
        (platform.sign(claims, private_pem=other, headers={"kid": "unknown"}), "not in the key set"),
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


# -- roles belong to the bound LMS course ------------------------------------------------------------------------

def refused(verifier: LaunchVerifier, browser: Browser, id_token: str | None = None) -> LaunchRefused:
    with pytest.raises(LaunchRefused) as caught:
        verify(verifier, browser, id_token)
    return caught.value


def as_role(platform, course: str, person, role: str):
    """The same LMS person (same sub) enrolled in ``course`` with ``role``."""
    return platform.enrol(course, type(person)(person.sub, person.given_name, person.family_name, person.email,
                                               role=role))


def test_an_instructor_of_another_course_on_the_same_deployment_is_nobody_here(platform, verifier):
    """The attack of issue #30: a learner here, instructor of a sandbox course on the shared deployment."""
    mallory = platform.enrol("bio101", new_person("Mal", "Lory"))
    assert verify(verifier, launch(platform, mallory)).role == roles.STUDENT
    as_role(platform, "sandbox", mallory, "Instructor")
    error = refused(verifier, launch(platform, mallory, link="link-s", course="sandbox"))
    assert error.status == 403 and "this hub's course belongs to another LMS course" in str(error)
    assert "'sandbox'" in str(error)
    # A learner of the sandbox only is nobody here either, and neither is its TA.
    for role in ("Learner", "TeachingAssistant", "ContentDeveloper"):
        other = platform.enrol("sandbox", new_person("Sam", role, role=role))
        assert refused(verifier, launch(platform, other, link="link-s", course="sandbox")).status == 403


def test_the_bound_course_on_another_deployment_or_client_is_refused(platform, verifier, tmp_path):
    teacher = platform.enrol("bio101", new_person("Tia", "Teacher", role="Instructor"))
    browser = launch(platform, teacher)
    # The same LMS course id, launched through another (registered) deployment: the binding names one.
    error = refused(verifier, browser, forged(platform, browser, **{CLAIM + "deployment_id": OTHER_DEPLOYMENT}))
    assert error.status == 403 and "deployment 'deployment-2'" in str(error)
    # ... or through another registration (client id) of the same LMS.
    bound = Platform(**platform.bound_registration("bio101"))
    other_client = Platform(**{**platform.tool_registration(), "client_id": "another-tool",
                               "deployment_ids": (platform.deployment_id,)})
    two = LaunchVerifier([bound, other_client], NonceStore(tmp_path / "n2.sqlite"), "unet_segmentation")
    error = refused(two, browser, forged(platform, browser, aud="another-tool", azp="another-tool"))
    assert error.status == 403 and "belongs to another LMS course" in str(error)
    assert verify(verifier, browser).role == roles.GRADER  # the real launch, from the bound course, grades


def test_roles_of_the_institution_or_system_give_nothing_in_the_bound_course(platform, verifier):
    person = platform.enrol("bio101", new_person("Ivo", "Institution"))
    browser = launch(platform, person)
    institution = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Instructor"
    system = "http://purl.imsglobal.org/vocab/lis/v2/system/person#Administrator"
    error = refused(verifier, browser, forged(platform, browser, **{CLAIM + "roles": [institution, system]}))
    assert error.status == 403 and "gives no access" in str(error)
    learner = forged(platform, browser, **{CLAIM + "roles": [institution, system, roles.MEMBERSHIP + "#Learner"]})
    assert verify(verifier, browser, learner).role == roles.STUDENT


def test_an_unbound_hub_lets_nobody_in_and_says_what_to_bind(platform, tmp_path):
    unbound = LaunchVerifier([Platform(**{**platform.tool_registration(), "deployment_ids": (
        platform.deployment_id,)})], NonceStore(tmp_path / "n.sqlite"), "unet_segmentation")
    teacher = platform.enrol("bio101", new_person("Una", "Bound", role="Instructor"))
    error = refused(unbound, launch(platform, teacher))
    assert error.status == 403
    assert '"course_context_id": "bio101", "course_deployment_id": "deployment-1"' in str(error)


def test_a_binding_is_one_course_of_a_registered_deployment(tmp_path, platform):
    path = tmp_path / "platforms.json"
    entry = {**platform.tool_registration(), "deployment_ids": ["d1"]}
    for binding, reason in [({"course_context_id": "c1"}, "both course_context_id and course_deployment_id"),
                            ({"course_context_id": "c1", "course_deployment_id": "d9"}, "not one of its")]:
        path.write_text(json.dumps([{**entry, **binding}]))
        with pytest.raises(RegistrationError, match=reason):
            load_platforms(path)
    bound = {**entry, "course_context_id": "c1", "course_deployment_id": "d1"}
    path.write_text(json.dumps([bound, {**bound, "client_id": "2"}]))
    with pytest.raises(RegistrationError, match="more than one registration binds"):
        load_platforms(path)


LIS = "http://purl.imsglobal.org/vocab/lis/v2/"


@pytest.mark.parametrize(("uri", "expected"), [
    (LIS + "membership#Learner", roles.STUDENT),
    (LIS + "membership/Learner#Learner", roles.STUDENT),
    (LIS + "membership/Learner#Instructor", roles.STUDENT),  # a learner's sub-role (issue #30)
    (LIS + "membership/Learner#ExternalLearner", roles.STUDENT),
    (LIS + "membership/Learner#GuestLearner", roles.STUDENT),
    (LIS + "membership#Instructor", roles.GRADER),
    (LIS + "membership/Instructor#TeachingAssistant", roles.GRADER),
    (LIS + "membership/Instructor#Grader", roles.GRADER),
    (LIS + "membership/Instructor#Lecturer", roles.GRADER),
    (LIS + "membership#TeachingAssistant", roles.GRADER),
    (LIS + "membership#ContentDeveloper", roles.GRADER),
    (LIS + "membership/ContentDeveloper#ContentExpert", roles.GRADER),
    (LIS + "membership#Administrator", roles.GRADER),
    (LIS + "membership/Administrator#Support", roles.GRADER),
    (LIS + "membership#Mentor", None),
    (LIS + "membership/Mentor#Advisor", None),
    (LIS + "membership#Member", None),
    (LIS + "membership#Manager", None),
    (LIS + "membership#Officer", None),
    (LIS + "institution/person#Instructor", None),
    (LIS + "institution/person#Administrator", None),
    (LIS + "institution/person#Student", None),
    (LIS + "system/person#Administrator", None),
    (LIS + "system/person#SysAdmin", None),
    ("Instructor", roles.GRADER),  # LTI simple names, allowed for context roles
    ("Learner", roles.STUDENT),
    ("urn:lti:role:ims/lis/Instructor", None),  # LTI 1.1's URNs are not LTI 1.3 roles
    ("http://example.com/roles#Instructor", None),
    ("", None),
])
def test_each_role_uri_maps_as_the_lti_vocabulary_defines_it(uri, expected):
    assert roles.course_role([uri]) == expected


def test_a_learner_with_an_instructor_sub_role_launches_as_a_student(platform, verifier):
    person = platform.enrol("bio101", new_person("Sub", "Role"))
    browser = launch(platform, person)
    token = forged(platform, browser, **{CLAIM + "roles": [LIS + "membership#Learner",
                                                            LIS + "membership/Learner#Instructor"]})
    assert verify(verifier, browser, token).role == roles.STUDENT
