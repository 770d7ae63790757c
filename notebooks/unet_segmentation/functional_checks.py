"""What your network computes, compared with what the specification's computes.

The structural checks (``spec_checks``) compare layers, settings and wiring.
This module runs both networks: it matches every layer of yours to the
specification's layer in the same place of the graph (walking back from each
output to the inputs, by the kind of each layer; names play no part), gives
both the same weights, and feeds them the same random input.  Each layer of
yours is run on exactly the values the specification's layer receives, so a
difference is found in the layer that makes it, whatever comes after.

Two modes are compared:

- **prediction**: every layer as it is called when the model is used as
  ``model(x)`` (a ``Dropout`` called with ``training=True`` keeps dropping);
- **training**: every layer as ``fit`` calls it; the layers that drop
  activations must be the specification's, dropping in the same pattern.

Initializers, names, seeds and how an argument is written never matter: the
weights are replaced before anything is run, and only for the comparison
(``probe.unfilled_weights``): the models compared keep their own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe import unfilled_weights
from test_utils import activation_name, call_keywords, inputs_of, producer, recompute, tf

# Largest difference, relative to the largest value of the specification's output, that still
# counts as the same result.  Equivalent networks measured at most 0 (docs/grading.md), while a
# changed setting changes outputs by 1e-1 or more; float32 itself rounds at about 1e-7.
RELATIVE_TOLERANCE = 1e-4
# Networks that need more multiplications than this are run on inputs halved in height and
# width: every layer is local, so a smaller input that pools and pads alike shows every difference.
WORK_BUDGET = 3e7
BATCH = 1


@dataclass(frozen=True)
class Difference:
    """What one layer of yours computes differently; ``where`` is the specification's tensor it concerns."""

    kind: str  # "layer": a value differs; "dropout": training behaviour differs; "wiring": graphs differ
    where: Any
    message: str


class _Mismatch(Exception):
    def __init__(self, where: Any, message: str) -> None:
        super().__init__(message)
        self.where, self.message = where, message


Namer = Callable[[Any], str]


def compare(student: tf.keras.Model, spec: tf.keras.Model, name_of: Namer | None = None,
            seed: int = 0) -> list[Difference]:
    """Every difference between what ``student`` and ``spec`` compute, closest to the inputs first.

    ``name_of`` names the specification's layer that made a tensor, as the
    student would say it ("second Conv2D"); by default, by kind and order.
    """
    name_of = name_of or ordinal_namer(spec)
    try:
        pairs = match(spec, student)
    except _Mismatch as err:
        return [Difference("wiring", err.where, err.message)]
    rng = np.random.default_rng(seed)
    # The random weights given to both networks hold only in here: neither model is changed, and models
    # built with unfilled weights (the grader's) never pay for filling them first.
    with unfilled_weights(tf):
        differences = transplant(pairs, rng, name_of)
        if differences:
            return differences
        values = _spec_inputs(spec, rng)
        differences = _prediction_differences(pairs, values, name_of)
        return differences + _training_differences(pairs, values, name_of)


def deviations(student: tf.keras.Model, spec: tf.keras.Model, seed: int = 0) -> dict[str, float] | None:
    """The largest relative differences between two networks that match: per layer and of the whole outputs.

    For measuring the tolerance (``bench/tolerance.py``): ``layer`` is the
    largest over the layers of ``compare``'s run; ``outputs`` runs both whole
    models as Keras does (``model(x)``, full size), with the same weights and input.
    None when the graphs do not match or the weights do not fit.
    """
    try:
        pairs = match(spec, student)
    except _Mismatch:
        return None
    rng = np.random.default_rng(seed)
    with unfilled_weights(tf):
        if transplant(pairs, rng, ordinal_namer(spec)):
            return None
        values = _spec_inputs(spec, rng)
        layer = 0.0
        for s, t in pairs:
            if kind(producer(s)) != "InputLayer" and id(s) not in values:
                values[id(s)] = recompute(s, values)
                layer = max(layer, _deviation(recompute(t, _their_inputs(s, t, values)), values[id(s)]))
        arrays = [rng.standard_normal((BATCH, *x.shape[1:])).astype("float32") for x in spec.inputs]
        full = arrays if len(arrays) > 1 else arrays[0]
        whole = max(_deviation(a, b) for a, b in zip(tf.nest.flatten(student(full)), tf.nest.flatten(spec(full)),
                                                     strict=True))
        return {"layer": layer, "outputs": whole}


