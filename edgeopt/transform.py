"""The pipeline's transform stage: a recipe's steps (edgeopt/recipe.py) applied in order to a PyTorch
source module, each stage measured on this host so that the user sees what each step bought and cost.

Each stage (the source, then after every step) is exported to ONNX and measured the same way:
parameters and FLOPs of the exported graph (edgeopt/models.py, as `inspect` counts them), its size,
top-1 on the eval data, and latency through the agent's ONNX Runtime adapter, every stage timed in
alternation so that a neighbour's load hits all alike. The latency is a host-side hint that ranks the
stages; the device's number is the one that counts.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import pathlib
import shutil

from . import scratch
from .compress import base as transforms
from .errors import BadInput

TORCH_FORMATS = ("pytorch-module", "exported-program")   # a teacher may be either: it is only run
TRANSFORMABLE = ("pytorch-module",)   # a source a transform can change: an nn.Module with its layers
HINT_SECONDS = 2.0      # timing budget for all stages together
CACHE_BYTES = 1 << 30   # TransformCache: the parameter bytes of the modules it keeps, at most


@dataclasses.dataclass
class Stage:
    name: str                       # "source" or the step's transform name
    onnx_path: pathlib.Path | None  # the stage exported (None when export failed: figures absent)
    figures: dict                   # parameters, flops, bytes, top1, latency_ms (absent with a reason)
    details: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return {"stage": self.name, "figures": self.figures, "details": self.details, "notes": self.notes}


def training_readers(steps: list) -> set:
    """The names of the steps (recipe.Step each) that read --train-data: a prune by weight norm reads none of it."""
    return {s.name for s in steps if transforms.get(s.name).reads_training_data(s.options)}


def reads_training_data(steps: list) -> bool:
    return bool(training_readers(steps))


def refuse_non_torch(fmt: str, steps: list) -> None:
    """Model transforms change a PyTorch module; any other source is refused before work starts."""
    if steps and fmt == "exported-program":
        # its module() is a flat graph of aten calls: no nn.Conv2d/nn.Linear for prune or lowrank to find (they
        # would change nothing and say so), and torch forbids train() on it, so nothing can be trained either
        raise BadInput(f"transform {steps[0].name} needs a PyTorch nn.Module input (model.py:build, a callable "
                       "returning the model): a .pt2 ExportedProgram is a fixed graph whose layers cannot be "
                       "changed; give the model.py:build it was exported from")
    if steps and fmt not in TORCH_FORMATS:
        raise BadInput(f"transform {steps[0].name} needs a PyTorch nn.Module input (model.py:build, a callable "
                       f"returning the model): the {fmt} model given has no module to change; give the model.py:build "
                       "it came from")


def run(source, steps: list, context, workdir: pathlib.Path, progress, measure_teacher: bool = False,
        host_timing: bool = True) -> tuple:
    """(transformed module, [Stage]) for a SourceModel holding a torch module. Every step is validated
    before the first one runs, so a missing training file fails in a second, not after an hour.
    measure_teacher: a --teacher other than the source is measured too, as the first stage.
    host_timing=False leaves the stages' host latency out (optimize measures every candidate on the device)."""
    for s in steps:
        transforms.get(s.name).validate(s.options, context)
    module = source.torch_module
    stages = [_measure_stage("teacher", context.teacher, source, context, workdir, "t")] if measure_teacher else []
    stages.append(_measure_stage("source", module, source, context, workdir, 0))
    for i, s in enumerate(steps, 1):
        progress.status(f"transform {i}/{len(steps)}: {s.name}")
        later = dataclasses.replace(context, fine_tuned_later=any(
            transforms.get(t.name).needs_training_data for t in steps[i:]))
        result = transforms.get(s.name).apply(copy.deepcopy(module), s.options, later)
        module = result.module.eval()
        stage = _measure_stage(s.name, module, source, context, workdir, i)
        stage.details, stage.notes = result.details, list(result.notes)
        stages.append(stage)
    if host_timing:
        progress.status("timing each stage on this host")
        _time_stages(stages, source, context)
    return module, stages


def _measure_stage(name, module, source, context, workdir, index) -> Stage:
    """Export one stage and count what the exported graph holds; accuracy on the eval data."""
    import onnx

    from .models import count_parameters, estimate_flops
    from .torch_export import export_module

    path = workdir / f"stage-{index}-{name}.onnx"
    try:
        export_module(module, source.torch_examples, [s.name for s in source.inputs], path, source.reference,
                      changed_by=name)
    except BadInput as e:
        reason = f"the {name} stage did not export to ONNX: {e}"
        return Stage(name, None, {"parameters": _torch_parameters(module), "absent": reason})
    graph = onnx.load(str(path))
    figures = {"parameters": count_parameters(graph), "flops": estimate_flops(graph), "bytes": path.stat().st_size}
    figures.update(_top1(path, source, context.evaluation))
    return Stage(name, path, figures)


