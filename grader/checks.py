"""Hidden checks for the three exercises, run by the notebook's graded cells.

Every check compares a student's function with the assignment's specification
(shapes, parameter counts, layer settings, wiring), never with a reference
implementation, and raises ``AssertionError`` with a sentence a student can act
on.  The U-Net checks replace ``conv_block`` and ``upsampling_block`` by simple
stand-ins while they run, so a mistake in Exercise 1 or 2 costs points there
and not again in Exercise 3.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import tensorflow as tf

from test_utils import comparator, summary

layers = tf.keras.layers

CONV_BLOCK_DEFAULTS = {"inputs": None, "n_filters": 32, "dropout_prob": 0, "max_pooling": True}
UPSAMPLING_DEFAULTS = {"n_filters": 32}
UNET_DEFAULTS = {"input_size": (96, 128, 3), "n_filters": 32, "n_classes": 23}


class CheckFailed(AssertionError):
    """A hidden check found a mistake.

    IPython shows only the message (via ``_render_traceback_``), so a student's
    feedback is the sentence that explains the lost points, not the grader's
    source and stack.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"Check failed: {self}"]


def graded(check: Callable[[Callable], None]) -> Callable[[Callable], None]:
    """Turn any unexpected error inside ``check`` into a ``CheckFailed`` sentence."""

    @functools.wraps(check)
    def run(student_function: Callable) -> None:
        try:
            check(student_function)
        except CheckFailed:
            raise
        except Exception as err:  # noqa: BLE001 - e.g. a student function returning None
            summary_line = (check.__doc__ or check.__name__).strip().splitlines()[0].rstrip(".")
            raise CheckFailed(f"{summary_line}: your code raised {type(err).__name__}: {err}") from None

    return run


# -- reading the Keras graph -------------------------------------------------

def producer(tensor) -> Any:
    """The layer whose call returned ``tensor``."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        raise CheckFailed(f"Expected a Keras tensor made by a layer, got {type(tensor).__name__}.")
    return history.operation


def inputs_of(tensor) -> list:
    """The tensors that were passed to the layer that made ``tensor``."""
    history = tensor._keras_history
    return list(history.operation._inbound_nodes[history.node_index].input_tensors)


def _shape(tensor) -> tuple:
    return tuple(tensor.shape)


def _conv_row(h: int, w: int, c_in: int, f: int) -> list:
    return ["Conv2D", (None, h, w, f), 9 * c_in * f + f, "same", "relu", "HeNormal"]


def _input_row(shape) -> list:
    return ["InputLayer", [(None, *shape)], 0]


@contextmanager
def _building(context: str) -> Iterator[None]:
    """Report an error raised while a student's function builds layers as a failed check."""
    try:
        yield
    except CheckFailed:
        raise
    except Exception as err:  # noqa: BLE001 - whatever the student's code raised
        raise CheckFailed(f"{context}: building the model raised {type(err).__name__}: {err}") from None


def _check_signature(func: Callable, name: str, defaults: dict[str, Any]) -> None:
    if not callable(func):
        raise CheckFailed(f"{name} is not a function.")
    params = inspect.signature(func).parameters
    for arg, default in defaults.items():
        if arg not in params:
            raise CheckFailed(
                f"{name} has no parameter '{arg}'; keep the signature given in the notebook."
            )
        if params[arg].default != default:
            raise CheckFailed(
                f"{name}: the default of '{arg}' must be {default!r}, "
                f"found {params[arg].default!r}."
            )


