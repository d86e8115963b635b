"""The distill transform on real torch: a CNN trained on sklearn's digits is the teacher, a 70%
channel-pruned copy (torch-pruning) the student; distillation must recover held-out accuracy, the same
seed must give the same result, and bad options or missing data fail before any work."""
import copy
import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tp = pytest.importorskip("torch_pruning")
pytest.importorskip("sklearn")

from distill_digits import accuracy, cnn, context, digits, train  # noqa: E402

from edgeopt.compress import base  # noqa: E402
from edgeopt.errors import BadInput  # noqa: E402
from edgeopt.progress import Progress  # noqa: E402


class Recorder(Progress):
    def __init__(self):
        self.started, self.advanced, self.lines = [], 0, []

    def start(self, label, total=None, unit=""):
        self.started.append((label, total))

    def advance(self, n=1):
        self.advanced += n

    def status(self, message):
        self.lines.append(message)


@pytest.fixture(scope="module", autouse=True)
def one_thread(torch_one_thread):
    """Small convolutions train several times faster on one thread when the CPUs are shared."""


@pytest.fixture(scope="module")
def setup():
    """(train, held-out, teacher, pruned student): the student keeps the teacher's surviving weights."""
    train_samples, held = digits()
    teacher = train(cnn(), train_samples)
    student = copy.deepcopy(teacher)
    tp.pruner.MetaPruner(student, torch.zeros(1, 1, 8, 8), importance=tp.importance.MagnitudeImportance(p=2),
                         pruning_ratio=0.7, ignored_layers=[student.fc]).step()
    return train_samples, held, teacher, student.eval()


def distill(module, ctx, **values):
    transform = base.get("distill")
    options = base.build_options(transform.Options, values, "distill")
    transform.validate(options, ctx)
    return transform.apply(copy.deepcopy(module), options, ctx)


def test_distillation_recovers_a_pruned_model_on_held_out_data(setup):
    train_samples, held, teacher, student = setup
    pruned = accuracy(student, held)
    progress = Recorder()
    result = distill(student, context(train_samples, held, teacher, progress=progress), epochs=4)
    after = accuracy(result.module, held)
    assert sum(p.numel() for p in result.module.parameters()) == sum(p.numel() for p in student.parameters())
    assert after > pruned + 0.2 and after > 0.9, (pruned, after)
    assert not result.module.training
    details = result.details
    json.dumps(details)
    assert details["held_out"]["metric"] == "accuracy"
    assert details["held_out"]["before"] == pytest.approx(pruned, abs=1e-6)
    assert details["held_out"]["after"] == pytest.approx(after, abs=1e-6)
    assert details["held_out"]["teacher"] == pytest.approx(accuracy(teacher, held), abs=1e-6)
    assert details["loss"] == "kl+ce" and details["alpha"] == 0.7 and details["epochs"] == 4
    assert len(details["history"]) == 4 and details["final_train_loss"] == details["history"][-1]["loss"]
    assert details["history"][-1]["loss"] < details["history"][0]["loss"]
    assert [label for label, _ in progress.started] == [f"distill epoch {e}/4" for e in range(1, 5)]
    assert progress.advanced == 4 * progress.started[0][1] and progress.started[0][1] == 16
    assert progress.lines[-1].startswith("distill epoch 4/4: loss ") and "held-out accuracy" in progress.lines[-1]


def test_the_same_seed_gives_the_same_student(setup):
    train_samples, held, teacher, student = setup
    few = {k: v[:256] for k, v in train_samples.items()}
    runs = [distill(student, context(few, held, teacher, seed=seed), epochs=1) for seed in (3, 3, 4)]
    same, other = runs[0].module.state_dict(), runs[2].module.state_dict()
    assert all(torch.equal(same[k], runs[1].module.state_dict()[k]) for k in same)
    assert runs[0].details == runs[1].details
    assert not all(torch.equal(same[k], other[k]) for k in same)


