"""A throw-away course hub for the tests: real unix accounts, a real JupyterHub on localhost.

``running_hub`` sets one up with ``hub.provision`` (the code ``make hub``
runs), under a fresh state folder and account names with a random prefix,
starts JupyterHub, and on the way out stops it and deletes the accounts and
the state, even when a test failed.  Accounts left by a run that was killed
outright are deleted by the next run (their comment names the process).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import requests

from grader.engine import cgroups
from hub import accounts, provision
from hub.__main__ import hub_command
from hub.grade_on_submit.policy import FILE_NAME as POLICY_FILE
from hub.layout import DEFAULT_STATE, HubLayout
from hub.provision import ROOT

TAG = "unet-hub test account"
HUB_ENV = Path(os.environ.get("UNET_HUB_ENV", DEFAULT_STATE / "env"))


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def remove_stale_accounts() -> None:
    """Delete test accounts whose test run (named in their comment) is no longer alive."""
    for name in accounts.tagged_users(TAG):
        tag = accounts.tag_of(name) or ""
        pid = int(tag.rsplit("pid=", 1)[1]) if "pid=" in tag else 0
        if pid and Path(f"/proc/{pid}").exists():
            continue
        accounts.remove_user(name, tag)


DONE_MARK = "TERMINAL-42-DONE"


class HubSession:
    """One person logged in through the hub's login page, with plain HTTP (cookies as a browser keeps them)."""

    def __init__(self, hub: RunningHub, user: str):
        self.hub, self.user, self.http = hub, user, requests.Session()
        self.http.get(f"{hub.url}/hub/login", timeout=30)
        response = self.http.post(f"{hub.url}/hub/login", timeout=180, data={
            "username": user, "password": hub.passwords[user], "_xsrf": self.http.cookies.get("_xsrf", path="/hub/")})
        deadline = time.monotonic() + 180
        # After logging in, the hub starts the server and then sends the browser to it.
        while "/user/" not in response.url or "spawn-pending" in response.url:
            assert time.monotonic() < deadline, f"{user}'s server did not start: {response.url}"
            time.sleep(1)
            response = self.http.get(f"{hub.url}/hub/user/{user}/lab", timeout=60)
        assert response.ok, (user, response.status_code, response.url)

    def _xsrf(self, prefix: str) -> dict[str, str]:
        value = self.http.cookies.get("_xsrf", path=prefix) or self.http.cookies.get("_xsrf", path="/hub/")
        return {"X-XSRFToken": value or ""}

    def server(self, method: str, path: str, **kw) -> requests.Response:
        """A request to this person's own Jupyter server (``path`` after ``/user/<name>/``)."""
        prefix = f"/user/{self.user}/"
        return self.http.request(method, f"{self.hub.url}{prefix}{path}", headers=self._xsrf(prefix),
                                 timeout=kw.pop("timeout", 60), **kw)

    def get(self, path: str, **kw) -> requests.Response:
        """A GET of any path on the hub, with this person's cookies."""
        return self.http.get(f"{self.hub.url}{path}", timeout=kw.pop("timeout", 60), **kw)

    def raw_get(self, path: str) -> tuple[int, str]:
        """GET ``path`` exactly as written (no dot segments removed), with this person's cookies."""
        connection = http.client.HTTPConnection("127.0.0.1", self.hub.layout.port, timeout=30)
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.http.cookies if c.name != "_xsrf")
        connection.request("GET", path, headers={"Cookie": cookies})
        response = connection.getresponse()
        return response.status, (response.getheader("Location") or "") + response.read().decode(errors="replace")

    def terminal(self, script: str, timeout: float = 60) -> str:
        """Type ``script`` into a new terminal of this person's server (as in JupyterLab) and return what it shows.

        It is done when the shell prints ``DONE_MARK``: typed as arithmetic, the
        shell's echo of what is typed (which a long line may wrap or redraw) never holds it.
        """
        import websocket

        created = self.server("POST", "api/terminals")
        assert created.ok, created.text
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.http.cookies if c.name != "_xsrf")
        url = self.hub.url.replace("http", "ws", 1) + f"/user/{self.user}/terminals/websocket/{created.json()['name']}"
        connection = websocket.create_connection(url, cookie=cookies, origin=self.hub.url, timeout=timeout)
        shown = ""

        def read_until(mark: str) -> None:
            nonlocal shown
            deadline = time.monotonic() + timeout
            while mark not in shown and time.monotonic() < deadline:
                message = json.loads(connection.recv())
                if message[0] == "stdout":
                    shown += message[1]

        try:
            # Typed before the shell has started, a line can be echoed by the terminal and then lost
            # (seen on a busy machine): type only once the prompt is there.
            read_until("$ ")
            connection.send(json.dumps(["stdin", script + "; echo TERMINAL-$((40 + 2))-DONE\r"]))
            read_until(DONE_MARK)
        finally:
            connection.close()
            self.server("DELETE", f"api/terminals/{created.json()['name']}")
        return shown

    def api_token(self) -> str:
        """A hub API token of this person, made as the hub's token page makes one."""
        response = self.http.post(f"{self.hub.url}/hub/api/users/{self.user}/tokens", json={"note": "test"},
                                  headers=self._xsrf("/hub/"), timeout=30)
        assert response.status_code == 201, response.text
        return response.json()["token"]


