"""What a grading killed half-way leaves behind, and how the next one knows it may remove it.

A grading owns a scratch folder in the temporary folder (a copy of the
submission, the kernel's connection file) and, with whole-submission limits,
a control group per kernel.  Both are removed when the grading ends; a
grader that is killed (out of memory, a service stopped with SIGKILL) cannot
remove them, and a copy of a submission left in ``/tmp`` stays readable by
its owner's uid, which a later account may get.  So every live owner holds
an ``flock`` on each of its folders: the lock ends with the owner's process,
however that ends.  A folder whose lock is free belongs to nobody, and the
next grading on this machine removes it, in whichever process; a live
grading's folder is never touched.

The lock is taken a moment after the folder is made, so a folder younger
than ``GRACE_SECONDS`` is left alone: a sweep never takes the folder of a
grading that is just starting.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

GRACE_SECONDS = 60.0
# Scratch folders are named after the process that made them (for whoever finds one), then mkdtemp's letters.
SCRATCH_PREFIX = "unet-sandbox-"
_SCRATCH_NAME = re.compile(rf"{SCRATCH_PREFIX}\d+-[a-z0-9_]+")


def hold(folder: Path) -> int:
    """Lock ``folder`` for this process; the lock lasts until ``release`` (or this process's end)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def release(fd: int | None) -> None:
    """Give up a lock from ``hold`` or ``take_abandoned``."""
    if fd is not None:
        os.close(fd)


def take_abandoned(folder: Path, now: float | None = None) -> int | None:
    """A lock on ``folder`` if it belongs to no live grading, else None.

    Abandoned: older than the grace period, and nobody holds its lock.  While
    the returned lock is held no grading can take the folder, so it can be
    removed; then ``release`` the lock.
    """
    try:
        if (now if now is not None else time.time()) - folder.stat().st_ctime < GRACE_SECONDS:
            return None
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # gone meanwhile, or not ours to open
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def new_scratch() -> tuple[Path, int]:
    """A fresh scratch folder (mode 700) in the temporary folder, and this process's lock on it."""
    folder = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
    return folder, hold(folder)


def _own_folder(path: Path) -> bool:
    """A real folder (not a link) of this process's user: another account's leftovers are its own business."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()


def sweep_scratch(where: Path | None = None) -> list[Path]:
    """Remove the scratch folders of killed gradings from ``where`` (the temporary folder); the ones removed."""
    removed = []
    for folder in Path(where or tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        if not _SCRATCH_NAME.fullmatch(folder.name) or not _own_folder(folder):
            continue
        lock = take_abandoned(folder)
        if lock is None:
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            release(lock)
        if not folder.exists():
            removed.append(folder)
    return removed
