"""Mixed precision for any backend: which layers `--keep-float` names, and, for `--keep-float auto`,
which layers to keep in float, measured on the eval data.

Names. A layer is a compute node (Conv, ConvTranspose, Gemm, MatMul) named as the simplified ONNX
graph names it ("/features/features.3/Conv" from the TorchScript exporter), or by a module path that
the exporter's scope names contain ("features.3" matches every node under "/features.3/").

Measuring. Each layer's sensitivity is the error of the model when that layer *alone* is quantized
(the rest float), not the error recovered when it alone is kept float: in QDQ/FakeQuantize graphs a
tensor stays quantized while any of its neighbours is, so a bad tensor between two layers is
recovered only by keeping both float. Leave-one-out sees neither; quantizing one at a time flags
both. The error is the relative L2 error of the outputs against the float model (top-1 is also
recorded when the samples have labels; it is too coarse on a few hundred samples to rank by).

Choosing. Layers are kept float most sensitive first, each set measured for real (the errors of
single layers do not add up):
- with a top-1 budget (max_accuracy_drop), the smallest prefix of the ranking whose top-1 drop from
  float is within it, trying up to half of the layers;
- without one, among the outliers (alone, they cause at least half the error of the fully
  quantized model), at most max(2, 10% of the layers), the prefix with the least error, if it removes
  at least MIN_GAIN of the fully quantized model's error; else none (the model takes quantization as
  it is: an error spread evenly over many layers is not what keeping a few float fixes). A model whose
  quantized error is already negligible (INT8_NEGLIGIBLE, FP16_NEGLIGIBLE) keeps none, and so does an INT8 one
  whose top-1 on labelled eval data already meets the bundle's accuracy_drop budget (what `check` judges).
Either way a choice must also pass the parity check that follows: where it judges an INT8 classifier by its
top-1 agreement with the float model (the profile's quantized_min_top1_agreement), a choice below it is no
choice ("none needed" was said of a bundle parity then refused at 0.9688 against 0.97); without a budget the
fewest outliers that pass it are kept.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..data import LABELS, head, run, sample_count
from ..errors import BadInput
from ..parity import source_on
from ..options import option

AUTO = "auto"
COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
MAX_SAMPLES = 200          # eval samples per trial: N layers cost N+ quantizations and evaluations
OUTLIER_SHARE = 0.5        # a candidate's isolated error is at least this share of the quantized model's
MAX_KEEP_SHARE = 0.1       # without a budget, keep at most this share of the layers (and at least 2)
MIN_KEEP = 2
MIN_GAIN = 0.25            # keeping layers float must remove this share of the quantized model's error
# Without a budget, a model error at or below these needs no float layers: FP16 rounds each op's result
# to ~5e-4 relative; INT8 at 2% relative output error kept the shipped model's top-1 on every backend,
# and there keeping layers float bought error, not accuracy (at a layer's float latency).
INT8_NEGLIGIBLE = 0.02
FP16_NEGLIGIBLE = 1e-3
NON_FINITE = 1e9           # the error recorded when the outputs hold inf or NaN (an FP16 overflow)
MAX_LISTED = 10            # layers listed in the manifest's sensitivity table and in an error message


def keep_float_option():
    """The `keep_float` field of a backend's Options (a new field per class: dataclasses own their fields).
    A search tries none or the measured choice; named layers are the user's own call."""
    return option("", "mixed precision: layers left float, auto (chosen by measured sensitivity) or layer names "
                  "joined by ','", search=("", AUTO))


def budget_option():
    """The `max_accuracy_drop` field of a backend's Options: a user's constraint, so never searched."""
    return option(None, "top-1 budget of the quantized model on labelled --eval-data (e.g. 0.01)", low=0.0, high=1.0)


def check_budget(request, backend: str) -> None:
    """--max-accuracy-drop, on a backend whose only use of it is the choice of float layers."""
    if request.options.max_accuracy_drop is None:
        return
    if request.options.keep_float != AUTO:
        raise BadInput(f"--max-accuracy-drop on backend {backend} applies to --keep-float auto "
                       "(the top-1 budget of the measured choice of float layers)")
    if request.evaluation is None or LABELS not in request.evaluation:
        raise BadInput("--max-accuracy-drop needs labelled eval data: --eval-data eval.npz with a `labels` array")


def requested(spec: str) -> list:
    """[layer names] of a --keep-float value (AUTO is not a name)."""
    names = [n.strip() for n in spec.split(",")]
    if not all(names):
        raise BadInput(f"--keep-float {spec!r}: give layer names joined by ',' (or auto), no empty name")
    return names


