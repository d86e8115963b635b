"""Structured channel pruning (edgeopt/compress/prune.py) on real torch models: the exported ONNX graph
loses parameters and FLOPs, output shapes and the head's width stay, ONNX Runtime runs the result."""
import json
import warnings

import numpy as np
import pytest
from pruning_nets import context, graph_size, mlp, resnetish, run_onnx

from edgeopt.compress import base
from edgeopt.errors import BadInput

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
PRUNE = base.get("prune")


def options(**values):
    return base.build_options(PRUNE.Options, {k: str(v) for k, v in values.items()}, "prune")


def convs(model) -> dict:
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}


@pytest.fixture(scope="module")
def cnn():
    return resnetish(), torch.randn(1, 3, 32, 32)


def test_half_the_channels_shrinks_the_exported_graph_and_keeps_the_head(cnn, tmp_path):
    model, x = cnn
    original = {k: v.clone() for k, v in model.state_dict().items()}
    result = PRUNE.apply(model, options(channels=0.5), context(x))
    pruned = result.module

    params0, flops0 = graph_size(model, x, tmp_path / "dense.onnx")
    params1, flops1 = graph_size(pruned, x, tmp_path / "pruned.onnx")
    # half the channels of both ends of a conv: about a quarter of the weights and MACs remain
    assert params1 < 0.35 * params0 and flops1 < 0.35 * flops0
    assert set(convs(pruned).values()) == {16, 32}
    assert pruned.head.out_features == 10 and pruned.head.in_features == 32
    assert not pruned.training
    ours = run_onnx(tmp_path / "pruned.onnx", x)
    np.testing.assert_allclose(ours, pruned(x).detach().numpy(), rtol=1e-4, atol=1e-4)

    d = json.loads(json.dumps(result.details))
    assert d["params_after"] < 0.35 * d["params_before"] and d["macs_after"] < 0.35 * d["macs_before"]
    assert d["params_after"] == sum(p.numel() for p in pruned.parameters())
    assert d["protected"] == ["head"]
    assert {"layer": "stem.0", "before": 32, "after": 16} in d["layers"]
    assert all(r["layer"] != "head" for r in d["layers"])
    assert any("fine-tuning" in n for n in result.notes)
    # the caller's module is untouched
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())


def test_global_ranking_with_a_channel_multiple(cnn):
    model, x = cnn
    result = PRUNE.apply(model, options(channels=0.6, scope="global", round_to=8, criterion="lamp"), context(x))
    widths = convs(result.module)
    assert all(w % 8 == 0 and w >= 8 for w in widths.values()), widths
    assert sum(widths.values()) < 0.6 * sum(convs(model).values())
    assert result.module(x).shape == (1, 10)


