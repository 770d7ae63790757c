"""Where the files students receive live, and the one place the grader reaches them from.

What ships to students lies as real files in the assignment's own folder
(``notebooks/unet_segmentation/``): the notebook's visible checks and the
rules the grader also judges by (``spec_checks``, ``functional_checks``,
``test_utils``), the probe sent into the student's kernel, the data loader
and the plots.  The companion lab's folder (``notebooks/unet_lab/``) holds its
own two modules and links the shared ones to the assignment's folder, so each
module is one file.  nbgrader's release copies all of them as plain files.

The grader imports these modules by their plain names, as the student's
kernel does next to the notebook; ``put_on_path`` (run when the ``grader``
package is imported) puts both folders at the front of ``sys.path`` so that
the grader's own copies win over any same-named file elsewhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
ASSIGNMENT_DIR = REPOSITORY / "notebooks" / "unet_segmentation"
LAB_DIR = REPOSITORY / "notebooks" / "unet_lab"
# The assignment's modules, by import name: what the kernel template imports ahead of any notebook.
MODULES = ("test_utils", "spec_checks", "functional_checks", "probe", "carla_data", "carla_plots", "carla_synth",
           "precision")
# The lab's own modules; it links the rest it needs to the assignment's folder.
LAB_MODULES = ("skip_lab", "lab_plots")
LAB_LINKED = ("test_utils", "carla_data", "carla_plots", "carla_synth", "precision")
# What stays at the repository's root as a link into the assignment's folder (the project's layout names it there).
ROOT_LINKS = ("test_utils",)


def folders() -> list[Path]:
    """The folders the student-side modules are imported from, the assignment's first."""
    return [ASSIGNMENT_DIR, LAB_DIR]


def put_on_path() -> None:
    """Put the student-side folders first on ``sys.path`` (once; a folder that is not there is left out).

    A copy of the engine (Validate's in a student's server) puts there what it
    holds of them: the data loader, which finds the data as the notebook does.
    """
    for folder in reversed(folders()):
        if folder.is_dir() and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
