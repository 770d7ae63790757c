"""One control group per sandboxed kernel: limits on a whole submission, not on each process.

``prlimit`` caps each process of a submission; a control group caps all of
them together: how many processes and threads exist at once (``pids``), how
much memory they hold with their page cache and in-memory files (``memory``,
which includes the sandbox's scratch space), and how many CPUs they may keep
busy (``cpu``).  The grader also reads how much CPU time they used in all.

The group is made before the kernel starts: the kernel's command begins with
a tiny shell that moves itself into the group and then runs the rest, so no
process of the submission ever runs outside it.  When the kernel ends, every
process left in the group is killed and the group is removed.

Two kinds of machine are served:

- cgroup v2 (current Ubuntu, Debian, GitHub's runners): groups under
  ``/sys/fs/cgroup/unet-grader`` when grading runs as root; as a normal user,
  inside the group systemd delegated to the grader (``systemd-run --user
  --scope -p Delegate=yes ...``), where the grader first moves itself into a
  leaf ``unet-grader`` so that its siblings may have limits;
- cgroup v1 (older systems, and this project's development machine), where
  each controller has its own hierarchy: a group in each, below the grader's
  own group there.

``open_group`` says why neither works when it cannot (``CgroupsUnavailable``).
Each group is locked by the grader process that made it (``leftovers``), and
``sweep_groups`` kills and removes those of graders that were killed.
"""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from grader.engine.leftovers import hold, release, take_abandoned

MOUNTS = Path("/proc/self/mountinfo")
OWN = Path("/proc/self/cgroup")
V2_CONTROLLERS = ("pids", "memory", "cpu")
V1_CONTROLLERS = ("pids", "memory", "cpu", "cpuacct", "freezer")
CPU_PERIOD_US = 100_000
# A kernel's group: the grader process that made it, and a random part.  Groups named otherwise
# (an older grader's) are never swept.
GROUP_PREFIX = "unet-kernel-"
# How long removing a group folder may wait for its hierarchy to let go of killed processes.
REMOVE_SECONDS = 10.0
_GROUP_NAME = re.compile(rf"{GROUP_PREFIX}\d+-[0-9a-f]+")
# The shell that starts every kernel: into the group(s) named before "--", then the command after it.
_ENTER = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


class CgroupsUnavailable(RuntimeError):
    """Whole-submission limits cannot be set on this machine; ``what`` failed, ``fix`` says what to do."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(what)
        self.what, self.fix = what, fix


@dataclass(frozen=True)
class GroupLimits:
    """What one submission may use in all its processes together."""

    processes: int
    memory_bytes: int
    cpus: float


@dataclass(frozen=True)
class Usage:
    """What a group's counters say: limits hit so far, and CPU time used."""

    process_limit_hits: int = 0
    oom_kills: int = 0
    cpu_seconds: float = 0.0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _field(text: str, name: str) -> int:
    """The number after ``name`` in a flat-keyed cgroup file ("max 3\\noom_kill 0")."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return 0


def new_group_name() -> str:
    return f"{GROUP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"


class KernelGroup:
    """The control group(s) of one kernel, in one or more hierarchies."""

    def __init__(self, dirs: dict[str, Path]) -> None:
        # controller -> folder; "procs" is the folder whose cgroup.procs lists every process.
        self.dirs = dirs
        # This process's locks on the folders (``leftovers``): a group whose lock is free is a killed grader's.
        self.locks: list[int] = []

    def _make_folders(self, locked: bool) -> None:
        for folder in dict.fromkeys(self.dirs.values()):
            folder.mkdir()
            if locked:
                self.locks.append(hold(folder))

    def enter_prefix(self) -> list[str]:
        """The command prefix that runs a program inside this group."""
        folders = dict.fromkeys(self.dirs.values())
        return ["/bin/sh", "-c", _ENTER, "enter-cgroup", *(str(d / "cgroup.procs") for d in folders), "--"]

    def add(self, pid: int) -> None:
        """Move the running process ``pid`` into this group (its children made from then on follow it)."""
        for folder in dict.fromkeys(self.dirs.values()):
            (folder / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        return [int(p) for p in _read(self.dirs["procs"] / "cgroup.procs").split()]

    def usage(self) -> Usage:
        raise NotImplementedError

    def kill_all(self) -> None:
        """Kill every process in the group and wait until none is left (at most a few seconds)."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            try:
                self._kill(pids)
            except OSError:
                pass  # e.g. the freezer refused: the next round kills them one by one again
            time.sleep(0.1)

    def _kill(self, pids: list[int]) -> None:
        _kill_each(pids)

    def remove(self) -> None:
        """Kill what is left, then remove the group's folders."""
        self.kill_all()
        for folder in dict.fromkeys(self.dirs.values()):
            _remove_folder(folder)
        for lock in self.locks:
            release(lock)
        self.locks = []


