"""``python -m hub.grade_on_submit``: the grading service (started by the hub)."""

import sys

from hub.grade_on_submit.service import main

sys.exit(main())
