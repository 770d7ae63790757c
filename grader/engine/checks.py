"""The hidden tests: which calls each graded cell makes, judged in the grader's own process.

A check never receives a student's function.  It receives the *evidence*
that ``probe`` collected in the student's (sandboxed) kernel: model
configurations as JSON and the arguments ``unet_model`` passed to the blocks.
The models are rebuilt here from built-in Keras layers only and judged by the
specification's rules in ``spec_checks`` (the same rules the notebook's
visible checks apply to its own examples), on argument sets that students
never see.  Whatever a student redefines in the kernel (``comparator``,
Keras, builtins) cannot reach this process; a failed check is a
``CheckFailed`` whose message says what to fix.

While ``unet_model`` is probed, ``conv_block`` and ``upsampling_block`` are
replaced by stand-ins, so a mistake in Exercise 1 or 2 costs points there and
not again in Exercise 3.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import functional_checks
from grader.engine import specification, verdict_memo
from probe import collect, unfilled_weights
from spec_checks import (
    SIGNATURES,
    CheckFailed,
    check_function,
    computation_differences,
    conv_context,
    expect,
    judge_computation,
    judge_conv_block,
    judge_conv_defaults,
    judge_unet_decoder,
    judge_unet_encoder,
    judge_upsampling_layers,
    judge_upsampling_wiring,
    unet_context,
    upsampling_context,
)
from test_utils import tf

__all__ = ["CHECKS", "CheckFailed", "Evidence", "check_function", "judge", "probe_request", "run_check"]

# Layers that may not be rebuilt from a student's model, although Keras ships them:
# they carry code rather than settings.
_CODE_LAYERS = {"Lambda", "TFSMLayer"}
# Keras operations that a functional model may hold besides layers, by (module, class):
# keras.ops.concatenate is Keras 3's way of writing what tf.concat did in Keras 2.
_OPERATIONS = {("keras.src.ops.numpy", "Concatenate")}


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
    _differences: dict = field(default_factory=dict)
    _digest: list = field(default_factory=list)

    @property
    def digest(self) -> str | None:
        """SHA-256 of the evidence's canonical JSON, equal for identical evidence only (``verdict_memo.digest``)."""
        if not self._digest:
            self._digest.append(verdict_memo.digest(self.data))
        return self._digest[0]

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

    def differences(self, case: Case) -> list[tuple[str | None, functional_checks.Difference]]:
        """What the model of ``case`` computes differently from the specification's, each with its aspect.

        Empty when the call built no model: the cells that make that call say why.
        """
        if case.key not in self._differences:
            self._differences[case.key] = self._compare(case)
        return self._differences[case.key]

    def _compare(self, case: Case) -> list[tuple[str | None, functional_checks.Difference]]:
        answer = self.data.get("cases", {}).get(case.key) or {}
        if "model" not in answer:
            return []
        try:
            student = self.model(case, "")
        except CheckFailed:
            return []
        spec, calls = specification.model_for(case.request())
        return computation_differences(case.function, student, spec, calls)


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
        # Both networks are run in float32, whatever precision the notebook switched to. Only the
        # functional checks run it, with weights of their own: filling its initial weights would be wasted.
        with unfilled_weights(tf):
            return tf.keras.models.model_from_json(json.dumps(functional_checks.float32_config(config)))
    except Exception as err:  # noqa: BLE001 - any configuration Keras refuses
        raise CheckFailed(f"{context}: the model could not be rebuilt: {type(err).__name__}: {err}") from None


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


def _conv_outputs(evidence: Evidence, case: Case, context: str) -> tf.keras.Model:
    returned = evidence.result(case, context).get("returned")
    expect(returned is None, f"{context}: conv_block must return two values, (next_layer, skip_connection); "
                             f"it returned a {returned}.")
    return evidence.model(case, context)


def judge_conv_case(evidence: Evidence, case: Case) -> None:
    shape, kw = tuple(case.args["shape"]), case.args["kwargs"]
    f, dropout, pooling = kw["n_filters"], kw["dropout_prob"], kw["max_pooling"]
    context = conv_context(shape, f, dropout, pooling)
    judge_conv_block(_conv_outputs(evidence, case, context), shape, f, dropout, pooling, context)


def conv_call_context(case: Case) -> str:
    kw = case.args["kwargs"]
    if kw is None:
        return "conv_block(inputs) with the default arguments"
    return conv_context(tuple(case.args["shape"]), kw["n_filters"], kw["dropout_prob"], kw["max_pooling"])


def judge_what_it_computes(evidence: Evidence, own: list[Case], every: list[Case], aspect: str,
                           context_of: Callable[[Case], str]) -> None:
    """What the networks compute: a difference of ``aspect`` in any call, or of wiring in this cell's own calls."""
    for case in every:
        judge_computation(evidence.differences(case), aspect, case in own, context_of(case))


CONV_CASES = [*CONV_DEFAULT_CASES, CONV_DEFAULTS_CALL, *CONV_OPTION_CASES]


def check_conv_block_default(evidence: Evidence) -> None:
    """Layers, shapes, outputs and what the layers compute of ``conv_block`` with pooling, several sizes."""
    for case in CONV_DEFAULT_CASES:
        judge_conv_case(evidence, case)
    judge_what_it_computes(evidence, CONV_DEFAULT_CASES, CONV_CASES, "layers", conv_call_context)


