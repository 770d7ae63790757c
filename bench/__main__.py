"""Speed and quality figures, measured side by side in one run: `make bench`.

    python -m bench [--only grading,class,throughput,quality,lab,on_submit] [--class-size 100] [--workers N]

Sections:
  grading     one submission: our autograde against plain nbgrader running the whole notebook
  class       a class of generated submissions: one `nbgrader autograde` against --workers N
  throughput  training images/s: the notebook's pipeline and precision against the plain float32 one
  quality     held-out pixel accuracy and IoU after the notebook's epochs, synthetic and real data
  template    a class graded with the kernel template and without (--class-size), against one cold
              `import tensorflow`; the template's memory (bench/template.py)
  lab         the companion lab end to end: its time, and per-class IoU with and without skip connections
  on_submit   grading on submit on a throw-away hub (root; only with --only): time to feedback idle
              and in a deadline burst, per phase, against the cron way (bench/on_submit.py)
  regrade     a regrade's preview, per student, and what 300 students would take on --workers
              workers (only with --only; bench/regrade.py)

Each section prints its figures and how they compare with the targets of the
speed-and-scale issue; everything is also written to reports/bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from grader.course import ROOT
from grader.dev.training import DEFAULT_EPOCHS

REAL_DATA = ROOT.parent / "shared" / "carla"
SECTIONS = ("grading", "class", "throughput", "quality", "lab", "on_submit", "template", "regrade")
# on_submit needs root and a throw-away hub, template is issue 31's comparison, regrade issue 32's: asked for by name.
DEFAULT_SECTIONS = SECTIONS[:5]


def verdict(ok: bool, distance: str = "") -> str:
    """"target met", or "TARGET MISSED" with how far off the figure is."""
    return "target met" if ok else f"TARGET MISSED{': ' + distance if distance else ''}"


def run_grading(args, data: Path) -> dict:
    from bench.grading import per_submission

    r = per_submission(data, args.repeats, args.plain_runs)
    ratio = r["plain_median"] / r["ours_median"]
    print(f"  ours:  median {r['ours_median']:.1f} s per submission over {len(r['ours'])} runs "
          f"({', '.join(f'{t:.1f}' for t in r['ours'])})")
    print(f"  plain: median {r['plain_median']:.1f} s ({len(r['plain'])} runs, whole notebook with "
          f"{DEFAULT_EPOCHS} epochs of training)")
    print(f"  ratio: {ratio:.1f}x faster; same scores: {r['same_scores']}")
    median = r["ours_median"]
    print(f"  <= 15 s per submission: {verdict(median <= 15, f'{median - 15:.1f} s over')}; "
          f">= 10x: {verdict(ratio >= 10, f'{ratio:.1f}x')}")
    return {**r, "ratio": ratio}


def run_class(args, data: Path) -> dict:
    from bench.grading import whole_class

    r = whole_class(data, args.class_size, args.workers)
    speedup = r["sequential"] / r["parallel"]
    print(f"  {r['size']} submissions, sequential nbgrader autograde: {r['sequential']:.0f} s "
          f"({r['sequential'] / r['size']:.1f} s each)")
    print(f"  grader.tools.autograde_class --workers {r['workers']}: {r['parallel']:.0f} s "
          f"({r['parallel'] / r['size']:.1f} s each)")
    print(f"  speed-up {speedup:.2f}x on {os.cpu_count()} cores; same scores: {r['same_scores']}")
    return {**r, "speedup": speedup}


def run_throughput(args, data: Path) -> dict:
    from bench.training import throughput

    r = throughput(data, args.throughput_epochs)
    for name in ("plain", "notebook"):
        seconds = ", ".join(f"{s:.1f}" for s in r[name]["epoch_seconds"])
        print(f"  {name:8s}: {r[name]['images_per_second']:.1f} images/s (epochs: {seconds} s)")
    ratio = r["ratio"]
    print(f"  ratio {ratio:.2f}x: {verdict(ratio >= 1.3, f'{ratio:.2f}x of 1.3x')}")
    return r


def run_quality(args, data: Path) -> dict:
    from bench.training import quality

    results = {}
    for label, folder in (("synthetic", data), ("real", REAL_DATA)):
        if not (folder / "CameraRGB").is_dir():
            print(f"  {label}: skipped, no data set at {folder}")
            results[label] = None
            continue
        r = quality(folder, args.epochs)
        results[label] = r
        print(f"  {label} ({folder}, {r['held_out_images']} held-out images, {args.epochs} epochs, "
              f"{r['seconds']:.0f} s): held-out pixel accuracy {r['pixel_accuracy']:.3f}, "
              f"mean IoU {r['mean_iou']:.3f} (training accuracy {r['train_accuracy']:.3f})")
        per_class = [f"{name} {v:.2f}" for name, v in r["iou"].items() if v is not None]
        print("    IoU per class: " + ", ".join(per_class))
        accuracy = r["pixel_accuracy"]
        print(f"    >= 0.90 held-out: {verdict(accuracy >= 0.90, f'{accuracy:.3f}')}")
    return results


def run_lab(args, data: Path) -> dict:
    import carla_data
    from bench.lab import lab
    from skip_lab import DEFAULT_EPOCHS, THIN_CLASSES

    results = {}
    for label, folder in (("synthetic", data), ("real", REAL_DATA)):
        if not (folder / "CameraRGB").is_dir():
            print(f"  {label}: skipped, no data set at {folder}")
            results[label] = None
            continue
        r = lab(folder, DEFAULT_EPOCHS)
        results[label] = r
        wall, cpu = r["wall_seconds"], r["kernel_cpu_seconds"]
        print(f"  {label} ({folder}, {DEFAULT_EPOCHS} epochs): whole notebook {wall:.0f} s wall, kernel CPU "
              f"{cpu:.0f} s on {os.cpu_count()} cores (load average {r['load_before']:.1f} before, "
              f"{r['load_after']:.1f} after)")
        for name in ("with_skips", "without_skips"):
            net = r[name]
            print(f"    {name:13s}: mean IoU {net['mean']:.3f}, thin classes {net['thin']:.3f} "
                  f"(trained in {net['seconds']:.0f} s)")
        print("    IoU per class (with / without): " + ", ".join(
            f"{n} {a:.2f}/{b:.2f}" for n, a, b in zip(carla_data.CLASS_NAMES, r["with_skips"]["iou"],
                                                       r["without_skips"]["iou"], strict=True)
            if a is not None and b is not None))
        margin = r["thin_margin"]
        print(f"    thin classes ({', '.join(THIN_CLASSES)}): skips win by {margin:.3f}; "
              f"whole lab <= 600 s: {verdict(wall <= 600, f'{wall - 600:.0f} s over')}")
    return results


def run_on_submit(args, data: Path) -> dict:
    from bench.on_submit import on_submit, report

    runs = {}
    for label in args.template.split(","):
        if label not in ("on", "off"):
            raise SystemExit(f"--template takes on, off or on,off, not {label!r}")
        print(f"  -- kernel template {label}", flush=True)
        runs[label] = on_submit(data, args.burst, args.burst_window, args.idle, min(args.naive, args.burst),
                                args.workers, template=label == "on")
        report(runs[label], verdict)
    if len(runs) == 2:
        on, off = runs["on"], runs["off"]
        print(f"  template on against off: idle p50 {on['idle']['p50']:.1f} s against {off['idle']['p50']:.1f} s, "
              f"burst drained in {on['burst']['drain']:.0f} s against {off['burst']['drain']:.0f} s")
    return runs


def run_template(args, data: Path) -> dict:
    from bench.template import run

    return run(data, args.class_size, verdict)


def run_regrade(args, data: Path) -> dict:
    from bench.regrade import run

    return run(data, args.regrade_students, args.workers)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(DEFAULT_SECTIONS),
                        help=f"comma-separated sections to run (default {','.join(DEFAULT_SECTIONS)})")
    parser.add_argument("--repeats", type=int, default=5, help="submissions timed for the median (ours)")
    parser.add_argument("--plain-runs", type=int, default=2, help="plain whole-notebook runs timed")
    parser.add_argument("--class-size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs for the quality figures")
    parser.add_argument("--throughput-epochs", type=int, default=3)
    parser.add_argument("--burst", type=int, default=100, help="students in the deadline burst (on_submit)")
    parser.add_argument("--burst-window", type=float, default=60, help="seconds the burst is spread over")
    parser.add_argument("--idle", type=int, default=8, help="submissions timed one at a time (on_submit)")
    parser.add_argument("--naive", type=int, default=100,
                        help="burst students also graded the cron way (fewer: the rest is extrapolated)")
    parser.add_argument("--template", default="on,off",
                        help="grading on submit with the kernel template on, off, or both in turn (on_submit)")
    parser.add_argument("--regrade-students", type=int, default=3, help="students previewed (regrade)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench.json")
    args = parser.parse_args(argv)

    runners = {"grading": run_grading, "class": run_class, "throughput": run_throughput, "quality": run_quality,
               "lab": run_lab, "on_submit": run_on_submit, "template": run_template,
               "regrade": run_regrade}
    chosen = args.only.split(",")
    for section in chosen:
        if section not in runners:
            # Checked before anything runs: a typo must not cost the sections before it.
            parser.error(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")

    import carla_data

    data = carla_data.find_data_dir(ROOT)
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; data: {data}")
    results = {}
    for section in chosen:
        print(f"\n[{section}]", flush=True)
        results[section] = runners[section](args, data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nFigures written to {args.out}")
    return results


if __name__ == "__main__":
    main()
