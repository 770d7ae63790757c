"""Collect evidence about a student's functions, inside the student's kernel.

This module holds no expected answers: it calls the graded functions with the
arguments the grader asks for and reports what came back as plain data (model
configurations as JSON, argument values, tensor references).  The grader
judges that data in its own process, where student code never runs, so
nothing a student redefines in the kernel can change a verdict; at most it
can spoil its own evidence, which scores 0.

It is sent to the sandboxed kernel as source text (the sandbox cannot read
the course folder) and imported normally by the grader and the tests.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import linecache
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

MIME = "application/vnd.unet-grader.evidence+json"
NO_DEFAULT = "<no default>"


class CaseTimeout(Exception):
    """A graded function ran longer than the grader allows for one call."""


def ref(tensor: Any) -> str:
    """A name for a Keras tensor that survives saving the model to JSON and back.

    ``_keras_history`` is Keras' own record of which layer made a tensor (not
    public API; see ``test_utils.KERAS_CHECKED_WITH`` for the version checked).
    """
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return f"<not a Keras tensor: {type(tensor).__name__}>"
    return f"{history.operation.name}:{history.tensor_index}"


def jsonable(value: Any) -> Any:
    """``value`` as JSON data; numpy scalars become Python numbers, anything unusual its repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return jsonable(item())
    return repr(value)[:200]


def number(value: Any) -> float | None:
    """``value`` as a float when it is a real number of any numeric type (bool, int, float, numpy), else None."""
    value = jsonable(value)
    if isinstance(value, (bool, int, float)):
        return float(value)
    return None


def spelled(value: Any) -> str:
    """How a student wrote an argument, for messages: ``None``, ``0``, ``np.float32(0.3)``."""
    return repr(value)[:80]


# Keras names the layers it makes conv2d, conv2d_1, ...: in a message those names mean nothing
# to a student, who wrote Conv2D(...).  Longest prefixes first.
_LAYER_NAMES = [("conv2d_transpose", "Conv2DTranspose"), ("conv2d", "Conv2D"), ("max_pooling2d", "MaxPooling2D"),
                ("up_sampling2d", "UpSampling2D"), ("input_layer", "InputLayer"), ("concatenate", "Concatenate"),
                ("dropout", "Dropout")]
_NAMES = "|".join(n for n, _ in _LAYER_NAMES)
# A generated name is quoted ("conv2d") or numbered (conv2d_34); the plain word "dropout" is not one.
_GENERATED_NAME = re.compile(rf"([\"'])({_NAMES})(?:_\d+)?\1|\b({_NAMES})_\d+\b")


def _concatenate_shapes(message: str) -> str:
    sizes = [f"{h}x{w}" for h, w in re.findall(r"\(None, (\d+), (\d+), \d+\)", message)]
    joined = " and ".join(sizes) if sizes else "different sizes"
    return (f"concatenate joins tensors of the same height and width, but these are {joined}: "
            "does the transposed convolution double height and width (strides=2), and is the right skip "
            "connection passed?")


# Errors Keras or Python raise for common mistakes, and what they mean to a student; the
# explanation replaces Keras' own text, which speaks of its internals.
_EXPLANATIONS: list[tuple[re.Pattern, Callable[[str], str]]] = [
    (re.compile(r"expects 1 input\(s\), but it received 2"),
     lambda _: "two tensors went where a layer takes one: conv_block returns the pair (next_layer, "
               "skip_connection); pass one of them, e.g. cblock1[0]."),
    (re.compile(r"A KerasTensor cannot be used as input to a TensorFlow function"),
     lambda _: "Keras 3 does not let TensorFlow functions (tf.concat, tf.nn.relu, ...) work on a layer's output; "
               "use the Keras layer instead, e.g. concatenate([...], axis=3)."),
    (re.compile(r"Concatenate. layer requires inputs with matching shapes"), _concatenate_shapes),
]


def in_student_terms(text: str) -> str:
    """``text`` with Keras' generated layer names (``"conv2d_34"``) replaced by the layer's class."""
    classes = dict(_LAYER_NAMES)
    # 'Layer "conv2d_3" expects ...' becomes 'a Conv2D layer expects ...'.
    text = re.sub(rf"\bLayer (?=[\"']({_NAMES}))", "", text)
    return _GENERATED_NAME.sub(lambda m: f"a {classes[m.group(2) or m.group(3)]} layer", text)


