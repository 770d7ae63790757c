"""The kernel template (issue 31): a class graded with it and without it, in the same run.

Figures: one cold ``import tensorflow`` (the yardstick), one ``nbgrader
autograde`` of the same class with ``UNET_KERNEL_TEMPLATE=1`` and ``=0`` (per
submission), whether the scores agree, and the template's memory.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grader.course import ASSIGNMENT

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
    return {**r, "tf_import": tf_import, "template_memory_kib": memory, "imports_per_submission": ratio}
