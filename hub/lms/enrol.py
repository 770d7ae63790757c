"""Recording a person in the course, as the grader account: identity, LMS course, enrolment, gradebook.

    python -m hub.lms.enrol < launch.json      (in the course folder; prints {"account": ..., "roles": [...]})

The hub (root) runs it on each verified launch (``hub.lms.provision``), and
the roster sync calls ``record`` for each member the LMS lists.  A student
gets a gradebook entry with their real name and email (nbgrader's
``lms_user_id`` is their ``sub``), so the instructor sees who they are.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from hub.lms import roles
from hub.lms.identity import Identities, Person
from hub.lms.tables import contexts, enrolments, line_items, lms_engine


def add_to_gradebook(gradebook_url: str, account: str, person: Person) -> None:
    """The student in nbgrader's gradebook, with the names and email the LMS gives (never removed)."""
    from nbgrader.api import Gradebook

    given = person.given_name or person.name.split(" ")[0]
    family = person.family_name or " ".join(person.name.split(" ")[1:])
    with Gradebook(gradebook_url) as gb:
        gb.update_or_create_student(account, first_name=given or None, last_name=family or None,
                                    email=person.email or None, lms_user_id=person.sub)


def _upsert(engine: Engine, table, keys: dict[str, Any], values: dict[str, Any]) -> None:
    """Insert the row with ``keys`` or update it; two processes doing it at once both end with one row."""
    where = [table.c[k] == v for k, v in keys.items()]
    for _ in range(3):
        with engine.begin() as db:
            if db.execute(update(table).where(*where).values(**values)).rowcount:
                return
        try:
            with engine.begin() as db:
                db.execute(table.insert().values(**keys, **values))
            return
        except IntegrityError:
            continue


def record_context(engine: Engine, facts: dict[str, Any]) -> None:
    """The LMS course and its service URLs, as the latest launch gives them."""
    values: dict[str, Any] = {"deployment_id": facts.get("deployment_id", ""), "updated_at": time.time()}
    for key, column in [("context_title", "title"), ("lineitems_url", "lineitems_url"), ("nrps_url", "nrps_url")]:
        if facts.get(key):
            values[column] = facts[key]
    if facts.get("ags_scopes"):
        values["ags_scopes"] = json.dumps(sorted(facts["ags_scopes"]))
    _upsert(engine, contexts, {"issuer": facts["issuer"], "context_id": facts["context_id"]}, values)
    if facts.get("lineitem_url") and facts.get("assignment"):
        # The LMS made a column for this link (a Canvas assignment, say): that one is the assignment's, not a new one.
        try:
            with engine.begin() as db:
                db.execute(line_items.insert().values(issuer=facts["issuer"], context_id=facts["context_id"],
                                                      assignment=facts["assignment"], url=facts["lineitem_url"],
                                                      updated_at=time.time()))
        except IntegrityError:
            pass


def record(engine: Engine, gradebook_url: str, facts: dict[str, Any], prefix: str, tag: str,
           active: bool = True) -> str:
    """Give the person their account name, enrol them in the LMS course as ``facts['role']``; the name."""
    person = Person(**{k: facts.get(k, "") for k in ("issuer", "sub", "name", "given_name", "family_name", "email")})
    account = Identities(engine, prefix, tag).account(person)
    _upsert(engine, enrolments, {"issuer": person.issuer, "context_id": facts["context_id"], "account": account},
            {"role": facts["role"], "active": active, "updated_at": time.time()})
    if facts["role"] == roles.STUDENT:
        add_to_gradebook(gradebook_url, account, person)
    return account


def course_roles(engine: Engine, account: str) -> list[str]:
    """What ``account`` is in any LMS course linked here, while active: ``student``, ``grader`` or both."""
    with engine.begin() as db:
        return sorted({r.role for r in db.execute(select(enrolments.c.role).where(
            enrolments.c.account == account, enrolments.c.active.is_(True)))})


def main() -> int:
    from grader.course import gradebook_url
    from hub.lms.settings import database_url

    facts = json.load(sys.stdin)
    engine = lms_engine(database_url())
    record_context(engine, facts)
    account = record(engine, os.environ.get("UNET_GRADING_GRADEBOOK") or gradebook_url(Path.cwd()), facts,
                     facts["prefix"], facts["tag"])
    print(json.dumps({"account": account, "roles": course_roles(engine, account)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