def _student_frame(err: BaseException) -> tuple[str, int, str] | None:
    """(function, line in its cell, source line) of the deepest frame of the student's own code."""
    found = None
    tb = err.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        name = code.co_filename
        # Not the probe, not an installed package (Keras, TensorFlow), not Python itself.  (The
        # probe has no __file__ when the grader sends it into the kernel as text.)
        if not name.startswith(("<grader probe>", "<frozen", sys.prefix, sys.base_prefix)) \
                and name != globals().get("__file__"):
            found = (code.co_name, tb.tb_lineno, linecache.getline(name, tb.tb_lineno).strip())
        tb = tb.tb_next
    return found


def describe_error(err: BaseException) -> str:
    """What went wrong in the student's code: the error, what it means, and their line."""
    if isinstance(err, CaseTimeout):
        return str(err)
    message = str(err).strip()
    first = message.splitlines()[0][:300] if message else ""
    for pattern, explain in _EXPLANATIONS:
        if pattern.search(message):
            first = explain(message)
            break
    text = in_student_terms(f"{type(err).__name__}: {first}" if first else type(err).__name__)
    frame = _student_frame(err)
    if frame is not None and frame[0] != "<module>":
        function, line, source = frame
        text += f" (in {function}, line {line} of its cell" + (f": `{source[:120]}`)" if source else ")")
    return text


def function_info(namespace: dict, name: str) -> dict:
    """Whether ``name`` is defined and callable, and its parameters."""
    if name not in namespace:
        return {"defined": False}
    func = namespace[name]
    info: dict[str, Any] = {"defined": True, "callable": callable(func), "is_function": inspect.isfunction(func)}
    try:
        params = inspect.signature(func).parameters.values()
        info["signature"] = [
            [p.name, p.kind.name, NO_DEFAULT if p.default is inspect.Parameter.empty else jsonable(p.default)]
            for p in params
        ]
    except (TypeError, ValueError) as err:
        info["signature_error"] = describe_error(err)
    return info


class _Recorder:
    """Stand-ins for the two blocks that record how ``unet_model`` calls them.

    They build small, shape-correct blocks (1x1 convolutions), so the U-Net's
    evidence depends only on ``unet_model`` itself.  Each ``conv_block`` call
    is recorded with what its arguments *mean*, as the specification reads
    them (pooling if ``max_pooling`` is true; the rate as a number of any
    numeric type), and with how they were spelled, for the messages.
    """

    def __init__(self, layers: Any) -> None:
        self.layers = layers
        self.down: list[dict] = []
        self.up: list[dict] = []
        self.raw: list[tuple[Any, Any]] = []

        # Plain functions named like the blocks, so that Python's own messages name
        # them as the student does; arguments are bound as the real blocks bind them.
        def conv_block(*args: Any, **kwargs: Any) -> tuple:
            return self._conv_block(**_bind("conv_block", self._conv_block, args, kwargs))

        def upsampling_block(*args: Any, **kwargs: Any) -> Any:
            return self._upsampling_block(**_bind("upsampling_block", self._upsampling_block, args, kwargs))

        self.conv_block, self.upsampling_block = conv_block, upsampling_block

    def _conv_block(self, inputs=None, n_filters=32, dropout_prob=0, max_pooling=True):
        call = len(self.down) + 1
        _one_tensor(inputs, f"conv_block call {call}", "inputs", "next_layer, the first of the pair: e.g. cblock1[0]")
        conv = self.layers.Conv2D(n_filters, 1)(inputs)
        next_layer = self.layers.MaxPooling2D((2, 2))(conv) if max_pooling else conv
        self.raw.append((dropout_prob, max_pooling))
        self.down.append({
            "inputs": ref(inputs), "n_filters": jsonable(n_filters), "dropout_prob": jsonable(dropout_prob),
            "max_pooling": jsonable(max_pooling), "next": ref(next_layer), "skip": ref(conv),
            "pools": bool(max_pooling), "dropout_rate": number(dropout_prob),
            "spelled": {"dropout_prob": spelled(dropout_prob), "max_pooling": spelled(max_pooling)},
        })
        return next_layer, conv

    def _upsampling_block(self, expansive_input, contractive_input, n_filters=32):
        call = f"upsampling_block call {len(self.up) + 1}"
        _one_tensor(expansive_input, call, "expansive_input", "the previous block's output, or cblock5[0]")
        _one_tensor(contractive_input, call, "contractive_input", "the skip connection, the second of the pair: "
                    "e.g. cblock4[1]")
        up = self.layers.UpSampling2D((2, 2))(expansive_input)
        doubled, skip = tuple(getattr(up, "shape", ()))[1:3], tuple(getattr(contractive_input, "shape", ()))[1:3]
        if len(doubled) == 2 and len(skip) == 2 and doubled != skip:
            # Say what does not line up, in the student's terms, before Keras fails inside the stand-in.
            raise ValueError(
                f"{call} cannot join its inputs: expansive_input is "
                f"{expansive_input.shape[1]}x{expansive_input.shape[2]}, twice that is {doubled[0]}x{doubled[1]}, "
                f"but contractive_input is {skip[0]}x{skip[1]}. Is a block pooling that should not "
                "(the bottleneck), or is the wrong skip connection passed?")
        out = self.layers.Conv2D(n_filters, 1)(self.layers.concatenate([up, contractive_input], axis=3))
        self.up.append({
            "expansive": ref(expansive_input), "contractive": ref(contractive_input),
            "n_filters": jsonable(n_filters), "out": ref(out),
        })
        return out