def _kill_each(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _remove_folder(folder: Path) -> None:
    """Remove one group folder, killing what its own ``cgroup.procs`` still lists, for up to REMOVE_SECONDS.

    A folder whose hierarchy still lists a process (one still exiting, or one
    that hierarchy holds a moment longer than the one ``kill_all`` watched)
    refuses to go; on a busy machine that can last longer than a second.
    """
    deadline = time.monotonic() + REMOVE_SECONDS
    pause = 0.02
    while True:
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                return  # left for sweep_groups: its lock is released below, so the next grader removes it
        _kill_each([int(pid) for pid in _read(folder / "cgroup.procs").split()])
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


class V2Group(KernelGroup):
    """A kernel's group in the unified hierarchy (cgroup v2)."""

    @classmethod
    def create(cls, parent: Path, limits: GroupLimits, name: str | None = None) -> V2Group:
        """A new group ``name``; without one, a kernel's group, locked while this object lives (``sweep_groups``)."""
        folder = parent / (name or new_group_name())
        group = cls({"procs": folder})
        try:
            group._make_folders(locked=name is None)
            (folder / "pids.max").write_text(str(limits.processes))
            (folder / "memory.max").write_text(str(limits.memory_bytes))
            if (folder / "memory.swap.max").exists():
                (folder / "memory.swap.max").write_text("0")
            (folder / "cpu.max").write_text(f"{int(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
        except OSError:
            group.remove()
            raise
        return group

    def usage(self) -> Usage:
        folder = self.dirs["procs"]
        return Usage(process_limit_hits=_field(_read(folder / "pids.events"), "max"),
                     oom_kills=_field(_read(folder / "memory.events"), "oom_kill"),
                     cpu_seconds=_field(_read(folder / "cpu.stat"), "usage_usec") / 1e6)

    def _kill(self, pids: list[int]) -> None:
        # cgroup.kill (Linux 5.14) kills the whole group at once, even a process that is forking.
        kill = self.dirs["procs"] / "cgroup.kill"
        if kill.exists():
            kill.write_text("1")
        else:
            super()._kill(pids)


class V1Group(KernelGroup):
    """A kernel's groups in the separate hierarchies of cgroup v1."""

    @classmethod
    def create(cls, parents: dict[str, Path], limits: GroupLimits, name: str | None = None) -> V1Group:
        """A new group ``name``; without one, a kernel's group, locked while this object lives (``sweep_groups``)."""
        folder = name or new_group_name()
        dirs = {controller: parent / folder for controller, parent in parents.items()}
        group = cls({**dirs, "procs": dirs["pids"]})
        try:
            group._make_folders(locked=name is None)
            (dirs["pids"] / "pids.max").write_text(str(limits.processes))
            (dirs["memory"] / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            if (dirs["memory"] / "memory.memsw.limit_in_bytes").exists():
                # Memory and swap together: no way around the limit through swap.
                (dirs["memory"] / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_bytes))
            (dirs["cpu"] / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (dirs["cpu"] / "cpu.cfs_quota_us").write_text(str(int(limits.cpus * CPU_PERIOD_US)))
        except OSError:
            group.remove()
            raise
        return group

    def usage(self) -> Usage:
        return Usage(process_limit_hits=_field(_read(self.dirs["pids"] / "pids.events"), "max"),
                     oom_kills=_field(_read(self.dirs["memory"] / "memory.oom_control"), "oom_kill"),
                     cpu_seconds=int(_read(self.dirs["cpuacct"] / "cpuacct.usage").strip() or 0) / 1e9)

    def _kill(self, pids: list[int]) -> None:
        # Frozen processes cannot fork while they are being killed; thawed, they die.
        state = self.dirs.get("freezer")
        if state is not None:
            (state / "freezer.state").write_text("FROZEN")
        super()._kill(pids)
        if state is not None:
            (state / "freezer.state").write_text("THAWED")


# -- where the groups go ----------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    kind: str  # "cgroup2", or "cgroup" for a v1 hierarchy
    path: Path
    options: frozenset[str]


def mounts(mountinfo: str | None = None) -> list[Mount]:
    """The cgroup file systems mounted here (v2 and every v1 hierarchy)."""
    found = []
    for line in (mountinfo if mountinfo is not None else _read(MOUNTS)).splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) > 4 and len(tail) > 2 and tail[0] in ("cgroup", "cgroup2"):
            found.append(Mount(tail[0], Path(fields[4]), frozenset(tail[2].split(","))))
    return found


def own_paths(text: str | None = None) -> dict[str, str]:
    """This process's group in each hierarchy: controller (or "" for v2) -> path."""
    paths: dict[str, str] = {}
    for line in (text if text is not None else _read(OWN)).splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _writable(folder: Path) -> bool:
    return os.access(folder / "cgroup.procs", os.W_OK)


def enable(folder: Path, controllers: tuple[str, ...]) -> None:
    """Let ``folder``'s child groups use ``controllers`` (cgroup v2's subtree_control)."""
    enabled = set(_read(folder / "cgroup.subtree_control").split())
    for controller in controllers:
        if controller not in enabled:
            (folder / "cgroup.subtree_control").write_text(f"+{controller}")


def v2_parent(mount: Path, own: str, is_root: bool) -> Path:
    """The v2 group whose children are the kernels' groups, set up for limits; raises CgroupsUnavailable."""
    missing = set(V2_CONTROLLERS) - set(_read(mount / "cgroup.controllers").split())
    if missing:
        raise CgroupsUnavailable(f"cgroup v2 lacks the {', '.join(sorted(missing))} controller(s)", FIX_CONTROLLERS)
    if is_root:
        enable(mount, V2_CONTROLLERS)
        parent = mount / "unet-grader"
        parent.mkdir(exist_ok=True)
    else:
        parent = mount / own.lstrip("/")
        if parent.name == "unet-grader":  # an earlier grader process (our parent) set it up already
            parent = parent.parent
        elif not _writable(parent):
            raise CgroupsUnavailable(f"this user may not make control groups in {parent}", FIX_DELEGATE)
        else:
            # A v2 group with processes in it cannot give its children limits: move ours into a leaf.
            leaf = parent / "unet-grader"
            leaf.mkdir(exist_ok=True)
            for pid in _read(parent / "cgroup.procs").split():
                try:
                    (leaf / "cgroup.procs").write_text(pid)
                except ProcessLookupError:
                    pass  # it ended meanwhile
    enable(parent, V2_CONTROLLERS)
    return parent


def v1_parents(found: list[Mount], own: dict[str, str]) -> dict[str, Path]:
    """Each v1 hierarchy's group under which the kernels' groups go; raises CgroupsUnavailable."""
    parents = {}
    for controller in V1_CONTROLLERS:
        mount = next((m for m in found if m.kind == "cgroup" and controller in m.options), None)
        if mount is not None and controller in own:
            parents[controller] = mount.path / own[controller].lstrip("/")
    missing = [c for c in V1_CONTROLLERS if c != "freezer" and c not in parents]
    if missing:
        raise CgroupsUnavailable(f"no cgroup v1 hierarchy for {', '.join(missing)}", FIX_CONTROLLERS)
    refused = [str(p) for p in parents.values() if not _writable(p)]
    if refused:
        raise CgroupsUnavailable(f"this user may not make control groups in {', '.join(refused)}", FIX_ROOT_V1)
    return parents


# The files of a group its new owner needs to make groups below it and move its processes in.
_DELEGATED_FILES = ("cgroup.procs", "tasks", "cgroup.threads", "cgroup.subtree_control")


def usable_v2(found: list[Mount]) -> Mount | None:
    """The cgroup v2 mount among ``found`` when it offers every controller the limits need, else None."""
    v2 = next((m for m in found if m.kind == "cgroup2"), None)
    if v2 is not None and set(V2_CONTROLLERS) <= set(_read(v2.path / "cgroup.controllers").split()):
        return v2
    return None


def delegated_folders(name: str) -> list[Path]:
    """Where ``delegate`` puts the group ``name``: at the top of cgroup v2, or below this (root) process's
    own group in each v1 hierarchy, as the grader itself does as root."""
    found, own = mounts(), own_paths()
    v2 = usable_v2(found)
    if v2 is not None:
        return [v2.path / name]
    return list(dict.fromkeys(parent / name for parent in v1_parents(found, own).values()))


def delegate(name: str, uid: int, gid: int) -> list[Path]:
    """As root, make the group ``name`` and hand it to the account ``uid``; return the ``cgroup.procs``
    files its processes are to be started in.

    A grader process of that account started there (root writes its pid)
    makes each kernel's group inside the delegated one.  On cgroup v2 it
    starts in the leaf ``unet-grader``, as the grader arranges for itself in
    a group systemd delegates: a v2 group whose children have limits may
    hold no process itself, so a start in the delegated group would be
    refused once the first kernel has had its group.
    """
    folders = delegated_folders(name)
    if (folders[0].parent / "cgroup.subtree_control").exists():  # cgroup v2: one folder, and its leaf
        enable(folders[0].parent, V2_CONTROLLERS)
        leaf = folders[0] / "unet-grader"
        _hand_over([folders[0], leaf], uid, gid)
        return [leaf / "cgroup.procs"]
    _hand_over(folders, uid, gid)
    return [folder / "cgroup.procs" for folder in folders]


def _hand_over(groups: list[Path], uid: int, gid: int) -> None:
    for group in groups:
        group.mkdir(exist_ok=True)
        for path in [group, *(group / f for f in _DELEGATED_FILES)]:
            if path.exists():
                os.chown(path, uid, gid)


def remove_delegated(name: str, starts: list[str]) -> None:
    """Remove the group ``name`` that ``delegate`` made and returned ``starts`` for, and every group below it;
    the processes left in them are killed first."""
    for start in starts:
        folder = next((p for p in Path(start).parents if p.name == name), None)
        if folder is None or not folder.is_dir():
            continue
        for below, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
            group = KernelGroup({"procs": Path(below)})
            group.kill_all()
            try:
                Path(below).rmdir()
            except OSError:
                pass  # a process that outlived kill_all: the group stays until it ends


def fresh_named_group(name: str, limits: GroupLimits) -> KernelGroup:
    """As root, the group ``name`` with ``limits`` where ``delegate`` would put it, made afresh.

    For a long-lived program of one account (a student's Jupyter server and
    all it starts): whatever an earlier group of that name still held is
    killed first, so nothing a previous server left running escapes the new limits.
    """
    remove_named_group(name)
    found, own = mounts(), own_paths()
    v2 = usable_v2(found)
    if v2 is not None:
        enable(v2.path, V2_CONTROLLERS)
        return V2Group.create(v2.path, limits, name=name)
    return V1Group.create(v1_parents(found, own), limits, name=name)


def named_group(name: str) -> KernelGroup | None:
    """The group ``name`` that ``fresh_named_group`` made, if it is there."""
    found, own = mounts(), own_paths()
    v2 = usable_v2(found)
    if v2 is not None:
        return V2Group({"procs": v2.path / name}) if (v2.path / name).is_dir() else None
    dirs = {controller: parent / name for controller, parent in v1_parents(found, own).items()}
    if not dirs["pids"].is_dir():
        return None
    return V1Group({**{c: d for c, d in dirs.items() if d.is_dir()}, "procs": dirs["pids"]})


def remove_named_group(name: str) -> None:
    """Kill what is left in the group ``name`` (all at once, even while it forks), and remove it."""
    group = named_group(name)
    if group is not None:
        group.remove()


FIX_DELEGATE = (
    "Grade as root, or start the grader inside a control group that systemd delegates to you, e.g.\n"
    "    systemd-run --user --scope -p Delegate=yes -- nbgrader autograde ASSIGNMENT\n"
    "(the same for make demo and make test). Or accept grading without whole-submission limits: "
    "--SandboxedExecute.whole_submission_limits=False.")
FIX_ROOT_V1 = ("On cgroup v1 only root may make control groups: grade as root, or accept grading without "
               "whole-submission limits: --SandboxedExecute.whole_submission_limits=False.")
FIX_CONTROLLERS = ("The kernel needs the pids, memory and cpu controllers (cgroup v2 as on current Debian and Ubuntu, "
                   "or cgroup v1 hierarchies for them). Or accept grading without whole-submission limits: "
                   "--SandboxedExecute.whole_submission_limits=False.")


class Placement:
    """Where this process makes its kernels' groups: one v2 parent, or a parent in each v1 hierarchy."""

    def __init__(self, v2: Path | None = None, v1: dict[str, Path] | None = None) -> None:
        self.v2, self.v1 = v2, v1

    def create(self, limits: GroupLimits) -> KernelGroup:
        if self.v2 is not None:
            return V2Group.create(self.v2, limits)
        assert self.v1 is not None
        return V1Group.create(self.v1, limits)

    def parents(self) -> list[Path]:
        return [self.v2] if self.v2 is not None else list(dict.fromkeys((self.v1 or {}).values()))


def find_placement() -> Placement:
    """cgroup v2 where it has the controllers, else cgroup v1; raises CgroupsUnavailable saying why and what to do."""
    found, own = mounts(), own_paths()
    v2 = usable_v2(found)
    if v2 is not None:
        return Placement(v2=v2_parent(v2.path, own.get("", "/"), os.geteuid() == 0))
    if any(m.kind == "cgroup" for m in found):
        return Placement(v1=v1_parents(found, own))
    raise CgroupsUnavailable("no cgroup file system is mounted", FIX_CONTROLLERS)


_PLACEMENT: list[Placement] = []


def _placement() -> Placement:
    if not _PLACEMENT:
        _PLACEMENT.append(find_placement())
    return _PLACEMENT[0]


def open_group(limits: GroupLimits) -> KernelGroup:
    """A new group with ``limits`` for one kernel; raises CgroupsUnavailable (or OSError) when none can be made."""
    return _placement().create(limits)


def sweep_groups(parents: list[Path] | None = None) -> list[Path]:
    """Kill and remove the kernel groups that killed graders left below ``parents`` (this process's); the ones removed.

    Only groups whose lock no live grader holds (``leftovers``), in any
    process, are touched.
    """
    removed = []
    for parent in parents if parents is not None else _placement().parents():
        try:
            found = [p for p in parent.iterdir() if _GROUP_NAME.fullmatch(p.name)]
        except OSError:
            continue
        for folder in found:
            lock = take_abandoned(folder)
            if lock is None:
                continue
            try:
                KernelGroup({"procs": folder}).remove()
            finally:
                release(lock)
            if not folder.exists():
                removed.append(folder)
    return removed
