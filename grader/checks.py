"""Hidden checks for the three exercises, judged in the grader's own process.

A check never receives a student's function.  It receives the *evidence*
that ``grader.probe`` collected in the student's (sandboxed) kernel: model
configurations as JSON and the arguments ``unet_model`` passed to the blocks.
The models are rebuilt here from built-in Keras layers only, and compared
with the assignment's specification (shapes, parameter counts, layer
settings, wiring), never with a reference implementation.  Whatever a student
redefines in the kernel (``comparator``, Keras, builtins) cannot reach this
process; a failed check is a ``CheckFailed`` whose message says what to fix.

While ``unet_model`` is probed, ``conv_block`` and ``upsampling_block`` are
replaced by stand-ins, so a mistake in Exercise 1 or 2 costs points there and
not again in Exercise 3.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from grader.probe import NO_DEFAULT, collect, jsonable, ref
from test_utils import comparator, summary, tf

layers = tf.keras.layers

SIGNATURES: dict[str, list[tuple[str, Any]]] = {
    "conv_block": [("inputs", None), ("n_filters", 32), ("dropout_prob", 0), ("max_pooling", True)],
    "upsampling_block": [("expansive_input", NO_DEFAULT), ("contractive_input", NO_DEFAULT), ("n_filters", 32)],
    "unet_model": [("input_size", (96, 128, 3)), ("n_filters", 32), ("n_classes", 23)],
}
# Layers that may not be rebuilt from a student's model, although Keras ships them:
# they carry code rather than settings.
_CODE_LAYERS = {"Lambda", "TFSMLayer"}
# Keras operations that a functional model may hold besides layers, by (module, class):
# keras.ops.concatenate is Keras 3's way of writing what tf.concat did in Keras 2.
_OPERATIONS = {("keras.src.ops.numpy", "Concatenate")}


class CheckFailed(AssertionError):
    """A hidden check found a mistake.

    IPython shows only the message (via ``_render_traceback_``), so a student's
    feedback is the sentence that explains the lost points, not the grader's
    source and stack.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"Check failed: {self}"]


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _signature_text(params: list[tuple[str, Any]]) -> str:
    return ", ".join(name if default == NO_DEFAULT else f"{name}={default!r}" for name, default in params)


def check_function(name: str, info: dict) -> None:
    """The graded function exists under its name, is a function, and keeps its signature."""
    _expect(info.get("defined", False),
            f"{name} is not defined. The grader calls it by this name: keep the name given in the notebook "
            "and run its cell without errors.")
    _expect(info.get("callable", False), f"{name} is not a function.")
    expected = [(arg, jsonable(default)) for arg, default in SIGNATURES[name]]
    found = [(arg, default) for arg, _, default in info.get("signature", [])]
    kinds = {kind for _, kind, _ in info.get("signature", [])}
    _expect(
        found == expected and kinds <= {"POSITIONAL_OR_KEYWORD"},
        f"{name}'s signature was changed: it must be {name}({_signature_text(SIGNATURES[name])}), "
        f"found {name}({_signature_text(found)}). Keep the signature given in the notebook.",
    )


# -- evidence ------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One call of a graded function that the probe makes; ``args`` are JSON data."""

    function: str
    kind: str
    args: dict

    @property
    def key(self) -> str:
        return f"{self.kind}:{json.dumps(self.args, sort_keys=True)}"

    def request(self) -> dict:
        return {"key": self.key, "function": self.function, "kind": self.kind, **self.args}


@dataclass
class Evidence:
    """What the probe reported, with the models rebuilt on first use."""

    data: dict
    _models: dict = field(default_factory=dict)

    def function(self, name: str) -> dict:
        return self.data.get("functions", {}).get(name, {"defined": False})

    def result(self, case: Case, context: str) -> dict:
        """The probe's raw answer for ``case``; an error in the student's code fails the check."""
        answer = self.data.get("cases", {}).get(case.key)
        if answer is None:
            why = self.data.get("incomplete", "no result came back")
            raise CheckFailed(f"{context}: this call could not be tested: {why}.")
        if "error" in answer:
            raise CheckFailed(f"{context}: your code raised {answer['error']}")
        return answer

    def model(self, case: Case, context: str) -> tf.keras.Model:
        """The model built in ``case``, rebuilt here from its configuration."""
        if case.key not in self._models:
            self._models[case.key] = rebuild(self.result(case, context)["model"], context)
        return self._models[case.key]


