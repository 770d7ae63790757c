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
# and the hook below lives in the grader package there.
sys.path.insert(0, str(ROOT))

# The source notebook's hidden cells import `grader.engine.checks` from this folder when
# an instructor runs it (and when grading runs without the sandbox), and
# TensorFlow must not write start-up logs to stderr, which nbgrader scores 0.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# nbgrader runs `alembic` by name; make the virtual environment's copy findable
# even when the environment was not activated.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

c = get_config()  # noqa: F821 - provided by nbgrader when it reads this file

c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.course_id = "unet-segmentation"
c.CourseDirectory.source_directory = "notebooks"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = f"sqlite:///{ROOT / 'gradebook.db'}"

# Any TensorFlow/absl log line that still reaches stderr is dropped before scoring.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"^(?:[IWE]\d{4} \d|WARNING: All log messages before absl::InitializeLog)"
c.Execute.timeout = 60

# Hardened autograding (grader/intake.py, grader/execute.py, grader/verdicts.py):
# any file is read as a notebook, deleted locked cells come back, the notebook
# runs in a bubblewrap sandbox, and the hidden test cells get their verdicts
# from checks run in this process on evidence collected in the sandbox.
c.Autograde.exporter_class = "grader.engine.intake.SubmissionExporter"
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
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# Refresh reports/summary.md and score_histogram.png after each graded submission.
c.Autograde.post_convert_hook = "grader.tools.grades.after_autograde"

# `nbgrader validate` and the Validate button: a kernel that dies, or a notebook
# that runs too long, ends in a message on the graded cells, not a traceback.
from grader.engine.validate import install as _install_validate  # noqa: E402

_install_validate()
