"""The identity table and enrolment: one stable, valid, collision-free account per LMS person; the gradebook entry.

No hub and no unix accounts: ``hub.lms.enrol`` runs here as the current
user on a throw-away course folder (the hub runs it as the grader account).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from nbgrader.api import Gradebook

from grader.course import ROOT
from hub.lms import enrol, identity, roles
from hub.lms.identity import Identities, Person
from hub.lms.tables import lms_engine

ISS = "https://canvas.example.edu"
UNIX_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@pytest.fixture(autouse=True)
def alembic_on_path(monkeypatch):
    """nbgrader runs the ``alembic`` command when it makes a gradebook: this Python's, as make test has it."""
    monkeypatch.setenv("PATH", f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.fixture
def engine(tmp_path):
    return lms_engine(f"sqlite:///{tmp_path / 'queue.sqlite'}")


def test_names_are_valid_stable_and_depend_on_issuer_and_sub(engine):
    table = Identities(engine, prefix="uh12ab-", tag="t", taken=lambda name: False)
    ada = table.account(Person(ISS, "sub-1", "Ada Lovelace"))
    assert UNIX_NAME.fullmatch(ada) and ada.startswith("uh12ab-lti") and len(ada) <= 32
    assert table.account(Person(ISS, "sub-1")) == ada
    assert table.account(Person("https://moodle.example.edu", "sub-1")) != ada  # same sub, another LMS
    assert table.account(Person(ISS, "sub-2")) != ada
    # A name change in the LMS changes the details, never the account.
    assert table.account(Person(ISS, "sub-1", "Ada King", email="ada@example.edu")) == ada
    assert table.person_of(ada) == (ISS, "sub-1")


def test_a_collision_or_a_foreign_account_gets_the_next_longer_name(engine, monkeypatch):
    monkeypatch.setattr(identity, "candidates", lambda issuer, sub, prefix: ["ltiaaaa", "ltiaaaabbbb", "ltiaaaabbbbcc"])
    table = Identities(engine, prefix="", tag="t", taken=lambda name: name == "ltiaaaabbbb")
    assert table.account(Person(ISS, "one")) == "ltiaaaa"
    # Same digits for another person (a collision): the next name, skipping one a foreign account holds.
    assert table.account(Person(ISS, "two")) == "ltiaaaabbbbcc"
    with pytest.raises(RuntimeError, match="every account name"):
        table.account(Person(ISS, "three"))


def test_an_existing_unix_account_is_not_taken_over():
    assert identity.foreign_account("root", tag="unet-hub demo account")
    assert not identity.foreign_account("no-such-account-here", tag="unet-hub demo account")


def test_two_launches_of_one_person_at_once_give_one_account(engine):
    table = Identities(engine, prefix="", tag="t", taken=lambda name: False)
    with ThreadPoolExecutor(8) as pool:
        names = set(pool.map(lambda _: table.account(Person(ISS, "same")), range(16)))
    assert len(names) == 1


def facts(sub: str, role: str, **more) -> dict:
    return {"issuer": ISS, "sub": sub, "name": "Grace Hopper", "given_name": "Grace", "family_name": "Hopper",
            "email": "grace@example.edu", "role": role, "context_id": "c1", **more}


def test_a_student_gets_a_gradebook_entry_with_name_and_email_and_keeps_it_after_leaving(engine, tmp_path):
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    account = enrol.record(engine, url, facts("s1", roles.STUDENT), prefix="", tag="t")
    with Gradebook(url) as gb:
        student = gb.find_student(account)
        assert (student.first_name, student.last_name, student.email, student.lms_user_id) == (
            "Grace", "Hopper", "grace@example.edu", "s1")
    assert enrol.course_roles(engine, account) == [roles.STUDENT]
    enrol.record(engine, url, facts("s1", roles.STUDENT), prefix="", tag="t", active=False)
    assert enrol.course_roles(engine, account) == []
    with Gradebook(url) as gb:
        assert gb.find_student(account).email == "grace@example.edu"  # never deleted


def test_an_instructor_is_no_student_in_the_gradebook(engine, tmp_path):
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    account = enrol.record(engine, url, facts("t1", roles.GRADER), prefix="", tag="t")
    assert enrol.course_roles(engine, account) == [roles.GRADER]
    with Gradebook(url) as gb:
        assert gb.students == []


def test_the_command_the_hub_runs_records_the_lms_course_and_answers_the_account(tmp_path):
    payload = facts("s9", roles.STUDENT, prefix="uhx-", tag="t", deployment_id="d1", context_title="Bio",
                    lineitems_url="https://lms/li", nrps_url="https://lms/m", assignment="unet_segmentation",
                    ags_scopes=["b", "a"], lineitem_url="")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "UNET_GRADING_GRADEBOOK": f"sqlite:///{tmp_path / 'gb.db'}"}
    result = subprocess.run([sys.executable, "-m", "hub.lms.enrol"], input=json.dumps(payload), cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["account"].startswith("uhx-lti") and answer["roles"] == [roles.STUDENT]
    from sqlalchemy import select

    from hub.lms.tables import contexts
    engine = lms_engine(f"sqlite:///{tmp_path / 'grade_on_submit' / 'queue.sqlite'}")
    with engine.begin() as db:
        row = db.execute(select(contexts)).one()
    assert (row.title, row.lineitems_url, row.nrps_url, json.loads(row.ags_scopes)) == (
        "Bio", "https://lms/li", "https://lms/m", ["a", "b"])