def rebuild(text: str, context: str) -> tf.keras.Model:
    """A model from its JSON configuration, accepting only built-in Keras layers."""
    try:
        config = json.loads(text)
        entries = config["config"]["layers"]
        if config.get("class_name") != "Functional" or not all(isinstance(e, dict) for e in entries):
            raise ValueError("not a functional model")
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise CheckFailed(f"{context}: the model could not be read back ({type(err).__name__}).") from None
    for entry in entries:
        name = entry.get("class_name")
        allowed = entry.get("module") == "keras.layers" or (entry.get("module"), name) in _OPERATIONS
        if not allowed or name in _CODE_LAYERS:
            raise CheckFailed(
                f"{context}: the model contains {name!r}, which is not one of Keras' built-in layers; "
                "build it from the layers named in the exercise (Conv2D, Dropout, MaxPooling2D, ...)."
            )
    try:
        return tf.keras.models.model_from_json(text)
    except Exception as err:  # noqa: BLE001 - any configuration Keras refuses
        raise CheckFailed(f"{context}: the model could not be rebuilt: {type(err).__name__}: {err}") from None


# -- reading the Keras graph -------------------------------------------------

def producer(tensor) -> Any:
    """The layer whose call returned ``tensor``."""
    return tensor._keras_history.operation


def inputs_of(tensor) -> list:
    """The tensors that were passed to the layer that made ``tensor``."""
    history = tensor._keras_history
    return list(history.operation._inbound_nodes[history.node_index].input_tensors)


def is_concatenation(operation) -> bool:
    """A ``Concatenate`` layer (``concatenate``, ``Concatenate()``) or the ``keras.ops.concatenate`` operation."""
    return isinstance(operation, layers.Concatenate) or type(operation).__name__ == "Concatenate"


def _shape(tensor) -> tuple:
    return tuple(tensor.shape)


def _conv_row(h: int, w: int, c_in: int, f: int) -> list:
    return ["Conv2D", (None, h, w, f), 9 * c_in * f + f, "same", "relu", "HeNormal"]


def _input_row(shape) -> list:
    return ["InputLayer", [(None, *shape)], 0]


