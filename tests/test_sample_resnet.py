"""The second sample (edgeopt/samples/digits_resnet.py): the shipped weights load and classify the held-out split,
the shipped splits have the documented arrays and share no image, and the architecture is one that Torch-Pruning
can prune and ONNX Runtime runs as torch does."""
import hashlib

import numpy as np
import pytest

from conftest import SAMPLES

torch = pytest.importorskip("torch")
from edgeopt.samples import digits_resnet  # after importorskip: this module imports torch

SPLITS = {name: SAMPLES / f"digits32_{name}.npz" for name in ("train", "calib", "eval")}
SIZES = {"train": 1237, "calib": 200, "eval": 360}


@pytest.fixture(scope="module", autouse=True)
def one_thread(torch_one_thread):
    """Small convolutions train several times faster on one thread when the CPUs are shared."""


def _arrays(name) -> dict:
    with np.load(SPLITS[name]) as f:
        return {k: f[k] for k in f.files}


def test_each_split_holds_the_documented_arrays():
    for name in SPLITS:
        arrays = _arrays(name)
        expected = {"input", "labels"} if name != "calib" else {"input"}
        assert set(arrays) == expected, name
        x = arrays["input"]
        assert x.shape == (SIZES[name], 1, 32, 32) and x.dtype == np.float32, name
        assert np.isfinite(x).all(), name
        if "labels" in arrays:
            y = arrays["labels"]
            assert y.shape == (SIZES[name],) and y.dtype == np.int64, name
            assert set(np.unique(y)) == set(range(10)), name   # stratified: every class in every split


def test_the_splits_share_no_image():
    seen = {}
    for name in SPLITS:
        for row in _arrays(name)["input"]:
            digest = hashlib.sha256(row.tobytes()).hexdigest()
            assert digest not in seen, f"an image of {name} is also in {seen.get(digest)}"
            seen[digest] = name
    assert len(seen) == sum(SIZES.values())


def test_the_splits_are_sklearn_digits_through_to_input():
    """Every shipped row is one of load_digits()'s images made by to_input, so the documented preprocessing is the
    one the model was trained with; and the three splits together are the whole set."""
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    reference = digits_resnet.to_input(digits.images).numpy().reshape(len(digits.images), -1)
    used = []
    for name in ("train", "eval"):
        arrays = _arrays(name)
        rows = arrays["input"].reshape(len(arrays["input"]), -1)
        # squared distances by |a|^2 - 2ab + |b|^2: one matrix product instead of a Python loop
        d2 = (rows ** 2).sum(1)[:, None] - 2 * rows @ reference.T + (reference ** 2).sum(1)[None, :]
        nearest = d2.argmin(1)
        assert np.allclose(rows, reference[nearest], atol=1e-5), name
        assert (digits.target[nearest] == arrays["labels"]).all(), name
        used.extend(nearest.tolist())
    assert len(set(used)) == len(used) == SIZES["train"] + SIZES["eval"]


def test_build_loads_the_trained_weights_and_classifies_the_eval_split():
    model = digits_resnet.build()
    assert not model.training
    arrays = _arrays("eval")
    with torch.no_grad():
        predicted = model(torch.from_numpy(arrays["input"])).argmax(1).numpy()
    accuracy = float((predicted == arrays["labels"]).mean())
    assert accuracy >= 0.95, accuracy


def test_build_untrained_is_the_same_architecture_with_other_weights():
    trained, untrained = digits_resnet.build().state_dict(), digits_resnet.build_untrained(seed=0).state_dict()
    assert {k: v.shape for k, v in trained.items()} == {k: v.shape for k, v in untrained.items()}
    assert not torch.equal(trained["head.weight"], untrained["head.weight"])
    again = digits_resnet.build_untrained(seed=0).state_dict()
    assert all(torch.equal(untrained[k], again[k]) for k in untrained)   # seeded
    assert not torch.equal(untrained["head.weight"], digits_resnet.build_untrained(seed=1).state_dict()["head.weight"])


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning")
def test_half_the_channels_prune_away_and_the_model_still_exports_and_runs(tmp_path):
    """What the sample is for: Torch-Pruning's dependency graph cuts through the residual adds, and the smaller
    model exports at opset 17 and runs in ONNX Runtime with torch's outputs."""
    tp = pytest.importorskip("torch_pruning")
    ort = pytest.importorskip("onnxruntime")
    model = digits_resnet.build_untrained(seed=0)
    example = torch.randn(1, 1, 32, 32)
    before = sum(p.numel() for p in model.parameters())
    pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=0.5, ignored_layers=[model.head])
    pruner.step()
    model.eval()
    after = sum(p.numel() for p in model.parameters())
    assert after < 0.3 * before                         # conv weights shrink in both axes: ~1/4 left
    assert model.head.in_features == digits_resnet.WIDTHS[-1] // 2 and model.head.out_features == 10
    path = tmp_path / "pruned.onnx"
    torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["output"],
                      opset_version=17, dynamo=False)
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        expected = torch.cat([model(x[i:i + 1]) for i in range(4)]).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {"input": x[i:i + 1].numpy()})[0] for i in range(4)])
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-4)
