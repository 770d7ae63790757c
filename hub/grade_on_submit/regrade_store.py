"""Where regrades are kept: one row per regrade, one per student in it, in the grading queue's database.

A student's row is both a task for the grading workers and the regrade's
journal for that student.  It moves

    queued -> grading -> previewed | failed            (the preview: a run in a copy of the course)
    previewed -> to_apply -> applying -> applied | unchanged | kept | skipped | failed

``grading`` and ``applying`` are held under a lease, as the grading queue's
rows are: a worker killed in either leaves the row to be claimed again once
the lease runs out, and every step it redoes is idempotent.  ``applying`` is
written before anything of the student's is touched, so an apply that was
cut short is known and finished by the next worker.  Rows are never deleted:
they are the durable record of who asked, when, and what each student had
before and after.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Column, Float, Integer, MetaData, String, Table, Text, and_, func, or_, select, update
from sqlalchemy.engine import Engine

from hub.grade_on_submit.queue import create_missing

QUEUED, GRADING, PREVIEWED, FAILED = "queued", "grading", "previewed", "failed"
TO_APPLY, APPLYING, APPLIED = "to_apply", "applying", "applied"
UNCHANGED, KEPT, SKIPPED = "unchanged", "kept", "skipped"
# A student's row in these states is done with; the regrade is finished when all its rows are.
PREVIEW_DONE = (PREVIEWED, FAILED)
APPLY_DONE = (APPLIED, UNCHANGED, KEPT, SKIPPED, FAILED)
MAX_ATTEMPTS = 3

metadata = MetaData()
regrades = Table(
    "regrades", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("assignment", String(200), nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("requested_at", Float, nullable=False),
    # Who was chosen, in words ("everyone", "lost points in test_x", "ann, bob").
    Column("who", Text, nullable=False),
    Column("never_lower", Boolean, nullable=False, default=False),
    Column("applied_by", String(200)),
    Column("applied_at", Float),
    Column("cancelled_by", String(200)),
)
students = Table(
    "regrade_students", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("regrade", Integer, nullable=False, index=True),
    Column("student", String(200), nullable=False),
    # The stored submission previewed (its timestamp.txt): apply leaves a student alone who submitted since.
    Column("submitted", String(64)),
    Column("state", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("worker", String(200)),
    Column("lease_until", Float),
    # JSON: the scores per graded cell and in total, before and after (regrade_plan.Scores).
    Column("old", Text),
    Column("new", Text),
    # Why it failed, was kept or skipped; what apply did.
    Column("note", Text),
    Column("finished_at", Float),
)


@dataclass(frozen=True)
class Regrade:
    id: int
    assignment: str
    requested_by: str
    requested_at: float
    who: str
    never_lower: bool
    applied_by: str | None
    applied_at: float | None
    cancelled_by: str | None


@dataclass(frozen=True)
class StudentRow:
    id: int
    regrade: int
    student: str
    submitted: str | None
    state: str
    attempts: int
    worker: str | None
    lease_until: float | None
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    note: str | None
    finished_at: float | None

    @classmethod
    def from_row(cls, row: Any) -> StudentRow:
        values = dict(row._mapping)
        for key in ("old", "new"):
            values[key] = json.loads(values[key]) if values[key] else None
        return cls(**values)


def open_regrades(engine: Engine) -> Engine:
    """``engine`` (the grading queue's), with the regrade tables made if missing."""
    create_missing(metadata, engine)
    return engine


class RegradeRecords:
    """Regrades as a whole: asking for one, reading them, applying or cancelling one."""

    def __init__(self, engine: Engine, clock=time.time):
        self.engine, self.clock = open_regrades(engine), clock

    def create(self, assignment: str, by: str, who: str, never_lower: bool,
               chosen: Sequence[tuple[str, str | None, dict | None]], prepare=lambda regrade_id: None) -> int:
        """A new regrade of ``chosen`` (student, stored submission's timestamp, scores now); its id.

        ``prepare(id)`` runs before the students' rows exist (no worker can claim one yet), outside any
        transaction of the queue's database (workers keep writing meanwhile); if it raises, the regrade
        is recorded as cancelled with the error, and the error goes on.
        """
        with self.engine.begin() as db:
            regrade_id = int(db.execute(regrades.insert().values(
                assignment=assignment, requested_by=by, requested_at=self.clock(), who=who,
                never_lower=never_lower)).inserted_primary_key[0])  # type: ignore[index]
        try:
            prepare(regrade_id)
        except BaseException as error:
            with self.engine.begin() as db:
                db.execute(update(regrades).where(regrades.c.id == regrade_id).values(
                    cancelled_by=f"its preparation failed: {type(error).__name__}: {error}"[:200]))
            raise
        with self.engine.begin() as db:
            for student, submitted, old in chosen:
                db.execute(students.insert().values(regrade=regrade_id, student=student, submitted=submitted,
                                                    state=QUEUED, attempts=0, old=json.dumps(old) if old else None))
        return regrade_id

    def get(self, regrade_id: int) -> Regrade | None:
        with self.engine.begin() as db:
            row = db.execute(select(regrades).where(regrades.c.id == regrade_id)).first()
        return Regrade(**dict(row._mapping)) if row else None

    def all(self) -> list[Regrade]:
        with self.engine.begin() as db:
            return [Regrade(**dict(r._mapping)) for r in db.execute(select(regrades).order_by(regrades.c.id.desc()))]

    def students(self, regrade_id: int) -> list[StudentRow]:
        with self.engine.begin() as db:
            return [StudentRow.from_row(r) for r in db.execute(
                select(students).where(students.c.regrade == regrade_id).order_by(students.c.student))]

    def apply(self, regrade_id: int, by: str) -> int:
        """Mark a finished preview to be applied (idempotent); how many students' rows are to apply now.

        Refused (ValueError) while students are still being previewed, or once cancelled.
        """
        regrade = self.get(regrade_id)
        if regrade is None:
            raise ValueError(f"there is no regrade {regrade_id}")
        if regrade.cancelled_by:
            raise ValueError(f"regrade {regrade_id} was cancelled by {regrade.cancelled_by}")
        rows = self.students(regrade_id)
        waiting = [r.student for r in rows if r.state in (QUEUED, GRADING)]
        if waiting:
            raise ValueError(f"regrade {regrade_id} is still previewing {len(waiting)} student(s): "
                             f"{', '.join(waiting[:10])}; apply it once the preview is complete")
        with self.engine.begin() as db:
            if regrade.applied_by is None:
                db.execute(update(regrades).where(regrades.c.id == regrade_id).values(
                    applied_by=by, applied_at=self.clock()))
            # A row whose apply failed (it has its new scores) is tried again; one whose preview failed is not.
            again = and_(students.c.state == FAILED, students.c.new.is_not(None))
            return db.execute(update(students).where(and_(students.c.regrade == regrade_id,
                                                          or_(students.c.state == PREVIEWED, again)))
                              .values(state=TO_APPLY, attempts=0)).rowcount

    def cancel(self, regrade_id: int, by: str) -> None:
        """Drop a regrade that has not been applied: its rows stay as the record, nothing more is run."""
        regrade = self.get(regrade_id)
        if regrade is None or regrade.applied_by:
            raise ValueError(f"regrade {regrade_id} does not exist or was applied; it cannot be cancelled")
        with self.engine.begin() as db:
            db.execute(update(regrades).where(regrades.c.id == regrade_id).values(cancelled_by=by))
            db.execute(update(students).where(and_(students.c.regrade == regrade_id,
                                                   students.c.state.in_((QUEUED, GRADING))))
                       .values(state=FAILED, note=f"cancelled by {by}", finished_at=self.clock()))


class RegradeTasks:
    """The students' rows as work: claimed under a lease by the grading workers, and finished."""

    def __init__(self, engine: Engine, clock=time.time):
        self.engine, self.clock = open_regrades(engine), clock

    def claim(self, worker: str, lease: float) -> StudentRow | None:
        """The oldest row to preview or apply (or one whose worker died), now leased to ``worker``."""
        while True:
            now = self.clock()
            ready = or_(students.c.state.in_((QUEUED, TO_APPLY)),
                        and_(students.c.state.in_((GRADING, APPLYING)), students.c.lease_until < now))
            with self.engine.begin() as db:
                row = db.execute(select(students).where(ready).order_by(students.c.id).limit(1)).first()
                if row is None:
                    return None
                if row.attempts >= MAX_ATTEMPTS:
                    db.execute(update(students).where(and_(students.c.id == row.id, students.c.state == row.state))
                               .values(state=FAILED, finished_at=now, lease_until=None,
                                       note=f"stopped {row.attempts} times before it could finish (the worker was "
                                            f"killed); in {row.state}, {_left_as(row.state)}"))
                    continue
                working = GRADING if row.state in (QUEUED, GRADING) else APPLYING
                taken = db.execute(update(students).where(and_(
                    students.c.id == row.id, students.c.state == row.state, students.c.attempts == row.attempts))
                    .values(state=working, worker=worker, lease_until=now + lease, attempts=row.attempts + 1))
                if taken.rowcount == 1:
                    return StudentRow.from_row(db.execute(select(students).where(students.c.id == row.id)).one())

    def renew(self, row: StudentRow, worker: str, lease: float) -> bool:
        with self.engine.begin() as db:
            return db.execute(update(students).where(and_(
                students.c.id == row.id, students.c.worker == worker, students.c.attempts == row.attempts,
                students.c.state.in_((GRADING, APPLYING)), students.c.lease_until >= self.clock()))
                .values(lease_until=self.clock() + lease)).rowcount == 1

    def finish(self, row: StudentRow, worker: str, state: str, note: str | None = None,
               new: dict | None = None) -> bool:
        """Record how ``worker``'s attempt on ``row`` ended; False (nothing written) if another took over."""
        values: dict[str, Any] = {"state": state, "note": note, "lease_until": None, "finished_at": self.clock()}
        if new is not None:
            values["new"] = json.dumps(new)
        with self.engine.begin() as db:
            return db.execute(update(students).where(and_(
                students.c.id == row.id, students.c.worker == worker, students.c.attempts == row.attempts,
                students.c.state.in_((GRADING, APPLYING)))).values(**values)).rowcount == 1

    def latest_request(self) -> float:
        """When the latest regrade was asked for (0: never): the course changed then, as far as workers know."""
        with self.engine.begin() as db:
            return float(db.execute(select(func.max(regrades.c.requested_at))).scalar() or 0.0)

    def pending(self) -> bool:
        """Whether any row waits for a worker (the service starts workers for it)."""
        with self.engine.begin() as db:
            return db.execute(select(students.c.id).where(
                students.c.state.in_((QUEUED, GRADING, TO_APPLY, APPLYING))).limit(1)).first() is not None


def _left_as(state: str) -> str:
    if state == GRADING:
        return "nothing of the student's was changed"
    return "the student has their old result or the new one; apply the regrade again to finish it"