# -- matching the two graphs ----------------------------------------------------------

def kind(op: Any) -> str:
    """A layer's kind: its class (``concatenate``, ``Concatenate()`` and ``keras.ops.concatenate`` agree)."""
    return type(op).__name__


def match(spec: tf.keras.Model, student: tf.keras.Model) -> list[tuple[Any, Any]]:
    """Pairs (specification's tensor, yours), inputs before the layers that use them.

    Walks back from each output: a layer matches when it is of the same
    kind and its inputs, in order, match.  Raises ``_Mismatch`` where the
    graphs part.
    """
    if len(spec.outputs) != len(student.outputs) or len(spec.inputs) != len(student.inputs):
        raise _Mismatch(spec.outputs[0], f"your model has {len(student.inputs)} inputs and {len(student.outputs)} "
                                         f"outputs; the specification's {len(spec.inputs)} and {len(spec.outputs)}.")
    spec_inputs = {id(t): i for i, t in enumerate(spec.inputs)}
    student_inputs = {id(t): i for i, t in enumerate(student.inputs)}
    seen: dict[int, Any] = {}
    claimed: dict[int, Any] = {}
    order: list[tuple[Any, Any]] = []

    def visit(s: Any, t: Any) -> None:
        if id(s) in seen:
            if seen[id(s)] is not t:
                raise _Mismatch(s, f"the specification uses one tensor where yours uses two ({kind(producer(s))}).")
            return
        if id(t) in claimed and claimed[id(t)] is not s:
            raise _Mismatch(s, f"your network uses the output of one {kind(producer(t))} where the specification "
                               "uses two different tensors.")
        if id(s) in spec_inputs or id(t) in student_inputs:
            if spec_inputs.get(id(s)) != student_inputs.get(id(t)):
                raise _Mismatch(s, _input_mismatch(s, t, spec_inputs, student_inputs))
        else:
            spec_op, student_op = producer(s), producer(t)
            if kind(spec_op) != kind(student_op):
                raise _Mismatch(s, f"where the specification has {kind(spec_op)}, your network has "
                                   f"{kind(student_op)}.")
            spec_in, student_in = inputs_of(s), inputs_of(t)
            if len(spec_in) != len(student_in):
                raise _Mismatch(s, f"your {kind(student_op)} takes {len(student_in)} tensors; the "
                                   f"specification's takes {len(spec_in)}.")
            for a, b in zip(spec_in, student_in, strict=True):
                visit(a, b)
        seen[id(s)], claimed[id(t)] = t, s
        order.append((s, t))

    for s, t in zip(spec.outputs, student.outputs, strict=True):
        visit(s, t)
    return order


def _input_mismatch(s: Any, t: Any, spec_inputs: dict, student_inputs: dict) -> str:
    if id(t) in student_inputs:
        return f"where the specification has {kind(producer(s))}, your network has the model's input itself."
    return f"where the specification takes the model's input, your network has {kind(producer(t))}."


# -- weights ---------------------------------------------------------------------------

def transplant(pairs: list[tuple[Any, Any]], rng: np.random.Generator, name_of: Namer) -> list[Difference]:
    """Give each specification layer random weights, and the matched layer of yours the same ones.

    Random biases too: a zero bias would hide a layer that has none.
    """
    differences = []
    done: set[int] = set()
    for s, t in pairs:
        spec_op, student_op = producer(s), producer(t)
        weights = getattr(spec_op, "weights", [])
        if id(spec_op) in done or not weights:
            continue
        done.add(id(spec_op))
        values = [_random_weight(tuple(w.shape), rng) for w in weights]
        _assign(weights, values)
        theirs = list(getattr(student_op, "weights", []))
        if [tuple(w.shape) for w in theirs] != [v.shape for v in values]:
            differences.append(Difference("layer", s, explain(s, t, name_of, None)))
            continue
        _assign(theirs, values)
    return differences


