"""Reading grades back: per student and exercise, and the class summary an instructor reads.

    python -m grader.tools.grades     # any time after `nbgrader autograde`

``scores`` and ``format_table`` give each submission's points per exercise
(the demo's grade table).  ``render`` prints a score histogram and, per
exercise, how many submissions lost points and the most common reason, and
writes reports/summary.md and reports/score_histogram.png;
nbgrader_config.py also runs it after every autograded submission
(``after_autograde``), so the files are always current.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
from nbgrader.api import Gradebook, MissingEntry  # noqa: E402

from grader.course import (  # noqa: E402
    ASSIGNMENT,
    AUTOGRADED,
    DB_URL,
    FEEDBACK,
    NOTEBOOK,
    ROOT,
    active_coursedir,
    exercises,
    nbgrader_meta,
    step_folder,
)


def scores(student: str, db_url: str = DB_URL) -> dict[str, float]:
    """Points per exercise for ``student``'s submission, plus ``total`` and ``ungraded``.

    ``ungraded`` lists the graded cells that have no score at all (counted as
    0 in the points), which should never happen after a complete autograde.
    Raises ``KeyError`` when the gradebook has no submission for them.
    """
    result: dict = {}
    with Gradebook(db_url) as gb:
        try:
            rows = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student).grades
        except MissingEntry as err:
            raise KeyError(f"no graded submission of {ASSIGNMENT} for {student!r}") from err
        grades = {g.name: g.score for g in rows}
        ungraded = sorted(g.name for g in rows if g.auto_score is None and g.manual_score is None)
    for exercise, cells in exercises().items():
        result[exercise] = sum(grades.get(cell, 0.0) for cell, _ in cells)
    result["total"] = sum(result.values())
    result["ungraded"] = ungraded
    return result


def feedback_file(student: str) -> Path:
    return FEEDBACK / student / ASSIGNMENT / f"{NOTEBOOK}.html"


def format_table(students: dict[str, str], db_url: str = DB_URL) -> str:
    """A text table: one row per student, one column per exercise, then total."""
    maxima = {ex: sum(points for _, points in cells) for ex, cells in exercises().items()}
    maxima["total"] = sum(maxima.values())
    name_width = max(len(s) for s in [*students, "submission"])
    widths = {col: max(len(col), 7) for col in maxima}
    header = "submission".ljust(name_width) + "  " + "  ".join(col.rjust(widths[col]) for col in maxima)
    limits = " " * name_width + "  " + "  ".join(f"/{maxima[c]:g}".rjust(widths[c]) for c in maxima)
    lines = [header, limits, "-" * len(header)]
    for student, description in students.items():
        got = scores(student, db_url)
        cells = "  ".join(f"{got[c]:g}".rjust(widths[c]) for c in maxima)
        missing = f"   NOT GRADED: {', '.join(got['ungraded'])}" if got["ungraded"] else ""
        lines.append(f"{student.ljust(name_width)}  {cells}   {description}{missing}")
    return "\n".join(lines)


def failure_reasons(student: str, autograded: Path = AUTOGRADED) -> dict[str, str]:
    """The error message of each failed graded cell in ``student``'s autograded notebook."""
    path = autograded / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    # The summary is refreshed after every graded submission: reading every notebook of the class each
    # time would cost a whole class's reading per submission, so a notebook is read again only once changed.
    info = path.stat()
    stamp = (info.st_mtime_ns, info.st_ctime_ns, info.st_size, info.st_ino)
    known = _REASONS.get(path)
    if known is None or known[0] != stamp:
        known = _REASONS[path] = (stamp, _read_reasons(path))
    return dict(known[1])


# What ``failure_reasons`` read, per notebook, with the times, size and inode of the file it read.
_REASONS: dict[Path, tuple[tuple[int, ...], dict[str, str]]] = {}


def _read_reasons(path: Path) -> dict[str, str]:
    reasons = {}
    for cell in nbformat.read(path, as_version=4).cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if not nbgrader_meta(cell).get("grade"):
            continue
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                reasons[grade_id] = f"{output.ename}: {output.evalue}".strip()
            elif output.output_type == "stream" and output.name == "stderr":
                reasons[grade_id] = "wrote to stderr: " + output.text.strip().splitlines()[0]
    return reasons


def collect(db_url: str = DB_URL, autograded: Path = AUTOGRADED) -> dict[str, dict[str, float]]:
    """Scores per graded cell for every autograded submission of the assignment."""
    with Gradebook(db_url) as gb:
        return {
            sub.student.id: {grade.name: grade.score for nb in sub.notebooks if nb.name == NOTEBOOK
                             for grade in nb.grades}
            for sub in gb.assignment_submissions(ASSIGNMENT)
            if (autograded / sub.student.id / ASSIGNMENT).is_dir()
        }


def render(db_url: str = DB_URL, autograded: Path = AUTOGRADED, out: Path = ROOT / "reports") -> str:
    """Write the summary and histogram under ``out`` and return the summary text."""
    scores = collect(db_url, autograded)
    graded = exercises()
    maximum = sum(points for cells in graded.values() for _, points in cells)
    totals = {student: sum(cells.values()) for student, cells in scores.items()}
    lines = [f"# {ASSIGNMENT}: {len(totals)} submissions autograded", ""]
    if not totals:
        return "\n".join(lines + ["No autograded submissions yet."])
    mean = sum(totals.values()) / len(totals)
    lines += [f"Mean {mean:.1f} of {maximum:g}; full marks: {sum(t == maximum for t in totals.values())}; "
              f"zero: {sum(t == 0 for t in totals.values())}.", "", "| score | submissions |", "|---|---|"]
    width = maximum / 10
    for b in range(10):
        low = b * width
        count = sum(low <= t < low + width or (b == 9 and t == maximum) for t in totals.values())
        lines.append(f"| {low:g}-{low + width:g} | {'#' * count} {count} |")
    lines += ["", "| exercise | lost points | most common reason |", "|---|---|---|"]
    reasons = {student: failure_reasons(student, autograded) for student in totals}
    for exercise, cells in graded.items():
        names = [name for name, _ in cells]
        losers = [s for s, got in scores.items() if any(got.get(n, 0) < p for n, p in cells)]
        # One reason per submission: the first failed cell of the exercise.
        first = [next((reasons[s][n] for n in names if n in reasons[s]), "no score recorded") for s in losers]
        common = Counter(first).most_common(1)
        if common:
            reason, count = common[0]
            why = f"{reason[:240]} ({count} submission{'s' if count > 1 else ''})"
        else:
            why = "-"
        lines.append(f"| {exercise} | {len(losers)} of {len(totals)} | {why} |")
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text + "\n")
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(list(totals.values()), bins=10, range=(0, maximum), edgecolor="black")
    ax.set_xlabel(f"total score (of {maximum:g})")
    ax.set_ylabel("submissions")
    ax.set_title(f"{ASSIGNMENT}: {len(totals)} submissions")
    fig.tight_layout()
    fig.savefig(out / "score_histogram.png", dpi=100)
    plt.close(fig)
    return text


def after_autograde(assignment: str, student: str, notebooks: list[str]) -> None:
    """nbgrader's post-convert hook: refresh the summary of the course being graded.

    nbgrader calls it after each submission and only logs its errors, so a
    problem here never stops or changes grading.
    """
    coursedir = active_coursedir()
    root = Path(coursedir.root)
    render(coursedir.db_url, step_folder(root, "autograded"), root / "reports")


if __name__ == "__main__":
    print(render())
    print(f"\nWritten: {ROOT / 'reports' / 'summary.md'}, {ROOT / 'reports' / 'score_histogram.png'}")
