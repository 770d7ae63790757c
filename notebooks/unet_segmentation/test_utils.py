"""Checks that students run after each exercise.

``summary`` turns a Keras model into a plain list with one row per layer, and
``comparator`` compares such a list with the expected one and explains the
first difference it finds.  Both only read the model, so they are safe to call
as often as you like.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any


def _import_tensorflow_quietly():
    """Import TensorFlow with its C++ start-up notices hidden.

    TensorFlow writes them straight to file descriptor 2, where no log level
    reaches them; in a notebook they show up as an alarming red box.  Only the
    import is muted: Python exceptions still propagate as usual.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tensorflow


if TYPE_CHECKING:
    import tensorflow as tf
else:
    tf = _import_tensorflow_quietly()

# -- Keras internals ------------------------------------------------------------
# Which layer made a tensor, from which tensors and with which call arguments,
# is not public Keras API: the four functions below are the only place the
# checks read it (probe.py has its own copy of the first, as it must run on
# its own; functional_checks.py calls a layer again through ``recompute``).
# Checked with Keras:
KERAS_CHECKED_WITH = {"keras": "3.15.1"}


def producer(tensor: Any) -> Any:
    """The layer (or Keras operation) whose call returned ``tensor``."""
    return tensor._keras_history.operation


def inputs_of(tensor: Any) -> list:
    """The tensors that were passed to the layer that made ``tensor``."""
    history = tensor._keras_history
    return list(history.operation._inbound_nodes[history.node_index].input_tensors)


def call_keywords(tensor: Any) -> dict:
    """The keyword arguments, other than tensors, of the call that made ``tensor`` (``training=True``)."""
    history = tensor._keras_history
    arguments = history.operation._inbound_nodes[history.node_index].arguments
    keywords = {} if arguments is None else arguments.kwargs
    return {k: v for k, v in keywords.items() if getattr(v, "_keras_history", None) is None}


def recompute(tensor: Any, values: dict[int, Any], **overrides: Any) -> Any:
    """Call the layer that made ``tensor`` again, as it was called, on other values.

    ``values`` maps ``id()`` of each input tensor of that call to the value to
    use in its place; ``overrides`` replace keyword arguments of the call
    (``training=True``).
    """
    history = tensor._keras_history
    node = history.operation._inbound_nodes[history.node_index]
    args, kwargs = node.arguments.fill_in(values)
    outputs = history.operation(*args, **{**kwargs, **overrides})
    return tf.nest.flatten(outputs)[history.tensor_index]


# Extra fields that ``summary`` adds after [type, shape, params], per layer type.
EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "Conv2D": ("padding", "activation", "initializer"),
    "MaxPooling2D": ("pool size",),
    "Dropout": ("rate",),
}
BASE_FIELDS = ("layer type", "output shape", "parameters")


# Initializers that are another class's special case, by the settings that make them so:
# VarianceScaling(2.0, "fan_in", "truncated_normal") *is* He normal.
_INITIALIZER_ALIASES = {
    ("VarianceScaling", 2.0, "fan_in", "truncated_normal"): "HeNormal",
    ("VarianceScaling", 1.0, "fan_avg", "uniform"): "GlorotUniform",
}


def _output_shape(layer) -> Any:
    shape = tuple(layer.output.shape)
    # The course lists the input layer's shape inside a list; keep that form so
    # expected lists copied from the assignment stay valid.
    return [shape] if isinstance(layer, tf.keras.layers.InputLayer) else shape


def activation_name(activation: Any) -> str:
    """The name of a layer's activation, however it was given: ``'relu'``, ``tf.nn.relu`` or ``ReLU()``."""
    name = getattr(activation, "__name__", None)
    if name:
        return name
    if isinstance(activation, tf.keras.layers.ReLU):
        config = activation.get_config()
        if not config.get("max_value") and not config.get("negative_slope") and not config.get("threshold"):
            return "relu"
    return type(activation).__name__