def resolve(names: list, layers: list, what: str = "layers") -> list:
    """The layers `names` mean, in graph order: an exact layer name, a scope the layer's name contains ("conv1"
    matches "/conv1/Conv"), or a PyTorch module path and what lies under it ("b1.c1" matches "/b1/c1/Conv",
    "layer1.0" "/layer1/layer1.0/conv1/Conv"). An unknown name is refused."""
    chosen = set()
    for name in names:
        found = [layer for layer in layers if layer == name or f"/{name.strip('/')}/" in layer
                 or _module_path(layer) == name or _module_path(layer).startswith(f"{name}.")]
        if not found:
            shown = ", ".join(repr(layer) for layer in layers[:5]) + (", ..." if len(layers) > 5 else "")
            raise BadInput(f"--keep-float {name!r}: no such layer among the model's {len(layers)} {what} "
                           f"({shown}); give node names as in the ONNX graph, or a module path such as "
                           f"{_module_example(layers)!r}")
        chosen.update(found)
    return [layer for layer in layers if layer in chosen]


def _module_path(layer: str) -> str:
    """The dotted PyTorch module path of an exported node's scope: torch.onnx names a node by its modules' names,
    where a container's child carries its parent's path ("/layer1/layer1.0/conv1/Conv" is layer1.0.conv1)."""
    path = ""
    for part in [p for p in layer.split("/") if p][:-1]:   # the last part is the op's own name
        path = part if not path or part.startswith(f"{path}.") else f"{path}.{part}"
    return path


def _module_example(layers: list) -> str:
    parts = [p for p in (layers[0].split("/") if layers else []) if p]
    return parts[-2] if len(parts) >= 2 else "conv1"


def compute_layers(graph) -> list:
    """[(node name, op type)] of an ONNX graph's compute nodes, in graph order."""
    return [(n.name, n.op_type) for n in graph.node if n.op_type in COMPUTE_OPS and n.name]


def float_region(graph, nodes: list) -> list:
    """`nodes` and every non-compute node after them whose computed inputs all come from float nodes (the
    pools and reshapes up to the next converted layer), in graph order: a float layer's output cast back
    down before a MaxPool would overflow or round there all the same."""
    produced = {o for n in graph.node for o in n.output}
    float_tensors, region = set(), []
    for n in graph.node:
        computed = [i for i in n.input if i in produced]
        follows = n.op_type not in COMPUTE_OPS and computed and all(i in float_tensors for i in computed)
        if n.name in nodes or follows:
            float_tensors.update(n.output)
            region.append(n.name)
    return region


@dataclasses.dataclass(frozen=True)
class Trials:
    """A backend's hooks: runners ({input: array} -> [outputs]) of the float model, of the model with
    only `layer` quantized, and of the model quantized except `layers`."""
    reference: object
    isolated: object        # layer -> runner
    excluding: object       # [layers] -> runner


class _Scorer:
    """Relative output error against the float model (and top-1 when labels exist) on fixed samples; and, where
    the parity check will judge the artifact by top-1 agreement with the float model (a classifier whose top-1
    quantization cannot flip on most samples), that agreement against `min_agreement`, the profile's limit."""

    def __init__(self, reference, samples, inputs, min_agreement: float | None = None):
        from ..parity import TOP1_MIN_ROBUST_SHARE, _robust_share

        self.samples, self.inputs = samples, inputs
        with source_on("the samples --keep-float auto scores layers on"):
            self.ref = [r.astype(np.float64) for r in run(reference, samples, inputs)]
        n = sample_count(samples)
        self.labels = samples[LABELS] if LABELS in samples and self._per_sample(n) else None
        self.float_top1 = self._top1(self.ref)
        judged = (min_agreement is not None and self._per_sample(n)
                  and _robust_share(self.ref[0]) >= TOP1_MIN_ROBUST_SHARE)
        self.min_agreement = min_agreement if judged else None

    def agreement_not_reached(self) -> str:
        """The rule's suffix where no choice tried reaches parity's top-1 agreement (which then refuses it)."""
        return f" (parity's top-1 agreement >= {self.min_agreement:g} not reached: the bundle fails parity)"

    def passes_parity(self, score: dict) -> bool:
        """Whether the parity check's top-1 agreement would pass (True where it does not judge by it): "none
        needed (output error 0.013)" was said of a bundle that parity then refused at 0.9688 against 0.97."""
        return self.min_agreement is None or score.get("agreement", 1.0) >= self.min_agreement

    def _per_sample(self, n) -> bool:
        return self.ref[0].ndim == 2 and self.ref[0].shape[1] > 1 and len(self.ref[0]) == n

    def _top1(self, outputs):
        if self.labels is None:
            return None
        return round(float(np.mean(np.argmax(outputs[0], 1) == self.labels)), 4)

    def __call__(self, runner) -> dict:
        got = run(runner, self.samples, self.inputs)
        errors = [np.linalg.norm(g.astype(np.float64) - r) / max(np.linalg.norm(r), 1e-12)
                  for g, r in zip(got, self.ref)]
        error = float(np.mean(errors))
        score = {"error": round(error, 6) if np.isfinite(error) else NON_FINITE}
        if self.labels is not None:
            score["top1"] = self._top1(got)
        if self.min_agreement is not None:
            score["agreement"] = round(float(np.mean(np.argmax(got[0], 1) == np.argmax(self.ref[0], 1))), 4)
        return score


