"""Low-rank factorization (edgeopt/compress/lowrank.py) on layers whose weights are nearly low-rank (as
trained weights often are): at energy 0.99 the output barely moves and the exported graph is smaller;
at energy 0.5 it is smaller still; full-rank and grouped layers are left alone."""
import json

import numpy as np
import pytest
from pruning_nets import context, graph_size, run_onnx

from edgeopt.compress import base
from edgeopt.errors import BadInput

torch = pytest.importorskip("torch")
nn = torch.nn
LOWRANK = base.get("lowrank")


def options(**values):
    return base.build_options(LOWRANK.Options, {k: str(v) for k, v in values.items()}, "lowrank")


def low_rank_(weight, rank, rng):
    """Overwrite `weight` with a rank-`rank` matrix (over its first axis) plus a little noise."""
    out, rest = weight.shape[0], weight[0].numel()
    spectrum = np.linspace(1.0, 0.5, rank)
    w = (rng.standard_normal((out, rank)) * spectrum) @ rng.standard_normal((rank, rest)) / np.sqrt(rest)
    w += 0.002 * rng.standard_normal((out, rest))
    weight.data.copy_(torch.from_numpy(w.reshape(weight.shape)).float())


def net():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1, groups=64), nn.ReLU(),       # depthwise: never factorized
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    for i in (2, 8, 10):
        low_rank_(model[i].weight, 12, rng)
    return model


@pytest.fixture(scope="module")
def model():
    return net(), torch.randn(1, 3, 16, 16)


def relative_error(a, b) -> float:
    return float((a - b).norm() / b.norm())


