"""The service's doorbell: an idle worker looks at the queue when rung, and after its poll when not."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub.grade_on_submit.doorbell import VARIABLE, Doorbell, Doorbells

# A worker's idle wait, in a process of its own as the service starts it: prints whether it was rung.
WAIT = """
from hub.grade_on_submit.doorbell import Doorbell
import sys
bell = Doorbell.from_environment()
print("ready", flush=True)
sys.stdin.readline()
print(bell.wait(float(sys.argv[1])), flush=True)
"""


def waiting_worker(bells: Doorbells, seconds: float) -> subprocess.Popen:
    reader = bells.new("worker-1")
    try:
        process = subprocess.Popen([sys.executable, "-c", WAIT, str(seconds)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, pass_fds=(reader,),
                                   env={**os.environ, VARIABLE: str(reader)})
    finally:
        os.close(reader)
    assert process.stdout.readline() == "ready\n"
    return process


def test_a_worker_in_another_process_wakes_when_rung_and_not_before():
    bells = Doorbells()
    process = waiting_worker(bells, 60)
    process.stdin.write("go\n")
    process.stdin.flush()
    time.sleep(0.3)
    assert process.poll() is None  # still waiting: nothing rang
    bells.ring()
    out, _ = process.communicate(timeout=30)  # long before its 60 s poll
    assert out == "True\n"
    bells.close("worker-1")


def test_a_ring_while_the_worker_is_busy_waits_for_its_next_look_and_counts_once():
    bells = Doorbells()
    process = waiting_worker(bells, 60)
    bells.ring()
    bells.ring()
    process.stdin.write("go\n")
    process.stdin.flush()
    out, _ = process.communicate(timeout=30)
    assert out == "True\n"
    bells.close("worker-1")

    reader, writer = os.pipe()
    bell = Doorbell(reader)
    os.write(writer, b"!!!")
    assert bell.wait(5) is True
    assert bell.wait(0.05) is False  # the three rings were one look at the queue
    os.close(reader)
    os.close(writer)


def test_without_a_pipe_or_once_the_service_is_gone_the_worker_polls():
    started = time.monotonic()
    assert Doorbell(None).wait(0.2) is False
    assert time.monotonic() - started >= 0.2
    reader, writer = os.pipe()
    bell = Doorbell(reader)
    os.close(writer)
    started = time.monotonic()
    # A closed pipe is always readable: the wait still lasts its poll, so a worker never spins.
    assert bell.wait(0.2) is False
    assert time.monotonic() - started >= 0.2
    os.close(reader)


def test_a_number_that_is_no_pipe_is_not_used_and_the_name_is_not_passed_on(tmp_path, monkeypatch):
    with open(tmp_path / "a-file", "w") as other:
        monkeypatch.setenv(VARIABLE, str(other.fileno()))
        assert Doorbell.from_environment().fd is None
        assert VARIABLE not in os.environ
        assert os.get_blocking(other.fileno())  # the file it named was left as it was
    monkeypatch.setenv(VARIABLE, "987654")  # not open at all
    assert Doorbell.from_environment().fd is None


def test_a_pipe_numbered_above_1024_works():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1600:
        pytest.skip(f"at most {hard} open files here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1600), hard))
    reader, writer = os.pipe()
    try:
        high = os.dup2(reader, 1500)
        bell = Doorbell(high)
        assert bell.wait(0.05) is False
        os.write(writer, b"!")
        assert bell.wait(5) is True
    finally:
        for fd in (reader, writer, 1500):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_worker_started_again_gets_a_new_pipe_and_the_old_one_is_closed():
    bells = Doorbells()
    first = bells.new("worker-1")
    second = bells.new("worker-1")
    assert os.read(first, 1) == b""  # its writer was closed: the old worker's wait sees the end
    bells.ring()
    assert os.read(second, 1) == b"!"
    bells.close("worker-1")
    assert os.read(second, 1) == b""
    bells.ring()  # nobody left to ring: nothing happens
    os.close(first)
    os.close(second)


# Stands in for `python -m hub.grade_on_submit.worker NAME` (it is given the same arguments): waits on the
# pipe the service handed it and writes down whether it was rung.
FAKE_WORKER = """#!{python}
import sys
sys.path.insert(0, {code!r})
from hub.grade_on_submit.doorbell import Doorbell
bell = Doorbell.from_environment()
with open(sys.argv[-1] + ".started", "w") as out:
    out.write(str(bell.fd is not None))
rung = bell.wait(60)
with open(sys.argv[-1] + ".rung", "w") as out:
    out.write(str(rung))
"""


def test_the_service_hands_each_worker_its_pipe_and_rings_them_all(tmp_path, monkeypatch):
    from hub.grade_on_submit.policy import FILE_NAME
    from hub.grade_on_submit.service import GradingService
    from hub.grade_on_submit.settings import Settings

    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_WORKER.format(python=sys.executable, code=str(Path(__file__).resolve().parent.parent)))
    fake.chmod(0o755)
    (tmp_path / FILE_NAME).write_text(json.dumps({"hw": {"grade_on_submit": True}}))
    service = GradingService(Settings(tmp_path, tmp_path / "inbound", f"sqlite:///{tmp_path / 'queue.sqlite'}",
                                      workers=2))
    monkeypatch.setattr(sys, "executable", str(fake))
    try:
        service.supervise()
        started = [tmp_path / f"worker-{n}.started" for n in (1, 2)]
        deadline = time.monotonic() + 30
        while not all(p.exists() for p in started) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p.read_text() for p in started] == ["True", "True"]
        service.doorbells.ring()
        for process in service.workers.values():
            assert process.wait(timeout=30) == 0  # long before its 60 s poll
        assert [(tmp_path / f"worker-{n}.rung").read_text() for n in (1, 2)] == ["True", "True"]
    finally:
        service.stop()
