"""Sending the probe into the student's kernel, and reading its evidence back out.

The probe (``probe.py``) travels as source text: the sandbox cannot read the
course folder.  It runs in a namespace of its own, publishes its evidence as
display messages of its own MIME type, each stamped with a fresh nonce, and
only those messages count: anything the student's code printed, or faked
without knowing the nonce, is ignored.
"""

from __future__ import annotations

import json
from pathlib import Path

import probe


def probe_cell_source(request: dict) -> str:
    """The code of the cell that runs the probe with ``request`` in the student's kernel."""
    source = Path(probe.__file__).read_text()
    return (
        "def __unet_grader_probe(source, request):\n"
        "    namespace = {'__name__': 'unet_grader_probe'}\n"
        "    exec(compile(source, '<grader probe>', 'exec'), namespace)\n"
        "    namespace['publish'](__import__('IPython').get_ipython().user_ns, request)\n"
        f"__unet_grader_probe({source!r}, __import__('json').loads({json.dumps(request)!r}))\n"
        "del __unet_grader_probe\n"
    )


def evidence_parts(outputs: list, nonce: str) -> list[dict]:
    """The probe's pieces of evidence among a cell's outputs: its MIME type, with this run's nonce."""
    return [
        data for output in outputs
        if output.get("output_type") == "display_data"
        and isinstance(data := output.get("data", {}).get(probe.MIME), dict)
        and data.get("nonce") == nonce
    ]


def is_evidence_message(msg: dict) -> bool:
    """Whether a kernel message carries evidence (it is never cut by the output cap)."""
    return probe.MIME in msg.get("content", {}).get("data", {})