def test_high_energy_keeps_the_output_and_shrinks_the_graph(model, tmp_path):
    m, x = model
    result = LOWRANK.apply(m, options(energy=0.99), context(x))
    d = json.loads(json.dumps(result.details))
    assert {r["layer"] for r in d["layers"]} == {"2", "8", "10"}     # the near-low-rank layers; the rest are small
    assert all(r["rank"] <= 16 and r["params_after"] < r["params_before"] / 3 for r in d["layers"])
    assert d["params_after"] == sum(p.numel() for p in result.module.parameters()) < d["params_before"] / 2

    with torch.no_grad():
        assert relative_error(result.module(x), m(x)) < 0.05
    params0, flops0 = graph_size(m, x, tmp_path / "dense.onnx")
    params1, flops1 = graph_size(result.module, x, tmp_path / "lowrank.onnx")
    assert params1 < params0 / 2 and flops1 < flops0
    np.testing.assert_allclose(run_onnx(tmp_path / "lowrank.onnx", x), result.module(x).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


def test_low_energy_is_smaller_still(model):
    m, x = model
    high = LOWRANK.apply(m, options(energy=0.99), context(x)).details
    low = LOWRANK.apply(m, options(energy=0.5), context(x)).details
    assert low["params_after"] < high["params_after"]
    assert all(r["rank"] < 12 for r in low["layers"])


def test_a_fixed_rank_and_the_limits(model):
    m, x = model
    result = LOWRANK.apply(m, options(rank=4, min_params=0), context(x))
    layers = {r["layer"]: r for r in result.details["layers"]}
    # rank 4 is smaller than every ungrouped layer, the small stem and head included (min_params=0)
    assert set(layers) == {"0", "2", "8", "10", "12"} and {r["rank"] for r in layers.values()} == {4}
    assert isinstance(result.module[4], nn.Conv2d)                      # depthwise left alone
    assert result.module(x).shape == (1, 10) and result.module[2][0].stride == (2, 2)

    full_rank = nn.Sequential(nn.Linear(64, 64)).eval()
    kept = LOWRANK.apply(full_rank, options(energy=0.9, min_params=0), context(torch.randn(1, 64)))
    assert kept.details["factorized"] == 0 and isinstance(kept.module[0], nn.Linear)   # would not be smaller
    # said, where "0 of 1 layers factorized" read as a success (a user review)
    assert kept.notes[-1] == ("warning: lowrank changed nothing: none of the 1 layers considered has fewer "
                              "parameters factorized at energy 0.9 (a lower energy or rank factorizes more)")
    small = LOWRANK.apply(nn.Sequential(nn.Linear(32, 32)).eval(), options(energy=0.9),
                          context(torch.randn(1, 32))).notes
    assert small[-1] == ("warning: lowrank changed nothing: of its 1 linear and ungrouped conv layers, 1 hold fewer "
                         "than min_params=4096 weights, 0 are read whole by attention and 0 are protected")
    assert not any("0 of 0" in n for n in small)   # beside "of its 1 linear ... layers" it read as a contradiction
    assert not any("changed nothing" in n for n in result.notes)
    guarded = LOWRANK.apply(m, options(energy=0.99, protect="10"), context(x))
    assert isinstance(guarded.module[10], nn.Linear) and guarded.details["factorized"] == 2


@pytest.mark.parametrize("values, message", [
    ({"energy": "0"}, "energy: 0.0 is out of range"),
    ({"energy": "1.5"}, "energy: 1.5 is out of range"),
    ({"rank": "-1"}, "rank: -1 is out of range"),
    ({"rank": "2.5"}, "rank: expected an integer"),
    ({"ranks": "4"}, "unknown option 'ranks'"),
])
def test_bad_options_are_refused(values, message):
    with pytest.raises(BadInput, match=message):
        base.build_options(LOWRANK.Options, values, "lowrank")


def test_a_stock_transformer_encoder_keeps_the_layers_its_modules_read_themselves(tmp_path):
    """MultiheadAttention reads out_proj.weight and TransformerEncoderLayer linear1/linear2's for its fast path: a
    factorized pair there failed every stock nn.TransformerEncoder ("'Sequential' object has no attribute
    'weight'", blamed on --input-shape). Those are left whole, said in a note; a Linear beside them is factorized."""
    torch.manual_seed(0)

    class Layer(nn.TransformerEncoderLayer):   # a subclass inherits the fast path that reads linear1.weight
        pass

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            layer = Layer(64, 4, 128, batch_first=True)
            self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Linear(64, 256)

        def forward(self, x):
            return self.head(self.enc(x))

    m = Tagger().eval()
    low_rank_(m.head.weight, 8, np.random.default_rng(0))
    x = torch.randn(1, 16, 64)
    result = LOWRANK.apply(m, options(energy=0.99, min_params=1), context(x))
    assert [r["layer"] for r in result.details["layers"]] == ["head"]
    assert any("6 linear layer(s) of PyTorch's attention and Transformer layers left whole" in n
               for n in result.notes), result.notes
    with torch.no_grad():
        assert relative_error(result.module(x), m(x)) < 0.05
    graph_size(result.module, x, tmp_path / "tagger.onnx")   # and it exports


def test_a_factorized_layer_still_answers_weight_and_bias_for_code_outside_forward(tmp_path):
    """Hugging Face's ViT casts its input to patch_embeddings.projection.weight.dtype: a factorized pair, a plain
    Sequential, failed every ViT ("'Sequential' object has no attribute 'weight'"), and optimize lost the trial
    (a user walkthrough). The pair answers .weight (the factors' product, in the layer's shape) and .bias."""
    torch.manual_seed(0)

    class Patches(nn.Module):
        def __init__(self):
            super().__init__()
            self.projection = nn.Conv2d(3, 64, 4, stride=4)
            self.head = nn.Linear(64, 10)

        def forward(self, x):
            x = x.to(self.projection.weight.dtype)   # as transformers' ViTEmbeddings does
            return self.head(self.projection(x).mean((2, 3)) + self.head.bias.sum() * 0)

    m = Patches().eval()
    low_rank_(m.projection.weight, 4, np.random.default_rng(1))
    x = torch.randn(1, 3, 16, 16)
    result = LOWRANK.apply(m, options(energy=0.999, min_params=1), context(x))
    factorized = result.module.projection
    assert [r["layer"] for r in result.details["layers"]][:1] == ["projection"]
    assert factorized.weight.shape == m.projection.weight.shape and factorized.bias is factorized[1].bias
    assert relative_error(factorized.weight.detach(), m.projection.weight.detach()) < 0.05
    with torch.no_grad():
        assert relative_error(result.module(x), m(x)) < 0.05
    graph_size(result.module, x, tmp_path / "patches.onnx")   # and it exports


def test_a_module_the_transform_broke_is_blamed_on_the_transform_not_the_inputs(cli, tmp_path):
    """A factorized layer's failure read "the module failed on float32 inputs ... (check --input-shape; a model
    of integer inputs ...)": the inputs it had just run on (a user walkthrough)."""
    (tmp_path / "net.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(64, 64)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x[:, :self.fc.in_features])\n"   # an attribute the factorized pair lacks
        "def build():\n"
        "    return Net().eval()\n")
    r = cli("package", f"{tmp_path / 'net.py'}:build", "--input-shape", "x=1,64", "--low-rank", "rank=4",
            "--budget", "accuracy_drop=none", "-o", tmp_path / "n.edgepkg")
    assert r.exit_code == 2 and "after lowrank, the module fails on the inputs it ran on before: " in r.stderr, \
        r.stderr
    assert "--input-shape" not in r.stderr and "in_features" in r.stderr
