"""What a network computes, described independently of how its code was spelled.

The oracle for the grading rule "same network, full points": two functional
models get the same description exactly when they have the same operations
with the same settings, shapes and wiring.  Layer names, the order layers
were created in, aliases (``MaxPool2D``), argument forms (``3`` or
``(3, 3)``, ``'he_normal'`` or ``HeNormal()``) and settings without effect
(pooling padding on even sizes) leave no trace.  It shares no code with the
grader's checks, so a test can hold the checks to it.

Equal descriptions are not yet the same network: a setting the description
does not list, or a call argument (``Dropout(...)(x, training=True)``), can
still change the result.  So the oracle also runs both models, the way Keras
runs them, with the same weights: ``model(x)`` must give the same outputs,
and ``model(x, training=True)`` must be random in the same outputs.

The student's networks are built without drawing initial weights, or as
usual where that fails (``probe.unfilled_or_as_usual``, which builds the same networks:
``tests/test_unfilled_weights.py``), as the grader builds them; the weights
they run on are the reference's, given for the run only.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import tensorflow as tf

from probe import unfilled_or_as_usual

# Enough points to tell relu, linear, softmax, sigmoid, elu ... apart.
_ACTIVATION_PROBE = np.array([[-3.0, -1.0, -0.25, 0.0, 0.5, 2.0, 7.0]], dtype="float32")


def _activation(function: Any) -> list[float]:
    """An activation by its values on fixed points, so ``'relu'``, ``tf.nn.relu`` and ``ReLU()`` agree."""
    return [round(float(v), 5) for v in np.asarray(function(tf.constant(_ACTIVATION_PROBE))).ravel()]


def _initializer(initializer: Any) -> Any:
    """An initializer by its distribution: He normal is VarianceScaling(2, fan_in, truncated_normal)."""
    if isinstance(initializer, tf.keras.initializers.VarianceScaling):
        return ["VarianceScaling", float(initializer.scale), initializer.mode, initializer.distribution]
    config = {k: v for k, v in initializer.get_config().items() if k != "seed"}
    return [type(initializer).__name__, config]


def _padding(op: Any, shape_in: tuple, window: tuple, strides: tuple) -> str:
    """``op.padding``, or "no effect" when 'same' would add no padding (a 1x1 kernel, 2x2 pooling of even sizes)."""
    for size, w, s in zip(shape_in[1:3], window, strides, strict=True):
        out = -(-size // s)
        if max((out - 1) * s + w - size, 0) > 0:
            return op.padding
    return "no effect"


def _settings(op: Any, inputs: list) -> Any:
    layers = tf.keras.layers
    if isinstance(op, layers.Conv2DTranspose):
        # The specification names no initializer for the transposed convolution: any is its network.
        return [op.filters, list(op.kernel_size), list(op.strides), op.padding, list(op.dilation_rate),
                op.use_bias, _activation(op.activation), getattr(op, "output_padding", None)]
    if isinstance(op, layers.Conv2D):
        window = tuple((k - 1) * d + 1 for k, d in zip(op.kernel_size, op.dilation_rate, strict=True))
        return [op.filters, list(op.kernel_size), list(op.strides),
                _padding(op, tuple(inputs[0].shape), window, tuple(op.strides)), list(op.dilation_rate),
                op.groups, op.use_bias, _activation(op.activation), _initializer(op.kernel_initializer),
                _initializer(op.bias_initializer)]
    if isinstance(op, layers.Dropout):
        return [round(float(op.rate), 6), op.noise_shape]
    if isinstance(op, layers.MaxPooling2D):
        pool, strides = tuple(op.pool_size), tuple(op.strides or op.pool_size)
        return [list(pool), list(strides), _padding(op, tuple(inputs[0].shape), pool, strides)]
    if type(op).__name__ == "Concatenate":  # the layer or keras.ops.concatenate
        rank = len(inputs[0].shape)
        return ["Concatenate", op.axis % rank]
    if isinstance(op, layers.InputLayer):
        return []
    config = {k: v for k, v in op.get_config().items() if k not in ("name", "trainable", "dtype")}
    return [type(op).__name__, json.loads(json.dumps(config, default=repr))]


def _keys(model: tf.keras.Model) -> tuple[list[str], dict[str, Any]]:
    """The fingerprint of each output, and the operation that made each fingerprinted tensor."""
    positions = {id(t): i for i, t in enumerate(model.inputs)}
    memo: dict[int, str] = {}
    made_by: dict[str, Any] = {}

    def key(tensor: Any) -> str:
        if id(tensor) in memo:
            return memo[id(tensor)]
        history = tensor._keras_history
        op = history.operation
        inputs = list(op._inbound_nodes[history.node_index].input_tensors)
        if id(tensor) in positions:
            text = json.dumps(["input", positions[id(tensor)], list(tensor.shape)])
        else:
            kind = "Concatenate" if type(op).__name__ == "Concatenate" else type(op).__name__
            text = json.dumps([kind, _settings(op, inputs), history.tensor_index, list(tensor.shape),
                               [key(t) for t in inputs]])
        memo[id(tensor)] = hashlib.sha256(text.encode()).hexdigest()
        made_by[memo[id(tensor)]] = op
        return memo[id(tensor)]

    return [key(t) for t in model.outputs], made_by


def describe(model: tf.keras.Model) -> list[str]:
    """One fingerprint per model output, from what feeds it all the way back to the model's inputs."""
    return _keys(model)[0]