def _pair(result: Any, name: str) -> tuple:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CheckFailed(f"{name} must return two values, (next_layer, skip_connection).")
    return result[0], result[1]


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _compare_rows(got: list, expected: list, context: str) -> None:
    """``comparator``, with its success line hidden and its failure put in context."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            comparator(got, expected)
    except AssertionError as err:
        raise CheckFailed(f"{context}: {err}") from None


# -- Exercise 1 --------------------------------------------------------------

def _conv_block_rows(h, w, c, f, dropout, pooling) -> list:
    rows = [_conv_row(h, w, c, f), _conv_row(h, w, f, f)]
    if dropout > 0:
        rows.append(["Dropout", (None, h, w, f), 0, dropout])
    if pooling:
        rows.append(["MaxPooling2D", (None, h // 2, w // 2, f), 0, (2, 2)])
    return rows


def _run_conv_block(conv_block, shape, n_filters, dropout, pooling) -> None:
    h, w, c = shape
    context = f"conv_block on input {shape} with n_filters={n_filters}, dropout_prob={dropout}, max_pooling={pooling}"
    x = layers.Input(shape)
    with _building(context):
        next_layer, skip = _pair(
            conv_block(inputs=x, n_filters=n_filters, dropout_prob=dropout, max_pooling=pooling),
            "conv_block",
        )
        model = tf.keras.Model(x, [next_layer, skip])
    expected = [_input_row(shape), *_conv_block_rows(h, w, c, n_filters, dropout, pooling)]
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


@graded
def check_conv_block_default(conv_block: Callable) -> None:
    """Layers, shapes and outputs of ``conv_block`` with pooling, several sizes."""
    _check_signature(conv_block, "conv_block", CONV_BLOCK_DEFAULTS)
    for shape, n_filters, dropout in [
        ((96, 128, 3), 32, 0),
        ((24, 32, 64), 16, 0),
        ((12, 16, 128), 64, 0.25),
        ((8, 10, 5), 8, 0.5),
    ]:
        _run_conv_block(conv_block, shape, n_filters, dropout, True)
    print("conv_block: layers, shapes and outputs are correct.")


@graded
def check_conv_block_options(conv_block: Callable) -> None:
    """Defaults, dropout on and off, pooling off, and where the skip is taken."""
    _check_signature(conv_block, "conv_block", CONV_BLOCK_DEFAULTS)
    x = layers.Input((16, 16, 4))
    with _building("conv_block(inputs) with the default arguments"):
        next_layer, skip = _pair(conv_block(x), "conv_block")
    _expect(
        _shape(next_layer) == (None, 8, 8, 32) and _shape(skip) == (None, 16, 16, 32),
        "conv_block(inputs) with the defaults must use 32 filters and pool: expected "
        f"next_layer (None, 8, 8, 32) and skip_connection (None, 16, 16, 32), got "
        f"{_shape(next_layer)} and {_shape(skip)}.",
    )
    for shape, n_filters, dropout in [((12, 16, 8), 24, 0), ((12, 16, 8), 24, 0.3), ((6, 8, 16), 40, 0.1)]:
        _run_conv_block(conv_block, shape, n_filters, dropout, False)
    _run_conv_block(conv_block, (10, 14, 6), 12, 0.2, True)
    print("conv_block: defaults, dropout and pooling options are correct.")


# -- Exercise 2 --------------------------------------------------------------

UPSAMPLING_CASES = [
    ((12, 16, 256), (24, 32, 128), 32),
    ((6, 8, 512), (12, 16, 256), 64),
    ((3, 5, 16), (6, 10, 8), 4),
]


def _upsampling_context(expansive_shape, contractive_shape, n_filters) -> str:
    return f"upsampling_block with inputs {expansive_shape} and {contractive_shape}, n_filters={n_filters}"


def _run_upsampling(upsampling_block, expansive_shape, contractive_shape, n_filters):
    expansive = layers.Input(expansive_shape)
    contractive = layers.Input(contractive_shape)
    with _building(_upsampling_context(expansive_shape, contractive_shape, n_filters)):
        out = upsampling_block(expansive, contractive, n_filters=n_filters)
        model = tf.keras.Model([expansive, contractive], out)
    return expansive, contractive, out, model


@graded
def check_upsampling_layers(upsampling_block: Callable) -> None:
    """Layers, shapes and parameter counts of ``upsampling_block``."""
    _check_signature(upsampling_block, "upsampling_block", UPSAMPLING_DEFAULTS)
    for e_shape, c_shape, f in UPSAMPLING_CASES:
        *_, model = _run_upsampling(upsampling_block, e_shape, c_shape, f)
        h, w, c = c_shape
        expected = [
            ["Conv2DTranspose", (None, h, w, f), 9 * e_shape[2] * f + f],
            ["Concatenate", (None, h, w, f + c), 0],
            _conv_row(h, w, f + c, f),
            _conv_row(h, w, f, f),
        ]
        # Where Keras lists the two input layers depends on the wiring, which the
        # wiring check covers; here they are left out of the comparison.
        got = [row for row in summary(model) if row[0] != "InputLayer"]
        _compare_rows(got, expected, _upsampling_context(e_shape, c_shape, f) + " (input layers not counted)")
    print("upsampling_block: layers, shapes and parameters are correct.")


@graded
def check_upsampling_wiring(upsampling_block: Callable) -> None:
    """Transpose settings, what is concatenated with what, and in which order."""
    _check_signature(upsampling_block, "upsampling_block", UPSAMPLING_DEFAULTS)
    for e_shape, c_shape, f in UPSAMPLING_CASES:
        context = _upsampling_context(e_shape, c_shape, f)
        expansive, contractive, out, _ = _run_upsampling(upsampling_block, e_shape, c_shape, f)
        chain = [out]
        for _ in range(2):
            _expect(
                isinstance(producer(chain[-1]), layers.Conv2D)
                and not isinstance(producer(chain[-1]), layers.Conv2DTranspose),
                f"{context}: the block must end with two Conv2D layers after the concatenation.",
            )
            chain.append(inputs_of(chain[-1])[0])
        merge = chain[-1]
        _expect(
            isinstance(producer(merge), layers.Concatenate),
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
    print("upsampling_block: wiring and concatenation order are correct.")


# -- Exercise 3 --------------------------------------------------------------

class _BlockRecorder:
    """Stand-ins for the two blocks that record how ``unet_model`` calls them.

    They build small, shape-correct blocks (1x1 convolutions), so the U-Net
    checks depend only on ``unet_model`` itself.
    """

    def __init__(self) -> None:
        self.down: list[dict] = []
        self.up: list[dict] = []

    def conv_block(self, inputs=None, n_filters=32, dropout_prob=0, max_pooling=True):
        conv = layers.Conv2D(n_filters, 1)(inputs)
        next_layer = layers.MaxPooling2D((2, 2))(conv) if max_pooling else conv
        self.down.append(dict(inputs=inputs, n_filters=n_filters, dropout_prob=dropout_prob,
                              max_pooling=max_pooling, next=next_layer, skip=conv))
        return next_layer, conv

    def upsampling_block(self, expansive_input, contractive_input, n_filters=32):
        up = layers.UpSampling2D((2, 2))(expansive_input)
        out = layers.Conv2D(n_filters, 1)(layers.concatenate([up, contractive_input], axis=3))
        self.up.append(dict(expansive=expansive_input, contractive=contractive_input,
                            n_filters=n_filters, out=out))
        return out


@contextmanager
def _stand_in_blocks(unet_model: Callable) -> Iterator[_BlockRecorder]:
    namespace = getattr(unet_model, "__globals__", None)
    if namespace is None:
        raise CheckFailed("unet_model must be a plain function defined in the notebook.")
    recorder = _BlockRecorder()
    saved = {name: namespace.get(name) for name in ("conv_block", "upsampling_block")}
    namespace["conv_block"] = recorder.conv_block
    namespace["upsampling_block"] = recorder.upsampling_block
    try:
        yield recorder
    finally:
        namespace.update(saved)


UNET_CASES = [((96, 128, 3), 32, 23), ((64, 96, 3), 8, 5), ((32, 48, 1), 4, 2)]


def _build_unet(unet_model: Callable, size, n_filters, n_classes):
    _check_signature(unet_model, "unet_model", UNET_DEFAULTS)
    context = f"unet_model(input_size={size}, n_filters={n_filters}, n_classes={n_classes})"
    with _stand_in_blocks(unet_model) as calls, _building(context):
        model = unet_model(input_size=size, n_filters=n_filters, n_classes=n_classes)
    _expect(isinstance(model, tf.keras.Model), "unet_model must return a tf.keras.Model.")
    return model, calls


def _which(tensor, tensors: list, label: str) -> str:
    for index, candidate in enumerate(tensors):
        if tensor is candidate:
            return f"{label} {index + 1}"
    return "some other tensor"


@graded
def check_unet_encoder(unet_model: Callable) -> None:
    """The five ``conv_block`` calls: filters, dropout, pooling and chaining."""
    for size, n, n_classes in UNET_CASES:
        context = f"unet_model(input_size={size}, n_filters={n}, n_classes={n_classes})"
        model, calls = _build_unet(unet_model, size, n, n_classes)
        _expect(
            len(calls.down) == 5,
            f"{context}: expected 5 calls of conv_block (4 encoder blocks and the bottleneck), got {len(calls.down)}.",
        )
        _expect(
            _shape(model.inputs[0]) == (None, *size),
            f"{context}: the model input must have shape {(None, *size)}, got {_shape(model.inputs[0])}.",
        )
        previous = model.inputs[0]
        for k, (call, filters, dropout, pooling) in enumerate(
            zip(calls.down, [n, 2 * n, 4 * n, 8 * n, 16 * n], [0, 0, 0, 0.3, 0.3], [True] * 4 + [False], strict=True)
        ):
            block = f"{context}: conv_block call {k + 1}"
            _expect(call["n_filters"] == filters, f"{block} must use n_filters={filters}, got {call['n_filters']}.")
            _expect(
                abs(float(call["dropout_prob"]) - dropout) < 1e-9,
                f"{block} must use dropout_prob={dropout}, got {call['dropout_prob']}.",
            )
            _expect(bool(call["max_pooling"]) == pooling, f"{block} must use max_pooling={pooling}.")
            source = "the model input" if k == 0 else f"next_layer of conv_block call {k}"
            _expect(call["inputs"] is previous, f"{block} must take {source} as its inputs.")
            previous = call["next"]
    print("unet_model: the encoder and bottleneck are built correctly.")


@graded
def check_unet_decoder(unet_model: Callable) -> None:
    """The four ``upsampling_block`` calls, the skip connections and the output head."""
    for size, n, n_classes in UNET_CASES:
        context = f"unet_model(input_size={size}, n_filters={n}, n_classes={n_classes})"
        model, calls = _build_unet(unet_model, size, n, n_classes)
        _expect(len(calls.down) == 5, f"{context}: expected 5 calls of conv_block, got {len(calls.down)}.")
        _expect(len(calls.up) == 4, f"{context}: expected 4 calls of upsampling_block, got {len(calls.up)}.")
        skips = [c["skip"] for c in calls.down]
        ups = [c["out"] for c in calls.up]
        expansive = calls.down[4]["next"]
        for j, call in enumerate(calls.up):
            block = f"{context}: upsampling_block call {j + 1}"
            filters = n * 2 ** (3 - j)
            _expect(call["n_filters"] == filters, f"{block} must use n_filters={filters}, got {call['n_filters']}.")
            want = "the bottleneck's next_layer" if j == 0 else f"the output of upsampling_block call {j}"
            _expect(call["expansive"] is expansive, f"{block} must take {want} as expansive_input.")
            _expect(
                call["contractive"] is skips[3 - j],
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
            inputs_of(inputs_of(out)[0])[0] is ups[-1],
            f"{context}: the 3x3 Conv2D must be applied to the output of the last upsampling_block.",
        )
        _expect(
            _shape(out) == (None, size[0], size[1], n_classes),
            f"{context}: the output must have shape {(None, size[0], size[1], n_classes)}, got {_shape(out)}.",
        )
    print("unet_model: the decoder, skip connections and output layer are correct.")