def _assign(variables: list, values: list[np.ndarray]) -> None:
    # Variable by variable: Layer.set_weights checks and converts, at several times the cost.
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def _random_weight(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    if len(shape) <= 1:
        return rng.uniform(-0.5, 0.5, shape).astype("float32")
    # Uniform on [-a, a) with a = sqrt(3 / fan_in): variance 1 / fan_in, so each layer's outputs stay of the
    # size of its inputs.  Drawn in float32 and scaled in place: the millions of weights of a U-Net or of a
    # 1024-filter block take a fifth of the time normal numbers drawn in float64 and converted took.
    fan_in = int(np.prod(shape[:-1]))
    values = rng.random(shape, dtype=np.float32)
    values -= np.float32(0.5)
    values *= np.float32(2 * np.sqrt(3 / fan_in))
    return values


# -- running both ----------------------------------------------------------------------

def halvings(spec: tf.keras.Model) -> int:
    """How many times the inputs are halved before running: while the work is over the budget.

    Only while every height and width in the network stays whole, and every
    pooled one even, so that the smaller network pads, pools and joins
    exactly as the full-size one does.
    """
    spatial = [tuple(t.shape[1:3]) for op in spec.operations for t in tf.nest.flatten(op.output)]
    pooled = [tuple(t.shape[1:3]) for op in spec.operations if kind(op) == "MaxPooling2D"
              for t in tf.nest.flatten(op.input)]
    work = sum(op.count_params() * np.prod(op.output.shape[1:3]) for op in spec.operations
               if op.count_params() and len(op.output.shape) == 4)
    k = 0
    while (work / 4 ** k > WORK_BUDGET and all(h % 2 ** (k + 1) == 0 and w % 2 ** (k + 1) == 0 for h, w in spatial)
           and all(h % 2 ** (k + 2) == 0 and w % 2 ** (k + 2) == 0 for h, w in pooled)):
        k += 1
    return k


def _spec_inputs(spec: tf.keras.Model, rng: np.random.Generator) -> dict[int, Any]:
    k = halvings(spec)
    values = {}
    for x in spec.inputs:
        h, w, *rest = tuple(x.shape[1:])
        values[id(x)] = tf.constant(rng.standard_normal((BATCH, h // 2 ** k, w // 2 ** k, *rest)).astype("float32"))
    return values


def _prediction_differences(pairs: list[tuple[Any, Any]], values: dict[int, Any],
                            name_of: Namer) -> list[Difference]:
    """Run the specification's network, and each layer of yours on the values its match receives."""
    differences = []
    for s, t in pairs:
        if id(s) in values:
            continue
        if kind(producer(s)) == "InputLayer":
            continue
        values[id(s)] = recompute(s, values)
        try:
            theirs = recompute(t, _their_inputs(s, t, values))
        except Exception as err:  # noqa: BLE001 - a layer of theirs that cannot take the specification's values
            differences.append(Difference("layer", s, f"your {name_of(s)} cannot take what the specification's "
                                                      f"receives: {type(err).__name__}: {str(err)[:200]}"))
            continue
        deviation = _deviation(theirs, values[id(s)])
        if deviation > RELATIVE_TOLERANCE:
            differences.append(Difference("dropout" if kind(producer(s)) == "Dropout" else "layer", s,
                                          explain(s, t, name_of, deviation)))
    return differences


def _their_inputs(s: Any, t: Any, values: dict[int, Any]) -> dict[int, Any]:
    return {id(b): values[id(a)] for a, b in zip(inputs_of(s), inputs_of(t), strict=True)}


def _deviation(theirs: Any, spec: Any) -> float:
    """The largest difference, relative to the largest value of ``spec``; infinite for another shape."""
    a, b = np.asarray(theirs, dtype="float64"), np.asarray(spec, dtype="float64")
    if a.shape != b.shape:
        return float("inf")
    scale = max(float(np.abs(b).max(initial=0.0)), 1e-6)
    return float(np.abs(a - b).max(initial=0.0)) / scale


def trains_differently(op: Any) -> bool:
    """Whether a layer's call takes ``training`` (Dropout, BatchNormalization, ...)."""
    call = getattr(op, "call", None)
    try:
        return call is not None and "training" in inspect.signature(call).parameters
    except (TypeError, ValueError):
        return False


def _training_differences(pairs: list[tuple[Any, Any]], values: dict[int, Any],
                          name_of: Namer) -> list[Difference]:
    """In training, the same layers must drop activations, in the same pattern."""
    differences = []
    for s, t in pairs:
        spec_op, student_op = producer(s), producer(t)
        if kind(spec_op) == "InputLayer" or not (trains_differently(spec_op) or trains_differently(student_op)):
            continue
        spec_drops = _dropping(s, {id(a): values[id(a)] for a in inputs_of(s)})
        try:
            their_drops = _dropping(t, _their_inputs(s, t, values))
        except Exception:  # noqa: BLE001 - already a difference in prediction
            continue
        if spec_drops != their_drops:
            differences.append(Difference("dropout", s, _explain_training(s, t, name_of, spec_drops, their_drops)))
    return differences


def _dropping(tensor: Any, inputs: dict[int, Any]) -> tuple | None:
    """How a layer drops in training: None if it does not, else the axes along which its mask is constant.

    It is run on ones of the input's shape, so that every zero it outputs is one it dropped (a ReLU
    before it makes zeros of its own).
    """
    op = producer(tensor)
    if len(inputs) != 1:
        return None
    ones = {key: tf.ones_like(value) for key, value in inputs.items()}
    keywords = {"training": True} if trains_differently(op) else {}
    trained = np.asarray(recompute(tensor, ones, **keywords))
    dropped = trained == 0
    if not dropped.any():
        return None
    return tuple(axis for axis in range(dropped.ndim) if dropped.shape[axis] > 1
                 and (dropped.all(axis=axis) | ~dropped.any(axis=axis)).all())


# -- saying it in the student's words ------------------------------------------------------

_ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]


def ordinal_namer(spec: tf.keras.Model) -> Namer:
    """Names by kind and order in the specification's network: "second Conv2D", or "Dropout" when alone."""
    ops = [op for op in spec.operations if kind(op) != "InputLayer"]

    def name_of(tensor: Any) -> str:
        op = producer(tensor)
        same = [o for o in ops if kind(o) == kind(op)]
        if len(same) == 1 or op not in same:
            return kind(op)
        index = same.index(op)
        return f"{_ORDINALS[index]} {kind(op)}" if index < len(_ORDINALS) else f"{kind(op)} number {index + 1}"

    return name_of


# What changes a layer's result, per kind; initializers, regularizers, names and seeds do not.
SETTINGS = {
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "dilation_rate", "groups", "use_bias", "activation",
               "data_format"),
    "Conv2DTranspose": ("filters", "kernel_size", "strides", "padding", "output_padding", "dilation_rate",
                        "use_bias", "activation", "data_format"),
    "MaxPooling2D": ("pool_size", "strides", "padding", "data_format"),
    "Dropout": ("rate", "noise_shape"),
    "Concatenate": ("axis",),
}


def _setting(op: Any, name: str) -> Any:
    value = getattr(op, name, None)
    if name == "activation":
        return activation_name(value)
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return value


def _activation_text(name: str) -> str:
    return "has no activation" if name == "linear" else f"applies {name}"


def padding_matters(op: Any, input_shape: tuple) -> bool:
    """Whether ``padding='same'`` pads anything here: not for a 1x1 kernel, nor 2x2 pooling of even sizes."""
    window: tuple = tuple(getattr(op, "kernel_size", None) or getattr(op, "pool_size", None) or (1, 1))
    dilation: tuple = tuple(getattr(op, "dilation_rate", None) or (1, 1))
    strides: tuple = tuple(getattr(op, "strides", None) or window)
    for size, k, d, stride in zip(input_shape[1:3], window, dilation, strides, strict=False):
        if size is None:
            return True
        span = (k - 1) * d + 1
        if (-(-size // stride) - 1) * stride + span > size:
            return True
    return False


def setting_differences(spec_op: Any, student_op: Any, input_shape: tuple | None = None) -> list[str]:
    """Each setting that differs and has an effect, as "has ...; the specification's has ..."."""
    found = []
    for name in SETTINGS.get(kind(spec_op), ()):
        spec_value, theirs = _setting(spec_op, name), _setting(student_op, name)
        if spec_value == theirs:
            continue
        if name == "padding" and input_shape is not None and kind(spec_op) != "Conv2DTranspose" \
                and not padding_matters(spec_op, input_shape):
            continue
        if name == "activation":
            found.append(f"{_activation_text(theirs)}; the specification's {_activation_text(spec_value)} "
                         f"({_fix(spec_op, name, spec_value)})")
        else:
            found.append(f"has {name}={theirs!r}; the specification's has {name}={spec_value!r} "
                         f"({_fix(spec_op, name, spec_value)})")
    return found


def _default(op: Any, name: str) -> Any:
    """The value a layer's class gives setting ``name`` when it is not written, normalised like ``_setting``."""
    try:
        parameter = inspect.signature(type(op).__init__).parameters.get(name)
    except (TypeError, ValueError):
        return inspect.Parameter.empty
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return inspect.Parameter.empty
    default = parameter.default
    if name == "activation":
        return "linear" if default in (None, "linear") else default
    if isinstance(default, int) and not isinstance(default, bool) and name in ("strides", "dilation_rate"):
        return (default, default)
    return default.lower() if isinstance(default, str) else default


def _fix(op: Any, name: str, spec_value: Any) -> str:
    """What to write: leave the argument out when the specification's value is the default."""
    if _default(op, name) == spec_value:
        return f"leave {name}= out"
    return f"write activation={spec_value!r}" if name == "activation" else f"write {name}={spec_value!r}"


def keyword_differences(s: Any, t: Any) -> list[str]:
    """Call arguments (``training=True``) that your call passes and the specification's does not, or the reverse."""
    spec_keywords, theirs = call_keywords(s), call_keywords(t)
    found = []
    for key in sorted(set(spec_keywords) | set(theirs)):
        if spec_keywords.get(key, "unset") == theirs.get(key, "unset"):
            continue
        if key == "training" and theirs.get(key) is True:
            found.append("is called with training=True, so it keeps dropping activations when the network "
                         "predicts (called as model(x)); the specification's is called on its tensor alone and "
                         "drops only while training")
        elif key in theirs:
            found.append(f"is called with {key}={theirs[key]!r}; the specification's is not")
        else:
            found.append(f"is called without {key}={spec_keywords[key]!r}, which the specification's has")
    return found


def _input_shape(s: Any) -> tuple | None:
    spec_inputs = inputs_of(s)
    return tuple(spec_inputs[0].shape) if len(spec_inputs) == 1 else None


def explain(s: Any, t: Any, name_of: Namer, deviation: float | None) -> str:
    """One sentence: which layer of yours, what it does, what the specification's does."""
    what = name_of(s)
    found = keyword_differences(s, t) + setting_differences(producer(s), producer(t), _input_shape(s))
    if found:
        return f"your {what} " + "; and it ".join(found) + "."
    if deviation is None:
        return f"your {what} has weights of other shapes than the specification's."
    size = "of another shape" if deviation == float("inf") else f"differing by up to {deviation:.2g} of its range"
    return (f"your {what} computes other values than the specification's from the same input and weights "
            f"({size}).")


_AXES = {0: "image of the batch", 1: "row", 2: "column", 3: "channel"}


def _describe_drops(pattern: tuple | None) -> str:
    if pattern is None:
        return "does not drop activations"
    if not pattern:
        return "drops single activations at random"
    axes = [_AXES.get(axis, f"axis {axis}") for axis in pattern]
    return "drops the same activations in every " + (" and ".join(axes) if len(axes) < 3 else
                                                     ", ".join(axes[:-1]) + " and " + axes[-1])


def _explain_training(s: Any, t: Any, name_of: Namer, spec_drops: tuple | None, their_drops: tuple | None) -> str:
    what = name_of(s)
    found = keyword_differences(s, t) + setting_differences(producer(s), producer(t), _input_shape(s))
    detail = f": yours {'; and it '.join(found)}" if found else ""
    return (f"in training, your {what} {_describe_drops(their_drops)}; the specification's "
            f"{_describe_drops(spec_drops)}{detail}.")


def first_messages(differences: list[Difference], limit: int = 2) -> str:
    """The first ``limit`` differences as one text."""
    texts = [d.message for d in differences[:limit]]
    more = len(differences) - limit
    return " ".join(texts) + (f" ({more} more difference{'s' if more > 1 else ''} after it.)" if more > 0 else "")


def float32_config(config: Any) -> Any:
    """A model configuration with every layer computing in float32.

    The notebook may switch on mixed precision before the grader looks at the
    models; in 16 bits the same network computes other numbers.  Precision
    is no part of the specification, so both networks are run in float32.
    """
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            if key == "dtype" and (isinstance(value, dict) or value in ("float16", "bfloat16", "float64")):
                out[key] = "float32"
            else:
                out[key] = float32_config(value)
        return out
    if isinstance(config, list):
        return [float32_config(v) for v in config]
    return config