class RunningHub:
    """A hub started by ``running_hub``: its layout, URL and demo passwords."""

    def __init__(self, layout: HubLayout, passwords: dict[str, str], process: subprocess.Popen, log: Path):
        self.layout, self.passwords, self.process, self.log = layout, passwords, process, log
        self.url = layout.url

    def login(self, user: str) -> HubSession:
        return HubSession(self, user)

    def as_user(self, user: str, command: list[str], cwd: Path | None = None, timeout: float = 600,
                token: str | None = None) -> subprocess.CompletedProcess:
        """Run ``command`` as unix account ``user`` with the environment its own server gives a terminal.

        With ``token`` (one of the user's hub API tokens), also the variables
        that tell nbgrader it runs on the hub, as in a terminal of the server.
        """
        home = Path(f"/home/{user}")
        hub_env = {"JUPYTERHUB_API_TOKEN": token, "JUPYTERHUB_USER": user,
                   "JUPYTERHUB_API_URL": f"http://127.0.0.1:{self.layout.hub_api_port}/hub/api"} if token else {}
        env = {**hub_env,
            "PATH": f"{self.layout.env / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": self.layout.pythonpath("student"),
            "JUPYTER_CONFIG_PATH": self.layout.config_path("student"),
            "CARLA_DATA_DIR": str(self.layout.data),
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
        return accounts.run_as(user, command, cwd=cwd or home, env=env, timeout=timeout, check=False)

    def nbgrader_as(self, user: str, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
        return self.as_user(user, [str(self.layout.env / "bin" / "python"), "-m", "nbgrader", *args], token=token)

    def grader(self, *args: str) -> subprocess.CompletedProcess:
        """``nbgrader ARGS`` as the course's grader account, as an instructor runs it in the course service."""
        return provision.nbgrader_as_grader(self.layout, *args)

    def restart(self, data: Path) -> None:
        """Stop the hub and start it again as ``make hub`` would (set-up included), on the same state."""
        _stop(self.process)
        self.passwords = provision.setup(self.layout, data)
        self.process = _start(self.layout, self.log)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def write_policy(layout: HubLayout, policy: dict) -> None:
    """Write the course's grading-on-submit policy as the instructor would, as the grader account."""
    script = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"
    accounts.run_as(layout.grader, [str(layout.env / "bin" / "python"), "-c", script,
                                    str(layout.course / POLICY_FILE), json.dumps(policy)], cwd=layout.course, env={})


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/hub/api", timeout=5) as response:
                if json.load(response).get("version"):
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the hub did not start:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.5)


def _start(layout: HubLayout, log: Path) -> subprocess.Popen:
    command, env = hub_command(layout)
    with open(log, "ab") as out:
        process = subprocess.Popen(command, env=env, cwd=layout.hub_dir, stdout=out, stderr=subprocess.STDOUT)
    _wait_until_up(layout.url, process, log)
    return process


def _stop(process: subprocess.Popen) -> None:
    # JupyterHub stops the servers and the proxy on SIGTERM; SIGINT ends a shutdown that lingers.
    for sig, wait in [(signal.SIGTERM, 40), (signal.SIGINT, 10), (signal.SIGKILL, 10)]:
        if process.poll() is not None:
            return
        process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait)


@contextlib.contextmanager
def running_hub(data: Path, students: list[str], visitors: list[str], validate_seconds: int = 120,
                artifacts: Path | None = None, policy: dict | None = None,
                prepare: Callable[[HubLayout], None] | None = None, **settings) -> Iterator[RunningHub]:
    """Set up and start a hub with instructor ``teacher``, ``students`` on the roster and ``visitors`` not.

    ``policy`` replaces the course's grading-on-submit policy (``grade_on_submit.json``) before the
    hub starts, and ``prepare`` is called with the set-up layout then; ``settings`` are further ``HubLayout`` fields.
    """
    remove_stale_accounts()
    # A home file system of its own per account, as on a real hub, but small: six of them per test hub.
    settings.setdefault("home_bytes", 512 * 2**20)
    # Not in /tmp or /var/tmp, which every student's server has a private one of (hub/servers).
    Path("/srv").mkdir(exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="unet-hub-test-", dir="/srv"))
    port, hub_api, proxy_api, service, grading = free_ports(5)
    layout = HubLayout(state=state, env=HUB_ENV, port=port, hub_api_port=hub_api, proxy_api_port=proxy_api,
                       service_port=service, grading_port=grading, prefix=f"uh{secrets.token_hex(2)}-",
                       instructors=["teacher"], students=students, visitors=visitors,
                       account_tag=f"{TAG} pid={os.getpid()}", validate_seconds=validate_seconds, **settings)
    process = running = None
    log = state / "jupyterhub.log"
    # Set-up closes the repository to other accounts, as it should on a real machine; the tests
    # leave it as they found it, since later tests run this repository's files as throw-away users.
    repository_mode = stat.S_IMODE(ROOT.stat().st_mode)
    try:
        passwords = provision.setup(layout, data)
        if policy is not None:
            write_policy(layout, policy)
        if prepare is not None:
            prepare(layout)
        process = _start(layout, log)
        running = RunningHub(layout, passwords, process, log)
        yield running
    finally:
        if process is not None:
            _stop(running.process if running else process)
        # A hub that had to be killed leaves its proxy (root's) running; the accounts' processes go with them.
        subprocess.run(["pkill", "-KILL", "-f", f"configurable-http-proxy .*--api-port {layout.proxy_api_port}( |$)"],
                       capture_output=True)
        if artifacts is not None and log.exists():
            artifacts.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, artifacts / "jupyterhub.log")
        os.chmod(ROOT, repository_mode)
        # Accounts the hub made itself (people an LMS sent) carry the same tag.
        for name in dict.fromkeys([layout.grader, *layout.login_accounts, *accounts.tagged_users(layout.account_tag)]):
            accounts.remove_user(name, layout.account_tag)
        shutil.rmtree(state, ignore_errors=True)
        cgroups.remove_delegated(layout.grader_cgroup, layout.grader_cgroups)
