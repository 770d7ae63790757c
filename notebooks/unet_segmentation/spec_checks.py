"""The assignment's specification, as checks on the networks your functions build.

The graded cells of the notebook run these checks on the notebook's own
examples: that is what they show you, and what Validate reports before you
submit.  When your notebook is graded, the same rules are applied to other
input sizes, filter counts and class counts, which stay hidden until then.

Every check judges what your code builds, never how it is written: any
spelling that builds the specified network passes.  A failed check raises
``CheckFailed``, whose message names the call, the layer and what was
expected.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import textwrap
from pathlib import Path
from typing import Any

import functional_checks
import probe
from test_utils import activation_name, comparator, initializer_name, inputs_of, producer, summary, tf

layers = tf.keras.layers

SIGNATURES: dict[str, list[tuple[str, Any]]] = {
    "conv_block": [("inputs", None), ("n_filters", 32), ("dropout_prob", 0), ("max_pooling", True)],
    "upsampling_block": [("expansive_input", probe.NO_DEFAULT), ("contractive_input", probe.NO_DEFAULT),
                         ("n_filters", 32)],
    "unet_model": [("input_size", (96, 128, 3)), ("n_filters", 32), ("n_classes", 23)],
}
# The U-Net, block by block: filters as a multiple of n_filters, dropout, pooling;
# then each decoder block's filters and the encoder block whose skip connection it takes.
ENCODER = [(1, 0, True), (2, 0, True), (4, 0, True), (8, 0.3, True), (16, 0.3, False)]
DECODER = [(8, 4), (4, 3), (2, 2), (1, 1)]
# How long one call of your function may take before it counts as a loop that never ends.
SECONDS_PER_CALL = 20.0


class CheckFailed(AssertionError):
    """A check found a mistake.

    IPython shows only the message (via ``_render_traceback_``), so what you
    read is the sentence that explains the problem, not the checks' source.
    """

    def _render_traceback_(self) -> list[str]:
        # Short lines: `nbgrader validate` cuts every line at 90 characters.
        return textwrap.wrap(f"Check failed: {self}", 80, break_long_words=False, break_on_hyphens=False)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def signature_text(params: list[tuple[str, Any]]) -> str:
    return ", ".join(name if default == probe.NO_DEFAULT else f"{name}={default!r}" for name, default in params)


def check_function(name: str, info: dict) -> None:
    """The function exists under its name, is a function, and keeps its signature (``info`` from the probe)."""
    expect(info.get("defined", False),
           f"{name} is not defined. The grader calls it by this name: keep the name given in the notebook "
           "and run its cell without errors.")
    expect(info.get("callable", False), f"{name} is not a function.")
    expected = [(arg, probe.jsonable(default)) for arg, default in SIGNATURES[name]]
    found = [(arg, default) for arg, _, default in info.get("signature", [])]
    kinds = {kind for _, kind, _ in info.get("signature", [])}
    expect(
        found == expected and kinds <= {"POSITIONAL_OR_KEYWORD"},
        f"{name}'s signature was changed: it must be {name}({signature_text(SIGNATURES[name])}), "
        f"found {name}({signature_text(found)}). Keep the signature given in the notebook.",
    )


# -- reading a Keras graph ----------------------------------------------------

def is_concatenation(operation) -> bool:
    """A ``Concatenate`` layer (``concatenate``, ``Concatenate()``) or the ``keras.ops.concatenate`` operation."""
    return isinstance(operation, layers.Concatenate) or type(operation).__name__ == "Concatenate"


def shape(tensor) -> tuple:
    return tuple(tensor.shape)


def same_number(got: Any, expected: float) -> bool:
    """Numeric equality for numbers of any numeric type, to float32 precision (``np.float32(0.3)`` is 0.3)."""
    return isinstance(got, (int, float)) and math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9)


def conv_row(h: int, w: int, c_in: int, f: int) -> list:
    return ["Conv2D", (None, h, w, f), 9 * c_in * f + f, "same", "relu", "HeNormal"]


def input_row(input_shape) -> list:
    return ["InputLayer", [(None, *input_shape)], 0]


def compare_rows(got: list, expected: list, context: str) -> None:
    """``comparator``, with its success line hidden and its failure put in context."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            comparator(got, expected)
    except AssertionError as err:
        raise CheckFailed(f"{context}: {err}") from None