def _bind(name: str, block: Callable, args: tuple, kwargs: dict) -> dict:
    """The arguments of a call of block ``name``, by parameter; a wrong call raises saying what is wrong."""
    signature = inspect.signature(block)
    unknown = [key for key in kwargs if key not in signature.parameters]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(signature.parameters), 1)
        hint = f"; did you mean `{close[0]}`?" if close else "."
        raise TypeError(f"{name} has no parameter `{unknown[0]}`{hint} Its parameters are "
                        f"{', '.join(signature.parameters)}.")
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as err:
        raise TypeError(f"{name}() {err}") from None
    return dict(bound.arguments)


def _one_tensor(value: Any, call: str, parameter: str, want: str) -> None:
    """A block's tensor argument must be one tensor, not the pair conv_block returns."""
    if isinstance(value, (tuple, list)):
        raise TypeError(f"{call} got a {type(value).__name__} of {len(value)} as {parameter}, where one tensor "
                        f"is expected: conv_block returns the pair (next_layer, skip_connection); pass {want}.")


def _plain(dropout_prob: Any, max_pooling: Any) -> tuple[float | None, bool]:
    """The plain spelling of two block arguments: a float rate (None stands for no dropout) and a bool."""
    rate = number(dropout_prob)
    return (0.0 if dropout_prob is None else rate), bool(max_pooling)


def _block_layers(tf: Any, block: Callable, dropout_prob: Any, max_pooling: Any) -> list:
    """What ``block`` builds with these two arguments on a small input: layer types, settings, outputs."""
    x = tf.keras.layers.Input((4, 4, 2))
    next_layer, skip = block(inputs=x, n_filters=2, dropout_prob=dropout_prob, max_pooling=max_pooling)
    model = tf.keras.Model(x, [next_layer, skip])
    return [[type(op).__name__, _unnamed(jsonable(op.get_config()))] for op in model.operations] + [next_layer is skip]


def _unnamed(config: Any) -> Any:
    """``config`` without layer names, at any depth (they differ with every layer built)."""
    if isinstance(config, dict):
        return {k: _unnamed(v) for k, v in config.items() if k != "name"}
    if isinstance(config, list):
        return [_unnamed(v) for v in config]
    return config


def own_block_reading(tf: Any, block: Callable, dropout_prob: Any, max_pooling: Any) -> str | None:
    """How the student's own ``conv_block`` reads an unusually spelled pair of arguments.

    ``None`` when both are spelled plainly (a bool and an int or float) or
    have no plain meaning; otherwise ``"same"`` when the block builds exactly
    what it builds from the plain spelling (``max_pooling=None`` like
    ``False``, ``dropout_prob=np.float32(0.3)`` like ``0.30000001...``),
    ``"differs"``, or ``"fails: <error>"`` when only the unusual spelling
    makes it fail.
    """
    rate, pools = _plain(dropout_prob, max_pooling)
    if rate is None or (type(dropout_prob) in (int, float) and type(max_pooling) is bool):
        return None
    try:
        plain = _block_layers(tf, block, rate, pools)
    except Exception:  # noqa: BLE001 - a block broken for plain values is Exercise 1's business
        if building_unfilled():
            raise  # perhaps only because of how it was built: the whole call is built again as usual
        return None
    try:
        unusual = _block_layers(tf, block, dropout_prob, max_pooling)
    except Exception as err:  # noqa: BLE001
        if building_unfilled():
            raise
        return f"fails: {describe_error(err)}"
    return "same" if unusual == plain else "differs"


