"""The companion lab run end to end as a student runs it: its time, and what its two networks learnt.

The benchmark and tests/test_lab.py both run the notebook through here, so
the figures come from the notebook itself, not from a copy of its code.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

import carla_data
import skip_lab
from grader.course import LAB_NOTEBOOK, LAB_SOURCE

RESULTS_MARK = "LAB-RESULTS "
# Appended after the student's cells: prints what a run is judged on (the notebook itself writes no files).
RESULTS_CELL = f"""
import json
print({RESULTS_MARK!r} + json.dumps({{
    str(skips): {{"iou": [None if v != v else float(v) for v in run.iou], "thin": run.thin_iou(),
                 "mean": run.mean_iou(), "loss": run.history["loss"], "seconds": run.seconds}}
    for skips, run in runs.items()}}))
"""


def execute_lab(folder: Path, data_dir: Path, epochs: int, student_kernel: bool = True) -> tuple:
    """Run ``folder``'s lab notebook on ``data_dir`` with ``epochs``; return (executed notebook, results, timing).

    ``student_kernel`` gives the kernel no PYTHONPATH into this repository and
    no TensorFlow log level, as on a student's laptop: the lab must find its
    modules in its own folder and keep TensorFlow quiet by itself.  The timing
    holds the wall time and the kernel's CPU time (user and system), which the
    other work on a shared machine does not inflate.
    """
    nb = nbformat.read(folder / f"{LAB_NOTEBOOK}.ipynb", as_version=4)
    nb.cells.append(new_code_cell(RESULTS_CELL))
    env: dict[str, str | None] = {carla_data.DATA_DIR_ENV: str(data_dir), skip_lab.EPOCHS_ENV: str(epochs),
                                  skip_lab.ASSIGNMENT_ENV: None}
    if student_kernel:
        env |= {"PYTHONPATH": None, "TF_CPP_MIN_LOG_LEVEL": None}
    saved = {key: os.environ.get(key) for key in env}
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        NotebookClient(nb, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    results = json.loads(text.split(RESULTS_MARK, 1)[1]) if RESULTS_MARK in text else None
    return nb, results, {"wall_seconds": wall, "kernel_cpu_seconds": cpu}


def lab(data_dir: Path, epochs: int) -> dict:
    """The source lab (beside the source assignment, whose blocks are the reference) on ``data_dir``."""
    load = os.getloadavg()[0]
    _, results, timing = execute_lab(LAB_SOURCE.parent, data_dir, epochs)
    if results is None:
        raise RuntimeError("the lab notebook did not reach its last cell")
    named = {label: results[key] for label, key in (("with_skips", "True"), ("without_skips", "False"))}
    return {"data": str(data_dir), "epochs": epochs, "load_before": load, "load_after": os.getloadavg()[0],
            **timing, **named, "thin_margin": named["with_skips"]["thin"] - named["without_skips"]["thin"]}
