"""Posting the outbox: one row at a time per worker, its column found or made first, every failure sorted.

``Poster.post_one`` claims the next score due, finds the LMS course's column
for its assignment (``hub.lms.line_items``), and posts the score with the
student's LMS ``sub`` as ``userId``.  The LMS down, slow, 429 or 5xx: the
row waits and is tried again (``Outbox.retry``).  Any other refusal: the
row fails with the LMS's reason, which the instructor's page shows.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from hub.lms.binding import CourseBinding, ignored_course_reason
from hub.lms.client import LmsClient, Refused, Retry
from hub.lms.identity import Identities
from hub.lms.line_items import LineItems
from hub.lms.outbox import Outbox
from hub.lms.tables import contexts

log = logging.getLogger("unet_hub.lms")


class Poster:
    """Posts scores for the platforms ``clients`` (issuer -> client)."""

    def __init__(self, engine: Engine, outbox: Outbox, clients: dict[str, LmsClient], lease: float = 60.0,
                 tag: str = "unet-segmentation", binding: CourseBinding | None = None):
        self.engine, self.outbox, self.clients, self.lease = engine, outbox, clients, lease
        self.binding = binding
        # The line items' tag: the hub course's id, so that an instructor sees whose columns they are.
        self.line_items = LineItems(engine, tag=tag)
        self.identities = Identities(engine, prefix="", tag="")

    def _context(self, issuer: str, context_id: str) -> Any:
        with self.engine.begin() as db:
            return db.execute(select(contexts).where(contexts.c.issuer == issuer,
                                                     contexts.c.context_id == context_id)).first()

    def post_one(self, worker: str) -> bool:
        """Post the next score due; False when none is."""
        row = self.outbox.claim(worker, self.lease)
        if row is None:
            return False
        client, context = self.clients.get(row.issuer), self._context(row.issuer, row.context_id)
        person = self.identities.person_of(row.account)
        try:
            if client is None:
                raise Refused(f"this hub has no registration for the LMS {row.issuer} any more")
            if self.binding is None or not self.binding.covers(row.issuer, row.context_id):
                # A score queued before the binding, or for a course bound before: it stays here.
                raise Refused(ignored_course_reason(self.binding))
            if context is None or not context.lineitems_url and not self.line_items.known(
                    row.issuer, row.context_id, row.assignment):
                raise Refused("the LMS has not offered grade passback (AGS) for this course: launch the "
                              "assignment from the LMS once as an instructor, with the tool's AGS scopes enabled")
            if person is None:
                raise Refused(f"{row.account} is no LMS person of this hub")
            scopes = tuple(json.loads(context.ags_scopes))
            url = self.line_items.url(client, row.issuer, row.context_id, context.lineitems_url, scopes,
                                      row.assignment, row.assignment, row.score_maximum, worker)
            if url is None:
                self.outbox.wait(row, worker, 1.0, "waiting for another worker to make the gradebook column")
                return True
            client.post_score(url, scopes, {
                "userId": person[1], "timestamp": row.timestamp, "scoreGiven": row.score_given,
                "scoreMaximum": row.score_maximum, "activityProgress": row.activity_progress,
                "gradingProgress": row.grading_progress,
                **({"submission": {"submittedAt": row.submitted_at}} if row.submitted_at else {})})
        except Retry as error:
            log.warning("score %s for %s: %s; trying again later", row.id, row.account, error)
            self.outbox.retry(row, worker, str(error), error.after)
        except Refused as error:
            log.error("score %s for %s refused: %s", row.id, row.account, error)
            self.outbox.refused(row, worker, str(error))
        except Exception as error:  # a fault here (a CA bundle it cannot read...): shown, and tried again
            log.exception("posting score %s for %s failed", row.id, row.account)
            self.outbox.retry(row, worker, f"{type(error).__name__}: {error}")
        else:
            self.outbox.posted(row, worker)
        return True