def what_it_is(value: Any) -> str:
    """A returned value, described as the student wrote it: ``single tensor``, ``tuple of 3``, ``NoneType``."""
    if getattr(value, "_keras_history", None) is not None:
        return "single tensor"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__} of length {len(value)}"
    return type(value).__name__


def conv_block_model(tf: Any, func: Callable, case: dict) -> Any:
    """The model from an input to what ``conv_block`` returns for ``case``, or what it returned instead."""
    x = tf.keras.layers.Input(tuple(case["shape"]))
    result = func(x) if case["kwargs"] is None else func(inputs=x, **case["kwargs"])
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return what_it_is(result)
    return tf.keras.Model(x, [result[0], result[1]])


def upsampling_model(tf: Any, func: Callable, case: dict) -> Any:
    """The model from the two inputs to what ``upsampling_block`` returns for ``case``."""
    expansive = tf.keras.layers.Input(tuple(case["expansive"]))
    contractive = tf.keras.layers.Input(tuple(case["contractive"]))
    out = func(expansive, contractive, n_filters=case["n_filters"])
    return tf.keras.Model([expansive, contractive], out)


def _conv_block_case(tf: Any, func: Callable, case: dict) -> dict:
    model = conv_block_model(tf, func, case)
    return {"returned": model} if isinstance(model, str) else {"model": model.to_json()}


def _upsampling_case(tf: Any, func: Callable, case: dict) -> dict:
    return {"model": upsampling_model(tf, func, case).to_json()}


def record_unet(tf: Any, func: Callable, input_size: tuple, n_filters: int, n_classes: int,
                recorder: _Recorder | None = None) -> tuple[Any, dict]:
    """Call ``unet_model`` with stand-in blocks; return what it returned and how it called the blocks.

    The calls are ``{"down": [...], "up": [...]}``, one dict per call of
    ``conv_block`` and ``upsampling_block``, with tensor references and each
    argument's meaning; unusual spellings are read by the student's own
    ``conv_block`` too (``own_block``).
    """
    namespace = getattr(func, "__globals__", None)
    if namespace is None:
        raise TypeError("unet_model is not a plain function")
    recorder = recorder or _Recorder(tf.keras.layers)
    saved = {name: namespace.get(name) for name in ("conv_block", "upsampling_block")}
    namespace.update(conv_block=recorder.conv_block, upsampling_block=recorder.upsampling_block)
    try:
        model = func(input_size=tuple(input_size), n_filters=n_filters, n_classes=n_classes)
    finally:
        namespace.update(saved)
    # An argument means what the block receiving it makes of it: ask the
    # student's own conv_block about every unusual spelling.
    own_block = saved["conv_block"]
    readings: dict[tuple, str | None] = {}
    for call, (dropout_prob, max_pooling) in zip(recorder.down, recorder.raw, strict=True):
        key = (call["spelled"]["dropout_prob"], type(dropout_prob), call["spelled"]["max_pooling"], type(max_pooling))
        if key not in readings:
            readings[key] = own_block_reading(tf, own_block, dropout_prob, max_pooling) if callable(own_block) else None
        call["own_block"] = readings[key]
    return model, {"down": recorder.down, "up": recorder.up}


def _unet_case(tf: Any, func: Callable, case: dict, raising: bool = False) -> dict:
    if getattr(func, "__globals__", None) is None:
        return {"returned": "not a plain function"}
    recorder = _Recorder(tf.keras.layers)
    try:
        model, calls = record_unet(tf, func, case["input_size"], case["n_filters"], case["n_classes"], recorder)
    except Exception as err:  # noqa: BLE001 - the blocks called before the error still show what was built
        if raising and not isinstance(err, CaseTimeout):  # a time-out is final: no second run
            raise
        return {"error": describe_error(err), "partial": {"down": recorder.down, "up": recorder.up}}
    if not isinstance(model, tf.keras.Model):
        return {"returned": type(model).__name__}
    return {"model": model.to_json(), **calls}


_CASES = {"conv_block": _conv_block_case, "upsampling_block": _upsampling_case, "unet_model": _unet_case}
# How deep this thread is in ``unfilled_weights`` (a failure there means: build again as usual).
_unfilled = threading.local()