def check_conv_block_options(evidence: Evidence) -> None:
    """Defaults, dropout on and off (in prediction and in training), pooling off, and where the skip is taken."""
    model = _conv_outputs(evidence, CONV_DEFAULTS_CALL, "conv_block(inputs) with the default arguments")
    judge_conv_defaults(model, CONV_DEFAULTS_CALL.args["shape"])
    for case in CONV_OPTION_CASES:
        judge_conv_case(evidence, case)
    judge_what_it_computes(evidence, [CONV_DEFAULTS_CALL, *CONV_OPTION_CASES], CONV_CASES, "options",
                           conv_call_context)


# -- Exercise 2 --------------------------------------------------------------

UPSAMPLING_CASES = [
    Case("upsampling_block", "upsampling_block", {"expansive": list(e), "contractive": list(c), "n_filters": f})
    for e, c, f in [((12, 16, 256), (24, 32, 128), 32), ((6, 8, 512), (12, 16, 256), 64), ((3, 5, 16), (6, 10, 8), 4)]
]


def upsampling_args(case: Case) -> tuple[list, list, int]:
    a = case.args
    return a["expansive"], a["contractive"], a["n_filters"]


def upsampling_call_context(case: Case) -> str:
    return upsampling_context(*upsampling_args(case))


def check_upsampling_layers(evidence: Evidence) -> None:
    """Layers, shapes, parameter counts and what the convolutions compute of ``upsampling_block``."""
    for case in UPSAMPLING_CASES:
        context = upsampling_context(*upsampling_args(case))
        judge_upsampling_layers(evidence.model(case, context), *upsampling_args(case), context)
    judge_what_it_computes(evidence, UPSAMPLING_CASES, UPSAMPLING_CASES, "layers", upsampling_call_context)


def check_upsampling_wiring(evidence: Evidence) -> None:
    """Transpose settings, what is concatenated with what, in which order, and what they compute."""
    for case in UPSAMPLING_CASES:
        context = upsampling_context(*upsampling_args(case))
        judge_upsampling_wiring(evidence.model(case, context), context)
    judge_what_it_computes(evidence, UPSAMPLING_CASES, UPSAMPLING_CASES, "wiring", upsampling_call_context)


# -- Exercise 3 --------------------------------------------------------------

UNET_CASES = [
    Case("unet_model", "unet_model", {"input_size": list(size), "n_filters": n, "n_classes": k})
    for size, n, k in [((96, 128, 3), 32, 23), ((64, 96, 3), 8, 5), ((32, 48, 1), 4, 2)]
]


def unet_of(evidence: Evidence, case: Case) -> tuple[tf.keras.Model, dict, str]:
    a = case.args
    context = unet_context(a["input_size"], a["n_filters"], a["n_classes"])
    answer = evidence.result(case, context)
    returned = answer.get("returned")
    expect(returned is None, f"{context}: unet_model must return a tf.keras.Model, it returned {returned}.")
    return evidence.model(case, context), answer, context


def unet_call_context(case: Case) -> str:
    a = case.args
    return unet_context(a["input_size"], a["n_filters"], a["n_classes"])


def check_unet_encoder(evidence: Evidence) -> None:
    """The five ``conv_block`` calls: filters, dropout, pooling and chaining; what comes before the bottleneck."""
    for case in UNET_CASES:
        model, calls, context = unet_of(evidence, case)
        judge_unet_encoder(model, calls, case.args["input_size"], case.args["n_filters"], context)
    judge_what_it_computes(evidence, [], UNET_CASES, "encoder", unet_call_context)


def check_unet_decoder(evidence: Evidence) -> None:
    """The four ``upsampling_block`` calls, the skip connections, the output head and what it computes."""
    for case in UNET_CASES:
        model, calls, context = unet_of(evidence, case)
        a = case.args
        judge_unet_decoder(model, calls, a["input_size"], a["n_filters"], a["n_classes"], context)
    judge_what_it_computes(evidence, UNET_CASES, UNET_CASES, "decoder", unet_call_context)


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


def judge(grade_id: str, evidence: Evidence, memo: bool = False) -> str:
    """Judge one graded cell: its success message, or ``CheckFailed`` saying what is wrong.

    With ``memo``, evidence identical to some judged before in this process
    gets that verdict again without the work (``verdict_memo``): grading
    passes it; code that changes the checks in place must not.
    """
    check = CHECKS[grade_id]
    check_function(check.function, evidence.function(check.function))
    digest = evidence.digest if memo else None
    remembered = verdict_memo.recall(grade_id, check, digest)
    if remembered is not None:
        passed, message = remembered
        if not passed:
            raise CheckFailed(message)
        return message
    try:
        check.judge(evidence)
    except CheckFailed as err:
        verdict_memo.remember(grade_id, check, digest, (False, str(err)))
        raise
    except Exception as err:  # noqa: BLE001 - evidence of an unexpected shape is a failed check, not a crash
        summary_line = (check.judge.__doc__ or grade_id).strip().splitlines()[0].rstrip(".")
        raise CheckFailed(
            f"{summary_line}: the grader could not read your model ({type(err).__name__}: {err})."
        ) from None
    verdict_memo.remember(grade_id, check, digest, (True, check.success))
    return check.success


def run_check(grade_id: str, namespace: dict) -> None:
    """Probe and judge in this process, for the source notebook's own run.

    Autograding never calls this: there the probe runs in the sandboxed kernel
    and the grade cells' outputs come from ``grader.engine.verdicts``.
    """
    request = probe_request(seconds_per_call=0)
    wanted = {case.key for case in CHECKS[grade_id].cases}
    request["cases"] = [case for case in request["cases"] if case["key"] in wanted]
    print(judge(grade_id, Evidence(collect(namespace, request))))