def _run(model: tf.keras.Model, x: Any) -> tuple[list[np.ndarray], list[bool]]:
    """What ``model(x)`` gives, and which outputs ``model(x, training=True)`` changes (dropout before them)."""
    predicted = [np.asarray(v) for v in tf.nest.flatten(model(x))]
    trained = [np.asarray(v) for v in tf.nest.flatten(model(x, training=True))]
    return predicted, [not np.array_equal(a, b) for a, b in zip(predicted, trained, strict=True)]


def computes_alike(model: tf.keras.Model, reference: tf.keras.Model, seed: int = 0) -> bool:
    """Whether two models of equal descriptions compute the same, run by Keras with the same random weights."""
    if id(reference) not in _RUNS:
        rng = np.random.default_rng(seed)
        theirs = _keys(reference)[1]
        weights = {key: [rng.uniform(-0.5, 0.5, tuple(w.shape)).astype("float32") for w in op.weights]
                   for key, op in theirs.items() if getattr(op, "weights", None)}
        for key, values in weights.items():
            theirs[key].set_weights(values)
        arrays = [rng.standard_normal((1, *t.shape[1:])).astype("float32") for t in reference.inputs]
        x = arrays if len(arrays) > 1 else arrays[0]
        _RUNS[id(reference)] = (weights, x, _run(reference, x))
    weights, x, (expected, random) = _RUNS[id(reference)]
    ours = _keys(model)[1]
    # The student's model is built without drawing initial weights (``same_network``): it runs on the
    # reference's weights given for this run only, the way Keras itself runs a model on given weights.
    given = [(variable, value) for key, values in weights.items()
             for variable, value in zip(ours[key].weights, values, strict=True)]
    with tf.keras.StatelessScope(state_mapping=given, initialize_variables=False):
        predicted, trained = _run(model, x)
    return trained == random and all(np.allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.abs(b).max()))
                                     for a, b in zip(predicted, expected, strict=True))


# Per reference model: its weights, the input, and what it computes (the reference never changes).
_RUNS: dict[int, tuple[dict[str, list[np.ndarray]], Any, tuple[list[np.ndarray], list[bool]]]] = {}


def _conv_model(block: Any, args: dict) -> tf.keras.Model:
    x = tf.keras.layers.Input(tuple(args["shape"]))
    result = block(x) if args["kwargs"] is None else block(inputs=x, **args["kwargs"])
    return tf.keras.Model(x, [result[0], result[1]])


def _upsampling_model(block: Any, args: dict) -> tf.keras.Model:
    e, c = tf.keras.layers.Input(tuple(args["expansive"])), tf.keras.layers.Input(tuple(args["contractive"]))
    return tf.keras.Model([e, c], block(e, c, n_filters=args["n_filters"]))


def _unet(function: Any, args: dict) -> tf.keras.Model:
    return function(input_size=tuple(args["input_size"]), n_filters=args["n_filters"], n_classes=args["n_classes"])


BUILDERS = {"conv_block": _conv_model, "upsampling_block": _upsampling_model, "unet_model": _unet}


def same_network(student: dict, reference: dict, function: str, cases: list[dict]) -> bool:
    """Whether ``student[function]`` builds the reference's network for every argument set in ``cases``.

    The same network has the same description and computes the same.  A
    function that raises, or returns something that is not the network,
    does not build it.
    """
    build = BUILDERS[function]
    for args in cases:
        try:
            model = unfilled_or_as_usual(tf, lambda args=args: build(student[function], args))
            got = describe(model)
        except Exception:  # noqa: BLE001 - code that cannot build the network does not build it
            return False
        key = (id(reference[function]), json.dumps(args, sort_keys=True))
        if key not in _REFERENCES:
            built = build(reference[function], args)
            _REFERENCES[key] = (built, describe(built))
        if got != _REFERENCES[key][1] or not computes_alike(model, _REFERENCES[key][0]):
            return False
    return True


# The reference's networks never change: each is built once per test session.
_REFERENCES: dict[tuple[int, str], tuple[tf.keras.Model, list[str]]] = {}
