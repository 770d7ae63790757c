"""One gradebook column (AGS line item) per assignment per LMS course, never a second.

The column is known by its ``resourceId`` (the assignment's name) and its
``tag`` (the course id).  To make one, a worker first takes the row of
(LMS course, assignment) in ``lms_line_items`` with a lease; the database's
unique key lets only one worker hold it, so two workers racing make one
column.  The holder first asks the LMS for a column with that resourceId
(one made before a crash or a lost database, or by a re-run) and makes one
only if there is none.  A column the LMS made itself for the link (the
launch's ``lineitem`` claim, as with a Canvas assignment) is used as it is.
"""

from __future__ import annotations

import time

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from hub.lms.client import LmsClient
from hub.lms.tables import line_items

LEASE = 60.0


class LineItems:
    """Finds or makes the column of an assignment in an LMS course."""

    def __init__(self, engine: Engine, tag: str, clock=time.time):
        self.engine, self.tag, self.clock = engine, tag, clock

    def known(self, issuer: str, context_id: str, assignment: str) -> str | None:
        with self.engine.begin() as db:
            return db.execute(select(line_items.c.url).where(
                line_items.c.issuer == issuer, line_items.c.context_id == context_id,
                line_items.c.assignment == assignment)).scalar()

    def _take(self, issuer: str, context_id: str, assignment: str, worker: str) -> bool:
        """Hold the right to make the column; False while another worker holds it."""
        now = self.clock()
        try:
            with self.engine.begin() as db:
                db.execute(line_items.insert().values(issuer=issuer, context_id=context_id, assignment=assignment,
                                                      holder=worker, lease_until=now + LEASE, updated_at=now))
            return True
        except IntegrityError:
            pass
        with self.engine.begin() as db:
            return bool(db.execute(update(line_items).where(
                line_items.c.issuer == issuer, line_items.c.context_id == context_id,
                line_items.c.assignment == assignment, line_items.c.url.is_(None),
                or_(line_items.c.lease_until.is_(None), line_items.c.lease_until < now,
                    line_items.c.holder == worker),
            ).values(holder=worker, lease_until=now + LEASE, updated_at=now)).rowcount)

    def url(self, client: LmsClient, issuer: str, context_id: str, lineitems_url: str, scopes: tuple[str, ...],
            assignment: str, label: str, maximum: float, worker: str) -> str | None:
        """The column's URL, found or made now; None while another worker is making it (ask again soon).

        Raises ``client.Retry`` or ``client.Refused`` when the LMS fails; the lease then runs out.
        """
        known = self.known(issuer, context_id, assignment)
        if known:
            return known
        if not self._take(issuer, context_id, assignment, worker):
            return self.known(issuer, context_id, assignment)
        url = None
        try:
            url = client.find_line_item(lineitems_url, scopes, assignment) or client.create_line_item(
                lineitems_url, scopes, label, maximum, assignment, self.tag)
        finally:
            # Made or not, the right to make it goes back (a failed attempt must not block the others).
            with self.engine.begin() as db:
                db.execute(update(line_items).where(
                    line_items.c.issuer == issuer, line_items.c.context_id == context_id,
                    line_items.c.assignment == assignment, line_items.c.holder == worker,
                ).values(url=url, holder=None, lease_until=None, updated_at=self.clock()))
        return url