def test_without_labels_alpha_is_forced_to_1_and_held_out_scores_agreement(setup):
    train_samples, held, teacher, student = setup
    unlabelled = {"image": train_samples["image"][:256]}
    held_unlabelled = {"image": held["image"]}
    result = distill(student, context(unlabelled, held_unlabelled, teacher), epochs=1, alpha=0.5)
    assert result.details["alpha"] == 1.0 and result.details["loss"] == "kl+ce"
    assert any("no labels: alpha 0.5 forced to 1" in n for n in result.notes)
    assert result.details["held_out"]["metric"] == "agreement"
    assert 0.0 <= result.details["held_out"]["after"] <= 1.0


def test_alpha_0_fine_tunes_on_labels_without_a_teacher(setup):
    train_samples, held, _, student = setup
    few = {k: v[:512] for k, v in train_samples.items()}
    result = distill(student, context(few, held, teacher=None), epochs=2, alpha=0)
    assert result.details["loss"] == "ce"
    assert result.details["held_out"]["after"] > result.details["held_out"]["before"]
    assert "teacher" not in result.details["held_out"]


def test_outputs_other_than_logits_are_matched_by_mean_squared_error(setup):
    train_samples, held, teacher, _ = setup

    class Features(torch.nn.Module):
        def __init__(self, width):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.hidden = torch.nn.Conv2d(4, width, 1)
            self.out = torch.nn.Conv2d(width, 4, 1)

        def forward(self, x):
            return self.out(torch.relu(self.hidden(torch.relu(self.conv(x))))), x.mean(dim=(2, 3))

    big, small = Features(16).eval(), Features(2).eval()
    x = torch.from_numpy(held["image"])
    with torch.no_grad():
        error_before = float(((small(x)[0] - big(x)[0]) ** 2).mean())
    result = distill(small, context(train_samples, held, big), epochs=2, lr=1e-2)
    with torch.no_grad():
        error_after = float(((result.module(x)[0] - big(x)[0]) ** 2).mean())
    assert result.details["loss"] == "mse" and result.details["alpha"] == 1.0
    assert result.details["held_out"] == {"metric": None, "reason": "the first output is not (N, classes)"}
    assert any("labels are not used" in n for n in result.notes)
    assert error_after < error_before / 2, (error_before, error_after)


def test_missing_training_data_is_refused_before_any_work(setup):
    _, held, teacher, _ = setup
    transform = base.get("distill")
    options = base.build_options(transform.Options, {}, "distill")
    with pytest.raises(BadInput, match="needs training data"):
        transform.validate(options, context(None, held, teacher))


def test_a_teacher_is_needed_unless_alpha_is_0_with_labels(setup):
    train_samples, held, _, _ = setup
    transform = base.get("distill")
    with pytest.raises(BadInput, match="needs a teacher"):
        transform.validate(base.build_options(transform.Options, {}, "distill"), context(train_samples, held))
    with pytest.raises(BadInput, match="no `labels` array"):
        transform.validate(base.build_options(transform.Options, {"alpha": "0"}, "distill"),
                           context({"image": train_samples["image"]}, held))


@pytest.mark.parametrize("values, message", [
    ({"alpha": 1.5}, "distill: alpha: 1.5 is out of range"),
    ({"alpha": -0.1}, "alpha: -0.1 is out of range"),
    ({"lr": "0"}, "lr: 0.0 is out of range"),
    ({"temperature": 0}, "temperature: 0.0 is out of range"),
    ({"epochs": 0}, "epochs: 0 is out of range"),
    ({"optimizer": "lbfgs"}, "'lbfgs' is not one of adam, sgd"),
])
def test_bad_options_are_refused_by_build_options(values, message):
    with pytest.raises(BadInput, match=message):
        base.build_options(base.get("distill").Options, values, "distill")


def test_options_declare_their_search_ranges():
    meta = {f.name: f.metadata for f in dataclasses.fields(base.get("distill").Options)}
    assert meta["epochs"]["search"] == (1, 20) and not meta["epochs"]["log"]
    assert meta["lr"]["search"] == (1e-4, 1e-2) and meta["lr"]["log"]
    options = base.build_options(base.get("distill").Options, {"alpha": "0.25", "optimizer": "sgd"}, "distill")
    assert (options.alpha, options.optimizer, options.epochs, options.temperature) == (0.25, "sgd", 5, 4.0)
    assert np.isclose(options.lr, 1e-3)
