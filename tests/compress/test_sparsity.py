"""Unstructured magnitude pruning (edgeopt/compress/sparsity.py): the asked share of conv and linear
weights becomes zero, shapes stay, and the note says plainly that dense runtimes are not faster."""
import json

import numpy as np
import pytest
from pruning_nets import context, export, resnetish, run_onnx

from edgeopt.compress import base
from edgeopt.errors import BadInput

torch = pytest.importorskip("torch")
SPARSITY = base.get("sparsity")


def options(**values):
    return base.build_options(SPARSITY.Options, {k: str(v) for k, v in values.items()}, "sparsity")


def weights(model) -> dict:
    kinds = (torch.nn.Conv2d, torch.nn.Linear)
    return {n: m.weight.detach() for n, m in model.named_modules() if isinstance(m, kinds)}


@pytest.fixture(scope="module")
def cnn():
    return resnetish(), torch.randn(1, 3, 32, 32)


def test_every_layer_reaches_the_ratio_and_the_model_still_runs(cnn, tmp_path):
    model, x = cnn
    result = SPARSITY.apply(model, options(weights=0.7), context(x))
    for name, w in weights(result.module).items():
        assert abs(float((w == 0).float().mean()) - 0.7) < 1 / w.numel() + 1e-6, name
    assert weights(model)["stem.0"].count_nonzero() == weights(model)["stem.0"].numel()   # caller's copy dense
    assert not any(n.endswith(("_orig", "_mask")) for n, _ in result.module.named_parameters())
    assert not result.module.training

    d = json.loads(json.dumps(result.details))
    assert abs(d["sparsity"] - 0.7) < 0.01 and len(d["layers"]) == 7
    assert 0.6 < d["sparsity_of_all_parameters"] < d["sparsity"]   # biases and BatchNorm stay dense
    assert any("not make ONNX Runtime" in n for n in result.notes)

    path = tmp_path / "sparse.onnx"
    export(result.module, x, path)
    np.testing.assert_allclose(run_onnx(path, x), result.module(x).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_global_scope_ranks_across_layers_and_protect_stays_dense(cnn):
    model, x = cnn
    result = SPARSITY.apply(model, options(weights=0.8, scope="global", protect="head"), context(x))
    per_layer = {r["layer"]: r["sparsity"] for r in result.details["layers"]}
    assert "head" not in per_layer and weights(result.module)["head"].count_nonzero() == 640
    assert abs(result.details["sparsity"] - 0.8) < 0.01
    assert max(per_layer.values()) - min(per_layer.values()) > 0.05   # uneven: global magnitudes


@pytest.mark.parametrize("values, message", [
    ({"weights": "0"}, "weights: 0.0 is out of range"),
    ({"weights": "1"}, "weights: 1.0 is out of range"),
    ({"scope": "model"}, "scope: 'model' is not one of"),
    ({"channels": "0.5"}, "unknown option 'channels'"),
])
def test_bad_options_are_refused(values, message):
    with pytest.raises(BadInput, match=message):
        base.build_options(SPARSITY.Options, values, "sparsity")
