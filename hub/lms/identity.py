"""Which unix account an LMS person is: derived from issuer and ``sub``, collision-free, kept in ``lms_people``.

A name is ``<prefix>lti`` and the first hex digits of SHA-256 over the issuer
and ``sub``: valid for ``useradd`` (lower case, at most 32 characters), the
same for the same person on every launch and roster sync, and telling
nothing about them.  When those digits are taken (by another person in the
table, or by an account this hub did not make), more digits are used.  The
person's names and email (which they may change in the LMS) are kept beside
it and updated on each launch or sync.
"""

from __future__ import annotations

import hashlib
import pwd
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from hub.lms.tables import people

MAX_NAME = 32
DIGITS = (10, 14, 18, 22)


@dataclass(frozen=True)
class Person:
    """What the LMS says about one person."""

    issuer: str
    sub: str
    name: str = ""
    given_name: str = ""
    family_name: str = ""
    email: str = ""


def candidates(issuer: str, sub: str, prefix: str) -> list[str]:
    """The names this person may get, shortest first."""
    digest = hashlib.sha256(f"{issuer}\n{sub}".encode()).hexdigest()
    names = [f"{prefix}lti{digest[:n]}" for n in DIGITS]
    return [n for n in names if len(n) <= MAX_NAME]


def foreign_account(name: str, tag: str) -> bool:
    """A unix account ``name`` exists that this hub did not make (its comment is not ``tag``)."""
    try:
        return pwd.getpwnam(name).pw_gecos != tag
    except KeyError:
        return False


class Identities:
    """The identity table; ``taken`` says whether a name is a unix account of somebody else."""

    def __init__(self, engine: Engine, prefix: str, tag: str, clock=time.time,
                 taken: Callable[[str], bool] | None = None):
        self.engine, self.prefix, self.tag, self.clock = engine, prefix, tag, clock
        self.taken = taken or (lambda name: foreign_account(name, tag))

    def account(self, person: Person) -> str:
        """The unix account name of ``person``, given to them now if they have none; their details updated."""
        for _ in range(3):  # another launch of the same person may insert first
            with self.engine.begin() as db:
                row = db.execute(select(people.c.account).where(
                    people.c.issuer == person.issuer, people.c.sub == person.sub)).first()
                if row is not None:
                    self._update(db, person)
                    return row.account
            try:
                return self._insert(person)
            except IntegrityError:
                continue
        raise RuntimeError(f"could not give {person.issuer} {person.sub} an account name")

    def _details(self, person: Person) -> dict[str, str]:
        return {"name": person.name, "given_name": person.given_name, "family_name": person.family_name,
                "email": person.email}

    def _update(self, db: Connection, person: Person) -> None:
        details = {k: v for k, v in self._details(person).items() if v}
        if details:
            db.execute(update(people).where(people.c.issuer == person.issuer, people.c.sub == person.sub)
                       .values(**details, updated_at=self.clock()))

    def _insert(self, person: Person) -> str:
        now = self.clock()
        with self.engine.begin() as db:
            used = {r.account for r in db.execute(select(people.c.account).where(
                people.c.account.in_(candidates(person.issuer, person.sub, self.prefix))))}
            for name in candidates(person.issuer, person.sub, self.prefix):
                if name in used or self.taken(name):
                    continue
                db.execute(people.insert().values(issuer=person.issuer, sub=person.sub, account=name,
                                                  created_at=now, updated_at=now, **self._details(person)))
                return name
        raise RuntimeError(f"every account name for {person.issuer} {person.sub} is taken "
                           f"({', '.join(candidates(person.issuer, person.sub, self.prefix))})")

    def find(self, issuer: str, sub: str) -> str | None:
        """The account of an LMS person already known, or None."""
        with self.engine.begin() as db:
            return db.execute(select(people.c.account).where(people.c.issuer == issuer,
                                                             people.c.sub == sub)).scalar()

    def person_of(self, account: str) -> tuple[str, str] | None:
        """(issuer, sub) of ``account``, or None when it is no LMS person's."""
        with self.engine.begin() as db:
            row = db.execute(select(people.c.issuer, people.c.sub).where(people.c.account == account)).first()
            return (row.issuer, row.sub) if row else None
