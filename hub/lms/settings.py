"""Where the LMS's tables are: the grading queue's database (one source, ``hub.grade_on_submit.settings``)."""

from __future__ import annotations

import os
from pathlib import Path

from hub.grade_on_submit.settings import QUEUE_FILE


def database_url(course: Path | None = None) -> str:
    """``UNET_GRADING_QUEUE``, or the queue's SQLite file in the course folder (the working directory)."""
    course = (course or Path(os.environ.get("UNET_GRADING_COURSE", os.getcwd()))).resolve()
    (course / Path(QUEUE_FILE).parent).mkdir(mode=0o700, exist_ok=True)
    return os.environ.get("UNET_GRADING_QUEUE") or f"sqlite:///{course / QUEUE_FILE}"