def evaluation_samples(request) -> tuple:
    """(samples, where): the eval data when given, else the calibration data, at most MAX_SAMPLES."""
    if request.evaluation is not None:
        return head(request.evaluation, MAX_SAMPLES), "eval data"
    if request.calibration is None:   # fp16 needs no calibration: nothing at all to judge a layer's error on
        raise BadInput("--keep-float auto measures each layer's error on data: give --eval-data (or --calib)")
    return head(request.calibration, MAX_SAMPLES), "calibration data"


def choose(layers: list, ops: dict, trials: Trials, request, inputs, progress, what: str = "INT8",
           negligible: float = INT8_NEGLIGIBLE) -> dict:
    """The layers to keep float (the module's rules) and what was measured: the manifest's record.
    Without a top-1 budget, a model whose error is at most `negligible` keeps every layer quantized."""
    samples, where = evaluation_samples(request)
    budget = request.options.max_accuracy_drop
    profile = getattr(request, "profile", None)   # INT8 only: parity judges FP16 by its error, not by agreement
    judged = profile is not None and what == "INT8" and not getattr(request, "agreement_waived", False)
    min_agreement = profile.parity.quantized_min_top1_agreement if judged else None
    scorer = _Scorer(trials.reference, samples, inputs, min_agreement)
    if budget is not None and scorer.labels is None:
        raise BadInput("--keep-float auto with --max-accuracy-drop needs labelled eval data: --eval-data eval.npz "
                       "with a `labels` array, and a model whose first output has one row of class scores per sample")
    # the whole model quantized first: where it already meets the budget (or its error is negligible), measuring
    # each layer alone was minutes for nothing (184 s against 11 s for a pruned MobileNetV3 on OpenVINO)
    progress.status(f"measuring the model with every layer {what}")
    quantized = scorer(trials.excluding([]))
    tried = []
    bundle_budget = getattr(request, "accuracy_budget", None) if budget is None and scorer.labels is not None \
        and what == "INT8" else None
    if scorer.passes_parity(quantized) and ((scorer.float_top1 - quantized["top1"] <= budget) if budget is not None
                                            else quantized["error"] <= negligible or bundle_budget is not None
                                            and scorer.float_top1 - quantized["top1"] <= bundle_budget):
        isolated, ranked, kept, after = {}, [], [], quantized
        rule = (_budget_rule(budget) + f" (none: the model with every layer {what} meets it" if budget is not None
                else _outlier_rule(len(layers)) + (f" (none: the error is below {negligible:g}"
                                                   if quantized["error"] <= negligible else
                                                   f" (none: the model with every layer {what} meets the bundle's "
                                                   f"accuracy_drop budget {bundle_budget:g}")) + \
            "; no layer measured alone)"
    else:
        isolated = _isolated(layers, trials, scorer, progress, what)
        ranked = sorted(layers, key=lambda layer: -isolated[layer]["error"])
        progress.status(f"keeping the most sensitive layers float ({what} elsewhere), checking each choice")
        if budget is not None:
            kept, after, rule = _within_budget(ranked, trials, scorer, quantized, budget, tried)
        else:
            kept, after, rule = _best_outliers(ranked, isolated, trials, scorer, quantized, tried)
    table = [dict(layer=layer, op=ops.get(layer, ""), **isolated[layer]) for layer in ranked[:MAX_LISTED]]
    record = {"mode": AUTO, "layers": kept, "rule": rule, "metric": "relative L2 output error vs float",
              "samples": sample_count(samples), "samples_source": where, "layers_measured": len(layers),
              "sensitivity": table, "sensitivity_measure": f"model error with only that layer {what}",
              "before": quantized, "after": after, "trials": tried}
    if scorer.float_top1 is not None:
        record["float_top1"] = scorer.float_top1
    return record