@contextmanager
def unfilled_weights(tf: Any) -> Iterator[None]:
    """Build (and run) Keras layers without filling their weights with initial values.

    Filling a U-Net's 8.6 million weights from He-normal draws takes several
    times longer than building it, and the evidence needs only what was built.
    Inside, a new weight has no value (Keras' ``StatelessScope``): reading it
    gives freshly drawn initial values, and assigning to any weight holds only
    until the end. Keras lists such weights and fills them all when a layer is
    next called outside a scope; the ones made here are taken off that list
    on leaving (``keras.src``, not public API: see
    ``test_utils.KERAS_CHECKED_WITH``), so that nothing fills them later at
    the caller's expense.
    """
    from keras.src.backend.common import global_state

    listed = "uninitialized_variables"
    before = {id(v) for v in global_state.get_global_attribute(listed) or []}
    _unfilled.depth = getattr(_unfilled, "depth", 0) + 1
    try:
        with tf.keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        _unfilled.depth -= 1
        pending = global_state.get_global_attribute(listed)
        if pending:
            pending[:] = [v for v in pending if id(v) in before]


def building_unfilled() -> bool:
    """Whether this thread is building with ``unfilled_weights`` now."""
    return getattr(_unfilled, "depth", 0) > 0


def unfilled_or_as_usual(tf: Any, build: Callable[[], Any], as_usual: Callable[[], Any] | None = None) -> Any:
    """``build()`` with ``unfilled_weights``; if that fails in any way but running out of time, ``as_usual()``.

    Code that works only with filled weights (a variable made from a plain
    array, a training step inside the function) is so judged on what it
    builds, never on how the probe built it; code that fails both ways fails
    with its own error, from the second run. ``as_usual`` defaults to ``build``.
    """
    with unfilled_weights(tf):
        try:
            return build()
        except CaseTimeout:
            raise  # the time for this call is spent: no second run without a limit
        except Exception:  # noqa: BLE001 - built again below, as the student's code would run
            pass
    return (as_usual or build)()


def _built(tf: Any, func: Callable, case: dict) -> dict:
    """One case's evidence, its models built with ``unfilled_weights`` (``unfilled_or_as_usual``)."""
    build = _CASES[case["kind"]]
    # ``unet_model``'s case turns an error into evidence (what was built before it); the first run raises it.
    first = functools.partial(_unet_case, raising=True) if build is _unet_case else build
    return unfilled_or_as_usual(tf, lambda: first(tf, func, case), lambda: build(tf, func, case))


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``CaseTimeout`` in this (main) thread after ``seconds``; no limit when 0 or off the main thread."""
    def on_alarm(signum, frame):
        raise CaseTimeout("took longer than the time allowed for one call")

    armed = seconds > 0 and hasattr(signal, "setitimer")
    if armed:
        try:
            previous = signal.signal(signal.SIGALRM, on_alarm)
        except ValueError:  # not the main thread
            armed = False
    if armed:
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def run_case(tf: Any, namespace: dict, case: dict, seconds: float) -> dict:
    """Call one graded function as ``case`` asks; never raises."""
    func = namespace.get(case["function"])
    if not callable(func):
        return {"error": f"{case['function']} is not defined as a function"}
    try:
        with time_limit(seconds):
            return _built(tf, func, case)
    except BaseException as err:  # noqa: BLE001 - SystemExit and KeyboardInterrupt from student code too
        return {"error": describe_error(err)}


def pieces(namespace: dict, request: dict) -> Iterator[dict]:
    """The evidence in pieces: the functions' names and signatures, then one piece per call."""
    import tensorflow as tf

    yield {"functions": {name: function_info(namespace, name) for name in request["functions"]}}
    for case in request["cases"]:
        yield {"cases": {case["key"]: run_case(tf, namespace, case, request.get("seconds_per_call", 0))}}
    yield {"complete": True}


def merge(parts: Iterable[dict]) -> dict:
    """One evidence dict from pieces; ``complete`` is false when the last piece never came."""
    evidence: dict[str, Any] = {"functions": {}, "cases": {}, "complete": False}
    for part in parts:
        evidence["functions"].update(part.get("functions", {}))
        evidence["cases"].update(part.get("cases", {}))
        evidence["complete"] = evidence["complete"] or bool(part.get("complete"))
    return evidence


def collect(namespace: dict, request: dict) -> dict:
    """Everything the grader asked for, as JSON data, in this process."""
    return {"nonce": request.get("nonce"), **merge(pieces(namespace, request))}


def publish(namespace: dict, request: dict) -> None:
    """Send the evidence to the grader piece by piece, one display message each.

    A call that never returns, or kills the kernel, then costs only the
    results that had not been sent yet.
    """
    from IPython.display import publish_display_data

    for piece in pieces(namespace, request):
        publish_display_data({MIME: {"nonce": request.get("nonce"), **piece}})
