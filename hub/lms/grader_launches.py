"""A grader's role lasts a fixed time after their launch: one the LMS took away ends within hours, not at a next launch.

The hub learns a person's role only from a launch, so a TA whom the LMS made
a learner (or removed) would keep formgrader for as long as their hub session
lasts.  The time of each grader launch is kept here (a table in the hub's own
root-only folder, so a restart of the hub forgets nothing); when JupyterHub
re-checks a logged-in person (``Authenticator.refresh_user``, every
``auth_refresh_age`` seconds, 5 minutes by default, on their next request),
a grader whose last grader launch is older than the limit loses the graders'
group until they launch again from the LMS, which re-evaluates the role.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Column, Float, MetaData, String, Table, create_engine, delete, insert, select

metadata = MetaData()
launches = Table("grader_launches", metadata, Column("account", String(200), primary_key=True),
                 Column("launched_at", Float, nullable=False))


class GraderLaunches:
    """When each account last launched as a grader of this course."""

    def __init__(self, path: Path, clock=time.time):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.engine = create_engine(f"sqlite:///{path}", future=True)
        metadata.create_all(self.engine)
        self.clock = clock

    def record(self, account: str, grader: bool) -> None:
        """A launch of ``account``: a grader's is noted with its time; any other ends what was noted."""
        with self.engine.begin() as db:
            db.execute(delete(launches).where(launches.c.account == account))
            if grader:
                db.execute(insert(launches).values(account=account, launched_at=self.clock()))

    def age(self, account: str) -> float | None:
        """Seconds since ``account``'s last grader launch; None if there is none on record."""
        with self.engine.connect() as db:
            launched = db.execute(select(launches.c.launched_at).where(launches.c.account == account)).scalar()
        return None if launched is None else self.clock() - launched


def groups_after_refresh(groups: set[str], instructors_group: str, age: float | None,
                         limit_seconds: float) -> list[str] | None:
    """A grader's groups once their grader launch is ``age`` seconds old: None while it is recent enough
    (nothing changes), else the same groups without the graders' group."""
    if instructors_group not in groups or (age is not None and age < limit_seconds):
        return None
    return sorted(groups - {instructors_group})
