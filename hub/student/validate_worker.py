"""Validate one notebook in a process of its own and print the result as JSON.

``validate_handler`` runs this for the Validate button.  The configuration is
read as nbgrader's own Validate button reads it (the server's folder, then
the Jupyter configuration path), so the course's Validate settings apply.

    python -m unet_hub.validate_worker PATH
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> int:
    from nbgrader.apps import NbGrader
    from nbgrader.validator import Validator

    app = NbGrader()
    app.load_config_file()  # the Jupyter configuration path, then the current folder
    result = Validator(config=app.config).validate(path)
    # The last line of stdout is the answer; anything a library printed comes before it.
    print("\n" + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
