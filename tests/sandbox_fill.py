"""A kernel in the sandbox fills every place it can write; this process looks at the host meanwhile.

    python tests/sandbox_fill.py FOLDER [--limits]

Run by ``tests/test_sandbox_disk.py`` as root and as a throw-away normal
user.  It starts a ``SandboxedKernelManager`` on FOLDER with small limits
(``--limits``: with whole-submission limits), runs one cell that walks the
sandbox's whole file system and writes as much as it can into every folder
it may write to, and into its own stdout and stderr; then, while the kernel
still runs, it measures the grader's side.  It prints one JSON object:
``written`` (folder -> bytes the kernel wrote there), ``host_scratch_bytes``
(what the grader's scratch folder holds), ``host_files`` (files on the host,
under the temporary folder, whose name the cell used), ``kernel_output_chars``
and ``writable_bytes`` (the sandbox's budget).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grader.engine.sandbox import Limits, SandboxedKernelManager  # noqa: E402

LIMITS = Limits(scratch_bytes=48 * 2**20, tmp_bytes=32 * 2**20, shm_bytes=8 * 2**20)

FILL = """
import json, os
NAME = {name!r}
block = b"x" * 2**20
written = {{}}
for root, dirs, _ in os.walk("/"):
    if root in ("/proc", "/sys"):
        dirs[:] = []
        continue
    size = 0
    try:
        with open(os.path.join(root, NAME), "wb", buffering=0) as out:
            while True:
                size += out.write(block)
    except OSError:
        pass
    if size:
        written[root] = size
for fd in (1, 2):
    try:
        for _ in range(64):
            os.write(fd, block)
    except OSError:
        pass
print("FILLED" + json.dumps(written))
"""


def _bytes_in(folder: Path) -> int:
    return sum(f.lstat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def _named(where: Path, name: str) -> list[str]:
    found = []
    for root, _, files in os.walk(where):
        found += [os.path.join(root, f) for f in files if f == name]
    return found


async def fill(work: Path, limits: bool) -> dict:
    name = f"unet-fill-{uuid.uuid4().hex[:8]}"
    km = SandboxedKernelManager(kernel_name="python3", limits=LIMITS)
    km.prepare(work, whole_submission_limits=limits)
    try:
        await km.start_kernel()
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=120)
        msg_id = kc.execute(FILL.format(name=name))
        written = None
        while written is None:
            message = await kc.get_iopub_msg(timeout=300)
            text = message["content"].get("text", "") if message["parent_header"].get("msg_id") == msg_id else ""
            if "FILLED" in text:
                written = json.loads(text.split("FILLED", 1)[1].splitlines()[0])
        assert km.scratch is not None
        # The kernel still runs: whatever it wrote is still wherever it went.
        report = {"written": written, "host_scratch_bytes": _bytes_in(km.scratch),
                  "host_files": _named(Path(tempfile.gettempdir()), name),
                  "kernel_output_chars": len(km.kernel_output()), "writable_bytes": LIMITS.writable_bytes}
        kc.stop_channels()
        return report
    finally:
        await km.shutdown_kernel(now=True)
        km.cleanup_scratch()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(fill(Path(sys.argv[1]), "--limits" in sys.argv))))
