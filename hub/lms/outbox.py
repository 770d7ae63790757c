"""The outbox: every score for the LMS, in the grading queue's database, posted until the LMS has taken it.

A row is one score of one student for one assignment in one LMS course.  It
moves ``pending -> posting -> posted``, or back to ``pending`` with a later
``next_attempt`` when the LMS is down, slow or busy (backoff doubling to
``max_backoff``, or the LMS's Retry-After), or to ``failed`` with the LMS's
reason when it refuses (4xx).  A newer score of the same student makes
the older ones still waiting ``superseded``: the latest counts.

Like the grading queue: a worker claims a row with one conditional update
and a lease; a worker killed while posting leaves a row whose lease runs
out, and it is posted again, with the same timestamp, so the LMS keeps one
result.  Only one row of a student, assignment and LMS course is posted
at a time, so an older score never lands after a newer one.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.engine import Engine

from hub.lms.tables import outbox

PENDING, POSTING, POSTED, FAILED, SUPERSEDED = "pending", "posting", "posted", "failed", "superseded"


@dataclass(frozen=True)
class Key:
    """Whose score, for what, in which LMS course."""

    issuer: str
    context_id: str
    account: str
    assignment: str

    def where(self, table=outbox) -> Any:
        return and_(table.c.issuer == self.issuer, table.c.context_id == self.context_id,
                    table.c.account == self.account, table.c.assignment == self.assignment)


@dataclass(frozen=True)
class Score:
    """What AGS is told: points given and possible, and how far the activity and its grading are."""

    score_given: float | None
    score_maximum: float
    activity_progress: str
    grading_progress: str
    # When the submission that counts was made (ISO 8601), or None where the gradebook has no time.
    submitted_at: str | None = None

    def already(self, posted: Score) -> bool:
        """Whether ``posted`` (the last score of the same key) already tells the LMS this.

        A score posted before the submission time was sent (``submitted_at`` None) is not posted again for it.
        """
        return posted == self or (posted.submitted_at is None and replace(posted, submitted_at=self.submitted_at)
                                  == self)


def score_of(row: Any) -> Score:
    return Score(row.score_given, row.score_maximum, row.activity_progress, row.grading_progress, row.submitted_at)


class Outbox:
    """The outbox's operations, each one short transaction."""

    def __init__(self, engine: Engine, clock=time.time, max_backoff: float = 300.0):
        self.engine, self.clock, self.max_backoff = engine, clock, max_backoff

    def last(self, key: Key) -> Any | None:
        """The newest score of ``key`` that was or will be posted (not superseded), or None."""
        with self.engine.begin() as db:
            return db.execute(select(outbox).where(key.where(), outbox.c.state != SUPERSEDED)
                              .order_by(outbox.c.id.desc()).limit(1)).first()

    def enqueue(self, key: Key, score: Score) -> int:
        """Add ``score`` for ``key``; older waiting scores of ``key`` are superseded.  Its id."""
        now = self.clock()
        with self.engine.begin() as db:
            previous = db.execute(select(outbox.c.timestamp).where(key.where()).order_by(outbox.c.id.desc())
                                  .limit(1)).scalar()
            stamp = datetime.fromtimestamp(now, UTC)
            if previous is not None and stamp <= datetime.fromisoformat(previous):
                stamp = datetime.fromisoformat(previous) + timedelta(microseconds=1)  # strictly later, always
            db.execute(update(outbox).where(key.where(), outbox.c.state == PENDING).values(state=SUPERSEDED))
            inserted = db.execute(outbox.insert().values(
                issuer=key.issuer, context_id=key.context_id, account=key.account, assignment=key.assignment,
                score_given=score.score_given, score_maximum=score.score_maximum,
                activity_progress=score.activity_progress, grading_progress=score.grading_progress,
                submitted_at=score.submitted_at,
                timestamp=stamp.isoformat(timespec="microseconds"), state=PENDING, attempts=0, next_attempt=now,
                created_at=now)).inserted_primary_key
            assert inserted is not None
            return int(inserted[0])

    def claim(self, worker: str, lease: float) -> Any | None:
        """The next row due whose student has no other score on its way, leased to ``worker``; None if none."""
        while True:
            now = self.clock()
            with self.engine.begin() as db:
                due = or_(and_(outbox.c.state == PENDING, outbox.c.next_attempt <= now),
                          and_(outbox.c.state == POSTING, outbox.c.lease_until < now))
                other = outbox.alias("other")
                nobody_else = ~exists().where(
                    other.c.issuer == outbox.c.issuer, other.c.context_id == outbox.c.context_id,
                    other.c.account == outbox.c.account, other.c.assignment == outbox.c.assignment,
                    other.c.id != outbox.c.id, other.c.state == POSTING, other.c.lease_until >= now)
                candidate = db.execute(select(outbox.c.id).where(due, nobody_else)
                                       .order_by(outbox.c.next_attempt, outbox.c.id).limit(1)).scalar()
                if candidate is None:
                    return None
                # The same conditions again in the one statement that decides: another worker may have been first.
                claimed = db.execute(update(outbox).where(outbox.c.id == candidate, due, nobody_else).values(
                    state=POSTING, holder=worker, lease_until=now + lease, attempts=outbox.c.attempts + 1))
                if claimed.rowcount:
                    return db.execute(select(outbox).where(outbox.c.id == candidate)).first()

    def _finish(self, row: Any, worker: str, **values: Any) -> bool:
        with self.engine.begin() as db:
            return bool(db.execute(update(outbox).where(outbox.c.id == row.id, outbox.c.state == POSTING,
                                                        outbox.c.holder == worker)
                                   .values(holder=None, lease_until=None, **values)).rowcount)

    def posted(self, row: Any, worker: str) -> bool:
        return self._finish(row, worker, state=POSTED, posted_at=self.clock(), last_error=None)

    def retry(self, row: Any, worker: str, error: str, after: float | None = None) -> bool:
        """Back to waiting: after ``after`` seconds, or 1, 2, 4... up to ``max_backoff``, with jitter."""
        backoff = min(self.max_backoff, 2.0 ** max(row.attempts - 1, 0)) * random.uniform(0.75, 1.0)
        delay = max(after or 0.0, backoff)
        return self._finish(row, worker, state=PENDING, next_attempt=self.clock() + delay, last_error=error)

    def wait(self, row: Any, worker: str, seconds: float, why: str) -> bool:
        """Back to waiting, without counting it as a failed attempt."""
        return self._finish(row, worker, state=PENDING, next_attempt=self.clock() + seconds, last_error=why,
                            attempts=row.attempts - 1)

    def refused(self, row: Any, worker: str, reason: str) -> bool:
        return self._finish(row, worker, state=FAILED, last_error=reason)

    def retry_refused(self) -> int:
        """Every refused score waits to be posted again (the instructor fixed the cause); how many."""
        now = self.clock()
        with self.engine.begin() as db:
            return db.execute(update(outbox).where(outbox.c.state == FAILED).values(
                state=PENDING, attempts=0, next_attempt=now)).rowcount

    def rows(self, states: tuple[str, ...] | None = None) -> list[Any]:
        query = select(outbox).order_by(outbox.c.id)
        if states:
            query = query.where(outbox.c.state.in_(states))
        with self.engine.begin() as db:
            return list(db.execute(query))
