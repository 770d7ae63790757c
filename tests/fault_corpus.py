"""Submissions that try to fool, crash or confuse the autograder, with what each deserves.

Each ``Fault`` makes the bytes of one submitted ``unet.ipynb`` from the
release notebook and the reference solutions, and states the exact points
per exercise and, for each hidden test cell that must fail, words its
message must contain.  Points: conv_block 30, upsampling_block 30,
unet_model 40.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader.course import nbgrader_meta, reference_solutions
from grader.dev.examples import Bug, fill
from tests.socket_swap import SWAP

FULL = {"conv_block": 30.0, "upsampling_block": 30.0, "unet_model": 40.0}
CONV = ["test_conv_block_default", "test_conv_block_options"]
UP = ["test_upsampling_layers", "test_upsampling_wiring"]
UNET = ["test_unet_encoder", "test_unet_decoder"]


@dataclass(frozen=True)
class Fault:
    name: str
    make: Callable[[NotebookNode, dict], bytes]
    scores: dict[str, float]
    # grade_id -> words its failure message must contain; every other hidden test cell must pass.
    messages: dict[str, str] = field(default_factory=dict)
    # Other files handed in next to the notebook.
    extra: dict[str, bytes] = field(default_factory=dict)


def _bytes(nb: NotebookNode) -> bytes:
    return nbformat.writes(nb).encode()


def _after(nb: NotebookNode, grade_id: str, *sources: str) -> NotebookNode:
    """``nb`` with new code cells right after the cell ``grade_id``."""
    nb = copy.deepcopy(nb)
    index = next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("grade_id") == grade_id)
    nb.cells[index + 1:index + 1] = [new_code_cell(s) for s in sources]
    return nb


def _reference(release: NotebookNode) -> NotebookNode:
    return fill(release, reference_solutions())


def _with(exercise: str, old: str, new: str) -> Callable[[NotebookNode], NotebookNode]:
    return lambda release: fill(release, Bug(exercise, old, new, "").apply(reference_solutions()))


def _mark(messages: list[str], words: str) -> dict[str, str]:
    return dict.fromkeys(messages, words)


def _zero(words: str) -> dict[str, str]:
    return _mark(CONV + UP + UNET, words)


NOTHING = dict.fromkeys(FULL, 0.0)
# Where, in the course folder, the hardening test listens for a grader that follows the socket_swap's links.
HOST_SOCKET = "host.sock"
FIRST_CONV = 'Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(inputs)'

TOLERATED_CONV = '''# My own helper, comments and names: all allowed.
def _two_convs(x, filters):
    for _ in range(2):
        x = Conv2D(filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(x)
    return x


def conv_block(inputs=None, n_filters=32, dropout_prob=0, max_pooling=True):
    print("building a block with", n_filters, "filters")  # an extra print
    features = _two_convs(inputs, n_filters)
    if dropout_prob > 0:
        features = Dropout(dropout_prob)(features)
    pooled = MaxPooling2D((2, 2))(features) if max_pooling else features
    return pooled, features
'''

CHEAT = '''import builtins, test_utils
test_utils.comparator = lambda *args, **kwargs: print("All tests passed!")
test_utils.summary = lambda model: []
comparator, summary = test_utils.comparator, test_utils.summary
tf.keras.Model.count_params = lambda self: 8640471
try:
    import grader.engine.checks as checks
    checks.judge = lambda *args: "passed"
except ImportError as err:
    print("cannot import the checks:", err)
print("All tests passed!")
'''

SNOOP = '''import os, socket
for path in ["{root}/grader/engine/checks.py", "{root}/gradebook.db", "{root}/notebooks/unet_segmentation/unet.ipynb",
             "{root}/submitted", "/etc/shadow"]:
    try:
        os.listdir(path) if os.path.isdir(path) else open(path, "rb").read(1)
        print("SNOOP-READ", path)
    except OSError as err:
        print("SNOOP-DENIED", path, type(err).__name__)
try:
    socket.create_connection(("1.1.1.1", 80), timeout=2)
    print("SNOOP-NET open")
except OSError as err:
    print("SNOOP-NET closed", type(err).__name__)
for path in ["{root}/pwned.txt", "/usr/pwned.txt"]:
    try:
        open(path, "w").write("x")
        print("SNOOP-WROTE", path)
    except OSError as err:
        print("SNOOP-NOWRITE", path, type(err).__name__)
'''


def _edited_tests(release: NotebookNode) -> NotebookNode:
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade"):
            cell.source = 'print("All tests passed!")'
    return nb


def _deleted_and_moved(release: NotebookNode) -> NotebookNode:
    nb = _reference(release)
    kept = [c for c in nb.cells if not nbgrader_meta(c).get("grade")]
    # Move the locked introduction to the very end, too.
    moved = [c for c in kept if nbgrader_meta(c).get("grade_id") == "intro"]
    nb.cells = [c for c in kept if c not in moved] + moved
    return nb


def _foreign(_: NotebookNode) -> bytes:
    nb = new_notebook(cells=[new_markdown_cell("# Homework 2: linear regression"), new_code_cell("w = 3\nprint(w)")])
    return _bytes(nb)


def corpus(course_root: str) -> list[Fault]:
    """Every fault, with the paths of the course at ``course_root`` for the snooping one."""
    return [
        Fault("ok_reference", lambda r: _bytes(_reference(r)), FULL),
        Fault("ok_tolerated",
              lambda r: _bytes(_after(fill(r, {**reference_solutions(), "conv_block": TOLERATED_CONV}),
                                      "conv_block", 'print("my extra cell")\nnotes = "anything"')),
              FULL),
        Fault("ok_huge_output",
              lambda r: _bytes(_after(_reference(r), "conv_block", "for _ in range(20000):\n    print('x' * 1000)")),
              FULL),
        Fault("ok_snoop", lambda r: _bytes(_after(_reference(r), "conv_block", SNOOP.format(root=course_root))),
              FULL),
        Fault("ok_shadow_files", lambda r: _bytes(_reference(r)), FULL,
              extra=dict.fromkeys(["ipykernel_launcher.py", "sitecustomize.py"], b"import os\nos._exit(0)\n")),
        Fault("ok_deleted_tests", lambda r: _bytes(_deleted_and_moved(r)), FULL),
        Fault("cheat_monkeypatch", lambda r: _bytes(_after(r, "conv_block", CHEAT)), NOTHING,
              _zero("NotImplementedError")),
        Fault("cheat_edited_tests", lambda r: _bytes(_edited_tests(r)), NOTHING, _zero("NotImplementedError")),
        Fault("signature_changed",
              lambda r: _bytes(_with("conv_block", "n_filters=32, dropout_prob=0,", "filters=32, dropout_prob=0,")(r)),
              {**FULL, "conv_block": 0.0}, _mark(CONV, "conv_block's signature was changed")),
        Fault("renamed_function",
              lambda r: _bytes(_with("upsampling_block", "def upsampling_block(", "def upsample_block(")(r)),
              {**FULL, "upsampling_block": 0.0},
              _mark(UP, "upsampling_block is not defined")
              | {UP[0]: "Your upsampling_block cell defines upsample_block instead"}),
        Fault("global_variable",
              lambda r: _bytes(_after(_with("conv_block", FIRST_CONV, FIRST_CONV.replace(", 3,", ", KERNEL,"))(r),
                                      "conv_block", "KERNEL = 3")),
              {**FULL, "conv_block": 0.0}, _mark(CONV, "conv_block uses the global variable 'KERNEL'")),
        Fault("syntax_error", lambda r: _bytes(_with("upsampling_block", "return conv", "return conv)")(r)),
              {**FULL, "upsampling_block": 0.0}, _mark(UP, "SyntaxError")),
        Fault("exception", lambda r: _bytes(_with("conv_block", "def conv_block(",
                                                  "raise RuntimeError('oops')\n\n\ndef conv_block(")(r)),
              {**FULL, "conv_block": 0.0}, _mark(CONV, "RuntimeError: oops")),
        Fault("sys_exit", lambda r: _bytes(_with("conv_block", "def conv_block(",
                                                 "import sys\nsys.exit(2)\n\n\ndef conv_block(")(r)),
              {**FULL, "conv_block": 0.0}, _mark(CONV, "SystemExit")),
        Fault("infinite_loop", lambda r: _bytes(_with("unet_model", "def unet_model(",
                                                      "while True:\n    pass\n\n\ndef unet_model(")(r)),
              {**FULL, "unet_model": 0.0}, _mark(UNET, "did not finish within")),
        Fault("loop_in_function",
              lambda r: _bytes(_with("unet_model", "    inputs = Input(input_size)",
                                     "    while True:\n        pass\n    inputs = Input(input_size)")(r)),
              {**FULL, "unet_model": 0.0}, _mark(UNET, "took longer than the time allowed for one call")),
        Fault("runaway_memory",
              lambda r: _bytes(_with("upsampling_block", "def upsampling_block(",
                                     "hoard = []\nwhile True:\n    hoard.append(bytearray(2**28))\n\n\n"
                                     "def upsampling_block(")(r)),
              {**FULL, "upsampling_block": 0.0}, _mark(UP, "MemoryError")),
        Fault("os_exit", lambda r: _bytes(_with("upsampling_block", "    return conv",
                                                "    return conv\n\n\nimport os\nos._exit(3)")(r)),
              {"conv_block": 30.0, "upsampling_block": 0.0, "unet_model": 0.0},
              _mark(UP + UNET, "is not defined") | _mark(UP, "stopped the kernel: the kernel exited with status 3")),
        # Its kernel's sockets become links to a socket of the host, and their connections are cut; then
        # the notebook goes on (unet_model's cell).
        Fault("socket_swap", lambda r: _bytes(_with("upsampling_block", "    return conv", "    return conv\n\n\n" +
                                                    SWAP.format(host=f"{course_root}/{HOST_SOCKET}", rounds=3))(r)),
              {"conv_block": 30.0, "upsampling_block": 0.0, "unet_model": 0.0},
              _mark(UP + UNET, "is not defined") | _mark(UP, "stopped the kernel: the kernel cut its connection")),
        Fault("malformed_json", lambda r: b'{"cells": [{"cell_type": "code", "source": "x = ',
              NOTHING, _zero("not a readable notebook")),
        Fault("empty_file", lambda r: b"", NOTHING, _zero("The submitted notebook file is empty")),
        Fault("another_assignment", _foreign, NOTHING, _zero("none of the assignment's cells")),
    ]
