"""The service's doorbell: an idle worker looks at the queue when rung, and after its poll when not."""

from __future__ import annotations

import os
import subprocess
import sys
import time

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


def test_a_ring_while_the_worker_is_busy_waits_for_its_next_look_and_counts_once():
    bells = Doorbells()
    process = waiting_worker(bells, 60)
    bells.ring()
    bells.ring()
    process.stdin.write("go\n")
    process.stdin.flush()
    out, _ = process.communicate(timeout=30)
    assert out == "True\n"

    reader, writer = os.pipe()
    bell = Doorbell(reader)
    os.write(writer, b"!!!")
    assert bell.wait(5) is True
    assert bell.wait(0.05) is False  # the three rings were one look at the queue


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
