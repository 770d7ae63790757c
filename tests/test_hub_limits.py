"""One student cannot take the hub from the others: each server runs in limits of its own (hub/servers).

A hub of its own, with small limits so the test is quick: mallory, from a
terminal of her own server, starts a fork bomb, a memory hog and a disk
filler (her home, /tmp, /var/tmp, /dev/shm), each of which stops by itself.
While they run, alice logs in, fetches, validates and submits, and the
grader collects and autogrades her work: 100.  Mallory's group shows that
its limits were hit, her home and /tmp are full at their own sizes, the
disk shared with the exchange and the gradebook lost nothing to her, and
stopping her server leaves nothing of hers running.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest

from grader.course import NOTEBOOK, reference_solutions
from grader.dev.examples import fill
from grader.engine import cgroups
from hub.layout import ASSIGNMENT
from hub.servers import group_name, homes
from tests.hub_harness import HUB_ENV, running_hub

pytestmark = [pytest.mark.slow, pytest.mark.hub]

PROXY = Path(__file__).resolve().parent.parent / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
MISSING = [why for why, missing in [
    ("not root (the hub makes unix accounts)", os.geteuid() != 0),
    ("no hub environment: `make hub-deps`", not (HUB_ENV / "bin" / "jupyterhub").exists()),
    ("no configurable-http-proxy: `make hub-deps`", not PROXY.exists()),
] if missing]
if MISSING and not os.environ.get("CI"):
    pytest.skip("; ".join(MISSING), allow_module_level=True)

COURSE = "unet-segmentation"
MiB = 2**20
LIMITS = {"server_memory_bytes": 2560 * MiB, "server_processes": 200, "server_cpus": 1.0,
          "server_tmp_bytes": 128 * MiB, "home_bytes": 192 * MiB}
ATTACK_SECONDS = 150
# Each stops by itself; started with setsid so that closing the terminal leaves them running.
FORK_BOMB = f"""
import os, time
end = time.time() + {ATTACK_SECONDS}
while time.time() < end:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)
"""
MEMORY_HOG = f"""
import time
end, held = time.time() + {ATTACK_SECONDS}, []
while time.time() < end:
    held.append(bytearray(64 * 2**20))
"""
DISK_FILLER = "for place in $HOME /tmp /var/tmp /dev/shm; do dd if=/dev/zero of=$place/fill bs=1M; done\n"
SHARED_SCRATCH = [Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")]


@pytest.fixture(scope="module")
def hub(small_data):
    assert not MISSING, MISSING
    with running_hub(small_data, students=["mallory", "alice"], visitors=[], policy={}, **LIMITS) as running:
        yield running


def post(session, action: str) -> dict:
    response = session.server("POST", f"assignments/{action}", data={"course_id": COURSE, "assignment_id": ASSIGNMENT})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"], answer
    return answer


def group_counters(account: str) -> dict[str, int]:
    group = cgroups.named_group(group_name(account))
    assert group is not None, f"{account}'s server has no control group"
    usage = group.usage()
    return {"pids": len(group.pids()), "process_limit_hits": usage.process_limit_hits, "oom_kills": usage.oom_kills}


def test_a_fork_bomb_a_memory_hog_and_a_disk_filler_leave_the_others_working(hub):
    mallory, alice = hub.layout.account("mallory"), hub.layout.account("alice")
    attacker = hub.login(mallory)
    token = attacker.api_token()  # while her server still answers
    for name, text in [("fill.sh", DISK_FILLER), ("hog.py", MEMORY_HOG), ("bomb.py", FORK_BOMB)]:
        saved = attacker.server("PUT", f"api/contents/{name}", json={"type": "file", "format": "text",
                                                                    "content": text})
        assert saved.status_code in (200, 201), saved.text
    attacker.terminal("(setsid sh fill.sh >/dev/null 2>&1 &); (setsid python3 hog.py >/dev/null 2>&1 &); "
                      "sleep 3; (setsid python3 bomb.py >/dev/null 2>&1 &)", timeout=120)
    time.sleep(10)
    during = group_counters(mallory)

    # Meanwhile, alice: her server starts, Validate tells the truth, submitting and grading work.
    started = time.monotonic()
    student = hub.login(alice)
    assert post(student, "fetch")["success"]
    release = nbformat.read(hub.layout.exchange / COURSE / "outbound" / ASSIGNMENT / f"{NOTEBOOK}.ipynb",
                            as_version=4)
    path = f"{ASSIGNMENT}/{NOTEBOOK}.ipynb"
    saved = student.server("PUT", f"api/contents/{path}", json={"type": "notebook",
                                                                 "content": fill(release, reference_solutions())})
    assert saved.status_code in (200, 201), saved.text
    validated = student.server("POST", "assignments/validate", data={"path": path}, timeout=400).json()
    assert validated == {"success": True, "value": {}}, validated  # nothing failed, nothing errored
    assert post(student, "submit")["success"]
    assert hub.grader("collect", ASSIGNMENT).returncode == 0
    graded = hub.grader("autograde", ASSIGNMENT, "--student", alice)
    assert graded.returncode == 0, graded.stdout + graded.stderr
    export = hub.grader("export", "--to", str(hub.layout.course / "grades-limits.csv"))
    assert export.returncode == 0
    alice_took = time.monotonic() - started
    after = group_counters(mallory)
    print(f"\nmallory's group while attacking: {during}, after alice's round: {after}; "
          f"alice's log-in, validate, submit and grading took {alice_took:.0f} s")

    # Mallory's limits were hit, and held: processes capped, the hog killed, home and /tmp full at their sizes.
    assert max(during["pids"], after["pids"]) <= LIMITS["server_processes"]
    assert after["process_limit_hits"] > 0
    assert after["oom_kills"] > 0
    used, size = homes.usage(Path(f"/home/{mallory}"))
    assert size <= LIMITS["home_bytes"] and used > 0.9 * size
    # Nothing she wrote is on a disk the others share: her home's image was allocated in full at set-up.
    image = homes.image_of(mallory, hub.layout.homes)
    assert image.stat().st_blocks * 512 <= LIMITS["home_bytes"] + MiB
    assert not any((place / "fill").exists() for place in SHARED_SCRATCH)

    # Stopping her server stops everything she started, and removes her group.
    stopped = attacker.http.delete(f"{hub.url}/hub/api/users/{mallory}/server",
                                   headers={"Authorization": f"token {token}"}, timeout=120)
    assert stopped.status_code in (202, 204), stopped.text
    deadline = time.monotonic() + 120
    while cgroups.named_group(group_name(mallory)) is not None:
        assert time.monotonic() < deadline, "mallory's group outlived her server"
        time.sleep(1)
    grades = (hub.layout.course / "grades-limits.csv").read_text()
    row = next(line for line in grades.splitlines() if f",{alice}," in f",{line},")
    assert ",100.0," in f",{row},", grades