def test_a_channel_multiple_rounds_to_the_nearest_width_not_down():
    """A user review: prune 0.524 with round_to=16 removed 58-67 % of the channels. Torch-Pruning rounds the width
    kept down (a 96-wide layer kept 32); the nearest multiple is 48, and the notes say what was removed."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 96, 3), torch.nn.ReLU(), torch.nn.Conv2d(96, 40, 3),
                                torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(40, 10))
    result = PRUNE.apply(model, options(channels=0.524, round_to=16), context(torch.randn(1, 3, 16, 16)))
    assert convs(result.module) == {"0": 48, "2": 16}   # 96 * 0.476 = 45.7 -> 48; 40 * 0.476 = 19.0 -> 16
    assert result.details["channels_removed"] == pytest.approx(1 - 64 / 136)
    assert "52.9% of the prunable layers' channels removed (0.524 asked, widths rounded to multiples of 16)" \
        in result.notes[0]


def test_global_ranking_never_empties_a_layer(cnn):
    model, x = cnn
    result = PRUNE.apply(model, options(channels=0.95, scope="global"), context(x))
    widths = convs(result.module)
    assert min(widths.values()) >= 1 and sum(widths.values()) < 0.15 * sum(convs(model).values())
    assert result.module(x).shape == (1, 10)


def test_protect_keeps_a_layer_and_what_is_coupled_to_it(cnn):
    model, x = cnn
    result = PRUNE.apply(model, options(channels=0.5, protect="down.0+b1.conv1"), context(x))
    widths = convs(result.module)
    # down.0's outputs meet b2's skip add, so the whole second stage keeps its width
    assert widths["down.0"] == widths["b2.conv2"] == 64 and widths["b1.conv1"] == 32
    assert widths["stem.0"] == 16 and widths["b2.conv1"] == 32


def test_taylor_uses_training_data_with_or_without_labels():
    model, x = mlp().requires_grad_(False), torch.randn(1, 1, 8, 8)   # frozen, as a loaded model may be
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((48, 1, 8, 8)).astype(np.float32)
    for train in ({"input": inputs, "labels": rng.integers(0, 10, 48)}, {"input": inputs}):
        ctx = context(x, train)
        PRUNE.validate(options(criterion="taylor"), ctx)
        pruned = PRUNE.apply(model, options(criterion="taylor", channels=0.5), ctx).module
        assert [m.out_features for m in pruned if isinstance(m, torch.nn.Linear)] == [64, 32, 10]
    with pytest.raises(BadInput, match="taylor needs --train-data"):
        PRUNE.validate(options(criterion="taylor"), context(x))
    with pytest.raises(BadInput, match="labels"):
        PRUNE.apply(model, options(criterion="taylor"), context(x, {"input": inputs, "labels": np.full(48, 99)}))


def test_a_conv_output_keeps_its_channels_and_attention_its_width():
    from torch import nn

    seg = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                        nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU(), nn.Conv2d(32, 5, 1)).eval()
    x = torch.randn(1, 3, 16, 16)
    pruned = PRUNE.apply(seg, options(channels=0.5), context(x)).module
    assert pruned(x).shape == (1, 5, 16, 16) and pruned[0].out_channels == 16

    torch.manual_seed(0)
    encoder = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True).eval()
    tokens = torch.randn(1, 6, 32)
    result = PRUNE.apply(encoder, options(channels=0.5), context(tokens))
    assert result.module.self_attn.embed_dim == 32 and result.module.linear1.out_features == 32
    assert result.module(tokens).shape == (1, 6, 32)
    assert "self_attn" in result.details["protected"]


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_recurrent_layers_and_their_inputs_keep_their_width(kind):
    from torch import nn

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.pre = nn.Embedding(100, 32), nn.Linear(32, 48)
            self.rnn = getattr(nn, kind)(48, 64, batch_first=True)
            self.mid, self.fc = nn.Linear(64, 96), nn.Linear(96, 4)

        def forward(self, tokens):
            y, _ = self.rnn(torch.relu(self.pre(self.emb(tokens))))
            return self.fc(torch.relu(self.mid(y[:, -1])))

    torch.manual_seed(0)
    tokens = torch.randint(0, 100, (1, 7))
    result = PRUNE.apply(Tagger().eval(), options(channels=0.5), context(tokens))
    assert result.details["layers"] == [{"layer": "mid", "before": 96, "after": 48}]
    assert result.details["protected"] == ["fc", "pre", "rnn"]
    assert result.module(tokens).shape == (1, 4)


@pytest.mark.parametrize("values, message", [
    ({"channels": "1.5"}, "channels: 1.5 is out of range"),
    ({"channels": "0"}, "channels: 0.0 is out of range"),
    ({"criterion": "nope"}, "criterion: 'nope' is not one of"),
    ({"scope": "everywhere"}, "scope: 'everywhere' is not one of"),
    ({"round_to": "0"}, "round_to: 0 is out of range"),
    ({"ratio": "0.5"}, "unknown option 'ratio'"),
])
def test_bad_options_are_refused(values, message):
    with pytest.raises(BadInput, match=message):
        base.build_options(PRUNE.Options, values, "prune")


def test_an_unknown_protected_name_is_refused():
    with pytest.raises(BadInput, match="protect: no module named 'fc'"):
        PRUNE.apply(mlp(), options(protect="fc"), context(torch.randn(1, 1, 8, 8)))


def test_the_pruning_transforms_register_under_their_file_names_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys, edgeopt.compress.base as b, edgeopt.compress.prune, edgeopt.compress.sparsity, "
            "edgeopt.compress.lowrank; assert 'torch' not in sys.modules, 'torch imported'; "
            "print(sorted(b.REGISTRY[n].__module__.rsplit('.', 1)[1] for n in ('prune', 'sparsity', 'lowrank')))")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['lowrank', 'prune', 'sparsity']"


def test_taylor_falls_back_to_single_samples_for_a_batch_one_model():
    from torch import nn

    class Fixed(nn.Module):   # reshapes to batch 1, as many exported edge models do
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(16, 32), nn.Linear(32, 3)

        def forward(self, x):
            return self.b(torch.relu(self.a(x.reshape(1, 16))))

    torch.manual_seed(0)
    train = {"input": np.random.default_rng(0).standard_normal((20, 16)).astype(np.float32)}
    pruned = PRUNE.apply(Fixed().eval(), options(criterion="taylor"), context(torch.randn(1, 16), train)).module
    assert pruned.a.out_features == 16 and pruned(torch.randn(1, 16)).shape == (1, 3)


@pytest.mark.parametrize("name, refusal", [
    ("shufflenet_v2", "Torch-Pruning cannot trace which channels this model's layers share (ZeroDivisionError"),
    ("deit_tiny", None),          # its attention splits qkv into heads of a width fixed by the embedding
    ("kws_gru", None),            # prunes nothing: a recurrent layer is coupled to the output
    ("ssdlite_nms", None),        # NMS finds another number of boxes with pruned weights: no shape change
    ("mobilenet_v3_small", None)])
def test_zoo_architectures_prune_or_refuse_in_one_line_and_a_search_is_told_first(name, refusal):
    """A Pi study of a ShuffleNet failed every pruning trial with a raw ZeroDivisionError from Torch-Pruning."""
    from zoo import ZOO

    entry = ZOO[name]
    model = entry.build()
    examples = tuple(torch.from_numpy(v) for v in entry.inputs().values())
    ctx = base.TransformContext(examples, [])
    unsupported = PRUNE.unsupported(model, examples)
    if refusal:
        with pytest.raises(BadInput) as e:
            PRUNE.apply(model, options(channels=0.3), ctx)
        assert str(e.value).startswith(f"prune: {refusal}") and "\n" not in str(e.value), str(e.value)
        assert unsupported and unsupported.startswith(refusal)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = PRUNE.apply(model, options(channels=0.3), ctx)
    # Torch-Pruning's "Unwrapped parameters detected" cut into every pruning trial's progress lines (DeiT's tokens)
    assert not [w for w in caught if "Unwrapped parameters" in str(w.message)]
    if name == "kws_gru":
        assert result.details["params_after"] == result.details["params_before"]
        assert unsupported.startswith("no channel can be removed (GRU layers keep their widths")
    elif name == "deit_tiny":   # pruned in one step it no longer ran: the MLPs thinned, the rest left whole
        assert {"blocks.0.qkv", "blocks.1.qkv", "blocks.2.qkv"} <= set(result.details["left_whole"])
        widths = {d["layer"]: d["after"] for d in result.details["layers"]}
        assert widths == {f"blocks.{i}.mlp.0": 179 for i in range(3)}, widths
        assert result.module(*examples).shape == model(*examples).shape and unsupported is None
        assert any(n.startswith("prune: left whole") and "blocks.0.qkv" in n for n in result.notes)
    else:
        assert result.details["params_after"] < 0.8 * result.details["params_before"] and unsupported is None


def test_a_recurrent_model_nothing_can_be_pruned_from_says_why():
    """A GRU straight into its head: "every layer is protected or coupled to an output", neither of which the GRU
    was, beside "pruned without fine-tuning here: accuracy usually drops" of a model left unchanged (a user
    review)."""
    from torch import nn

    class Sequence(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.fc = nn.GRU(16, 32, batch_first=True), nn.Linear(32, 4)

        def forward(self, x):
            y, _ = self.rnn(x)
            return self.fc(y[:, -1])

    torch.manual_seed(0)
    result = PRUNE.apply(Sequence().eval(), options(channels=0.5), context(torch.randn(1, 12, 16)))
    assert result.details["params_after"] == result.details["params_before"]
    assert result.notes[0].startswith("warning: prune: no channel could be removed (GRU layers keep their widths")
    assert not any("pruned without fine-tuning" in n for n in result.notes)


@pytest.mark.parametrize("cell, gates", [("GRU", 3), ("LSTM", 4)])
def test_a_recurrent_layers_macs_are_counted_per_step_not_per_feature(cell, gates):
    """Torch-Pruning counts a GRU per step times the sequence length times the features: a keyword-spotting net's
    note read 81 M MACs where it has 2.6 M (a user walkthrough). Counted by hand here."""
    import torch

    from edgeopt.compress.prune import _measure

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(40, 64, 3, stride=2, padding=1, bias=False)
            self.rnn = getattr(torch.nn, cell)(64, 32, batch_first=True)
            self.fc = torch.nn.Linear(32, 12, bias=False)

        def forward(self, x):
            return self.fc(self.rnn(self.conv(x).transpose(1, 2))[0][:, -1])

    steps = 49   # 98 frames, stride 2
    conv, rnn, fc = 64 * 40 * 3 * steps, gates * (64 + 32) * 32 * steps, 32 * 12
    assert _measure(Net().eval(), (torch.zeros(1, 40, 98),))["macs"] == conv + rnn + fc


def _rnn_only(rnn):
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            return self.rnn(x)[0]
    return Net().eval()


def test_recurrent_macs_hold_in_every_layout_depth_and_projection():
    """The first correction (a review) went negative for PyTorch's default time-major layout and for a batch of 4,
    ignored proj_size and counted a layer called step by step once: each is counted by hand here, per model call."""
    import torch

    from edgeopt.compress.prune import _measure

    steps = 49
    cases = [(torch.nn.GRU(64, 32), (steps, 4, 64), 4 * steps * 3 * (64 + 32) * 32),          # time-major, batch 4
             (torch.nn.GRU(64, 32, batch_first=True), (4, steps, 64), 4 * steps * 3 * (64 + 32) * 32),
             (torch.nn.LSTM(64, 32, num_layers=2, bidirectional=True, batch_first=True), (1, steps, 64),
              steps * 2 * 4 * (64 + 32) * 32 * 2),                                               # layer 2 reads 64 too
             (torch.nn.LSTM(64, 32, num_layers=2, proj_size=8, batch_first=True), (1, steps, 64),
              steps * (4 * 32 * (64 + 8) + 8 * 32) + steps * (4 * 32 * (8 + 8) + 8 * 32))]
    for rnn, shape, by_hand in cases:
        assert _measure(_rnn_only(rnn), (torch.zeros(*shape),))["macs"] == by_hand, (rnn, shape)

    class Decoder(torch.nn.Module):   # called once per step
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.GRU(16, 16, batch_first=True)

        def forward(self, x):
            state = None
            for t in range(10):
                y, state = self.rnn(x[:, t:t + 1], state)
            return y
    assert _measure(Decoder().eval(), (torch.zeros(1, 10, 16),))["macs"] == 10 * 3 * 32 * 16


def test_a_ctrl_c_while_the_channels_are_traced_is_not_swallowed(cnn):
    """Torch-Pruning's tracing retries a failed forward in a bare `except:`: a Ctrl-C there became a TypeError
    traceback and exit 1, and an optimize study ran on to exit 0 (a walkthrough)."""
    import torch

    from edgeopt.compress import prune

    class InterruptedOnce(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.calls = inner, 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 1:
                raise KeyboardInterrupt
            return self.inner(x)
    inner, x = cnn
    with pytest.raises(KeyboardInterrupt):
        prune._dependency_graph(InterruptedOnce(inner), (x,))


def test_an_error_a_ctrl_c_caused_is_an_interruption_for_the_cli(cli, monkeypatch):
    """A library that turns a Ctrl-C into another error (a retry in a bare `except:`) read as exit 1 and a
    traceback: exit 130."""
    from edgeopt import pipeline

    def interrupted(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except BaseException:
            raise TypeError("conv2d() received an invalid combination of arguments")
    monkeypatch.setattr(pipeline, "load_model", interrupted)
    from conftest import MODEL
    r = cli("package", MODEL, "-o", "never.edgepkg")
    assert r.exit_code == 130 and r.stderr.endswith("edgeopt: interrupted\n") and "Traceback" not in r.stderr, r.stderr

    def said_as_bad_input(*args, **kwargs):   # and where edgeopt then said that error as its own
        try:
            interrupted()
        except TypeError as e:
            raise BadInput(f"conversion failed: {e}") from None
    monkeypatch.setattr(pipeline, "load_model", said_as_bad_input)
    r = cli("package", MODEL, "-o", "never.edgepkg")
    assert r.exit_code == 130 and r.stderr.endswith("edgeopt: interrupted\n"), r.stderr
