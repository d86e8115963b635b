"""Fine-tuning and knowledge distillation: the student (the module this step receives, typically pruned or
low-ranked) is trained to match the teacher (context.teacher: the untransformed source module, or a
user's other model with the same inputs and outputs) and, where the training data has labels, the labels.

The loss, by the first output's shape:
- (N, classes): alpha * KL(teacher || student) on logits softened by `temperature` (scaled by T^2, as in
  Hinton et al., so alpha keeps its meaning across temperatures) + (1 - alpha) * cross-entropy on the
  labels. Without labels alpha is 1; alpha 0 is plain fine-tuning, and needs no teacher.
- anything else (detectors, embeddings, several outputs): mean squared error on every float output,
  summed; labels are not used.

Held-out progress is scored on --eval-data: top-1 accuracy against its labels, or without labels the
agreement of the student's top-1 with the teacher's. The training loop (`fit`) is shared with
quantization-aware training (qat.py).

Deterministic for a given context.seed: torch's generator is seeded and batches are shuffled with a
numpy Generator from the same seed.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..data import LABELS
from ..errors import BadInput
from .base import Transform, TransformResult, option, register, training_batches

EVAL_BATCH = 256


@dataclasses.dataclass(frozen=True)
class DistillOptions:
    epochs: int = option(5, "passes over the training data", low=1, search=(1, 20), search_off="below")
    lr: float = option(1e-3, "learning rate", low=0, low_open=True, search=(1e-4, 1e-2), log=True)
    temperature: float = option(4.0, "softening of both models' logits in the distillation term",
                                low=0, low_open=True)
    alpha: float = option(0.7, "weight of the distillation term against cross-entropy on the labels "
                               "(forced to 1 when the training data has no labels; 0 is plain fine-tuning)",
                          low=0, high=1)
    batch_size: int = option(64, "samples per training step", low=1)
    optimizer: str = option("adam", "adam, or sgd with momentum 0.9", choices=("adam", "sgd"))


@dataclasses.dataclass(frozen=True)
class Training:
    """What `fit` needs to know, whichever transform calls it."""
    epochs: int
    lr: float
    batch_size: int
    alpha: float
    temperature: float = 4.0
    optimizer: str = "adam"
    label: str = "distill"          # progress label: "<label> epoch e/E"


@register
class Distill(Transform):
    name = "distill"
    summary = "fine-tune the module against the source model (knowledge distillation) and/or the labels"
    Options = DistillOptions
    needs_training_data = True
    screens_untrained = True   # untrained(): None, the step left out (the architecture is the module's)

    def validate(self, options, context) -> None:
        super().validate(options, context)
        labelled = LABELS in context.train
        if options.alpha == 0 and not labelled:
            raise BadInput("transform distill: alpha=0 is fine-tuning on labels, but the training data has "
                           "no `labels` array")
        if (options.alpha > 0 or not labelled) and context.teacher is None:
            raise BadInput("transform distill: distillation needs a teacher module (the source model, or "
                           "--teacher); use alpha=0 with labelled data to fine-tune without one")

    def apply(self, module, options, context) -> TransformResult:
        labelled = LABELS in context.train
        alpha = options.alpha if labelled else 1.0
        notes = []
        if not labelled and options.alpha != 1.0:
            notes.append(f"the training data has no labels: alpha {options.alpha:g} forced to 1 (distillation only)")
        settings = Training(options.epochs, options.lr, options.batch_size, alpha, options.temperature,
                            options.optimizer)
        teacher = context.teacher if alpha > 0 else None
        details, fit_notes = fit(module, teacher, context, settings)
        return TransformResult(module.eval(), details, notes + fit_notes)


def fit(module, teacher, context, settings: Training, train_mode=None) -> tuple:
    """Train `module` in place on context.train; ({details}, [notes]). train_mode(module) puts it in
    training mode (default: module.train(), BatchNorm included); it is left in eval mode."""
    import torch

    torch.manual_seed(context.seed)
    rng = np.random.default_rng(context.seed)
    first = training_batches(context.train, context.inputs, settings.batch_size, np.random.default_rng(context.seed))
    loss_kind, alpha, notes = _objective(module, teacher, context.train, settings, first[0][0])
    held = _held_out(context, teacher, loss_kind != "mse")
    before = _score(module, held)
    optimizer = _optimizer(module, settings)
    history = []
    with _eval(teacher):
        for epoch in range(1, settings.epochs + 1):
            (train_mode or (lambda m: m.train()))(module)
            loss = _epoch(module, teacher, context, settings, alpha, loss_kind, optimizer, rng, epoch)
            module.eval()
            score = _score(module, held)
            history.append({"epoch": epoch, "loss": _round(loss), "held_out": _round(score)})
            context.progress.status(_epoch_line(settings, epoch, loss, held, score))
    details = {"epochs": settings.epochs, "lr": settings.lr, "batch_size": settings.batch_size,
               "optimizer": settings.optimizer, "alpha": alpha, "temperature": settings.temperature,
               "loss": loss_kind, "train_samples": sum(len(xs[0]) for xs, _ in first),
               "final_train_loss": history[-1]["loss"], "held_out": _held_details(held, before, score, teacher),
               "history": history}
    return details, notes


def _objective(module, teacher, train, settings: Training, xs) -> tuple:
    """(loss kind, alpha, notes): "kl+ce" or "ce" on (N, classes) logits, else "mse" (alpha 1)."""
    import torch

    with _eval(teacher), _eval(module), torch.no_grad():
        loss_kind, classes = _loss_kind(module, teacher, xs)
    notes = _check_labels(train, classes, loss_kind)
    alpha = settings.alpha if LABELS in train and loss_kind == "kl+ce" else 1.0
    if alpha == 0:
        return "ce", alpha, notes
    if teacher is None:
        raise BadInput(f"transform {settings.label}: the first output is not (N, classes), so the labels cannot "
                       "be trained on; distillation needs a teacher module")
    return loss_kind, alpha, notes


def _epoch(module, teacher, context, settings, alpha, loss_kind, optimizer, rng, epoch) -> float:
    """One pass over the shuffled training data; the mean training loss."""
    import torch

    batches = training_batches(context.train, context.inputs, settings.batch_size, rng)
    if len(batches) > 1 and len(batches[-1][0][0]) == 1:
        batches.pop()  # a 1-sample tail: BatchNorm in training mode cannot normalize it
    context.progress.start(f"{settings.label} epoch {epoch}/{settings.epochs}", total=len(batches), unit="batches")
    total = 0.0
    try:
        for xs, labels in batches:
            with torch.no_grad():
                target = _outputs(teacher(*xs)) if teacher is not None and alpha > 0 else None
            loss = _loss(_outputs(module(*xs)), target, labels, alpha, settings.temperature, loss_kind)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            context.progress.advance()
    finally:
        context.progress.finish()
    return total / max(len(batches), 1)


def _loss(student, teacher, labels, alpha, temperature, kind):
    import torch.nn.functional as F

    if kind == "mse":
        return sum(F.mse_loss(s, t) for s, t in zip(student, teacher))
    logits = student[0]
    loss = 0.0
    if alpha > 0:
        t = temperature
        loss = alpha * t * t * F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher[0] / t, dim=1),
                                        log_target=True, reduction="batchmean")
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(logits, labels)
    return loss


def _loss_kind(module, teacher, xs) -> tuple:
    """("kl+ce", classes) when the first output is (N, classes), else ("mse", None); the teacher and the
    student must give outputs of the same shapes."""
    student = _outputs(module(*xs))
    if teacher is not None:
        reference = _outputs(teacher(*xs))
        shapes = [tuple(t.shape) for t in student], [tuple(t.shape) for t in reference]
        if shapes[0] != shapes[1]:
            raise BadInput(f"transform distill: the student's outputs {shapes[0]} differ from the teacher's "
                           f"{shapes[1]}; the teacher must have the same outputs")
    first = student[0]
    if first.dim() == 2 and first.shape[1] > 1:
        return "kl+ce", int(first.shape[1])
    return "mse", None


def _check_labels(train, classes, loss_kind) -> list:
    if LABELS not in train:
        return []
    if loss_kind == "mse":
        return ["the training labels are not used: the first output is not (N, classes), so the loss is the "
                "mean squared error to the teacher's outputs"]
    top = int(np.max(train[LABELS]))
    if top >= classes:
        raise BadInput(f"training data: labels go up to {top} but the first output has {classes} classes")
    return []


def _outputs(result) -> list:
    """The float tensors of a module's result, flattened (tuples, lists and dicts of outputs)."""
    import torch
    from torch.utils._pytree import tree_flatten

    return [t for t in tree_flatten(result)[0] if isinstance(t, torch.Tensor) and t.is_floating_point()]


