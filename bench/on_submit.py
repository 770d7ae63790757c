"""Grading on submit, timed on a throw-away hub on localhost (root: it makes one unix account per student).

    python -m bench --only on_submit [--burst 100] [--burst-window 60] [--idle 8] [--naive 100]

- idle: one submission at a time, each waiting for the last: time from the
  submission to its grade and feedback being visible (p50, p95);
- burst: ``--burst`` students each submit once at random moments within
  ``--burst-window`` seconds: time to feedback (p50, p95, max) and the time
  to drain the queue;
- per phase (queued, collect, sandbox start, run, evidence, checks, feedback)
  for both;
- Validate: the time to its answer for a finished notebook, pressed three
  times by one student between the two (the first press starts the
  student's Validate child, the others find it);
- the naive way for the same burst, after it: what a cron script does, the
  four nbgrader commands (collect, autograde, generate_feedback,
  release_feedback) for one student after another, as the grader account.
  With ``--naive N`` below ``--burst`` only the first N students are graded
  that way, and the drain time is extrapolated (and said to be); ``--naive 0``
  leaves it out;
- ``--template on,off`` (the default) does all of it twice, on a fresh hub
  each time: kernels forked from the grading workers' kernel templates, then
  each kernel started cold (issue 31's comparison, in the same run).

A submission is made as nbgrader's submit leaves it: a folder in the
exchange's inbound, owned by the student, its ``timestamp.txt`` written
last.  Written by root straight into the exchange, so that a hundred
students submitting cost the machine nothing but the grading.
"""

from __future__ import annotations

import os
import random
import secrets
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat

from grader.course import NOTEBOOK, reference_solutions
from grader.dev.examples import fill, solutions_for
from hub.grade_on_submit.queue import GRADING, QUEUED, Queue, open_engine
from hub.grade_on_submit.settings import QUEUE_FILE
from hub.layout import ASSIGNMENT, COURSE_ID, HubLayout

PHASES = ("queued", "collect", "sandbox start", "run", "evidence", "checks", "feedback")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def make_submission(layout: HubLayout, student: str, notebook: str) -> tuple[str, float]:
    """Put a submission of ``student`` into the inbound folder as nbgrader's submit would; (folder, time)."""
    import pwd

    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f") + " UTC"
    folder = layout.inbound / f"{student}+{ASSIGNMENT}+{stamp}+{secrets.token_urlsafe(9)}"
    owner, group = pwd.getpwnam(student).pw_uid, pwd.getpwnam(layout.grader).pw_gid
    staging = layout.state / f".staging-{student}"
    staging.mkdir()
    (staging / f"{NOTEBOOK}.ipynb").write_text(notebook)
    for path in (staging, staging / f"{NOTEBOOK}.ipynb"):
        os.chown(path, owner, group)
    staging.chmod(0o750)
    staging.rename(folder)
    # Last, in nbgrader's order: the time, then the secret feedback is keyed by.
    for name, text in (("timestamp.txt", stamp), ("submission_secret.txt", secrets.token_hex(64))):
        (folder / name).write_text(text)
        os.chown(folder / name, owner, group)
    return folder.name, now.timestamp()