# -- Exercise 1: conv_block ---------------------------------------------------

def conv_context(input_shape, n_filters, dropout, pooling) -> str:
    return (f"conv_block on input {tuple(input_shape)} with n_filters={n_filters}, dropout_prob={dropout}, "
            f"max_pooling={pooling}")


def conv_block_rows(h, w, c, f, dropout, pooling) -> list:
    rows = [conv_row(h, w, c, f), conv_row(h, w, f, f)]
    if dropout > 0:
        rows.append(["Dropout", (None, h, w, f), 0, dropout])
    if pooling:
        rows.append(["MaxPooling2D", (None, h // 2, w // 2, f), 0, (2, 2)])
    return rows


def judge_conv_block(model: tf.keras.Model, input_shape, n_filters, dropout, pooling, context: str) -> None:
    """A model from an input to ``[next_layer, skip_connection]`` of ``conv_block`` called with these arguments."""
    next_layer, skip = model.outputs
    h, w, c = input_shape
    expected = [input_row(input_shape), *conv_block_rows(h, w, c, n_filters, dropout, pooling)]
    compare_rows(summary(model), expected, context)
    last = "Dropout" if dropout > 0 else "Conv2D"
    expect(
        type(producer(skip)).__name__ == last,
        f"{context}: skip_connection must be the output of the last {last} "
        f"(before pooling), got the output of {type(producer(skip)).__name__}.",
    )
    if pooling:
        expect(
            isinstance(producer(next_layer), layers.MaxPooling2D) and inputs_of(next_layer)[0] is skip,
            f"{context}: next_layer must be MaxPooling2D applied to skip_connection.",
        )
    else:
        expect(
            next_layer is skip,
            f"{context}: with max_pooling=False, next_layer must be the same tensor as skip_connection.",
        )


def judge_conv_defaults(model: tf.keras.Model, input_shape) -> None:
    """``conv_block(inputs)`` with every other argument left at its default: 32 filters, pooling."""
    next_layer, skip = model.outputs
    h, w = input_shape[0], input_shape[1]
    expect(
        shape(next_layer) == (None, h // 2, w // 2, 32) and shape(skip) == (None, h, w, 32),
        "conv_block(inputs) with the defaults must use 32 filters and pool: expected "
        f"next_layer {(None, h // 2, w // 2, 32)} and skip_connection {(None, h, w, 32)}, got "
        f"{shape(next_layer)} and {shape(skip)}.",
    )


# -- Exercise 2: upsampling_block ---------------------------------------------

def upsampling_context(expansive_shape, contractive_shape, n_filters) -> str:
    return (f"upsampling_block with inputs {tuple(expansive_shape)} and {tuple(contractive_shape)}, "
            f"n_filters={n_filters}")


def judge_upsampling_layers(model: tf.keras.Model, expansive_shape, contractive_shape, n_filters,
                            context: str) -> None:
    """Layers, shapes and parameter counts of one ``upsampling_block``."""
    e_channels, (h, w, c), f = expansive_shape[2], contractive_shape, n_filters
    expected = [
        ["Conv2DTranspose", (None, h, w, f), 9 * e_channels * f + f],
        ["Concatenate", (None, h, w, f + c), 0],
        conv_row(h, w, f + c, f),
        conv_row(h, w, f, f),
    ]
    # Where Keras lists the two input layers depends on the wiring, which the
    # wiring check covers; here they are left out of the comparison.
    got = [row for row in summary(model) if row[0] != "InputLayer"]
    compare_rows(got, expected, context + " (input layers not counted)")


def judge_upsampling_wiring(model: tf.keras.Model, context: str) -> None:
    """The transposed convolution's settings, and what is concatenated with what, in which order."""
    expansive, contractive = model.inputs
    chain = [model.outputs[0]]
    for _ in range(2):
        expect(
            isinstance(producer(chain[-1]), layers.Conv2D)
            and not isinstance(producer(chain[-1]), layers.Conv2DTranspose),
            f"{context}: the block must end with two Conv2D layers after the concatenation.",
        )
        chain.append(inputs_of(chain[-1])[0])
    merge = chain[-1]
    expect(
        is_concatenation(producer(merge)),
        f"{context}: the two Conv2D layers must follow the concatenation, "
        f"found {type(producer(merge)).__name__} before them.",
    )
    axis = producer(merge).axis
    expect(axis in (3, -1), f"{context}: concatenate along axis=3 (channels), not axis={axis}.")
    parts = inputs_of(merge)
    expect(len(parts) == 2, f"{context}: concatenate exactly two tensors, got {len(parts)}.")
    up, skip = parts
    expect(
        skip is contractive,
        f"{context}: the concatenation must be [up, contractive_input] in that order; "
        "the second tensor is not contractive_input.",
    )
    transpose = producer(up)
    expect(
        isinstance(transpose, layers.Conv2DTranspose),
        f"{context}: the first tensor in the concatenation must come from Conv2DTranspose.",
    )
    expect(inputs_of(up)[0] is expansive, f"{context}: Conv2DTranspose must be applied to expansive_input.")
    expect(
        tuple(transpose.kernel_size) == (3, 3)
        and tuple(transpose.strides) == (2, 2)
        and transpose.padding == "same",
        f"{context}: Conv2DTranspose needs kernel 3, strides=2, padding='same'; got kernel "
        f"{tuple(transpose.kernel_size)}, strides {tuple(transpose.strides)}, padding '{transpose.padding}'.",
    )


# -- Exercise 3: unet_model ---------------------------------------------------

def unet_context(input_size, n_filters, n_classes) -> str:
    return f"unet_model(input_size={tuple(input_size)}, n_filters={n_filters}, n_classes={n_classes})"


class Findings:
    """The mistakes found in one call of ``unet_model``, reported together: each is independent of the others."""

    def __init__(self, context: str) -> None:
        self.context = context
        self.messages: list[str] = []

    def expect(self, condition: bool, message: str) -> bool:
        if not condition:
            self.messages.append(message)
        return condition

    def report(self) -> None:
        """Raise ``CheckFailed`` naming every mistake found, if any."""
        if len(self.messages) == 1:
            raise CheckFailed(f"{self.context}: {self.messages[0]}")
        if self.messages:
            listed = " ".join(f"({i}) {m}" for i, m in enumerate(self.messages, 1))
            raise CheckFailed(f"{self.context}: {len(self.messages)} problems: {listed}")


def _filters(found: Findings, got: Any, expected: int, factor: int, call: str, name: str = "n_filters") -> None:
    """A filter (or class) count must follow the argument; a number fitted to the notebook's example says so."""
    if found.expect(same_number(got, expected), f"{call} must use {name}={expected}, got {got}."):
        return
    example = factor * (23 if name == "n_classes" else 32)
    if same_number(got, example):
        hint = f"{name}" if factor == 1 else f"{name} * {factor}"
        found.messages[-1] = (f"{call} must use {name}={expected}, got {got}, which fits only the notebook's own "
                              f"{name}={example // factor}: write it as {hint}, not as a number.")


def judge_block_arguments(call: dict, dropout: float, pooling: bool, block: str, found: Findings) -> None:
    """``dropout_prob`` and ``max_pooling`` of one recorded ``conv_block`` call, judged by what they mean.

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
    found.expect(rate is not None and same_number(rate, dropout),
                 f"{block} must use dropout_prob={dropout}, got {written['dropout_prob']}.")
    meaning = "" if written["max_pooling"] in ("True", "False") else f", which means {call['pools']}"
    found.expect(call["pools"] == pooling,
                 f"{block} must use max_pooling={pooling}, got max_pooling={written['max_pooling']}{meaning}.")
    reading = call.get("own_block") or ""
    arguments = f"dropout_prob={written['dropout_prob']}, max_pooling={written['max_pooling']}"
    plain = f"dropout_prob={dropout}, max_pooling={pooling}"
    found.expect(not reading.startswith("fails"),
                 f"{block} passes {arguments}, which your conv_block cannot take ({reading[7:]}); "
                 f"with {plain} it works. Pass {plain}.")
    found.expect(reading != "differs",
                 f"{block} passes {arguments}, and your conv_block builds other layers from that than from "
                 f"{plain}, so the network is not the one specified. Pass {plain}.")


def judge_unet_encoder(model: tf.keras.Model, calls: dict, input_size, n_filters, context: str) -> None:
    """The five recorded ``conv_block`` calls: filters, dropout, pooling and chaining."""
    down = calls["down"]
    expect(len(down) == 5,
           f"{context}: expected 5 calls of conv_block (4 encoder blocks and the bottleneck), got {len(down)}.")
    size = tuple(input_size)
    expect(shape(model.inputs[0]) == (None, *size),
           f"{context}: the model input must have shape {(None, *size)}, got {shape(model.inputs[0])}.")
    found = Findings(context)
    previous = probe.ref(model.inputs[0])
    for k, (call, (factor, dropout, pooling)) in enumerate(zip(down, ENCODER, strict=True)):
        block = f"conv_block call {k + 1}"
        _filters(found, call["n_filters"], factor * n_filters, factor, block)
        judge_block_arguments(call, dropout, pooling, block, found)
        source = "the model input" if k == 0 else f"next_layer of conv_block call {k}"
        found.expect(call["inputs"] == previous, f"{block} must take {source} as its inputs.")
        previous = call["next"]
    found.report()


def _which(tensor: str, tensors: list[str], label: str) -> str:
    return f"{label} {tensors.index(tensor) + 1}" if tensor in tensors else "some other tensor"


def judge_unet_decoder(model: tf.keras.Model, calls: dict, input_size, n_filters, n_classes,
                       context: str) -> None:
    """The four recorded ``upsampling_block`` calls, the skip connections and the output head."""
    down, up = calls["down"], calls["up"]
    expect(len(down) == 5, f"{context}: expected 5 calls of conv_block, got {len(down)}.")
    expect(len(up) == 4, f"{context}: expected 4 calls of upsampling_block, got {len(up)}.")
    found = Findings(context)
    skips = [c["skip"] for c in down]
    expansive = down[4]["next"]
    for j, (call, (factor, encoder_block)) in enumerate(zip(up, DECODER, strict=True)):
        block = f"upsampling_block call {j + 1}"
        _filters(found, call["n_filters"], factor * n_filters, factor, block)
        want = "the bottleneck's next_layer" if j == 0 else f"the output of upsampling_block call {j}"
        found.expect(call["expansive"] == expansive, f"{block} must take {want} as expansive_input.")
        found.expect(
            call["contractive"] == skips[encoder_block - 1],
            f"{block} must take the skip connection of encoder block {encoder_block} as contractive_input, "
            f"got {_which(call['contractive'], skips, 'the skip connection of block')}.",
        )
        expansive = call["out"]
    _judge_unet_head(model, up[-1]["out"], input_size, n_filters, n_classes, found)
    found.report()


def _layer_text(layer: Any) -> str:
    """A layer as the student would recognise it: ``Conv2D with 23 filters, kernel 1x1, activation 'linear'``."""
    if not isinstance(layer, layers.Conv2D):
        return type(layer).__name__
    kernel = "x".join(str(k) for k in layer.kernel_size)
    return f"Conv2D with {layer.filters} filters, kernel {kernel}, activation '{activation_name(layer.activation)}'"


def _judge_unet_head(model: tf.keras.Model, decoder_out: str, input_size, n_filters, n_classes,
                     found: Findings) -> None:
    """The 3x3 and 1x1 convolutions after the last decoder block, and the output's shape."""
    out = model.outputs[0]
    last, before = producer(out), producer(inputs_of(out)[0])
    if isinstance(last, layers.Conv2D) and tuple(last.kernel_size) == (1, 1):
        _filters(found, last.filters, n_classes, 1, "the last layer, a 1x1 Conv2D,", "n_classes")
        found.expect(activation_name(last.activation) == "linear",
                     f"the last Conv2D must output logits (no activation), got '{activation_name(last.activation)}'.")
    else:
        found.expect(False, f"the last layer must be a 1x1 Conv2D with n_classes={n_classes} filters; found "
                            f"{_layer_text(last)}.")
    found.expect(
        isinstance(before, layers.Conv2D)
        and tuple(before.kernel_size) == (3, 3)
        and before.filters == n_filters
        and before.padding == "same"
        and activation_name(before.activation) == "relu"
        and initializer_name(before.kernel_initializer) == "HeNormal",
        f"before the 1x1 Conv2D comes a 3x3 Conv2D with n_filters={n_filters}, relu, "
        f"padding='same' and he_normal initializer; found {_layer_text(before)}.",
    )
    found.expect(
        probe.ref(inputs_of(inputs_of(out)[0])[0]) == decoder_out,
        "the 3x3 Conv2D must be applied to the output of the last upsampling_block.",
    )
    # A wrong output shape follows from a mistake above; say it only when nothing else explains it.
    if not found.messages:
        found.expect(
            shape(out) == (None, input_size[0], input_size[1], n_classes),
            f"the output must have shape {(None, input_size[0], input_size[1], n_classes)}, got {shape(out)}.",
        )


# -- what the networks compute: which graded cell each difference concerns -------------

def conv_aspect(difference: functional_checks.Difference, spec: tf.keras.Model, calls: dict | None) -> str | None:
    """``layers`` for a layer's result, ``options`` for dropout; None (the cell making the call) for wiring."""
    return {"layer": "layers", "dropout": "options"}.get(difference.kind)


def upsampling_aspect(difference: functional_checks.Difference, spec: tf.keras.Model, calls: dict | None) -> str:
    """``layers`` for the two Conv2D layers; ``wiring`` for the transposed convolution and the concatenation."""
    is_conv = difference.kind == "layer" and functional_checks.kind(producer(difference.where)) == "Conv2D"
    return "layers" if is_conv else "wiring"


def _tensor_named(model: tf.keras.Model, name: str) -> Any:
    for op in model.operations:
        for tensor in tf.nest.flatten(op.output):
            if probe.ref(tensor) == name:
                return tensor
    return None


def _upstream(tensor: Any) -> set[int]:
    """``id()`` of ``tensor`` and of every tensor it is computed from."""
    found, pending = set(), [tensor]
    while pending:
        t = pending.pop()
        if id(t) not in found:
            found.add(id(t))
            if functional_checks.kind(producer(t)) != "InputLayer":
                pending.extend(inputs_of(t))
    return found


def unet_aspect(difference: functional_checks.Difference, spec: tf.keras.Model, calls: dict | None) -> str:
    """``encoder`` for what comes before the bottleneck's output (the model input included), else ``decoder``."""
    bottleneck = _tensor_named(spec, calls["down"][4]["next"]) if calls and len(calls["down"]) == 5 else None
    return "encoder" if bottleneck is not None and id(difference.where) in _upstream(bottleneck) else "decoder"


def unet_namer(spec: tf.keras.Model) -> functional_checks.Namer:
    """The U-Net's own layers by their place: the 1x1 output layer and the 3x3 Conv2D before it."""
    out = spec.outputs[0]
    before = inputs_of(out)[0] if functional_checks.kind(producer(out)) != "InputLayer" else None

    def name_of(tensor: Any) -> str:
        if tensor is out:
            return "1x1 Conv2D (the output layer)"
        if tensor is before:
            return "3x3 Conv2D before the output layer"
        return f"{functional_checks.kind(producer(tensor))} layer"

    return name_of


ASPECTS = {"conv_block": conv_aspect, "upsampling_block": upsampling_aspect, "unet_model": unet_aspect}
NAMERS = {"unet_model": unet_namer}


def computation_differences(function: str, student: tf.keras.Model, spec: tf.keras.Model,
                            calls: dict | None) -> list[tuple[str | None, functional_checks.Difference]]:
    """What ``student`` computes differently from ``spec``, each with the aspect (graded cell) it concerns."""
    namer = NAMERS[function](spec) if function in NAMERS else None
    found = functional_checks.compare(student, spec, namer)
    return [(ASPECTS[function](d, spec, calls), d) for d in found]


def judge_computation(differences: list[tuple[str | None, functional_checks.Difference]], aspect: str,
                      own_call: bool, context: str) -> None:
    """Fail with the first difference of ``aspect`` (or of wiring, when this cell made the call)."""
    mine = [d for got, d in differences if got == aspect or (got is None and own_call)]
    if mine:
        raise CheckFailed(f"{context}: {functional_checks.first_messages(mine)}")


# -- the visible checks: the notebook's own examples ----------------------------

EXAMPLE_INPUT = (96, 128, 3)
UPSAMPLING_EXAMPLE = ((12, 16, 256), (24, 32, 128), 32)
UNET_EXAMPLE = (EXAMPLE_INPUT, 32, 23)


def _conv_call(n_filters=None, dropout=None, pooling=None) -> dict:
    kwargs = None if n_filters is None else {"n_filters": n_filters, "dropout_prob": dropout, "max_pooling": pooling}
    return {"function": "conv_block", "shape": list(EXAMPLE_INPUT), "kwargs": kwargs}


# The calls the visible checks make, by name; specification.json holds the specification's network for each.
VISIBLE_CALLS: dict[str, dict] = {
    "conv_example": _conv_call(32, 0, True),
    "conv_defaults": _conv_call(),
    "conv_dropout": _conv_call(1024, 0.1, True),
    "conv_no_pooling": _conv_call(32, 0, False),
    "upsampling_example": {"function": "upsampling_block", "expansive": list(UPSAMPLING_EXAMPLE[0]),
                           "contractive": list(UPSAMPLING_EXAMPLE[1]), "n_filters": UPSAMPLING_EXAMPLE[2]},
    "unet_example": {"function": "unet_model", "input_size": list(EXAMPLE_INPUT), "n_filters": UNET_EXAMPLE[1],
                     "n_classes": UNET_EXAMPLE[2]},
}
SPECIFICATION_FILE = Path(__file__).with_name("specification.json")
_specification: dict[str, tuple[tf.keras.Model, dict | None]] = {}


def specification_network(name: str) -> tuple[tf.keras.Model, dict | None]:
    """The specification's network for the visible call ``name`` (for ``unet_model``, with its block calls)."""
    if name not in _specification:
        try:
            stored = json.loads(SPECIFICATION_FILE.read_text())[name]
        except (OSError, ValueError, KeyError):
            raise CheckFailed(f"{SPECIFICATION_FILE.name} is missing or damaged next to spec_checks.py; copy it "
                              "again from the assignment folder.") from None
        # The functional checks give it weights of their own: drawing initial ones would be wasted.
        with probe.unfilled_weights(tf):
            _specification[name] = (tf.keras.models.model_from_json(json.dumps(stored["model"])), stored["calls"])
    return _specification[name]


def in_float32(model: tf.keras.Model) -> tf.keras.Model:
    """``model`` if all of it computes in float32, else a copy that does (mixed precision may be on)."""
    if all(getattr(getattr(op, "dtype_policy", None), "name", "float32") == "float32" for op in model.operations):
        return model
    config = functional_checks.float32_config(json.loads(model.to_json()))
    with probe.unfilled_weights(tf):
        return tf.keras.models.model_from_json(json.dumps(config))


def _computes_as_specified(function: str, model: tf.keras.Model, call: str, aspect: str, context: str) -> None:
    spec, spec_calls = specification_network(call)
    judge_computation(computation_differences(function, in_float32(model), spec, spec_calls), aspect, True, context)


def _conv_model(conv_block, call: dict) -> tf.keras.Model:
    x = layers.Input(tuple(call["shape"]))
    kwargs = call["kwargs"] or {}
    result = conv_block(x, **kwargs)
    context = conv_context(call["shape"], *(kwargs.get(k, d) for k, d in SIGNATURES["conv_block"][1:]))
    expect(isinstance(result, (tuple, list)) and len(result) == 2,
           f"{context}: conv_block must return two values, (next_layer, skip_connection); "
           f"it returned a {probe.what_it_is(result)}.")
    return tf.keras.Model(x, [result[0], result[1]])


def _conv_judged(conv_block, name: str, aspect: str) -> None:
    call = VISIBLE_CALLS[name]
    kw = call["kwargs"]
    model = probe.unfilled_or_as_usual(tf, lambda: _conv_model(conv_block, call))
    if kw is None:
        judge_conv_defaults(model, EXAMPLE_INPUT)
        context = "conv_block(inputs) with the default arguments"
    else:
        f, dropout, pooling = kw["n_filters"], kw["dropout_prob"], kw["max_pooling"]
        context = conv_context(EXAMPLE_INPUT, f, dropout, pooling)
        judge_conv_block(model, EXAMPLE_INPUT, f, dropout, pooling, context)
    _computes_as_specified("conv_block", model, name, aspect, context)


def _conv_layers(conv_block) -> str:
    _conv_judged(conv_block, "conv_example", "layers")
    return "layers, shapes, the two returned tensors and what they compute are right for the notebook's example"


def _conv_options(conv_block) -> str:
    for name in ("conv_defaults", "conv_dropout", "conv_no_pooling"):
        _conv_judged(conv_block, name, "options")
    return "the defaults, dropout and max_pooling=False work on the notebook's example"


def _upsampling_model(upsampling_block) -> tf.keras.Model:
    def build() -> tf.keras.Model:
        e_shape, c_shape, f = UPSAMPLING_EXAMPLE
        expansive, contractive = layers.Input(e_shape), layers.Input(c_shape)
        return tf.keras.Model([expansive, contractive], upsampling_block(expansive, contractive, f))

    return probe.unfilled_or_as_usual(tf, build)


def _upsampling_layers(upsampling_block) -> str:
    model, context = _upsampling_model(upsampling_block), upsampling_context(*UPSAMPLING_EXAMPLE)
    judge_upsampling_layers(model, *UPSAMPLING_EXAMPLE, context)
    _computes_as_specified("upsampling_block", model, "upsampling_example", "layers", context)
    return "layers, shapes, parameter counts and what the convolutions compute are right for the notebook's example"


def _upsampling_wiring(upsampling_block) -> str:
    model, context = _upsampling_model(upsampling_block), upsampling_context(*UPSAMPLING_EXAMPLE)
    judge_upsampling_wiring(model, context)
    _computes_as_specified("upsampling_block", model, "upsampling_example", "wiring", context)
    return "the transposed convolution and the concatenation order are right"


def _recorded_unet(unet_model) -> tuple[tf.keras.Model, dict, str]:
    context = unet_context(*UNET_EXAMPLE)
    model, calls = probe.unfilled_or_as_usual(tf, lambda: probe.record_unet(tf, unet_model, *UNET_EXAMPLE))
    expect(isinstance(model, tf.keras.Model),
           f"{context}: unet_model must return a tf.keras.Model, it returned {type(model).__name__}.")
    return model, calls, context


def _unet_encoder(unet_model) -> str:
    model, calls, context = _recorded_unet(unet_model)
    judge_unet_encoder(model, calls, EXAMPLE_INPUT, 32, context)
    _computes_as_specified("unet_model", model, "unet_example", "encoder", context)
    return "the encoder blocks and the bottleneck are called as specified (checked with stand-in blocks)"


def _unet_decoder(unet_model) -> str:
    model, calls, context = _recorded_unet(unet_model)
    judge_unet_decoder(model, calls, EXAMPLE_INPUT, 32, 23, context)
    _computes_as_specified("unet_model", model, "unet_example", "decoder", context)
    return "the decoder blocks, skip connections and output layers are as specified (checked with stand-in blocks)"


VISIBLE = {
    ("conv_block", "layers"): _conv_layers,
    ("conv_block", "options"): _conv_options,
    ("upsampling_block", "layers"): _upsampling_layers,
    ("upsampling_block", "wiring"): _upsampling_wiring,
    ("unet_model", "encoder"): _unet_encoder,
    ("unet_model", "decoder"): _unet_decoder,
}
# The last failure each exercise reported, and in which execution, so that the
# next graded cell does not repeat it word for word.
_reported: dict[str, tuple[int, str]] = {}


def _execution_count() -> int:
    try:
        from IPython import get_ipython
    except ImportError:
        return -1
    shell = get_ipython()
    return -1 if shell is None else shell.execution_count


def _explain(function: str, err: BaseException) -> str:
    """What went wrong while a check ran ``function``, in plain words."""
    if isinstance(err, CheckFailed):
        return str(err)
    if type(err).__name__ == "StdinNotImplementedError":  # IPython's, a kind of NotImplementedError
        return f"{function} asks for input(); nobody can type an answer while it is checked. Remove the input() call."
    if isinstance(err, NotImplementedError):
        return (f"{function} is not written yet: its cell still has the template's `raise NotImplementedError()`. "
                "Put your code in its place and run that cell again.")
    if isinstance(err, probe.CaseTimeout):
        return (f"{function} did not return within {SECONDS_PER_CALL:g} s on the notebook's example: "
                "look for a loop that never ends.")
    return f"{function} raised {probe.describe_error(err)}"


def visible_check(function: str, aspect: str, namespace: dict | None = None) -> None:
    """Run one visible check on ``function`` from ``namespace`` (default: the notebook's).

    Prints what passed; raises ``CheckFailed`` with the reason otherwise.  The
    hidden tests of the same graded cell run only when your work is graded.
    """
    if namespace is None:
        from IPython import get_ipython

        namespace = get_ipython().user_ns
    count = _execution_count()
    try:
        check_function(function, probe.function_info(namespace, function))
        with probe.time_limit(SECONDS_PER_CALL):
            passed = VISIBLE[function, aspect](namespace[function])
    except Exception as err:  # noqa: BLE001 - whatever the student's code raises becomes a sentence
        message = _explain(function, err)
        previous = _reported.get(function)
        _reported[function] = (count, message)
        if previous is not None and previous[1] == message and previous[0] == count - 1:
            raise CheckFailed("the same problem as in the graded cell above; this cell passes once that one does.") \
                from None
        raise CheckFailed(message) from None
    _reported.pop(function, None)
    print(f"{function}: {passed}. (The hidden tests of this cell run when your notebook is graded.)")
