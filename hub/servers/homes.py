"""Each account's home on a file system of its own, of a fixed size: an ext4 image, loop-mounted on the home.

The machine's kernel may have no disk quotas (this project's machines
have none), and quotas alone would not keep a full home from filling the
disk that holds the exchange, the gradebook and the hub's databases.  A
home of its own does: a student who fills it fills only it.  The image is
allocated in full when it is made (``posix_fallocate``, not sparse), so the
homes together can never take more of the state folder's disk than set-up
gave them, and a disk too small for them fails at set-up, not at 2 a.m.
The first time, the image is made from what the home already holds.

Root only: ``python -m hub`` and the hub's spawner call these.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path


class HomeError(RuntimeError):
    """An account's home file system cannot be made or mounted; the message says what failed."""


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise HomeError(f"{' '.join(command)} failed: {result.stderr.strip() or result.stdout.strip()}")


def image_of(account: str, images: Path) -> Path:
    return images / f"{account}.ext4"


def make_image(image: Path, home: Path, size: int, uid: int, gid: int) -> None:
    """A new ext4 image of ``size`` bytes holding what ``home`` holds now, its top folder owned by the account."""
    partial = image.with_suffix(".partial")
    with open(partial, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, size)
    # nodiscard: mke2fs would otherwise punch the allocation out of the image again.
    command = ["mkfs.ext4", "-q", "-F", "-m", "0", "-E", f"root_owner={uid}:{gid},nodiscard"]
    if home.is_dir():
        command += ["-d", str(home)]
    try:
        _run([*command, str(partial)])
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(image)


def ensure_home(account: str, images: Path, size: int) -> bool:
    """Mount ``account``'s own file system of ``size`` bytes on its home (made the first time); whether it mounted.

    Nothing happens when a file system is already mounted there.
    """
    entry = pwd.getpwnam(account)
    home = Path(entry.pw_dir)
    if os.path.ismount(home):
        return False
    images.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(images, 0o700)
    image = image_of(account, images)
    if not image.exists():
        make_image(image, home, size, entry.pw_uid, entry.pw_gid)
    home.mkdir(mode=0o700, exist_ok=True)
    _run(["mount", "-o", "loop,nosuid,nodev", str(image), str(home)])
    lost = home / "lost+found"
    if lost.is_dir() and not any(lost.iterdir()):
        lost.rmdir()  # e2fsck makes it again if it ever needs it; students need not see it
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o700)
    return True


def release_home(home: Path) -> None:
    """Unmount the file system on ``home`` if there is one (lazily: a server still ending may hold it)."""
    if os.path.ismount(home):
        _run(["umount", "--lazy", str(home)])


def usage(home: Path) -> tuple[int, int]:
    """Bytes used and bytes in all of the file system that holds ``home``."""
    info = os.statvfs(home)
    return (info.f_blocks - info.f_bfree) * info.f_frsize, info.f_blocks * info.f_frsize