def wait_for(queue: Queue, folders: set[str], timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [r for r in queue.all() if r.folder in folders]
        if len(rows) == len(folders) and all(r.state not in (QUEUED, GRADING) for r in rows):
            return rows
        time.sleep(0.25)
    raise TimeoutError(f"{len(folders)} submissions were not all graded within {timeout:.0f} s")


def summary(rows, arrived: dict[str, float]) -> dict:
    """Time to feedback per submission (from its arrival to its grade being shown) and phases.

    ``each`` keeps every submission's worker, time to feedback and phases, in
    the order they finished, so that a worker's first submission can be told
    from the rest (``first_and_rest``).
    """
    rows = sorted(rows, key=lambda r: r.finished_at)
    to_feedback = [r.finished_at - arrived[r.folder] for r in rows]
    phases = {p: statistics.mean(r.phases.get(p, 0.0) for r in rows) for p in PHASES}
    each = [{"worker": r.worker, "to_feedback": t, "phases": {p: r.phases.get(p, 0.0) for p in PHASES}}
            for r, t in zip(rows, to_feedback, strict=True)]
    return {"count": len(rows), "p50": statistics.median(to_feedback), "p95": percentile(to_feedback, 95),
            "max": max(to_feedback), "states": sorted({r.state for r in rows}), "phases": phases,
            "to_feedback": to_feedback, "each": each}


def first_and_rest(each: list[dict]) -> tuple[list[dict], list[dict]]:
    """Each worker's first submission, and all the others."""
    seen: set[str] = set()
    first: list[dict] = []
    rest: list[dict] = []
    for row in each:
        (rest if row["worker"] in seen else first).append(row)
        seen.add(row["worker"])
    return first, rest


def print_first_and_rest(each: list[dict]) -> None:
    """Time to feedback and phases of each worker's first submission, and of the others."""
    first, rest = first_and_rest(each)
    for name, group in (("each worker's first", first), ("the others", rest)):
        if not group:
            continue
        outside = statistics.mean(r["to_feedback"] - sum(r["phases"].values()) for r in group)
        print(f"    {name} ({len(group)}): time to feedback p50 "
              f"{statistics.median(r['to_feedback'] for r in group):.2f} s; mean seconds per phase: "
              + ", ".join(f"{p} {statistics.mean(r['phases'][p] for r in group):.2f}" for p in PHASES)
              + f", outside the phases {outside:.2f}")


def print_phases(phases: dict[str, float]) -> None:
    print("    mean seconds per phase: " + ", ".join(f"{p} {phases[p]:.2f}" for p in PHASES))


def naive(hub, students: list[str]) -> list[float]:
    """Seconds each student takes the cron way: four nbgrader commands as the grader account."""
    from hub import provision

    seconds = []
    for student in students:
        started = time.perf_counter()
        for step in ("collect", "autograde", "generate_feedback", "release_feedback"):
            extra = ["--force"] if step in ("autograde", "generate_feedback") else []
            provision.nbgrader_as_grader(hub.layout, step, ASSIGNMENT, f"--student={student}", *extra)
        seconds.append(time.perf_counter() - started)
    return seconds


# Issue 31's targets for grading on submit with the kernel template (time to feedback, seconds).
TEMPLATE_IDLE_P50 = 2.5
TEMPLATE_BURST_P95 = 120
TEMPLATE_DRAIN_PER_100 = 150


def on_submit(data: Path, burst: int, window: float, idle: int, naive_count: int, workers: int,
              template: bool = True) -> dict:
    from tests.hub_harness import running_hub

    policy = {ASSIGNMENT: {"grade_on_submit": True, "show": "feedback", "per_hour": 0}}
    students = [f"s{i:03d}" for i in range(burst)]
    results: dict = {"workers": workers, "cores": os.cpu_count(), "template": template}
    with running_hub(data, students=students, visitors=[], policy=policy, grading_workers=workers,
                     kernel_template=template) as hub:
        # What the students fetched: the hub's own release, not this repository's (which may be stale or absent).
        release = nbformat.read(hub.layout.exchange / COURSE_ID / "outbound" / ASSIGNMENT / f"{NOTEBOOK}.ipynb",
                                as_version=4)
        good = nbformat.writes(fill(release, reference_solutions()))
        buggy = nbformat.writes(fill(release, solutions_for("bug_conv_block")))
        queue = Queue(open_engine(f"sqlite:///{hub.layout.course / QUEUE_FILE}"))
        accounts = hub.layout.student_accounts
        _wait_for_workers(hub)
        arrived: dict[str, float] = {}
        idle_rows = []
        for student in accounts[:idle]:
            folder, at = make_submission(hub.layout, student, good)
            arrived[folder] = at
            idle_rows += wait_for(queue, {folder}, 300)
        results["idle"] = summary(idle_rows, arrived)
        results["validate"] = validate_seconds(hub, students[-1], good)
        # The burst: every student once, at random moments within the window.
        rng = random.Random(7)
        moments = sorted(rng.uniform(0, window) for _ in accounts)
        start = time.time()
        folders = set()
        for student, moment in zip(accounts, moments, strict=True):
            time.sleep(max(0.0, start + moment - time.time()))
            folder, at = make_submission(hub.layout, student, good if rng.random() < 0.7 else buggy)
            arrived[folder] = at
            folders.add(folder)
        rows = wait_for(queue, folders, 3600)
        results["burst"] = summary(rows, arrived)
        results["burst"]["drain"] = max(r.finished_at for r in rows) - start
        results["burst"]["window"] = window
        log = hub.log_text()
        results["kernels"] = {"forked": log.count("Kernel template started"),
                              "cold": log.count("Kernel template not used")}
        chosen = accounts[:naive_count]
        results["naive"] = {"students": len(chosen), "seconds": naive(hub, chosen)}
    return results


def validate_seconds(hub, student: str, notebook: str, runs: int = 3) -> list[float]:
    """Time to Validate's answer for a finished notebook, pressed ``runs`` times by ``student`` on the hub.

    Validate runs in the student's own server, in a child that stays between
    presses; with the kernel template on, the child keeps a template of its
    own (not the grading service's), so the first press also waits for that
    server to start and the template to import, and the later ones do not.
    """
    from tests.test_hub import assignment_action

    session = hub.login(hub.layout.account(student))
    assert assignment_action(session, "fetch")["success"]
    path = f"{ASSIGNMENT}/{NOTEBOOK}.ipynb"
    saved = session.server("PUT", f"api/contents/{path}", json={"type": "notebook",
                                                                 "content": nbformat.reads(notebook, as_version=4)})
    assert saved.status_code in (200, 201), saved.text
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = session.server("POST", "assignments/validate", data={"path": path}, timeout=400)
        seconds.append(time.perf_counter() - started)
        if answer.status_code != 200 or not answer.json().get("success"):
            raise RuntimeError(f"Validate did not answer: {answer.status_code} {answer.text[:300]}")
    return seconds


def _wait_for_workers(hub, timeout: float = 180) -> None:
    """The workers import TensorFlow when the service starts: the idle figures start once they are ready."""
    deadline = time.monotonic() + timeout
    while hub.log_text().count(" ready") < hub.layout.grading_workers:
        if time.monotonic() > deadline:
            raise TimeoutError("the grading workers did not start")
        time.sleep(1)


def report(r: dict, verdict) -> None:
    idle, burst, naive_run = r["idle"], r["burst"], r["naive"]
    kernels = r["kernels"]
    print(f"  kernel template {'on' if r['template'] else 'off'}: {kernels['forked']} templates started, "
          f"{kernels['cold']} kernels logged as started cold instead; {r['workers']} workers on {r['cores']} cores")
    print(f"  idle ({idle['count']} submissions, one at a time): time to feedback p50 {idle['p50']:.1f} s, "
          f"p95 {idle['p95']:.1f} s, max {idle['max']:.1f} s")
    p50, p95 = idle["p50"], idle["p95"]
    print(f"    p50 <= 10 s: {verdict(p50 <= 10, f'{p50:.1f} s')}; p95 <= 30 s: {verdict(p95 <= 30, f'{p95:.1f} s')}")
    print_phases(idle["phases"])
    print_first_and_rest(idle["each"])
    kernel = "forked from its Validate child's template" if r["template"] else "a cold kernel"
    print(f"  Validate on the hub (the student's own server, {kernel}; presses one after the other): "
          + ", ".join(f"{t:.1f}" for t in r["validate"]) + " s")
    print(f"  burst ({burst['count']} students within {burst['window']:.0f} s): drained in {burst['drain']:.0f} s; "
          f"time to feedback p50 {burst['p50']:.0f} s, p95 {burst['p95']:.0f} s, max {burst['max']:.0f} s; "
          f"outcomes {', '.join(burst['states'])}")
    target = 360 * burst["count"] / 100
    drained = burst["drain"]
    print(f"    drained <= {target:.0f} s: {verdict(drained <= target, f'{drained:.0f} s')}")
    print_phases(burst["phases"])
    if r["template"]:
        burst_p95 = burst["p95"]
        drain_target = TEMPLATE_DRAIN_PER_100 * burst["count"] / 100
        print(f"    with the template (issue 31): idle p50 <= {TEMPLATE_IDLE_P50} s: "
              f"{verdict(p50 <= TEMPLATE_IDLE_P50, f'{p50:.1f} s')}; burst p95 <= {TEMPLATE_BURST_P95} s: "
              f"{verdict(burst_p95 <= TEMPLATE_BURST_P95, f'{burst_p95:.0f} s')}; drained <= "
              f"{drain_target:.0f} s: {verdict(drained <= drain_target, f'{drained:.0f} s')}")
    if not naive_run["students"]:
        return
    per_student = statistics.mean(naive_run["seconds"])
    drain = per_student * burst["count"]
    how = "measured" if naive_run["students"] == burst["count"] else (
        f"extrapolated from {naive_run['students']} students")
    print(f"  naive (cron: collect, autograde, generate_feedback, release_feedback per student): "
          f"{per_student:.1f} s per student, the burst drained in {drain:.0f} s ({how}); "
          f"grading on submit is {drain / burst['drain']:.1f}x faster to drain")
    r["naive"]["drain"], r["ratio"] = drain, drain / burst["drain"]
