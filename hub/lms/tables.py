"""The LMS's tables, in the grading queue's database (SQLite in the course folder, or PostgreSQL).

Only the grader account writes them (the hub, as root, asks it to: ``hub.lms.enrol``),
so the database's files keep one owner.  ``people`` is the identity table:
an LMS person (issuer and ``sub``, which the LMS never lets a user change)
and the unix account they got.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Integer, MetaData, String, Table, Text, UniqueConstraint, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from hub.grade_on_submit.queue import open_engine

metadata = MetaData()

people = Table(
    "lms_people", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("issuer", String(400), nullable=False),
    Column("sub", String(255), nullable=False),
    Column("account", String(32), nullable=False, unique=True),
    Column("name", Text, nullable=False, default=""),
    Column("given_name", Text, nullable=False, default=""),
    Column("family_name", Text, nullable=False, default=""),
    Column("email", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("issuer", "sub", name="lms_people_identity"),
)

# One LMS course (an LTI context) linked to this hub course, with the URLs of its services.
contexts = Table(
    "lms_contexts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("issuer", String(400), nullable=False),
    Column("context_id", String(255), nullable=False),
    Column("deployment_id", String(255), nullable=False),
    Column("title", Text, nullable=False, default=""),
    Column("lineitems_url", Text, nullable=False, default=""),
    Column("ags_scopes", Text, nullable=False, default="[]"),
    Column("nrps_url", Text, nullable=False, default=""),
    Column("updated_at", Float, nullable=False),
    Column("synced_at", Float),
    Column("sync_error", Text),
    UniqueConstraint("issuer", "context_id", name="lms_contexts_identity"),
)

# Who is in which LMS course, as what; a person who left stays, inactive (their work and grades stay too).
enrolments = Table(
    "lms_enrolments", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("issuer", String(400), nullable=False),
    Column("context_id", String(255), nullable=False),
    Column("account", String(32), nullable=False, index=True),
    Column("role", String(16), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("issuer", "context_id", "account", name="lms_enrolments_identity"),
)

# One gradebook column per assignment per LMS course: made by one worker at a time (the lease), found again by
# its resourceId after a crash between making it and writing its URL here.
line_items = Table(
    "lms_line_items", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("issuer", String(400), nullable=False),
    Column("context_id", String(255), nullable=False),
    Column("assignment", String(200), nullable=False),
    Column("url", Text),
    Column("holder", String(200)),
    Column("lease_until", Float),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("issuer", "context_id", "assignment", name="lms_line_items_identity"),
)

# The outbox: each score to post, kept until the LMS took it (or refused it, with the reason).
outbox = Table(
    "lms_outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("issuer", String(400), nullable=False),
    Column("context_id", String(255), nullable=False),
    Column("account", String(32), nullable=False),
    Column("assignment", String(200), nullable=False),
    Column("score_given", Float),
    Column("score_maximum", Float, nullable=False),
    Column("activity_progress", String(32), nullable=False),
    Column("grading_progress", String(32), nullable=False),
    # The score's timestamp (ISO 8601), fixed when the row is made: a retried post is the same post.
    Column("timestamp", String(40), nullable=False),
    # When the submission that counts was made (ISO 8601): AGS's optional ``submission.submittedAt``.
    Column("submitted_at", String(40)),
    Column("state", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", Float, nullable=False),
    Column("holder", String(200)),
    Column("lease_until", Float),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("posted_at", Float),
)


def lms_engine(url: str) -> Engine:
    """The grading queue's engine (its SQLite settings), with the LMS's tables made if missing."""
    engine = open_engine(url)
    metadata.create_all(engine)
    _add_missing_columns(engine)
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """Columns added since a deployment's tables were made (create_all makes only missing tables)."""
    if "submitted_at" in {c["name"] for c in inspect(engine).get_columns(outbox.name)}:
        return
    try:
        with engine.begin() as db:
            db.execute(text(f"ALTER TABLE {outbox.name} ADD COLUMN submitted_at VARCHAR(40)"))
    except DBAPIError:
        # Another process of the hub added it first.
        if "submitted_at" not in {c["name"] for c in inspect(engine).get_columns(outbox.name)}:
            raise
