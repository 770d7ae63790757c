"""Which picture a failed exercise gets in the feedback: its network, and the specification's, as boxes.

For each exercise the first hidden argument set whose check fails is drawn,
the student's version from the evidence (recorded ``conv_block`` and
``upsampling_block`` calls for ``unet_model``; the rebuilt model for the two
blocks) and the specification's from its rules.  A ``unet_model`` that
raised part-way is drawn with the blocks it called before the error; a block
whose code raised has no network to draw, and its message is all it gets.
"""

from __future__ import annotations

from typing import Any

import probe
from grader.engine import checks
from grader.engine.checks import Case, Evidence
from grader.engine.diagrams import Box, Network, side_by_side
from spec_checks import DECODER, ENCODER, CheckFailed, conv_block_rows, inputs_of, producer
from test_utils import activation_name, initializer_name, summary


def _first_failing(cases: list[Case], judge) -> Case | None:
    for case in cases:
        try:
            judge(case)
        except CheckFailed:
            return case
    return None


# -- unet_model -------------------------------------------------------------------

def _encoder_box(k: int, filters: Any, rate: Any, pools: bool, source: str) -> Box:
    title = "conv_block 5 (bottleneck)" if k == 4 else f"conv_block {k + 1}"
    rate_text = f"{rate:g}" if isinstance(rate, float) else str(rate)
    return Box(title, (f"filters {filters}", f"dropout {rate_text}", f"pools: {'yes' if pools else 'no'}",
                       f"in: {source}"))


def _source(k: int) -> str:
    return "the input" if k == 0 else f"block {k}"


def unet_spec(n_filters: int, n_classes: int) -> Network:
    """The specification's U-Net for these arguments: encoder column, decoder column, output layers."""
    net = Network("Specification")
    for k, (factor, rate, pools) in enumerate(ENCODER):
        net.add(0, k, _encoder_box(k, factor * n_filters, float(rate), pools, _source(k)))
    for j, (factor, block) in enumerate(DECODER):
        place = net.add(1, 3 - j, Box(f"upsampling_block {j + 1}", (
            f"filters {factor * n_filters}", "in: " + ("the bottleneck" if j == 0 else f"up block {j}"))))
        net.arrows.append(((0, block - 1), place, f"skip {block}"))
    net.add(2, 0, Box("output layers", (f"3x3 Conv2D {n_filters} relu", f"1x1 Conv2D {n_classes} linear")))
    return net


def unet_yours(model: Any | None, calls: dict) -> Network:
    """The student's U-Net as its recorded block calls built it (no output layers when it stopped early)."""
    net = Network("Your unet_model (with stand-in blocks)")
    down, up = calls["down"], calls["up"]
    first = probe.ref(model.inputs[0]) if model is not None else (down[0]["inputs"] if down else None)
    nexts = [first] + [c["next"] for c in down]
    for k, call in enumerate(down):
        rate = call["dropout_rate"] if call["dropout_rate"] is not None else call["spelled"]["dropout_prob"]
        source = _source(nexts.index(call["inputs"])) if call["inputs"] in nexts else "another tensor"
        net.add(0, k, _encoder_box(k, call["n_filters"], 0.0 if rate == "None" else rate, call["pools"], source))
    outs = [down[-1]["next"] if down else None] + [c["out"] for c in up]
    skips = [c["skip"] for c in down]
    for j, call in enumerate(up):
        came = outs.index(call["expansive"]) if call["expansive"] in outs else None
        expansive = "the bottleneck" if came == 0 else f"up block {came}" if came else "another tensor"
        place = net.add(1, 3 - j, Box(f"upsampling_block {j + 1}", (f"filters {call['n_filters']}",
                                                                     f"in: {expansive}")))
        if call["contractive"] in skips:
            block = skips.index(call["contractive"]) + 1
            net.arrows.append(((0, block - 1), place, f"skip {block}"))
    if model is not None:
        net.add(2, 0, Box("output layers", _head_lines(model)))
    return net


def _head_lines(model: Any) -> tuple[str, ...]:
    out = model.outputs[0]
    last, before = producer(out), producer(inputs_of(out)[0])
    return tuple(_conv_text(layer) for layer in (before, last))


def _conv_text(layer: Any) -> str:
    if type(layer).__name__ != "Conv2D":
        return type(layer).__name__
    kernel = "x".join(str(k) for k in layer.kernel_size)
    return f"{kernel} Conv2D {layer.filters} {activation_name(layer.activation)}"


def unet_picture(evidence: Evidence) -> str | None:
    """The U-Net of the first hidden argument set whose checks fail, beside the specification's."""
    def judge(case: Case) -> None:
        model, calls, context = checks.unet_of(evidence, case)
        a = case.args
        checks.judge_unet_encoder(model, calls, a["input_size"], a["n_filters"], context)
        checks.judge_unet_decoder(model, calls, a["input_size"], a["n_filters"], a["n_classes"], context)

    case = _first_failing(checks.UNET_CASES, judge)
    if case is None:
        return None
    a = case.args
    context = checks.unet_context(a["input_size"], a["n_filters"], a["n_classes"])
    answer = evidence.data.get("cases", {}).get(case.key, {})
    if "partial" in answer:
        # The code raised part-way: draw the blocks it called before that.
        model, calls, note = None, answer["partial"], " Your code stopped with an error after the blocks shown."
    else:
        (model, calls, _), note = checks.unet_of(evidence, case), ""
    yours = unet_yours(model, calls)
    return side_by_side(unet_spec(a["n_filters"], a["n_classes"]), yours,
                        f"{context}: on the left the specification, on the right yours.{note}")


