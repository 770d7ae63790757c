"""The Validate button's server side, run so that it cannot hang or take the server down.

nbgrader's own handler validates inside the request, on the server's only
thread: the student's whole server (kernels, saving, the file browser) stops
answering until the notebook has run, and a slow notebook ends in a proxy's
502 with no message (nbgrader issue #1452).  This extension serves the same
URLs for the same front end, but runs ``validate_worker`` in a child process,
waits without blocking the server, stops the child after ``seconds`` (the
whole process group, kernel included) and always answers with JSON that the
Validate dialog shows as a message.

Enable it instead of ``nbgrader.server_extensions.validate_assignment``; its
time limit comes from ``UNET_VALIDATE_SECONDS`` (default 120).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from nbgrader import __version__ as nbgrader_version
from tornado import web

SECONDS = int(os.environ.get("UNET_VALIDATE_SECONDS", "120"))
# Validate runs one at a time per server: a student who presses the button
# again while it runs waits for the first run instead of starting a second
# TensorFlow.
_one_at_a_time = asyncio.Lock()


def failure(message: str) -> dict:
    """An answer the Validate dialog shows as it is."""
    return {"success": False, "value": message}


async def validate(path: Path, seconds: int = SECONDS) -> dict:
    """Validate the notebook at ``path`` in a child process; the answer nbgrader's front end expects."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"{__package__}.validate_worker", str(path),
        cwd=os.getcwd(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True)
    try:
        out, err = await asyncio.wait_for(process.communicate(), seconds)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        return failure(f"Validate was stopped after {seconds} seconds: running {path.name} takes too long. "
                       "Is a cell stuck in a loop, or waiting for input()? Fix it, restart the kernel, run all "
                       "cells to check, then press Validate again.")
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if process.returncode != 0 or not isinstance(result, dict):
        tail = err.decode(errors="replace").strip().splitlines()[-8:]
        return failure(f"Validate could not check {path.name} (exit status {process.returncode}). "
                       "Is it a notebook of this assignment? Details:\n" + "\n".join(tail))
    return {"success": True, "value": result}


class ValidateHandler(JupyterHandler):
    """POST /assignments/validate with ``path``: the Validate button."""

    @web.authenticated
    async def post(self) -> None:
        try:
            path = self.get_argument("path")
        except web.MissingArgumentError:
            path = (self.get_json_body() or {}).get("path", "")
        root = Path(self.settings["server_root_dir"]).resolve()
        target = (root / path).resolve()
        if not target.is_relative_to(root):
            raise web.HTTPError(403, "Access denied: path outside allowed directory")
        if not target.is_file():
            self.finish(json.dumps(failure(f"There is no notebook at {path}: was it renamed or deleted?")))
            return
        if _one_at_a_time.locked():
            self.log.info("Validate of %s waits for the one already running", path)
        async with _one_at_a_time:
            answer = await validate(target)
        self.finish(json.dumps(answer))


class VersionHandler(JupyterHandler):
    """GET /nbgrader_version: the front end checks that it matches the server."""

    @web.authenticated
    def get(self) -> None:
        if self.get_argument("version") != nbgrader_version:
            self.finish(json.dumps({"success": False, "message": (
                f"The Validate button (nbgrader {self.get_argument('version')}) does not match the server "
                f"(nbgrader {nbgrader_version}); please tell your instructor.")}))
        else:
            self.finish(json.dumps({"success": True}))


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": __name__}]


def _load_jupyter_server_extension(server_app) -> None:
    web_app = server_app.web_app
    base = web_app.settings["base_url"]
    web_app.settings["server_root_dir"] = server_app.root_dir
    web_app.add_handlers(".*$", [
        (url_path_join(base, "assignments/validate"), ValidateHandler),
        (url_path_join(base, "nbgrader_version"), VersionHandler),
    ])
    server_app.log.info("Validate runs in a child process, at most %d s", SECONDS)
