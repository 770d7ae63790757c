"""The kernel template (issue 31): a class graded with it and without it, in the same run.

Figures: one cold ``import tensorflow`` (the yardstick), one ``nbgrader
autograde`` of the same class with ``UNET_KERNEL_TEMPLATE=1`` and ``=0`` (per
submission), whether the scores agree, the template's memory, and what N
workers of ``grader.tools.autograde_class`` hold together at their peak with
the template on and off.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grader.course import ASSIGNMENT, ROOT

# The per-submission target: at most this many cold imports of TensorFlow.
TARGET_IMPORTS = 1.2


def cold_import_seconds(runs: int = 3) -> float:
    """Median wall time of a fresh ``python -c 'import tensorflow'``."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import tensorflow"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _memory_kib(pid: int) -> dict[str, int]:
    """Resident and proportional set size of ``pid``, in KiB (smaps_rollup)."""
    sizes = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("Rss", "Pss"):
            sizes[name.lower()] = int(value.split()[0])
    return sizes


def template_memory() -> dict[str, int]:
    """The template's resident size just after it started (its imports done)."""
    from grader.engine import template
    from grader.engine.sandbox import check_available, template_command

    check_available()
    started = template.template_for(("bench",), lambda: template_command(None))
    try:
        return _memory_kib(started.pid)
    finally:
        template.close_all()


def class_on_off(data: Path, size: int) -> dict:
    """One ``nbgrader autograde`` of the same class, template on and off (on first: any warm cache helps off)."""
    from bench.grading import _new_course, _timed, _totals
    from grader.dev.examples import EXAMPLES

    examples = sorted(EXAMPLES)
    students = {f"student{i:03d}": examples[i % len(examples)] for i in range(size)}
    seconds, totals = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-template-") as tmp:
        for label, value in (("on", "1"), ("off", "0")):
            course = _new_course(Path(tmp), label, data, students)
            course.env["UNET_KERNEL_TEMPLATE"] = value
            seconds[label] = _timed(lambda c=course: c.nbgrader("autograde", ASSIGNMENT, "--force"))
            totals[label] = _totals(course.db_url, list(students))
    return {"size": size, "on": seconds["on"], "off": seconds["off"], "same_scores": totals["on"] == totals["off"],
            "on_per_submission": seconds["on"] / size, "off_per_submission": seconds["off"] / size}


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it, found by each process's parent in /proc/PID/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # ended while we looked
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _tree_pss_kib(root: int) -> int:
    """Proportional set size of ``root`` and all its descendants (shared pages counted once overall)."""
    total = 0
    for pid in _descendants(root):
        try:
            total += _memory_kib(pid)["pss"]
        except (OSError, KeyError):
            continue  # ended, or a kernel thread without memory
    return total


def workers_memory(data: Path, workers: int, template: bool) -> dict:
    """Peak memory of ``autograde_class --workers N`` grading 2N submissions: the run's whole process tree.

    Sampled every 0.2 s while it grades: the workers, their templates and
    kernels (forked or cold), the pool's parent.  Proportional set sizes, so
    pages a template shares with its kernels count once.
    """
    from bench.grading import _new_course

    students = {f"student{i:03d}": "reference" for i in range(2 * workers)}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        course = _new_course(Path(tmp), "memory", data, students)
        env = {**course.env, "UNET_KERNEL_TEMPLATE": "1" if template else "0"}
        command = [sys.executable, "-m", "grader.tools.autograde_class", "--course", str(course.root),
                   "--db", course.db_url, "--workers", str(workers)]
        peak = 0
        errors = Path(tmp) / "stderr.txt"
        with errors.open("w") as stderr, subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                                          stderr=stderr) as process:
            while process.poll() is None:
                peak = max(peak, _tree_pss_kib(process.pid))
                time.sleep(0.2)
        if process.returncode != 0:
            raise RuntimeError(f"autograde_class --workers {workers} failed with status {process.returncode}:\n"
                               f"{errors.read_text()[-3000:]}")
    return {"workers": workers, "template": template, "peak_pss_kib": peak}


def run(data: Path, size: int, verdict) -> dict:
    """Measure and print the figures."""
    tf_import = cold_import_seconds()
    print(f"  one cold `import tensorflow`: {tf_import:.1f} s (median of 3)")
    memory = template_memory()
    print(f"  template resident size after its imports: {memory['rss'] / 1024:.0f} MiB "
          f"(proportional {memory['pss'] / 1024:.0f} MiB)")
    r = class_on_off(data, size)
    for label in ("on", "off"):
        per = r[f"{label}_per_submission"]
        print(f"  template {label:3}: {r[label]:.0f} s for {size} submissions, {per:.1f} s each = "
              f"{per / tf_import:.2f} cold imports")
    print(f"  same scores on and off: {r['same_scores']}")
    ratio = r["on_per_submission"] / tf_import
    print(f"  <= {TARGET_IMPORTS} cold imports per submission: "
          f"{verdict(ratio <= TARGET_IMPORTS, f'{ratio:.2f}')}")
    together = []
    for workers in (1, 2):
        for on in (True, False):
            together.append(workers_memory(data, workers, on))
            peak = together[-1]["peak_pss_kib"] / 1024
            print(f"  {workers} worker(s), template {'on' if on else 'off'}: peak {peak:.0f} MiB for the whole "
                  "run (workers, templates, kernels; proportional set size)", flush=True)
    return {**r, "tf_import": tf_import, "template_memory_kib": memory, "imports_per_submission": ratio,
            "workers_memory": together}