def _compare_rows(got: list, expected: list, context: str) -> None:
    """``comparator``, with its success line hidden and its failure put in context."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            comparator(got, expected)
    except AssertionError as err:
        raise CheckFailed(f"{context}: {err}") from None


# -- Exercise 1 --------------------------------------------------------------

def _conv_case(shape, n_filters, dropout, pooling) -> Case:
    return Case("conv_block", "conv_block", {
        "shape": list(shape),
        "kwargs": {"n_filters": n_filters, "dropout_prob": dropout, "max_pooling": pooling},
    })


CONV_DEFAULT_CASES = [
    _conv_case(shape, f, dropout, True)
    for shape, f, dropout in [
        ((96, 128, 3), 32, 0), ((24, 32, 64), 16, 0), ((12, 16, 128), 64, 0.25), ((8, 10, 5), 8, 0.5)
    ]
]
CONV_DEFAULTS_CALL = Case("conv_block", "conv_block", {"shape": [16, 16, 4], "kwargs": None})
CONV_OPTION_CASES = [
    *(_conv_case(shape, f, dropout, False)
      for shape, f, dropout in [((12, 16, 8), 24, 0), ((12, 16, 8), 24, 0.3), ((6, 8, 16), 40, 0.1)]),
    _conv_case((10, 14, 6), 12, 0.2, True),
]


def _conv_block_rows(h, w, c, f, dropout, pooling) -> list:
    rows = [_conv_row(h, w, c, f), _conv_row(h, w, f, f)]
    if dropout > 0:
        rows.append(["Dropout", (None, h, w, f), 0, dropout])
    if pooling:
        rows.append(["MaxPooling2D", (None, h // 2, w // 2, f), 0, (2, 2)])
    return rows


def _conv_outputs(evidence: Evidence, case: Case, context: str) -> tf.keras.Model:
    returned = evidence.result(case, context).get("returned")
    _expect(returned is None, f"{context}: conv_block must return two values, (next_layer, skip_connection); "
                              f"it returned a {returned}.")
    return evidence.model(case, context)


def _judge_conv_case(evidence: Evidence, case: Case) -> None:
    shape, kw = tuple(case.args["shape"]), case.args["kwargs"]
    f, dropout, pooling = kw["n_filters"], kw["dropout_prob"], kw["max_pooling"]
    context = f"conv_block on input {shape} with n_filters={f}, dropout_prob={dropout}, max_pooling={pooling}"
    model = _conv_outputs(evidence, case, context)
    next_layer, skip = model.outputs
    expected = [_input_row(shape), *_conv_block_rows(*shape, f, dropout, pooling)]
    _compare_rows(summary(model), expected, context)
    last = "Dropout" if dropout > 0 else "Conv2D"
    _expect(
        type(producer(skip)).__name__ == last,
        f"{context}: skip_connection must be the output of the last {last} "
        f"(before pooling), got the output of {type(producer(skip)).__name__}.",
    )
    if pooling:
        _expect(
            isinstance(producer(next_layer), layers.MaxPooling2D) and inputs_of(next_layer)[0] is skip,
            f"{context}: next_layer must be MaxPooling2D applied to skip_connection.",
        )
    else:
        _expect(
            next_layer is skip,
            f"{context}: with max_pooling=False, next_layer must be the same tensor as skip_connection.",
        )


def check_conv_block_default(evidence: Evidence) -> None:
    """Layers, shapes and outputs of ``conv_block`` with pooling, several sizes."""
    for case in CONV_DEFAULT_CASES:
        _judge_conv_case(evidence, case)


def check_conv_block_options(evidence: Evidence) -> None:
    """Defaults, dropout on and off, pooling off, and where the skip is taken."""
    context = "conv_block(inputs) with the default arguments"
    next_layer, skip = _conv_outputs(evidence, CONV_DEFAULTS_CALL, context).outputs
    _expect(
        _shape(next_layer) == (None, 8, 8, 32) and _shape(skip) == (None, 16, 16, 32),
        "conv_block(inputs) with the defaults must use 32 filters and pool: expected "
        f"next_layer (None, 8, 8, 32) and skip_connection (None, 16, 16, 32), got "
        f"{_shape(next_layer)} and {_shape(skip)}.",
    )
    for case in CONV_OPTION_CASES:
        _judge_conv_case(evidence, case)


# -- Exercise 2 --------------------------------------------------------------

UPSAMPLING_CASES = [
    Case("upsampling_block", "upsampling_block", {"expansive": list(e), "contractive": list(c), "n_filters": f})
    for e, c, f in [((12, 16, 256), (24, 32, 128), 32), ((6, 8, 512), (12, 16, 256), 64), ((3, 5, 16), (6, 10, 8), 4)]
]


def _upsampling_context(case: Case) -> str:
    a = case.args
    return (f"upsampling_block with inputs {tuple(a['expansive'])} and {tuple(a['contractive'])}, "
            f"n_filters={a['n_filters']}")


def check_upsampling_layers(evidence: Evidence) -> None:
    """Layers, shapes and parameter counts of ``upsampling_block``."""
    for case in UPSAMPLING_CASES:
        context = _upsampling_context(case)
        model = evidence.model(case, context)
        e_channels, (h, w, c), f = case.args["expansive"][2], case.args["contractive"], case.args["n_filters"]
        expected = [
            ["Conv2DTranspose", (None, h, w, f), 9 * e_channels * f + f],
            ["Concatenate", (None, h, w, f + c), 0],
            _conv_row(h, w, f + c, f),
            _conv_row(h, w, f, f),
        ]
        # Where Keras lists the two input layers depends on the wiring, which the
        # wiring check covers; here they are left out of the comparison.
        got = [row for row in summary(model) if row[0] != "InputLayer"]
        _compare_rows(got, expected, context + " (input layers not counted)")


def check_upsampling_wiring(evidence: Evidence) -> None:
    """Transpose settings, what is concatenated with what, and in which order."""
    for case in UPSAMPLING_CASES:
        context = _upsampling_context(case)
        model = evidence.model(case, context)
        expansive, contractive = model.inputs
        chain = [model.outputs[0]]
        for _ in range(2):
            _expect(
                isinstance(producer(chain[-1]), layers.Conv2D)
                and not isinstance(producer(chain[-1]), layers.Conv2DTranspose),
                f"{context}: the block must end with two Conv2D layers after the concatenation.",
            )
            chain.append(inputs_of(chain[-1])[0])
        merge = chain[-1]
        _expect(
            is_concatenation(producer(merge)),
            f"{context}: the two Conv2D layers must follow the concatenation, "
            f"found {type(producer(merge)).__name__} before them.",
        )
        axis = producer(merge).axis
        _expect(axis in (3, -1), f"{context}: concatenate along axis=3 (channels), not axis={axis}.")
        parts = inputs_of(merge)
        _expect(len(parts) == 2, f"{context}: concatenate exactly two tensors, got {len(parts)}.")
        up, skip = parts
        _expect(
            skip is contractive,
            f"{context}: the concatenation must be [up, contractive_input] in that order; "
            "the second tensor is not contractive_input.",
        )
        transpose = producer(up)
        _expect(
            isinstance(transpose, layers.Conv2DTranspose),
            f"{context}: the first tensor in the concatenation must come from Conv2DTranspose.",
        )
        _expect(inputs_of(up)[0] is expansive, f"{context}: Conv2DTranspose must be applied to expansive_input.")
        _expect(
            tuple(transpose.kernel_size) == (3, 3)
            and tuple(transpose.strides) == (2, 2)
            and transpose.padding == "same",
            f"{context}: Conv2DTranspose needs kernel 3, strides=2, padding='same'; got kernel "
            f"{tuple(transpose.kernel_size)}, strides {tuple(transpose.strides)}, padding '{transpose.padding}'.",
        )


# -- Exercise 3 --------------------------------------------------------------

UNET_CASES = [
    Case("unet_model", "unet_model", {"input_size": list(size), "n_filters": n, "n_classes": k})
    for size, n, k in [((96, 128, 3), 32, 23), ((64, 96, 3), 8, 5), ((32, 48, 1), 4, 2)]
]


def _unet_context(case: Case) -> str:
    a = case.args
    return f"unet_model(input_size={tuple(a['input_size'])}, n_filters={a['n_filters']}, n_classes={a['n_classes']})"


def _unet(evidence: Evidence, case: Case) -> tuple[tf.keras.Model, dict, str]:
    context = _unet_context(case)
    answer = evidence.result(case, context)
    returned = answer.get("returned")
    _expect(returned is None, f"{context}: unet_model must return a tf.keras.Model, it returned {returned}.")
    return evidence.model(case, context), answer, context


def same_number(got: Any, expected: float) -> bool:
    """Numeric equality for numbers of any numeric type, to float32 precision (``np.float32(0.3)`` is 0.3)."""
    return isinstance(got, (int, float)) and math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9)


def _judge_block_arguments(call: dict, dropout: float, pooling: bool, block: str) -> None:
    """``dropout_prob`` and ``max_pooling`` of one ``conv_block`` call, judged by what they mean.

    ``max_pooling`` means pooling when it is true (``None`` and ``0`` mean no
    pooling, as in the specification's ``if max_pooling``); ``dropout_prob`` is
    a rate of any numeric type, and ``None`` means no dropout.  A spelling
    other than a plain bool or number must also mean the same to the
    student's own ``conv_block`` as the plain value: that is the block their
    network is really built with.
    """
    written = call["spelled"]
    rate = call["dropout_rate"]
    if rate is None and written["dropout_prob"] == "None":
        rate = 0.0
    _expect(rate is not None and same_number(rate, dropout),
            f"{block} must use dropout_prob={dropout}, got {written['dropout_prob']}.")
    meaning = "" if written["max_pooling"] in ("True", "False") else f", which means {call['pools']}"
    _expect(call["pools"] == pooling,
            f"{block} must use max_pooling={pooling}, got max_pooling={written['max_pooling']}{meaning}.")
    reading = call.get("own_block")
    arguments = f"dropout_prob={written['dropout_prob']}, max_pooling={written['max_pooling']}"
    plain = f"dropout_prob={dropout}, max_pooling={pooling}"
    _expect(not (reading or "").startswith("fails"),
            f"{block} passes {arguments}, which your conv_block cannot take ({(reading or '')[7:]}); "
            f"with {plain} it works. Pass {plain}.")
    _expect(reading != "differs",
            f"{block} passes {arguments}, and your conv_block builds other layers from that than from "
            f"{plain}, so the network is not the one specified. Pass {plain}.")


def _which(tensor: str, tensors: list[str], label: str) -> str:
    return f"{label} {tensors.index(tensor) + 1}" if tensor in tensors else "some other tensor"


def check_unet_encoder(evidence: Evidence) -> None:
    """The five ``conv_block`` calls: filters, dropout, pooling and chaining."""
    for case in UNET_CASES:
        model, calls, context = _unet(evidence, case)
        size, n = tuple(case.args["input_size"]), case.args["n_filters"]
        _expect(
            len(calls["down"]) == 5,
            f"{context}: expected 5 calls of conv_block (4 encoder blocks and the bottleneck), "
            f"got {len(calls['down'])}.",
        )
        _expect(
            _shape(model.inputs[0]) == (None, *size),
            f"{context}: the model input must have shape {(None, *size)}, got {_shape(model.inputs[0])}.",
        )
        previous = ref(model.inputs[0])
        for k, (call, filters, dropout, pooling) in enumerate(
            zip(calls["down"], [n, 2 * n, 4 * n, 8 * n, 16 * n], [0, 0, 0, 0.3, 0.3], [True] * 4 + [False],
                strict=True)
        ):
            block = f"{context}: conv_block call {k + 1}"
            _expect(same_number(call["n_filters"], filters),
                    f"{block} must use n_filters={filters}, got {call['n_filters']}.")
            _judge_block_arguments(call, dropout, pooling, block)
            source = "the model input" if k == 0 else f"next_layer of conv_block call {k}"
            _expect(call["inputs"] == previous, f"{block} must take {source} as its inputs.")
            previous = call["next"]


def check_unet_decoder(evidence: Evidence) -> None:
    """The four ``upsampling_block`` calls, the skip connections and the output head."""
    for case in UNET_CASES:
        model, calls, context = _unet(evidence, case)
        size, n, n_classes = case.args["input_size"], case.args["n_filters"], case.args["n_classes"]
        down, up = calls["down"], calls["up"]
        _expect(len(down) == 5, f"{context}: expected 5 calls of conv_block, got {len(down)}.")
        _expect(len(up) == 4, f"{context}: expected 4 calls of upsampling_block, got {len(up)}.")
        skips = [c["skip"] for c in down]
        expansive = down[4]["next"]
        for j, call in enumerate(up):
            block = f"{context}: upsampling_block call {j + 1}"
            filters = n * 2 ** (3 - j)
            _expect(same_number(call["n_filters"], filters),
                    f"{block} must use n_filters={filters}, got {call['n_filters']}.")
            want = "the bottleneck's next_layer" if j == 0 else f"the output of upsampling_block call {j}"
            _expect(call["expansive"] == expansive, f"{block} must take {want} as expansive_input.")
            _expect(
                call["contractive"] == skips[3 - j],
                f"{block} must take the skip connection of encoder block {4 - j} as contractive_input, "
                f"got {_which(call['contractive'], skips, 'the skip connection of block')}.",
            )
            expansive = call["out"]
        out = model.outputs[0]
        last, before = producer(out), producer(inputs_of(out)[0])
        _expect(
            isinstance(last, layers.Conv2D) and tuple(last.kernel_size) == (1, 1) and last.filters == n_classes,
            f"{context}: the last layer must be a 1x1 Conv2D with n_classes={n_classes} filters.",
        )
        _expect(
            last.activation.__name__ == "linear",
            f"{context}: the last Conv2D must output logits (no activation), got '{last.activation.__name__}'.",
        )
        _expect(
            isinstance(before, layers.Conv2D)
            and tuple(before.kernel_size) == (3, 3)
            and before.filters == n
            and before.padding == "same"
            and before.activation.__name__ == "relu"
            and type(before.kernel_initializer).__name__ == "HeNormal",
            f"{context}: before the 1x1 Conv2D comes a 3x3 Conv2D with n_filters={n}, relu, "
            "padding='same' and he_normal initializer.",
        )
        _expect(
            ref(inputs_of(inputs_of(out)[0])[0]) == up[-1]["out"],
            f"{context}: the 3x3 Conv2D must be applied to the output of the last upsampling_block.",
        )
        _expect(
            _shape(out) == (None, size[0], size[1], n_classes),
            f"{context}: the output must have shape {(None, size[0], size[1], n_classes)}, got {_shape(out)}.",
        )


# -- the graded cells ----------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """What one graded cell checks, and what it says when everything is right."""

    function: str
    judge: Callable[[Evidence], None]
    cases: tuple[Case, ...]
    success: str


CHECKS: dict[str, Check] = {
    "test_conv_block_default": Check("conv_block", check_conv_block_default, tuple(CONV_DEFAULT_CASES),
                                     "conv_block: layers, shapes and outputs are correct."),
    "test_conv_block_options": Check("conv_block", check_conv_block_options,
                                     (CONV_DEFAULTS_CALL, *CONV_OPTION_CASES),
                                     "conv_block: defaults, dropout and pooling options are correct."),
    "test_upsampling_layers": Check("upsampling_block", check_upsampling_layers, tuple(UPSAMPLING_CASES),
                                    "upsampling_block: layers, shapes and parameters are correct."),
    "test_upsampling_wiring": Check("upsampling_block", check_upsampling_wiring, tuple(UPSAMPLING_CASES),
                                    "upsampling_block: wiring and concatenation order are correct."),
    "test_unet_encoder": Check("unet_model", check_unet_encoder, tuple(UNET_CASES),
                               "unet_model: the encoder and bottleneck are built correctly."),
    "test_unet_decoder": Check("unet_model", check_unet_decoder, tuple(UNET_CASES),
                               "unet_model: the decoder, skip connections and output layer are correct."),
}


def probe_request(seconds_per_call: float = 20.0) -> dict:
    """What the probe must collect for every graded cell, with a fresh nonce."""
    cases = {case.key: case.request() for check in CHECKS.values() for case in check.cases}
    return {
        "nonce": secrets.token_hex(16),
        "functions": list(SIGNATURES),
        "cases": list(cases.values()),
        "seconds_per_call": seconds_per_call,
    }


def judge(grade_id: str, evidence: Evidence) -> str:
    """Judge one graded cell: its success message, or ``CheckFailed`` saying what is wrong."""
    check = CHECKS[grade_id]
    check_function(check.function, evidence.function(check.function))
    try:
        check.judge(evidence)
    except CheckFailed:
        raise
    except Exception as err:  # noqa: BLE001 - evidence of an unexpected shape is a failed check, not a crash
        summary_line = (check.judge.__doc__ or grade_id).strip().splitlines()[0].rstrip(".")
        raise CheckFailed(
            f"{summary_line}: the grader could not read your model ({type(err).__name__}: {err})."
        ) from None
    return check.success


def run_check(grade_id: str, namespace: dict) -> None:
    """Probe and judge in this process, for the source notebook's own run.

    Autograding never calls this: there the probe runs in the sandboxed kernel
    and the grade cells' outputs come from ``grader.verdicts``.
    """
    request = probe_request(seconds_per_call=0)
    wanted = {case.key for case in CHECKS[grade_id].cases}
    request["cases"] = [case for case in request["cases"] if case["key"] in wanted]
    print(judge(grade_id, Evidence(collect(namespace, request))))
