"""nbgrader (and traitlets) internals: the validator's list of steps."""

from __future__ import annotations

CHECKED_WITH = {"nbgrader": "0.9.6", "traitlets": "5.16.1"}


def replace_validator_step(old: type, new: type) -> None:
    """Make every ``nbgrader.validator.Validator`` run ``new`` where it ran ``old``.

    ``Validator.preprocessors`` is not a configurable trait, so it cannot be
    set in nbgrader_config.py; traitlets keeps a List trait's default in
    ``default_args``.
    """
    from nbgrader.validator import Validator

    steps = Validator.preprocessors.default_args[0]
    steps[:] = [new if step is old else step for step in steps]
