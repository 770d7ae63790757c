"""A grading process ends without a last walk over its objects (``grader.engine.exit_quickly``)."""

from __future__ import annotations

import subprocess
import sys

from grader.course import ROOT

# A reference cycle whose finalizer says when the collector freed it, and a file written and closed as grading does.
PROGRAM = """
import sys
sys.path.insert(0, {root!r})
if {install}:
    from grader.engine.exit_quickly import install
    install()
    install()  # twice: still one handler


class Node:
    def __del__(self):
        print("collected at exit", flush=True)


node = Node()
node.me = node
with open({path!r}, "w") as f:
    f.write("graded")
print("done", flush=True)
"""


def run(tmp_path, install: bool) -> str:
    path = tmp_path / f"out-{install}.txt"
    program = PROGRAM.format(root=str(ROOT), install=install, path=str(path))
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert path.read_text() == "graded"
    return result.stdout


def test_the_last_collection_leaves_the_processs_objects_alone(tmp_path):
    assert run(tmp_path, install=False).split() == ["done", "collected", "at", "exit"]
    assert run(tmp_path, install=True).split() == ["done"]


def test_the_course_configuration_installs_it():
    """A process that reads nbgrader_config.py (every nbgrader command here) ends without the last walk."""
    program = (f"from traitlets.config.loader import PyFileConfigLoader\n"
               f"PyFileConfigLoader('nbgrader_config.py', path={str(ROOT)!r}).load_config()\n"
               "class Node:\n    def __del__(self):\n        print('collected at exit', flush=True)\n"
               "node = Node()\nnode.me = node\nprint('done', flush=True)\n")
    loaded = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == ["done"]
