"""Example submissions made from the release notebook, for the demo and the tests.

Each one is the release notebook with its solution cells filled in:
the reference solution, nothing at all, or the reference with one realistic bug.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import nbformat

from grader.course import ASSIGNMENT, NOTEBOOK, RELEASE_NOTEBOOK, SUBMITTED, nbgrader_meta, reference_solutions


@dataclass(frozen=True)
class Bug:
    """Replace ``old`` by ``new`` (exactly once) in one exercise's reference code."""

    exercise: str
    old: str
    new: str
    what: str

    def apply(self, code: dict[str, str]) -> dict[str, str]:
        """A copy of ``code`` (by exercise) with this bug put in."""
        count = code[self.exercise].count(self.old)
        if count != 1:
            raise ValueError(f"expected {self.old!r} once in {self.exercise}, found it {count} times")
        return {**code, self.exercise: code[self.exercise].replace(self.old, self.new)}


BUGS: dict[str, Bug] = {
    "bug_conv_block": Bug(
        "conv_block",
        "skip_connection = conv",
        "skip_connection = next_layer",
        "takes the skip connection after pooling instead of before it",
    ),
    "bug_upsampling_block": Bug(
        "upsampling_block",
        'Conv2DTranspose(n_filters, 3, strides=2, padding="same")',
        'Conv2DTranspose(n_filters, 3, padding="same")',
        "forgets strides=2, so the transposed convolution does not upsample",
    ),
    "bug_unet_model": Bug(
        "unet_model",
        "conv_block(cblock4[0], n_filters * 16, dropout_prob=0.3, max_pooling=False)",
        "conv_block(cblock4[0], n_filters * 16, dropout_prob=0.3)",
        "lets the bottleneck pool, so the decoder's sizes no longer match the skip connections",
    ),
}
# Students whose notebooks the demo grades, with what each one is.
EXAMPLES: dict[str, str] = {
    "reference": "the reference solution",
    "untouched": "the release notebook, unchanged",
    **{name: f"reference, but {bug.exercise} {bug.what}" for name, bug in BUGS.items()},
}


def solutions_for(student: str) -> dict[str, str]:
    """The code each solution cell gets in ``student``'s example submission."""
    if student == "untouched":
        return {}
    code = reference_solutions()
    if student in BUGS:
        code = BUGS[student].apply(code)
    elif student != "reference":
        raise KeyError(f"no example submission called {student!r}; known: {', '.join(EXAMPLES)}")
    return code


def fill(release: nbformat.NotebookNode, code: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of ``release`` whose solution cells hold ``code`` (by grade id)."""
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if nbgrader_meta(cell).get("solution") and grade_id in code:
            cell.source = code[grade_id]
    return nb


def write_examples(submitted: Path = SUBMITTED, release_notebook: Path = RELEASE_NOTEBOOK,
                   prefix: str = "") -> list[Path]:
    """Write every example submission where ``nbgrader autograde`` looks for it.

    Student ids are the names in ``EXAMPLES`` with ``prefix`` in front.
    """
    release = nbformat.read(release_notebook, as_version=4)
    written = []
    for student in EXAMPLES:
        path = submitted / f"{prefix}{student}" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(fill(release, solutions_for(student)), path)
        written.append(path)
    return written
