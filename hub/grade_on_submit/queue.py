"""The durable queue of submissions to grade: one row per submission, in SQLite or PostgreSQL.

Every submission found in the exchange gets one row, keyed by its folder's
name (``student+assignment+timestamp``), so finding it again adds nothing.
A row moves ``queued -> grading -> graded`` or ``failed``; an older
submission still waiting when a newer one of the same student arrives
becomes ``superseded`` (kept, not graded: the latest counts).

Exactly once, with workers that may die at any moment:

- a worker claims a row with one conditional ``UPDATE`` (the database makes
  it atomic), which also sets a lease; it renews the lease while it grades;
- a row whose lease ran out (its worker was killed) is claimed again, up to
  ``MAX_ATTEMPTS`` times, after which it fails with the reason;
- every step a worker runs is idempotent (collect replaces, autograde
  overwrites the one gradebook entry, feedback overwrites its one file), so
  a second run after a death leaves what one run leaves;
- only the worker holding the current lease may finish a row.

One student's submissions of one assignment are graded one at a time, in
the order they were made: they share the course's folders for that student.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

QUEUED, GRADING, GRADED, FAILED, SUPERSEDED = "queued", "grading", "graded", "failed", "superseded"
# A row in these states will be graded, or has been: it takes one of the student's gradings per hour.
TAKES_A_SLOT = (QUEUED, GRADING, GRADED)
MAX_ATTEMPTS = 3
HOUR = 3600.0

metadata = MetaData()
submissions = Table(
    "grade_on_submit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("folder", String(400), nullable=False, unique=True),
    Column("student", String(200), nullable=False, index=True),
    Column("assignment", String(200), nullable=False),
    Column("timestamp", String(64), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("queued_at", Float, nullable=False),
    # Not to be started before this time: the student's hourly cap was reached.
    Column("not_before", Float, nullable=False),
    # The cap in force when it arrived (0: none), to place it again if an earlier one fails.
    Column("per_hour", Integer, nullable=False, default=0),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("worker", String(200)),
    Column("lease_until", Float),
    Column("score", Float),
    Column("max_score", Float),
    # Why it failed, or a note (superseded by which submission); students see it.
    Column("reason", Text),
    # What only the instructor sees: the error behind a failure of the service itself.
    Column("detail", Text),
    # The later submission that replaced this one while it waited (it comes back if that one fails).
    Column("superseded_by", Integer),
    # What the assignment's policy showed students when this was graded.
    Column("show", String(16)),
    # Seconds per phase (JSON): queued, collect, sandbox start, run, evidence, checks, feedback.
    Column("phases", Text),
    # The feedback is in the exchange, where the student's Fetch Feedback finds it.
    Column("released", Boolean, nullable=False, default=False),
)


@dataclass(frozen=True)
class Submission:
    """One row of the queue, as read."""

    id: int
    folder: str
    student: str
    assignment: str
    timestamp: str
    state: str
    queued_at: float
    not_before: float
    per_hour: int
    started_at: float | None
    finished_at: float | None
    attempts: int
    worker: str | None
    lease_until: float | None
    score: float | None
    max_score: float | None
    reason: str | None
    detail: str | None
    superseded_by: int | None
    show: str | None
    phases: dict[str, float]
    released: bool

    @classmethod
    def from_row(cls, row: Any) -> Submission:
        values = dict(row._mapping)
        values["phases"] = json.loads(values["phases"] or "{}")
        values["released"] = bool(values["released"])
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def open_engine(url: str) -> Engine:
    """An engine for the queue at ``url``, with its table made if missing.

    SQLite waits up to a minute for a write lock (several workers write), and
    keeps a write-ahead log so that readers (the web pages) never block them.
    """
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(connection, _record):
            connection.execute("PRAGMA busy_timeout = 60000")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")

    create_missing(metadata, engine)
    return engine


def create_missing(tables: MetaData, engine: Engine, tries: int = 4) -> None:
    """Make those of ``tables`` that do not exist yet; another process making them at the same moment is no error.

    Every grading worker opens the database as it starts, and workers start
    together: PostgreSQL refuses the second of two simultaneous ``CREATE
    TABLE``s of one name (a worker died of it at start-up), so a refused
    creation is tried again, and then finds the table made.
    """
    for attempt in range(1, tries + 1):
        try:
            tables.create_all(engine)
            return
        except DBAPIError:
            if attempt == tries:
                raise
            time.sleep(0.1 * attempt)


class Queue:
    """The queue's operations; every method is one short transaction."""

    def __init__(self, engine: Engine, clock=time.time):
        self.engine, self.clock = engine, clock

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self.engine.begin() as connection:
            yield connection

    # -- arriving -----------------------------------------------------------------------------------------
    def add(self, folder: str, student: str, assignment: str, timestamp: str, per_hour: int | None) -> bool:
        """Queue the submission in ``folder`` unless it is known; True if it was new.

        Older submissions of the same student still waiting are superseded.
        With a cap of ``per_hour`` gradings, the new one waits until the
        student has a grading left in the last hour.
        """
        now = self.clock()
        with self._tx() as db:
            if db.execute(select(submissions.c.id).where(submissions.c.folder == folder)).first():
                return False
            new_id = db.execute(submissions.insert().values(
                folder=folder, student=student, assignment=assignment, timestamp=timestamp, state=QUEUED,
                queued_at=now, not_before=now, per_hour=per_hour or 0, attempts=0, released=False,
                phases="{}")).inserted_primary_key[0]
            db.execute(update(submissions).where(and_(
                submissions.c.student == student, submissions.c.assignment == assignment,
                submissions.c.state == QUEUED, submissions.c.timestamp < timestamp,
            )).values(state=SUPERSEDED, finished_at=now, superseded_by=new_id,
                      reason=f"A later submission ({timestamp}) was made before this one was graded; "
                             "the later one is graded, this one is kept."))
            db.execute(update(submissions).where(submissions.c.id == new_id).values(
                not_before=self._next_slot(db, student, assignment, per_hour, now, exclude=new_id)))
        return True

    def _next_slot(self, db, student: str, assignment: str, per_hour: int | None, now: float,
                   exclude: int | None = None) -> float:
        """When ``student``'s next grading may start under a cap of ``per_hour`` (``now`` if it may now)."""
        if not per_hour:
            return now
        slot = func.coalesce(submissions.c.started_at, submissions.c.not_before)
        taken = sorted(t for (t,) in db.execute(select(slot).where(and_(
            submissions.c.student == student, submissions.c.assignment == assignment,
            submissions.c.state.in_(TAKES_A_SLOT), slot > now - HOUR, submissions.c.id != (exclude or -1)))))
        if len(taken) < per_hour:
            return now
        # The window ending at the new slot may hold per_hour - 1 of these.
        return max(now, taken[len(taken) - per_hour] + HOUR)

    # -- grading ------------------------------------------------------------------------------------------
    def claim(self, worker: str, lease: float) -> Submission | None:
        """The oldest submission ready to grade, now leased to ``worker``; None when there is none.

        Ready: queued and due, or grading with a lease that ran out (its
        worker died), and no other submission of the same student and
        assignment being graded under a live lease.
        """
        while True:
            now = self.clock()
            with self._tx() as db:
                candidate = self._candidate(db, now)
                if candidate is None:
                    return None
                self._lock_student(db, candidate)
                if candidate.attempts >= MAX_ATTEMPTS:
                    self._give_up(db, candidate, now)
                    continue
                # One statement decides: still ready, still at the attempt read, and no other
                # submission of this student under a live lease (the read above may be stale).
                other = submissions.alias("other")
                nobody_else = ~exists().where(and_(
                    other.c.student == submissions.c.student, other.c.assignment == submissions.c.assignment,
                    other.c.state == GRADING, other.c.lease_until >= now, other.c.id != submissions.c.id))
                taken = db.execute(update(submissions).where(and_(
                    submissions.c.id == candidate.id, submissions.c.attempts == candidate.attempts,
                    self._ready(now), nobody_else,
                )).values(state=GRADING, worker=worker, lease_until=now + lease, attempts=candidate.attempts + 1,
                          started_at=func.coalesce(submissions.c.started_at, now)))
                if taken.rowcount == 1:
                    row = db.execute(select(submissions).where(submissions.c.id == candidate.id)).one()
                    return Submission.from_row(row)
            # Another worker took it, or another submission of the student, meanwhile: look again.

    @staticmethod
    def _ready(now: float):
        """Queued and due, or being graded under a lease that ran out (its worker died)."""
        return or_(and_(submissions.c.state == QUEUED, submissions.c.not_before <= now),
                   and_(submissions.c.state == GRADING, submissions.c.lease_until < now))

    def _lock_student(self, db, row: Submission) -> None:
        """On PostgreSQL, claims of one student's submissions wait for each other until commit.

        Under its READ COMMITTED isolation two claims of different rows would
        not see each other's uncommitted update; SQLite runs one writer at a time.
        """
        if self.engine.dialect.name == "postgresql":
            db.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                       {"key": f"{row.student}/{row.assignment}"})

    def _candidate(self, db, now: float) -> Submission | None:
        busy = select(submissions.c.student, submissions.c.assignment).where(and_(
            submissions.c.state == GRADING, submissions.c.lease_until >= now))
        busy_pairs = {(s, a) for s, a in db.execute(busy)}
        rows = db.execute(select(submissions).where(self._ready(now))
                          .order_by(submissions.c.not_before, submissions.c.id))
        for row in rows:
            if (row.student, row.assignment) not in busy_pairs:
                return Submission.from_row(row)
        return None

    def _give_up(self, db, row: Submission, now: float) -> None:
        db.execute(update(submissions).where(and_(submissions.c.id == row.id, submissions.c.state == row.state))
                   .values(state=FAILED, finished_at=now, lease_until=None,
                           reason=f"Grading stopped {row.attempts} times before it could finish (the grading "
                                  "process was killed, e.g. out of memory); your instructor can see this and "
                                  "will grade it by hand. It does not count against your gradings per hour."))
        self._free_slot(db, row.id)

    def renew(self, submission_id: int, worker: str, attempt: int, lease: float) -> bool:
        """Extend ``worker``'s lease on its ``attempt``; False if that lease ran out or was taken over."""
        now = self.clock()
        with self._tx() as db:
            done = db.execute(update(submissions).where(and_(
                submissions.c.id == submission_id, submissions.c.worker == worker, submissions.c.state == GRADING,
                submissions.c.attempts == attempt, submissions.c.lease_until >= now,
            )).values(lease_until=now + lease))
            return done.rowcount == 1

    def finish(self, submission_id: int, worker: str, attempt: int, *, state: str, score: float | None = None,
               max_score: float | None = None, reason: str | None = None, detail: str | None = None,
               phases: dict[str, float] | None = None, released: bool = False, show: str | None = None) -> bool:
        """Record how ``worker``'s ``attempt`` ended; False (nothing written) if another attempt took over."""
        assert state in (GRADED, FAILED, SUPERSEDED)
        with self._tx() as db:
            done = db.execute(update(submissions).where(and_(
                submissions.c.id == submission_id, submissions.c.worker == worker, submissions.c.state == GRADING,
                submissions.c.attempts == attempt,
            )).values(state=state, score=score, max_score=max_score, reason=reason, detail=detail, show=show,
                      finished_at=self.clock(), lease_until=None, phases=json.dumps(phases or {}),
                      released=released))
            if done.rowcount != 1:
                return False
            if state == FAILED:
                self._bring_back(db, submission_id)
            if state != GRADED:
                self._free_slot(db, submission_id)
            return True

    def _bring_back(self, db, failed_id: int) -> None:
        """The submission a failed one replaced while it waited is graded after all (the latest that can be)."""
        now = self.clock()
        for row in db.execute(select(submissions).where(and_(
                submissions.c.superseded_by == failed_id, submissions.c.state == SUPERSEDED))):
            db.execute(update(submissions).where(submissions.c.id == row.id).values(
                state=QUEUED, superseded_by=None, finished_at=None, reason=None,
                not_before=self._next_slot(db, row.student, row.assignment, row.per_hour, now, exclude=row.id)))

    def _free_slot(self, db, ended_id: int) -> None:
        """A grading that failed or never happened does not count against the cap: one waiting may go sooner."""
        ended = db.execute(select(submissions).where(submissions.c.id == ended_id)).one()
        now = self.clock()
        waiting = db.execute(select(submissions).where(and_(
            submissions.c.student == ended.student, submissions.c.assignment == ended.assignment,
            submissions.c.state == QUEUED, submissions.c.not_before > now)))
        for row in waiting:
            db.execute(update(submissions).where(submissions.c.id == row.id).values(
                not_before=self._next_slot(db, row.student, row.assignment, row.per_hour, now, exclude=row.id)))

    def rescore(self, submission_id: int, score: float, reason: str | None) -> bool:
        """A graded submission's score and note after its late penalty changed (an extension); False if not graded."""
        with self._tx() as db:
            return db.execute(update(submissions).where(and_(
                submissions.c.id == submission_id, submissions.c.state == GRADED)).values(
                score=score, reason=reason)).rowcount == 1

    def mark_released(self, submission_ids: list[int]) -> None:
        with self._tx() as db:
            db.execute(update(submissions).where(submissions.c.id.in_(submission_ids)).values(released=True))

    # -- reading ------------------------------------------------------------------------------------------
    def of_student(self, student: str) -> list[Submission]:
        """``student``'s submissions, newest first."""
        with self._tx() as db:
            rows = db.execute(select(submissions).where(submissions.c.student == student)
                              .order_by(submissions.c.timestamp.desc(), submissions.c.id.desc()))
            return [Submission.from_row(r) for r in rows]

    def get(self, submission_id: int) -> Submission | None:
        with self._tx() as db:
            row = db.execute(select(submissions).where(submissions.c.id == submission_id)).first()
            return Submission.from_row(row) if row else None

    def all(self, states: tuple[str, ...] | None = None) -> list[Submission]:
        """Every submission (or those in ``states``), oldest first."""
        query = select(submissions).order_by(submissions.c.id)
        if states:
            query = query.where(submissions.c.state.in_(states))
        with self._tx() as db:
            return [Submission.from_row(r) for r in db.execute(query)]

    def unreleased(self) -> list[Submission]:
        """Graded submissions whose feedback is not in the exchange yet (held back until the due date)."""
        with self._tx() as db:
            rows = db.execute(select(submissions).where(and_(submissions.c.state == GRADED,
                                                             submissions.c.released.is_(False))))
            return [Submission.from_row(r) for r in rows]

    def known_folders(self) -> set[str]:
        with self._tx() as db:
            return {f for (f,) in db.execute(select(submissions.c.folder))}
