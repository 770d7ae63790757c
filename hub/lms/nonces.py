"""Each launch's nonce is accepted once: a replayed launch is refused even with the browser's cookies.

The library's check (the nonce is the hash of a value kept in a cookie) stops
a token sent from another browser; a request replayed whole, cookies
included, needs the hub to remember what it has seen.  Kept in a table in
the hub's own (root-only) folder until the token could no longer be accepted.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Column, Float, MetaData, String, Table, create_engine, delete, insert
from sqlalchemy.exc import IntegrityError

metadata = MetaData()
seen = Table("lti_nonces", metadata, Column("nonce", String(200), primary_key=True),
             Column("forget_after", Float, nullable=False))


class NonceStore:
    """Nonces seen, kept for ``keep_seconds`` (longer than any token's life)."""

    def __init__(self, path: Path, keep_seconds: float = 3600.0, clock=time.time):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.engine = create_engine(f"sqlite:///{path}", future=True)
        metadata.create_all(self.engine)
        self.keep, self.clock = keep_seconds, clock

    def use(self, nonce: str) -> bool:
        """Record ``nonce``; False if it was seen before (a replay)."""
        now = self.clock()
        try:
            with self.engine.begin() as db:
                db.execute(delete(seen).where(seen.c.forget_after < now))
                db.execute(insert(seen).values(nonce=nonce, forget_after=now + self.keep))
        except IntegrityError:
            return False
        return True
