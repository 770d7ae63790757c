"""Write ``specification.json``: the specification's network for each call the visible checks make.

The students' copy of the checks (``spec_checks.py``) has no reference
solution to build the specification's network from, so it reads this file,
which the reference solutions produce: ``python -m grader.dev.specification_file``
(``make specification``) writes it, and ``tests/test_functional_checks.py`` fails
when it no longer holds what the reference builds.  It holds only the
notebook's own examples, never a hidden argument set.
"""

from __future__ import annotations

import json
from pathlib import Path

import functional_checks
from grader.course import ROOT
from grader.engine import specification
from spec_checks import SPECIFICATION_FILE, VISIBLE_CALLS
from test_utils import tf

# Beside spec_checks.py in the assignment's folder, where the students' copy reads it.
TARGET = SPECIFICATION_FILE


def contents() -> dict:
    """Per visible call, the specification's model configuration (float32) and, for ``unet_model``, its block calls."""
    out = {}
    for name, call in VISIBLE_CALLS.items():
        # Fresh layer names for each network, so the file only changes when the networks do.
        tf.keras.backend.clear_session()
        model, calls = specification.build({**call, "key": name})
        blocks = None if calls is None else {"down": calls["down"], "up": calls["up"]}
        out[name] = {"model": functional_checks.float32_config(json.loads(model.to_json())), "calls": blocks}
    return out


def write(path: Path = TARGET) -> None:
    path.write_text(json.dumps(contents(), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    write()
    print(f"wrote {TARGET.relative_to(ROOT)}")
