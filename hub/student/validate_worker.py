"""Validate notebooks in a process of its own and print each result as JSON.

``validate_handler`` keeps one such process per student server while the
student presses Validate (``--serve``): it reads one request per line on
stdin and answers each on stdout, so the kernel template it keeps
(``ValidateExecute.template``, set in the students' configuration) imports
TensorFlow once for all the presses, not once per press.  The configuration
is read again for each notebook, as nbgrader's own Validate button reads it
(the server's folder, then the Jupyter configuration path), so the course's
Validate settings apply.

    python -m unet_hub.validate_worker PATH     # one notebook, then exit
    python -m unet_hub.validate_worker --serve  # {"path": PATH, "id": N} per line
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import IO

# Starts every answer line in ``--serve``, so that what libraries print on stdout is told from the answers.
ANSWER = "unet-validate-answer "


def validate(path: str) -> dict:
    """nbgrader's Validate result for the notebook at ``path``, with the configuration as it is now."""
    from nbgrader.apps import NbGrader
    from nbgrader.validator import Validator

    app = NbGrader()
    app.load_config_file()  # the Jupyter configuration path, then the current folder
    return Validator(config=app.config).validate(path)


def serve(requests: IO[str], answers: IO[str]) -> int:
    """Answer each ``{"path": ..., "id": ...}`` line of ``requests``: ``ANSWER``, ``{"id", "result"|"error"}``."""
    for line in requests:
        answer: dict[str, object] = {}
        try:
            request = json.loads(line)
            answer["id"] = request["id"]
            answer["result"] = validate(request["path"])
        except Exception:  # noqa: BLE001 - the student reads it in the Validate dialog; the next press goes on
            answer["error"] = traceback.format_exc(limit=-3)
        answers.write(f"\n{ANSWER}{json.dumps(answer)}\n")
        answers.flush()
    return 0


def main(args: list[str]) -> int:
    # nbgrader's and the grading engine's log lines (which notebook, whether its kernel was forked from the
    # template, and why not) on stderr, as `nbgrader validate` prints them: the server logs them.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[%(name)s | %(levelname)s] %(message)s")
    if args == ["--serve"]:
        return serve(sys.stdin, sys.stdout)
    # The last line of stdout is the answer; anything a library printed comes before it.
    print("\n" + json.dumps(validate(args[0])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