def notes(record: dict) -> list:
    """The bundle's notes: the layers kept float, and for auto, how much that helped and that it was chosen on the
    data it is then judged on."""
    if record.get("mode") != AUTO:
        kept = record["layers"]
        return [f"--keep-float kept {len(kept)} layer{'s' if len(kept) > 1 else ''} float: "
                f"{', '.join(kept[:5])}{', ...' if len(kept) > 5 else ''}"]
    kept = record["layers"]
    before, after = record["before"]["error"], record["after"]["error"]
    # none kept: needed by none (the rule's "(none: ...)"), or no layer float removed enough of the error
    agreement = "top-1 agreement" in record["rule"]   # parity's, not reached by any choice tried
    within = "accuracy_drop budget" in record["rule"] and record.get("float_top1") is not None
    none = (f": none needed, INT8 everywhere keeps top-1 {record['before']['top1']:.4f} against float's "
            f"{record['float_top1']:.4f}, within the bundle's accuracy_drop budget (output error {before:.3g})"
            if within else
            f": none needed (output error {before:.3g})" if "(none: " in record["rule"] else
            f": none reached parity's top-1 agreement (output error {before:.3g})" if agreement else
            f": none raised top-1 (output error {before:.3g})" if "not reached" in record["rule"] else
            f": none removed {MIN_GAIN:.0%} of the output error ({before:.3g})")
    said = [f"--keep-float auto kept {len(kept)} of {record['layers_measured']} layers float"
            + (f" ({', '.join(kept[:3])}{', ...' if len(kept) > 3 else ''}): output error {before:.3g} -> {after:.3g}"
               if kept else none)]
    if agreement:
        said.append("warning: --keep-float auto found no choice of those it tried that parity's top-1 agreement "
                    "accepts (--allow-mismatch packages it anyway)")
    elif "not reached" in record["rule"]:
        said.append(f"warning: --keep-float auto did not meet --max-accuracy-drop with up to half of the layers "
                    f"float (top-1 {record['after']['top1']:.4f} vs float {record['float_top1']:.4f})")
    if record["samples_source"] == "eval data":
        said.append("--keep-float auto chose layers on the --eval-data it is then judged on; keep a separate "
                    "split if you need an unbiased accuracy figure")
    return said


def _isolated(layers, trials, scorer, progress, what) -> dict:
    progress.start(f"measuring each layer's {what} sensitivity", total=len(layers), unit="layers")
    try:
        scores = {}
        for layer in layers:
            scores[layer] = scorer(trials.isolated(layer))
            progress.advance(1)
        return scores
    finally:
        progress.finish()


def _trial(trials, scorer, layers, tried) -> dict:
    score = scorer(trials.excluding(layers))
    tried.append(dict(float_layers=len(layers), **score))
    return score


def _within_budget(ranked, trials, scorer, quantized, budget, tried) -> tuple:
    """The smallest prefix of the ranking whose top-1 drop from float is at most `budget`."""
    rule = _budget_rule(budget)
    best, budget_met = ([], quantized), False
    for k in range(0, math.ceil(len(ranked) / 2) + 1):
        score = quantized if k == 0 else _trial(trials, scorer, ranked[:k], tried)
        within = scorer.float_top1 - score["top1"] <= budget
        if within and scorer.passes_parity(score):
            return ranked[:k], score, rule
        budget_met = budget_met or within
        if score["top1"] > best[1]["top1"]:
            best = (ranked[:k], score)
    # the budget met but not parity's agreement: said as that, not as a missed --max-accuracy-drop
    return best[0], best[1], rule + (scorer.agreement_not_reached() if budget_met else
                                     " (not reached: the best prefix is kept)")


def _budget_rule(budget: float) -> str:
    return f"top-1 drop <= {budget:g}, most sensitive first, up to half of the layers"


def _outlier_cap(layers: int) -> int:
    return max(MIN_KEEP, math.ceil(MAX_KEEP_SHARE * layers))


def _outlier_rule(layers: int) -> str:
    return (f"outliers (alone >= {OUTLIER_SHARE:g}x the quantized model's error, at most {_outlier_cap(layers)}): "
            f"the prefix with the least error, if it removes >= {MIN_GAIN:.0%} of the quantized model's error")


def _best_outliers(ranked, isolated, trials, scorer, quantized, tried) -> tuple:
    """Among the outlier layers, the prefix with the least error, if it removes MIN_GAIN of the error."""
    cap = _outlier_cap(len(ranked))
    floor = OUTLIER_SHARE * quantized["error"]
    candidates = [layer for layer in ranked[:cap] if isolated[layer]["error"] >= floor > 0]
    rule = _outlier_rule(len(ranked))   # a negligible error gets here only where parity's agreement fails
    choices = [([], quantized)] + [(candidates[:k], _trial(trials, scorer, candidates[:k], tried))
                                   for k in range(1, len(candidates) + 1)]
    passing = [c for c in choices if scorer.passes_parity(c[1])]   # parity would accept these (all, unjudged)
    if not passing:
        return [], quantized, rule + scorer.agreement_not_reached()
    if passing[0][0]:   # the quantized model fails parity: the fewest float layers that pass it
        return passing[0][0], passing[0][1], rule
    best = min(passing, key=lambda c: c[1]["error"])
    if best[1]["error"] > (1 - MIN_GAIN) * quantized["error"]:
        return [], quantized, rule
    return best[0], best[1], rule