def _optimizer(module, settings):
    import torch

    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise BadInput(f"transform {settings.label}: the module has no trainable parameters")
    if settings.optimizer == "sgd":
        return torch.optim.SGD(params, lr=settings.lr, momentum=0.9)
    return torch.optim.Adam(params, lr=settings.lr)


@dataclasses.dataclass
class _HeldOut:
    metric: str | None              # "accuracy" (eval labels), "agreement" (teacher's top-1), None
    batches: list                   # [(inputs, reference top-1 tensor)]
    reason: str = ""


def _held_out(context, teacher, classify: bool) -> _HeldOut:
    """What the student is scored on after every epoch."""
    import torch

    evaluation = context.evaluation
    if evaluation is None:
        return _HeldOut(None, [], "no --eval-data")
    if not classify:
        return _HeldOut(None, [], "the first output is not (N, classes)")
    batches = training_batches(evaluation, context.inputs, EVAL_BATCH, np.random.default_rng(0))
    if LABELS in evaluation:
        return _HeldOut("accuracy", batches)
    if teacher is None:
        return _HeldOut(None, [], "the eval data has no labels and there is no teacher to agree with")
    with _eval(teacher), torch.no_grad():
        return _HeldOut("agreement", [(xs, _outputs(teacher(*xs))[0].argmax(1)) for xs, _ in batches])


def _score(module, held: _HeldOut):
    import torch

    if held.metric is None:
        return None
    correct = total = 0
    with _eval(module), torch.no_grad():
        for xs, reference in held.batches:
            correct += int((_outputs(module(*xs))[0].argmax(1) == reference).sum())
            total += len(reference)
    return correct / total


def _held_details(held: _HeldOut, before, after, teacher) -> dict:
    if held.metric is None:
        return {"metric": None, "reason": held.reason}
    out = {"metric": held.metric, "samples": sum(len(r) for _, r in held.batches), "before": _round(before),
           "after": _round(after)}
    if held.metric == "accuracy" and teacher is not None:
        out["teacher"] = _round(_score(teacher, held))
    return out


def _epoch_line(settings, epoch, loss, held, score) -> str:
    line = f"{settings.label} epoch {epoch}/{settings.epochs}: loss {loss:.4f}"
    return line + (f", held-out {held.metric} {score:.4f}" if held.metric else "")


def _round(value):
    return None if value is None else round(float(value), 6)


class _eval:
    """Eval mode for the duration (None passes through), the module's own mode restored after."""

    def __init__(self, module):
        self.module, self.was = module, None

    def __enter__(self):
        if self.module is not None:
            self.was = self.module.training
            self.module.eval()
        return self.module

    def __exit__(self, *exc):
        if self.module is not None:
            self.module.train(self.was)
