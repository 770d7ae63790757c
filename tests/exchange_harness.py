"""An exchange laid out as the hub lays it out, and submissions arriving in it as nbgrader's submit leaves them.

For tests that run the grading service's own objects in the test process,
without a hub (``tests/test_regrade_dask_postgres.py``).
"""

from __future__ import annotations

import os
import pwd
import secrets
from datetime import UTC, datetime
from pathlib import Path

from grader.course import ASSIGNMENT, COURSE_ID, NOTEBOOK


def submit_as(inbound, student: str, notebook: str) -> str:
    """A submission as nbgrader's submit leaves it: the student's folder, the time, then the secret."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    folder = inbound / f"{student}+{ASSIGNMENT}+{stamp}+{secrets.token_urlsafe(6)}"
    folder.mkdir()
    for name, text in ((f"{NOTEBOOK}.ipynb", notebook), ("timestamp.txt", stamp),
                       ("submission_secret.txt", secrets.token_hex(64))):
        (folder / name).write_text(text)
    uid = pwd.getpwnam(student).pw_uid
    for path in [folder, *folder.iterdir()]:
        os.chown(path, uid, -1)
    return folder.name


def exchange(folder: Path) -> tuple[Path, Path]:
    """An exchange under ``folder`` laid out as the hub lays it out, and the nbgrader configuration that names it.

    Returns the inbound folder and the configuration folder (for ``JUPYTER_CONFIG_PATH``).
    """
    inbound = folder / "exchange" / COURSE_ID / "inbound"
    inbound.mkdir(parents=True)
    (inbound.parent / "feedback").mkdir()
    config = folder / "config"
    config.mkdir()
    (config / "nbgrader_config.py").write_text(
        "from hub.student.exchange import configure\n"
        "c = get_config()\nconfigure(c)\n"
        f"c.Exchange.root = {str(folder / 'exchange')!r}\nc.CourseDirectory.course_id = {COURSE_ID!r}\n")
    return inbound, config