# -- conv_block and upsampling_block ------------------------------------------------

def _row_box(row: list, taps: list[str]) -> Box:
    kind, shape, params, *extra = row
    settings = [f"output {tuple(shape)}", f"{params} params" + (f"; {', '.join(map(str, extra))}" if extra else "")]
    return Box(kind, (*settings, "gives: " + (" and ".join(taps) if taps else "-")))


def conv_networks(model: Any, case: Case) -> tuple[Network, Network]:
    """(specification, student) for one ``conv_block`` case: the layers, and which gives which output."""
    h, w, c = case.args["shape"]
    kw = case.args["kwargs"] or {"n_filters": 32, "dropout_prob": 0, "max_pooling": True}
    rows = conv_block_rows(h, w, c, kw["n_filters"], kw["dropout_prob"], kw["max_pooling"])
    spec = Network("Specification")
    for i, row in enumerate(rows):
        last_before_pool = i == len(rows) - (2 if kw["max_pooling"] else 1)
        taps = (["skip_connection"] if last_before_pool else []) + (["next_layer"] if i == len(rows) - 1 else [])
        spec.add(0, i, _row_box(row, taps))
    yours = Network("Your conv_block")
    next_layer, skip = model.outputs
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    for i, (layer, row) in enumerate(zip(layers, summary(model)[1:], strict=False)):
        taps = [name for name, t in (("skip_connection", skip), ("next_layer", next_layer)) if producer(t) is layer]
        yours.add(0, i, _row_box(row, taps))
    return spec, yours


def conv_picture(evidence: Evidence) -> str | None:
    """The ``conv_block`` of the first failing case, beside the specification's."""
    cases = [*checks.CONV_DEFAULT_CASES, *checks.CONV_OPTION_CASES]
    case = _first_failing(cases, lambda case: checks.judge_conv_case(evidence, case))
    if case is None:
        return None
    spec, yours = conv_networks(evidence.model(case, ""), case)
    return side_by_side(spec, yours, "Layer by layer, with where next_layer and skip_connection are taken.")


def upsampling_networks(model: Any, case: Case) -> tuple[Network, Network]:
    """(specification, student) for one ``upsampling_block`` case: each layer and what it is applied to."""
    f = case.args["n_filters"]
    spec = Network("Specification")
    spec.add(0, 0, Box("Conv2DTranspose", (f"{f} filters", "kernel 3x3", "strides 2x2", "on: expansive_input")))
    spec.add(0, 1, Box("Concatenate", ("first: the Conv2DTranspose output", "second: contractive_input")))
    for i in range(2):
        spec.add(0, 2 + i, Box("Conv2D", (f"{f} filters", "kernel 3x3", "relu, same, HeNormal")))
    yours = Network("Your upsampling_block")
    expansive, contractive = model.inputs
    names = {id(expansive): "expansive_input", id(contractive): "contractive_input"}
    for i, layer in enumerate(layer for layer in model.layers if type(layer).__name__ != "InputLayer"):
        yours.add(0, i, _layer_box(layer, names))
    return spec, yours


def _layer_box(layer: Any, names: dict[int, str]) -> Box:
    kind = type(layer).__name__
    sources = [names.get(id(t), f"the {type(producer(t)).__name__} output") for t in inputs_of(layer.output)]
    if kind == "Concatenate":
        return Box(kind, tuple(f"{which}: {src}" for which, src in zip(("first", "second", "third"), sources,
                                                                          strict=False)))
    if kind in ("Conv2D", "Conv2DTranspose"):
        kernel, strides = "x".join(map(str, layer.kernel_size)), "x".join(map(str, layer.strides))
        lines = [f"{layer.filters} filters", f"kernel {kernel}"]
        lines += [f"strides {strides}", f"on: {sources[0] if sources else '?'}"] if kind == "Conv2DTranspose" else [
            f"{activation_name(layer.activation)}, {layer.padding}, {initializer_name(layer.kernel_initializer)}"]
        return Box(kind, tuple(lines))
    return Box(kind)


def upsampling_picture(evidence: Evidence) -> str | None:
    """The ``upsampling_block`` of the first failing case, beside the specification's."""
    def judge(case: Case) -> None:
        context = checks.upsampling_context(*checks.upsampling_args(case))
        model = evidence.model(case, context)
        checks.judge_upsampling_layers(model, *checks.upsampling_args(case), context)
        checks.judge_upsampling_wiring(model, context)

    case = _first_failing(checks.UPSAMPLING_CASES, judge)
    if case is None:
        return None
    spec, yours = upsampling_networks(evidence.model(case, ""), case)
    return side_by_side(spec, yours, "Layer by layer, with what each layer is applied to.")


PICTURES = {"conv_block": conv_picture, "upsampling_block": upsampling_picture, "unet_model": unet_picture}


def picture(function: str, evidence: Evidence) -> str | None:
    """The SVG for a failed exercise, or None when there is no network to draw (its code raised)."""
    try:
        return PICTURES[function](evidence)
    except CheckFailed:
        return None
