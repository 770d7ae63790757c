"""nbgrader settings for the U-Net course; run nbgrader commands from this folder.

    nbgrader generate_assignment unet_segmentation --force
    nbgrader autograde unet_segmentation --force
    nbgrader generate_feedback unet_segmentation --force
    nbgrader export
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# The `nbgrader` command does not put the course folder on the import path,
# and the steps below live in the grader package there.
sys.path.insert(0, str(ROOT))

from grader.course import COURSE_ID, SOURCE_DIRECTORY, make_alembic_findable  # noqa: E402

# The source notebook's hidden cells import `grader.engine.checks` from this folder when
# an instructor runs it (and when grading runs without the sandbox), and
# TensorFlow must not write start-up logs to stderr, which nbgrader scores 0.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Even when the virtual environment was not activated.
make_alembic_findable()
# Ending a process that imported TensorFlow took a second of walking its objects (grader/engine/exit_quickly.py).
from grader.engine.exit_quickly import install as _exit_quickly  # noqa: E402

_exit_quickly()

c = get_config()  # noqa: F821 - provided by nbgrader when it reads this file

# Every other folder, and the gradebook (gradebook.db in the root), are nbgrader's defaults.
c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.course_id = COURSE_ID
c.CourseDirectory.source_directory = SOURCE_DIRECTORY

# Any TensorFlow/absl log line that still reaches stderr is dropped before scoring.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"^(?:[IWE]\d{4} \d|WARNING: All log messages before absl::InitializeLog)"
c.Execute.timeout = 60

# Hardened autograding (grader/engine/intake.py, execute.py, verdicts.py):
# any file is read as a notebook, deleted locked cells come back, the notebook
# runs in a bubblewrap sandbox, and the hidden test cells get their verdicts
# from checks run in this process on evidence collected in the sandbox.
c.Autograde.exporter_class = "grader.engine.intake.SubmissionExporter"
# grades.csv with names (an LMS's, say) that a spreadsheet never runs as formulas, and columns that never shift.
c.ExportApp.plugin_class = "grader.tools.csv_export.SafeCsvExportPlugin"
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "grader.engine.intake.RestoreLockedCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Autograde.autograde_preprocessors = [
    "grader.engine.execute.SandboxedExecute",
    "grader.engine.verdicts.ApplyVerdicts",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    # nbgrader's step, with the student's recorded due date and the policy file's late policy.
    "hub.grade_on_submit.late_plugin.AssignCoursePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# The late policy (grade_on_submit.json, "late") and per-student due dates (due_dates.json, extensions)
# are in the course folder: see hub/grade_on_submit/late_policy.py and extensions.py.
c.AssignCoursePenalties.plugin_class = "hub.grade_on_submit.late_plugin.CoursePenalty"
# nbconvert's HTML page, its templates compiled once per process (grading on submit makes one page per submission).
c.GenerateFeedback.exporter_class = "grader.engine.feedback_page.FeedbackExporter"
# The feedback page says when the submission came, the due date that applied and the penalty.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    # Each graded cell's result, never the source of its hidden tests (this list replaces the hub's own).
    "nbgrader.preprocessors.ClearHiddenTests",
    "hub.grade_on_submit.late_feedback.LatenessNote",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
# Refresh reports/summary.md and score_histogram.png after each graded submission.
c.Autograde.post_convert_hook = "grader.tools.grades.after_autograde"

# `nbgrader validate` and the Validate button: a kernel that dies, or a notebook
# that runs too long, ends in a message on the graded cells, not a traceback.
from grader.engine.validate import install as _install_validate  # noqa: E402

_install_validate()