def _torch_parameters(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _top1(path, source, evaluation) -> dict:
    """{"top1": f} on labelled eval data whose first output is one row per sample, else the reason."""
    from device_agent.measure.accuracy import top1

    from .convert.onnxruntime import ort_runner
    from .data import LABELS, run as run_samples, sample_count

    if evaluation is None or LABELS not in evaluation:
        return {"top1_absent": "no labelled --eval-data"}
    first = run_samples(ort_runner(path), evaluation, source.inputs)[0]
    if len(first) != sample_count(evaluation):
        return {"top1_absent": "the first output is not one row per sample"}
    # unrounded: the source's is what a bundle's accuracy drop is measured from, and 0.988889 against a device's
    # 0.9888889 made a drop of -2.2e-07
    return {"top1": top1(first, evaluation[LABELS])}


def _time_stages(stages: list, source, context) -> None:
    """latency_ms of every exported stage, timed together in alternation on one real input."""
    from .convert.host_hint import time_alternating
    from .data import feeds, random_samples

    timed = [s for s in stages if s.onnx_path is not None]
    if not timed:
        return
    samples = context.evaluation or context.calibration or random_samples(source.inputs, 1)
    feed = next(feeds(samples, source.inputs, pad=True))[2]
    feed = {k: v for k, v in feed.items() if k in {s.name for s in source.inputs}}
    medians, rounds = time_alternating([s.onnx_path for s in timed], feed, seconds=HINT_SECONDS,
                                       options={"providers": ["CPUExecutionProvider"]})
    for stage, ms in zip(timed, medians):
        stage.figures["latency_ms"] = round(ms, 4)
        stage.figures["latency_note"] = f"onnxruntime on this host, 1 thread, median of {rounds}"


class TransformCache:
    """Transformed modules kept between packagings in one process (optimize's trials): a candidate whose steps
    an earlier trial ran on the same source with the same seed and data reuses that module and its stages,
    instead of pruning and training again; trials that differ only in quantization, precision, a backend option
    or threads then cost a conversion and a measurement. Least recently used entries leave first, past
    CACHE_BYTES of parameters; each entry's exported stages are copied into the cache's own folder."""

    def __init__(self, max_bytes: int = CACHE_BYTES):
        self.max_bytes = max_bytes
        self._folder = scratch.folder("transforms")
        self._entries = collections.OrderedDict()   # key -> (module, [Stage], bytes)

    def get(self, key: str):
        """(module, [Stage]) copies of an entry, or None."""
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        module, stages, _ = self._entries[key]
        return copy.deepcopy(module), copy.deepcopy(stages)

    def put(self, key: str, module, stages: list) -> None:
        folder = pathlib.Path(self._folder.name) / key[:32]
        folder.mkdir(exist_ok=True)
        kept = []
        for stage in stages:
            path = None
            if stage.onnx_path is not None:
                path = folder / stage.onnx_path.name
                shutil.copyfile(stage.onnx_path, path)
            kept.append(dataclasses.replace(copy.deepcopy(stage), onnx_path=path))
        size = sum(p.numel() * p.element_size() for p in module.parameters())
        self._entries[key] = (copy.deepcopy(module), kept, size)
        while len(self._entries) > 1 and sum(e[2] for e in self._entries.values()) > self.max_bytes:
            old, _ = self._entries.popitem(last=False)
            shutil.rmtree(pathlib.Path(self._folder.name) / old[:32], ignore_errors=True)

    def close(self) -> None:
        self._entries.clear()
        self._folder.cleanup()


def cache_key(source, steps: list, shapes: dict, seed: int, data: dict, teacher) -> str:
    """What a transformed module depends on: the source (its file's sha256 and reference), the input shapes,
    each step with its options, the seed, the data files read (training, calibration, evaluation) and the
    teacher."""
    import hashlib
    import json

    doc = {"source": [source.reference, source.sha256], "shapes": shapes, "seed": seed, "teacher": teacher,
           "steps": [s.to_dict() for s in steps], "data": {k: _file_identity(v) for k, v in data.items()}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _file_identity(path) -> list | None:
    """A data file's path, size and modification time (a DataLoader reference is its text)."""
    if path is None:
        return None
    p = pathlib.Path(str(path))
    if not p.is_file():
        return [str(path)]
    stat = p.stat()
    return [str(p.resolve()), stat.st_size, stat.st_mtime_ns]
