"""The Validate button's server side, run so that it cannot hang or take the server down.

nbgrader's own handler validates inside the request, on the server's only
thread: the student's whole server (kernels, saving, the file browser) stops
answering until the notebook has run, and a slow notebook ends in a proxy's
502 with no message (nbgrader issue #1452).  This extension serves the same
URLs for the same front end, but runs ``validate_worker`` in a child process,
waits without blocking the server, stops the child after ``seconds`` (its
whole process group; a kernel forked from its template ends with it, one
started as usual ends when it sees its parent gone) and always answers with
JSON that the Validate dialog shows as a message.

The child stays between presses (``ValidateKeeper``) for ``keep_seconds``
after the last one: it keeps a kernel template that has imported TensorFlow
(``ValidateExecute.template``), so a student who fixes a cell and presses
again does not wait for the import again.  Then it ends and its memory is
the server's again.

Enable it instead of ``nbgrader.server_extensions.validate_assignment``; its
time limit comes from ``UNET_VALIDATE_SECONDS`` (default 120), how long the
child stays from ``UNET_VALIDATE_KEEP_SECONDS`` (default 600; 0: a child per
press).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from nbgrader import __version__ as nbgrader_version
from tornado import web

from .validate_worker import ANSWER

SECONDS = int(os.environ.get("UNET_VALIDATE_SECONDS", "120"))
KEEP_SECONDS = float(os.environ.get("UNET_VALIDATE_KEEP_SECONDS", "600"))
# Validate runs one at a time per server: a student who presses the button
# again while it runs waits for the first run instead of starting a second
# TensorFlow.
_one_at_a_time = asyncio.Lock()
# The lines of the child's stderr kept for a message when it fails.
_STDERR_LINES = 40
# The longest answer line read (the failed cells' sources and errors): the rest fails the press with a message.
ANSWER_BYTES = 64 * 2**20


def failure(message: str) -> dict:
    """An answer the Validate dialog shows as it is."""
    return {"success": False, "value": message}


def _too_long(path: Path, seconds: float) -> dict:
    return failure(f"Validate was stopped after {seconds:g} seconds: running {path.name} takes too long. "
                   "Is a cell stuck in a loop, or waiting for input()? Fix it, restart the kernel, run all "
                   "cells to check, then press Validate again.")


def _could_not_check(path: Path, why: str, details: list[str]) -> dict:
    return failure(f"Validate could not check {path.name} ({why}). Is it a notebook of this assignment? "
                   "Details:\n" + "\n".join(details[-8:]))


class ValidateKeeper:
    """The server's Validate child, started at the first press and kept ``keep_seconds`` after the last.

    One request at a time (the caller holds ``_one_at_a_time``).  A child that
    runs past its limit, or dies, is gone: the next press starts a new one.
    """

    def __init__(self, keep_seconds: float = KEEP_SECONDS, cwd: Path | None = None,
                 log: logging.Logger | None = None) -> None:
        # The child reads nbgrader's configuration from its folder, as the server does from its own.
        self.keep_seconds, self.cwd = keep_seconds, cwd or Path.cwd()
        # What the child says (which notebook, whether its kernels are forked) goes to the server's log too.
        self.log = log or logging.getLogger(__name__)
        self.process: asyncio.subprocess.Process | None = None
        # The end of the child's stderr since the request began, read all the time (a full pipe stops it).
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._stderr_read: asyncio.Task | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._stopped: asyncio.subprocess.Process | None = None
        self._asked = 0

    async def validate(self, path: Path, seconds: float) -> dict:
        """Validate the notebook at ``path`` in the child; the answer nbgrader's front end expects."""
        if self._idle is not None:
            self._idle.cancel()
        try:
            return await self._ask(path, seconds)
        finally:
            if self.process is not None:
                if self.keep_seconds > 0:
                    self._idle = asyncio.get_running_loop().call_later(self.keep_seconds, self.stop)
                else:
                    self.stop()

    async def _ask(self, path: Path, seconds: float) -> dict:
        if self.process is None or self.process.returncode is not None:
            await self._start()
        self._stderr.clear()
        try:
            try:
                await self._send(path)
            except OSError:
                # The child ended while it waited for this press (out of memory, say): a new one takes it.
                await self._ended()
                await self._start()
                await self._send(path)
            assert self.process is not None and self.process.stdout is not None
            answer = await asyncio.wait_for(self._answer(self.process.stdout, self._asked), seconds)
        except TimeoutError:
            self.stop()
            return _too_long(path, seconds)
        except ValueError:  # a line beyond ANSWER_BYTES
            self.stop()
            return _could_not_check(path, "its answer was longer than the "
                                    f"{ANSWER_BYTES // 2**20} MiB the server reads", list(self._stderr))
        except (OSError, EOFError) as err:
            code = await self._ended()
            return _could_not_check(path, f"its process ended, exit status {code}",
                                    [f"{type(err).__name__}: {err}", *self._stderr])
        if "error" in answer:
            return _could_not_check(path, "it could not be read or run",
                                    str(answer["error"]).strip().splitlines())
        return {"success": True, "value": answer["result"]}

    async def _send(self, path: Path) -> None:
        assert self.process is not None and self.process.stdin is not None
        self._asked += 1
        self.process.stdin.write((json.dumps({"path": str(path), "id": self._asked}) + "\n").encode())
        await self.process.stdin.drain()

    async def _start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"{__package__}.validate_worker", "--serve",
            cwd=self.cwd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, limit=ANSWER_BYTES)
        self._stderr = collections.deque(maxlen=_STDERR_LINES)
        self._stderr_read = asyncio.get_running_loop().create_task(
            _read_lines(self.process, self._stderr, self.log))

    @staticmethod
    async def _answer(stdout: asyncio.StreamReader, asked: int) -> dict:
        # Only the answer to this request: a line that looks like one (a notebook's kernel started
        # without the sandbox shares the child's stdout) is passed over like any other output.
        while line := await stdout.readline():
            text = line.decode(errors="replace")
            if text.startswith(ANSWER):
                with contextlib.suppress(ValueError):
                    answer = json.loads(text[len(ANSWER):])
                    if isinstance(answer, dict) and answer.get("id") == asked:
                        return answer
        raise EOFError("the Validate process ended without an answer")

    async def _ended(self) -> int | None:
        """The exit status of the child that stopped answering, once its last words are read."""
        process, self.process = self.process, None
        if process is None:
            return None
        _let_go(process)
        try:
            code = await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            _kill(process)
            code = await process.wait()
        if self._stderr_read is not None:
            await asyncio.wait([self._stderr_read], timeout=2)
        return code

    def stop(self) -> None:
        """End the child and all it started (its kernels and template), if it runs."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        process, self.process = self.process, None
        if process is not None:
            self._stopped = process
            if process.returncode is None:
                _kill(process)

    async def close(self) -> None:
        """``stop``, and wait until the child is gone (for an event loop that ends next)."""
        self.stop()
        if self._stopped is not None:
            await self._stopped.wait()
        if self._stderr_read is not None:
            await asyncio.wait([self._stderr_read], timeout=2)


async def _read_lines(process: asyncio.subprocess.Process, into: collections.deque[str],
                      log: logging.Logger) -> None:
    assert process.stderr is not None
    while True:
        try:
            line = await process.stderr.readline()
        except ValueError:  # a line beyond the limit: asyncio dropped it; read on
            line = b"[a line too long to keep]\n"
        if not line:
            return
        text = line.decode(errors="replace").rstrip()
        into.append(text)
        log.info("Validate (pid %d): %s", process.pid, text[:500])


def _kill(process: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _let_go(process)


def _let_go(process: asyncio.subprocess.Process) -> None:
    # With its stdin closed too, asyncio closes the child's pipes once it has exited.
    if process.stdin is not None:
        process.stdin.close()


_keeper: ValidateKeeper | None = None


async def validate(path: Path, log: logging.Logger, seconds: float = SECONDS) -> dict:
    """Validate the notebook at ``path`` in the server's Validate child; what it says goes to ``log``."""
    global _keeper
    _keeper = _keeper or ValidateKeeper(log=log)
    return await _keeper.validate(path, seconds)


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
            answer = await validate(target, self.log)
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
    server_app.log.info("Validate runs in a child process, at most %d s, kept %g s after a press", SECONDS,
                        KEEP_SECONDS)