def initializer_name(initializer: Any) -> str:
    """The class of an initializer, naming the He and Glorot special cases of ``VarianceScaling`` as such."""
    name = type(initializer).__name__
    if name == "VarianceScaling":
        key = (name, float(initializer.scale), initializer.mode, initializer.distribution)
        return _INITIALIZER_ALIASES.get(key, name)
    return name


def layer_row(layer) -> list:
    """Describe one layer as ``[class name, output shape, params, extras...]``.

    Also describes a Keras operation in a functional model, such as
    ``keras.ops.concatenate``: it has no parameters.
    """
    kind = type(layer).__name__
    params = layer.count_params() if isinstance(layer, tf.keras.layers.Layer) else 0
    row: list = [kind, _output_shape(layer), params]
    if kind == "Conv2D":
        row += [
            layer.padding,
            activation_name(layer.activation),
            initializer_name(layer.kernel_initializer),
        ]
    elif kind == "MaxPooling2D":
        row.append(tuple(layer.pool_size))
    elif kind == "Dropout":
        row.append(layer.rate)
    return row


def summary(model: tf.keras.Model) -> list[list]:
    """Return one row per layer of ``model``, in the order Keras lists them.

    Each row is ``[class name, output shape, number of parameters]`` followed,
    for ``Conv2D``, by padding, activation name and initializer class; for
    ``MaxPooling2D`` by the pool size; for ``Dropout`` by the rate.  Keras
    operations used as layers (``keras.ops.concatenate``) get a row too.
    """
    return [layer_row(op) for op in model.operations]


def _field_name(kind: str, index: int) -> str:
    names = BASE_FIELDS + EXTRA_FIELDS.get(kind, ())
    return names[index] if index < len(names) else f"field {index}"


def _same(expected: Any, got: Any) -> bool:
    if isinstance(expected, float) or isinstance(got, float):
        # To float32 precision: a rate given as np.float32(0.3) is 0.3.
        try:
            return math.isclose(float(expected), float(got), rel_tol=1e-6, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(expected) == len(got) and all(_same(e, g) for e, g in zip(expected, got, strict=True))
    return expected == got


def _kind(row: Sequence) -> str:
    return str(row[0]) if len(row) else "?"


def _length_message(learner: Sequence, instructor: Sequence) -> str:
    """Explain a layer count mismatch as the first missing or extra layer."""
    matcher = difflib.SequenceMatcher(
        a=[_kind(r) for r in instructor], b=[_kind(r) for r in learner], autojunk=False
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if tag == "delete" or (tag == "replace" and i2 - i1 > j2 - j1):
            return (
                f"Missing layer at index {i1}: expected {list(instructor[i1])}, "
                f"but your model has no such layer there "
                f"({len(learner)} layers instead of {len(instructor)})."
            )
        if tag == "insert" or (tag == "replace" and j2 - j1 > i2 - i1):
            return (
                f"Extra layer at index {j1}: got {list(learner[j1])}, "
                f"which the expected model does not have "
                f"({len(learner)} layers instead of {len(instructor)})."
            )
    return f"Your model has {len(learner)} layers, the expected model {len(instructor)}."


def comparator(learner: Sequence[Sequence], instructor: Sequence[Sequence]) -> None:
    """Compare a ``summary`` of your model with the expected list.

    Prints ``All tests passed!`` when they match.  Otherwise raises
    ``AssertionError`` naming the first difference: the layer index and type,
    the field, the expected value and what your model has, or a missing or
    extra layer.
    """
    if len(learner) != len(instructor):
        raise AssertionError(_length_message(learner, instructor))
    for index, (got, expected) in enumerate(zip(learner, instructor, strict=True)):
        kind = _kind(expected)
        if len(got) != len(expected):
            raise AssertionError(
                f"Layer {index} ({kind}): expected {len(expected)} fields "
                f"{list(expected)}, got {len(got)} fields {list(got)}."
            )
        for field, (g, e) in enumerate(zip(got, expected, strict=True)):
            if not _same(e, g):
                raise AssertionError(
                    f"Layer {index} ({kind}): {_field_name(kind, field)} "
                    f"expected {e!r}, got {g!r}."
                )
    print("All tests passed!")
