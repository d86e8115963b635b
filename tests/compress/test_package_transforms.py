"""`edgeopt package` with model transforms, end to end: PyTorch source -> transforms -> export -> backend ->
bundle that runs; recipes equivalent to flags and rebuildable from a bundle; bad input refused before work."""
from __future__ import annotations

import hashlib
import json
import pathlib

import onnx
import pytest

from conftest import FAST_BENCH_ARGS, bundle_manifest, bundle_member
from edgeopt.models import count_parameters, estimate_flops

SOURCE = str(pathlib.Path(__file__).with_name("pruning_nets.py")) + ":resnetish"
SHAPE = ["--input-shape", "input=1,3,32,32"]
pytestmark = pytest.mark.slow


def _model(bundle):
    m = bundle_manifest(bundle)
    return onnx.load_from_string(bundle_member(bundle, m["model"])), m


def test_pruned_bundle_is_smaller_and_runs(cli, tmp_path):
    plain = cli("package", SOURCE, *SHAPE, "-o", tmp_path / "plain.edgepkg", "--json")
    pruned = cli("package", SOURCE, *SHAPE, "--prune", "channels=0.5", "-o", tmp_path / "pruned.edgepkg", "--json")
    assert plain.exit_code == 0 and pruned.exit_code == 0, pruned.stderr
    (a, _), (b, m) = _model(tmp_path / "plain.edgepkg"), _model(tmp_path / "pruned.edgepkg")
    assert count_parameters(b) < 0.4 * count_parameters(a) and estimate_flops(b) < 0.4 * estimate_flops(a)
    stages = {s["stage"]: s for s in m["transforms"]}
    assert list(stages) == ["source", "prune"]
    assert stages["prune"]["figures"]["parameters"] < stages["source"]["figures"]["parameters"]
    assert stages["prune"]["figures"]["latency_ms"] > 0 and stages["prune"]["details"]["layers"]
    assert any("without fine-tuning" in n for n in stages["prune"]["notes"])   # nothing recovers it here
    assert m["recipe"]["transform"] == [{"name": "prune", "channels": 0.5, "criterion": "l2", "scope": "layer",
                                         "protect": [], "round_to": 1}]
    r = cli("bench", tmp_path / "pruned.edgepkg", "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS, "--json")
    assert r.exit_code == 0, r.stderr


def test_recipe_file_equals_flags_and_a_bundle_rebuilds(cli, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[package]\nquantize = "dynamic"\n\n[[transform]]\nname = "prune"\nchannels = 0.25\n'
                      '\n[[transform]]\nname = "lowrank"\nenergy = 0.95\n')
    by_flags = cli("package", SOURCE, *SHAPE, "--quantize", "dynamic", "--prune", "channels=0.25", "--low-rank",
                   "energy=0.95", "-o", tmp_path / "flags.edgepkg", "--json")
    by_file = cli("package", SOURCE, *SHAPE, "--recipe", recipe, "-o", tmp_path / "file.edgepkg", "--json")
    rebuilt = cli("package", SOURCE, *SHAPE, "--recipe", tmp_path / "file.edgepkg", "-o", tmp_path / "again.edgepkg",
                  "--json")
    assert by_flags.exit_code == by_file.exit_code == rebuilt.exit_code == 0, rebuilt.stderr
    docs = [r.json() for r in (by_flags, by_file, rebuilt)]
    assert docs[0]["recipe"] == docs[1]["recipe"] == docs[2]["recipe"]
    assert [s["stage"] for s in docs[1]["transforms"]] == ["source", "prune", "lowrank"]
    shown = dict(line.split("\t", 1) for line in cli("inspect", tmp_path / "file.edgepkg", "-q").stdout.splitlines()
                 if "\t" in line)
    assert shown["transforms"] == "prune, lowrank"   # it read "?, ?, ?"
    # the compression row says "transforms prune + lowrank (below)": inspect shows the stages' table too
    table = cli("inspect", tmp_path / "file.edgepkg").stdout
    assert "transforms prune + lowrank (below)" in table and "Transforms (host-side figures" in table
    assert table.index("Transforms (host-side figures") < table.index("Recipe (")
    # a transform flag given twice: the first was dropped without a word
    for flag, values in (("--prune", ("channels=0.5", "weights=0.3")), ("--low-rank", ("rank=4", "energy=0.5"))):
        twice = cli("package", SOURCE, *SHAPE, flag, values[0], flag, values[1], "-o", tmp_path / "t.edgepkg")
        assert twice.exit_code == 2 and f"{flag} given 2 times ({', '.join(values)}): give it once" in twice.stderr
        assert not (tmp_path / "t.edgepkg").exists()
    models = {hashlib.sha256(bundle_member(tmp_path / f"{n}.edgepkg", docs[0]["model"])).hexdigest()
              for n in ("flags", "file", "again")}
    assert len(models) == 1, "the same recipe builds the same model"


def test_flag_given_with_a_recipe_wins(cli, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[package]\nquantize = "dynamic"\n\n[[transform]]\nname = "prune"\nchannels = 0.25\n')
    r = cli("package", SOURCE, *SHAPE, "--recipe", recipe, "--quantize", "none", "-o", tmp_path / "b.edgepkg", "--json")
    assert r.exit_code == 0 and r.json()["recipe"]["package"]["quantize"] == "none"
    both = cli("package", SOURCE, *SHAPE, "--recipe", recipe, "--prune", "channels=0.5", "-o", tmp_path / "c.edgepkg")
    assert both.exit_code == 2 and "give transforms there or as flags, not both" in both.stderr


@pytest.mark.parametrize("table, message", [
    ('quantize = "int9"', "r.toml: package.quantize: backend onnxruntime supports --quantize none, dynamic, int8, "
                          "not int9"),
    ('precision = "fp8"', "r.toml: package.precision: backend onnxruntime supports --precision"),
    ("subset_size = 300", "r.toml: package.subset_size: backend onnxruntime has no --subset-size option"),
    ("max_accuracy_drop = -1.0", "r.toml: package.max_accuracy_drop: backend onnxruntime: max_accuracy_drop: -1.0 "
                                 "is out of range"),
    ('backend = "openvino"', "r.toml: package.backend: --backend openvino: profile 'generic' runs onnxruntime"),
])
def test_a_recipe_value_the_backend_refuses_names_the_recipe_and_field(cli, tmp_path, table, message):
    """A value of the right type that only the profile's backend can judge is refused after the recipe is read;
    the message still names the file and the field, not a flag the user never typed."""
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"[package]\n{table}\n")
    r = cli("package", SOURCE, *SHAPE, "--recipe", recipe, "-o", tmp_path / "b.edgepkg")
    assert r.exit_code == 2 and message in r.stderr, r.stderr
    # one line, short, though it names the file, the field and what the backend has instead
    line = r.stderr.strip().splitlines()[-1].replace(str(recipe), "r.toml")   # the temporary folder's length aside
    assert len(line) < 240 and not (tmp_path / "b.edgepkg").exists()


def test_a_flag_that_overrides_a_recipe_value_is_named_as_the_flag(cli, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[package]\nprecision = "fp16"\n')
    r = cli("package", SOURCE, *SHAPE, "--recipe", recipe, "--backend-option", "subset_size=300",
            "-o", tmp_path / "b.edgepkg")
    assert r.exit_code == 2 and "error: backend onnxruntime has no --subset-size option" in r.stderr, r.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--prune", "channels=1.5"], "--prune (prune): channels: 1.5 is out of range (<= 0.95)"),
    # the last had won, and an empty spec pruned nothing, each without a word (a user review)
    (["--prune", "channels=0.3,channels=0.5"], "--prune: channels given twice ('0.3' and '0.5'): give one value"),
    (["--prune", ""], "Invalid value for '--prune': an empty value: give one, or leave the option out"),
    (["--backend-option", "int8_method=static", "--backend-option", "int8_method=dynamic"],
     "--backend-option: int8_method given twice ('static' and 'dynamic'): give one value"),
    (["--prune", "channels=0.5,criterion=nope"], "criterion: 'nope' is not one of"),
    (["--low-rank", "energy=0"], "--low-rank (lowrank): energy: 0.0 is out of range"),
    (["--train-data", "x.npz"], "--train-data is read by model transforms"),
    # a prune by weight norm reads no training data: it was taken without a word (a user review)
    (["--prune", "channels=0.5", "--train-data", "x.npz"], "--train-data is read by --distill, --qat and --prune "
                                                           "criterion=taylor; prune reads none of it"),
    (["--epochs", "3"], "--epochs applies to --distill or --qat"),
    (["--lr", "0.01"], "--lr applies to --distill or --qat"),
    (["--seed", "5"], "--seed seeds the model transforms"),   # taken without a word
    (["--distill", "--train-data", "x.npz", "--lr", "0"], "--distill (distill): lr: 0.0 is out of range"),
    (["--distill", "--train-data", "x.npz", "--teacher", "nope.onnx"], "--teacher: model not found: nope.onnx"),
])
def test_bad_transform_options_exit_2_in_one_line(cli, tmp_path, args, fragment):
    r = cli("package", SOURCE, *SHAPE, *args, "-o", tmp_path / "b.edgepkg")
    assert r.exit_code == 2 and fragment in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "b.edgepkg").exists()


def test_a_teacher_that_cannot_take_the_models_inputs_is_named_as_the_teacher(cli, tmp_path):
    """It read "pruning_nets.py:mlp: the module failed ... (check --input-shape ...)", naming no --teacher."""
    import numpy as np
    train = tmp_path / "t.npz"
    np.savez(train, input=np.zeros((4, 3, 32, 32), np.float32))
    teacher = SOURCE.replace(":resnetish", ":mlp")
    r = cli("package", SOURCE, *SHAPE, "--distill", "--epochs", "1", "--train-data", train, "--teacher", teacher,
            "-o", tmp_path / "b.edgepkg")
    assert r.exit_code == 2 and f"error: --teacher {teacher}: the module failed on float32 inputs" in r.stderr, r.stderr
    assert "the teacher is fed the model's inputs" in r.stderr and not (tmp_path / "b.edgepkg").exists()


def test_onnx_source_is_refused_for_a_transform(cli, tmp_path):
    from conftest import MODEL
    r = cli("package", MODEL, "--prune", "channels=0.5", "-o", tmp_path / "b.edgepkg")
    assert r.exit_code == 2 and "transform prune needs a PyTorch nn.Module input (model.py:build" in r.stderr
    # nor does it offer a .pt2, which a transform refuses too
    assert ".pt2" not in r.stderr and "the onnx model given has no module to change" in r.stderr, r.stderr


def _pt2(tmp_path, batch=None):
    """resnetish saved as an ExportedProgram: batch 1 fixed, or `batch` samples with a dynamic batch dimension."""
    import torch

    from pruning_nets import resnetish

    path = tmp_path / "r.pt2"
    dims = {"dynamic_shapes": ({0: torch.export.Dim("batch", min=1, max=1024)},)} if batch else {}
    torch.export.save(torch.export.export(resnetish(width=8), (torch.randn(batch or 1, 3, 32, 32),), **dims),
                      str(path))
    return path


@pytest.mark.parametrize("args", [["--prune", "channels=0.5"], ["--low-rank", "energy=0.9"],
                                  ["--distill", "--train-data", "t.npz"]])
def test_a_pt2_source_is_refused_for_a_transform(cli, tmp_path, args):
    """An ExportedProgram's module is a flat graph: prune and lowrank found no layer and claimed success; distill
    failed with a traceback. Each is refused, naming the input it needs."""
    r = cli("package", _pt2(tmp_path), *args, "-o", tmp_path / "b.edgepkg")
    assert r.exit_code == 2 and "needs a PyTorch nn.Module input (model.py:build" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "b.edgepkg").exists()


def test_a_pt2_teacher_needs_a_dynamic_batch(cli, tmp_path):
    """Distillation feeds the teacher batches; a .pt2 fixed at batch 1 failed mid-training with a traceback."""
    import numpy as np

    train = tmp_path / "t.npz"
    np.savez(train, input=np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32))
    args = ("package", SOURCE, *SHAPE, "--prune", "channels=0.5", "--distill", "--train-data", train, "--epochs", "1")
    fixed = cli(*args, "--teacher", _pt2(tmp_path), "-o", tmp_path / "b.edgepkg")
    assert fixed.exit_code == 2 and "takes only its example's batch size (1)" in fixed.stderr, fixed.stderr
    assert not (tmp_path / "b.edgepkg").exists()
    dynamic = cli(*args, "--teacher", _pt2(tmp_path, batch=2), "-o", tmp_path / "b.edgepkg", "--json")
    assert dynamic.exit_code == 0, dynamic.stderr
    assert [s["stage"] for s in dynamic.json()["transforms"]] == ["teacher", "source", "prune", "distill"]
    assert "transforms prune + distill" in cli("inspect", tmp_path / "b.edgepkg").stdout   # the teacher is none
    # a rebuild from the bundle distills from the same teacher (it distilled from the source, another model)
    teacher = pathlib.Path(dynamic.json()["transforms"][0]["details"]["model"]["file"])
    again = cli("package", SOURCE, "--recipe", tmp_path / "b.edgepkg", "-o", tmp_path / "again.edgepkg")
    assert again.exit_code == 0 and f"teacher {teacher}, as " in again.stderr, again.stderr
    assert _model(tmp_path / "again.edgepkg")[0] == _model(tmp_path / "b.edgepkg")[0], "the same teacher, the same model"
    teacher.write_bytes(teacher.read_bytes() + b"\0")
    changed = cli("package", SOURCE, "--recipe", tmp_path / "b.edgepkg", "-o", tmp_path / "third.edgepkg")
    assert changed.exit_code == 2 and "was distilled from the teacher in" in changed.stderr and \
        "which has changed since" in changed.stderr, changed.stderr


def test_pruned_module_converts_for_litert(cli, tmp_path):
    """A backend that converts PyTorch itself (litert-torch) gets the pruned module, not an ONNX export."""
    r = cli("package", SOURCE, *SHAPE, "--profile", "raspberry-pi-5", "--prune", "channels=0.5",
            "-o", tmp_path / "pi.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert m["model"].endswith(".tflite") and m["parity"]["passed"]
    assert json.dumps(m["transforms"][1]["details"]["layers"])


def test_prune_distill_qat_package_and_run(cli, tmp_path):
    """The trained sample's recipe end to end on ONNX Runtime: prune, recover by distillation, train INT8 in."""
    from conftest import SAMPLES
    data = ["--train-data", SAMPLES / "digits32_train.npz", "--calib", SAMPLES / "digits32_calib.npz",
            "--eval-data", SAMPLES / "digits32_eval.npz"]
    source = str(SAMPLES / "digits_resnet.py") + ":build"
    r = cli("package", source, "--input-shape", "input=1,1,32,32", "--prune", "channels=0.5", "--distill",
            "--epochs", "2", "--qat", *data, "-o", tmp_path / "q.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert [s["stage"] for s in m["transforms"]] == ["source", "prune", "distill", "qat"]
    assert m["compression"]["method"] == "qat" and m["parity"]["passed"]
    # timed against the float model it was trained from, as a post-training INT8 bundle is (it had no hint)
    hint = m["compression"]["host_hint"]
    assert hint["runtime"] == "onnxruntime" and hint["ratio"] == round(hint["int8_ms"] / hint["fp32_ms"], 3)
    from edgeopt.report.tables import _parity_caveat
    assert "the artifact is QAT's QDQ export, run as it is" in _parity_caveat(m)   # parity's pass checks only that
    from edgeopt.report.tables import package_rows   # with no "not judged" top-1 caveat of a 10 dB artifact
    assert "top-1 agreement" not in dict(package_rows(m))
    top1 = {s["stage"]: s["figures"]["top1"] for s in m["transforms"]}
    assert top1["distill"] >= top1["prune"] and top1["qat"] > 0.9
    n = m["source"]["accuracy"]["n"]   # exact: a rounded 0.988889 made a drop of -2.2e-07 against the device's
    assert all(abs(t * n - round(t * n)) < 1e-9 for t in top1.values())
    assert not any("without fine-tuning" in n for n in m["transforms"][1]["notes"])   # distill follows
    bench = cli("bench", tmp_path / "q.edgepkg", "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS, "--json")
    assert bench.exit_code == 0 and bench.json()["accuracy"]["top1"] > 0.9
    assert bench.json()["bundle"]["transforms"] == ["prune", "distill", "qat"]   # what its reference outputs are of
    refused = cli("package", source, "--input-shape", "input=1,1,32,32", "--qat", "--quantize", "int8", *data,
                  "-o", tmp_path / "x.edgepkg")
    assert refused.exit_code == 2 and "leave --quantize at none" in refused.stderr


def test_a_transform_that_loses_the_accuracy_budget_is_warned_about(cli, tmp_path):
    """Pruning the trained sample by half without distillation: the bundle is written (the device's figure is the
    one check judges) but the loss against the budget it carries is said at packaging, with the source's top-1."""
    from conftest import SAMPLES
    r = cli("package", str(SAMPLES / "digits_resnet.py") + ":build", "--input-shape", "input=1,1,32,32", "--prune",
            "channels=0.5", "--eval-data", SAMPLES / "digits32_eval.npz", "-o", tmp_path / "p.edgepkg")
    assert r.exit_code == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "top-1 source → after transforms → artifact │ 0.9972 → " in text
    assert "against 0.9972 for the source before transforms (360 samples): a drop of 0." in text
    assert "is over accuracy_drop=0.01; `edgeopt check` will fail this bundle" in text


def test_qat_at_fp16_on_onnx_runtime_runs_as_trained_and_records_fp32(cli, tmp_path, monkeypatch):
    """A search proposed QAT at --precision fp16 on ONNX Runtime: the float16 conversion turned the QDQ graph's
    DequantizeLinear scales to float16, and ONNX Runtime refused the model (INVALID_GRAPH)."""
    from conftest import SAMPLES
    data = ["--train-data", SAMPLES / "digits32_train.npz", "--calib", SAMPLES / "digits32_calib.npz"]
    source = str(SAMPLES / "digits_resnet.py") + ":build"
    monkeypatch.chdir(tmp_path)   # no -o: the default name, an INT8 one (it was "build-fp16", then "-fp32")
    r = cli("package", source, "--input-shape", "input=1,1,32,32", "--qat", "--epochs", "1", "--precision", "fp16",
            *data, "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    # named after the file, not the callable: every `file.py:build` was "build", and their results mixed
    assert m["name"] == "digits_resnet-int8" and (tmp_path / "digits_resnet-int8.edgepkg").is_file()
    assert m["compression"]["precision"] == "fp32" and m["compression"]["method"] == "qat" and m["parity"]["passed"]
    assert any("--precision fp16 on a graph quantized already" in n for n in m["notes"]), m["notes"]


def test_training_data_from_a_dataloader(cli, tmp_path):
    """--train-data module:callable returning a DataLoader: read once, checked like an .npz, same result."""
    import numpy as np
    npz = tmp_path / "train.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, input=rng.standard_normal((16, 3, 32, 32)).astype(np.float32),
             labels=rng.integers(0, 10, 16).astype(np.int64))
    loader = tmp_path / "loader.py"
    loader.write_text("import numpy as np, torch\n"
                      f"def train():\n    d = np.load({str(npz)!r})\n"
                      "    ds = torch.utils.data.TensorDataset(torch.from_numpy(d['input']), torch.from_numpy(d['labels']))\n"
                      "    return torch.utils.data.DataLoader(ds, batch_size=5)\n"
                      "def broken():\n    return [(torch.zeros(2, 3, 32, 32), torch.zeros(2), torch.zeros(2))]\n")
    runs = {}
    for key, data in (("npz", npz), ("loader", f"{loader}:train")):
        r = cli("package", SOURCE, *SHAPE, "--prune", "channels=0.5", "--distill", "--epochs", "1",
                "--train-data", data, "-o", tmp_path / f"{key}.edgepkg", "--json")
        assert r.exit_code == 0, r.stderr
        runs[key] = r.json()["transforms"][-1]["details"]
    assert runs["npz"]["final_train_loss"] == runs["loader"]["final_train_loss"]
    bad = cli("package", SOURCE, *SHAPE, "--distill", "--train-data", f"{loader}:broken", "-o", tmp_path / "b.edgepkg")
    assert bad.exit_code == 2 and "a batch has 3 items" in bad.stderr


LOADERS = """import torch

def raising():
    raise ValueError('no dataset at /data/x')

def wrong_type():
    return 42
"""


@pytest.mark.parametrize("reference, said", [
    ("loaders.py:absent", "--train-data loaders.py:absent: loaders.py has no attribute 'absent'"),
    ("nope.py:train", "--train-data nope.py:train: file nope.py not found"),
    ("loaders.py:raising", "--train-data loaders.py:raising: calling it failed: ValueError: no dataset at /data/x "
                           "({path}, line 4)"),
    ("loaders.py:wrong_type", "--train-data loaders.py:wrong_type returned int, not a DataLoader (or another "
                              "iterable of batches)"),
    # no frame of the user's: no place named (it read "<frozen importlib._bootstrap>, line 1140")
    ("nomodule:train", "--train-data nomodule:train: cannot import nomodule: ModuleNotFoundError: No module named "
                       "'nomodule'"),
])
def test_a_training_data_callable_that_cannot_give_batches_is_one_line_exit_2(cli, tmp_path, monkeypatch,
                                                                              reference, said):
    """A missing function, a missing file, a function that raises or returns no batches: one line naming the
    flag, the file and the function, exit 2 (the function that raised: where in the user's file)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loaders.py").write_text(LOADERS)
    r = cli("package", SOURCE, *SHAPE, "--distill", "--train-data", reference, "-o", tmp_path / "b.edgepkg")
    assert r.exit_code == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "edgeopt: error: " + said.format(path=tmp_path / "loaders.py")
    assert not (tmp_path / "b.edgepkg").exists()


@pytest.mark.parametrize("batch, said", [
    ("(torch.zeros(2, 3, 32, 32), torch.zeros(2))",
     "array 'labels' is float32 of shape (2,); labels must be 1-D integer class indices"),
    ("(torch.zeros(2, 5, 32, 32),)", "array 'input' has shape (2, 5, 32, 32); model input 'input' expects"),
    ("(torch.zeros(2, 3, 32, 32), torch.full((2,), 10))",
     "array 'labels' goes up to 10, but the first output 'output' has 10 classes (labels are 0..9)"),
])
def test_a_dataloaders_bad_batches_are_named_by_the_reference_not_the_work_file(cli, tmp_path, monkeypatch, batch,
                                                                                said):
    """The batches are read into train.npz in a temp work directory; its checks named that file, which the user
    never gave and which is gone when the message is read."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loaders.py").write_text(f"import torch\ndef train():\n    return [{batch}]\n")
    r = cli("package", SOURCE, *SHAPE, "--distill", "--train-data", "loaders.py:train", "-o", tmp_path / "b.edgepkg")
    assert r.exit_code == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"edgeopt: error: --train-data loaders.py:train: {said}")
    assert "train.npz" not in r.stderr and "epoch" not in r.stderr   # refused before training


def test_training_labels_past_the_models_classes_are_refused_naming_the_file(cli, tmp_path):
    import numpy as np
    train = tmp_path / "train.npz"
    np.savez(train, input=np.zeros((4, 3, 32, 32), np.float32), labels=np.arange(8, 12))
    r = cli("package", SOURCE, *SHAPE, "--distill", "--train-data", train, "-o", tmp_path / "b.edgepkg")
    assert r.exit_code == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (f"edgeopt: error: training data file {train}: array 'labels' goes "
                                                 "up to 11, but the first output 'output' has 10 classes "
                                                 "(labels are 0..9)")


def test_the_compression_row_names_the_transforms_and_a_tflite_as_given():
    """A pruned bundle read "compression none"; a .tflite packaged as it is too, even where it is INT8 (user
    reviews)."""
    from edgeopt.report.tables import _compression, _compression_with_transforms
    pruned = {"compression": {"quantize": "none", "precision": "fp32"},
              "transforms": [{"stage": "source"}, {"stage": "prune"}, {"stage": "distill"}]}
    assert _compression_with_transforms(pruned) == "no quantization; transforms prune + distill (below)"
    assert _compression_with_transforms(dict(pruned, transforms=[])) == "none"
    assert _compression({"quantize": "none", "precision": "as-is"}) == "as given (the model's own, unchanged here)"


def test_the_qat_stage_says_its_size_is_the_fake_quant_graphs():
    """The QAT row read 1.01x the source's size for a bundle 0.27x of it (a user review)."""
    from edgeopt.report.tables import transform_table
    table = transform_table([{"stage": "source", "figures": {"bytes": 1000}},
                             {"stage": "qat", "figures": {"bytes": 1010}}])
    assert table.columns[0]._cells[1] == "qat\n(float + fake-quant;\nthe bundle is INT8)"


def test_a_distilled_bundle_rebuilds_with_the_training_data_it_records(cli, tmp_path):
    """`package SOURCE --recipe BUNDLE` of a distilled bundle said "needs training data" and never which file
    (a user review): the file is recorded with its sha256, taken again where unchanged, named where not."""
    import numpy as np

    train = tmp_path / "t.npz"
    np.savez(train, input=np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32))
    first = cli("package", SOURCE, *SHAPE, "--prune", "channels=0.5", "--distill", "--train-data", train,
                "--epochs", "1", "-o", tmp_path / "a.edgepkg", "--json")
    assert first.exit_code == 0, first.stderr
    distill = next(s for s in first.json()["transforms"] if s["stage"] == "distill")
    assert distill["details"]["train_data"]["file"] == str(train.resolve())
    again = cli("package", SOURCE, *SHAPE, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "b.edgepkg", "--json")
    assert again.exit_code == 0, again.stderr   # no --train-data given: the recorded file was taken
    model = first.json()["model"]
    assert bundle_member(tmp_path / "a.edgepkg", model) == bundle_member(tmp_path / "b.edgepkg", model)
    np.savez(train, input=np.zeros((8, 3, 32, 32), np.float32))   # changed since: named, not taken
    changed = cli("package", SOURCE, *SHAPE, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "c.edgepkg")
    assert changed.exit_code == 2 and f"was trained on {train.resolve()}, which has changed since" in changed.stderr


def test_a_qat_bundle_rebuilds_with_the_calibration_file_its_quantizers_read(cli, tmp_path):
    """QAT calibrates its quantizers from --calib; the bundle did not record the file, and `--recipe BUNDLE`
    calibrated from the training data instead: another model, exit 0 and no word (a walkthrough)."""
    import numpy as np

    rng = np.random.default_rng(0)
    train, calib = tmp_path / "t.npz", tmp_path / "c.npz"
    np.savez(train, input=rng.standard_normal((8, 3, 32, 32)).astype(np.float32))
    np.savez(calib, input=rng.standard_normal((4, 3, 32, 32)).astype(np.float32))
    first = cli("package", SOURCE, *SHAPE, "--qat", "--train-data", train, "--calib", calib, "--epochs", "1",
                "-o", tmp_path / "a.edgepkg", "--json")
    assert first.exit_code == 0, first.stderr
    qat = next(s for s in first.json()["transforms"] if s["stage"] == "qat")
    assert qat["details"]["calibration"]["from"] == "calibration"
    assert qat["details"]["calibration"]["file"] == str(calib.resolve())
    again = cli("package", SOURCE, *SHAPE, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "b.edgepkg", "--json")
    assert again.exit_code == 0, again.stderr   # no --calib given: the recorded file was taken
    rebuilt = next(s for s in again.json()["transforms"] if s["stage"] == "qat")
    assert rebuilt["details"]["calibration"]["from"] == "calibration", rebuilt["details"]["calibration"]
    model = first.json()["model"]
    assert bundle_member(tmp_path / "a.edgepkg", model) == bundle_member(tmp_path / "b.edgepkg", model)
    # changed since: named and refused, not calibrated from the training data (its backend asks for nothing)
    np.savez(calib, input=np.zeros((4, 3, 32, 32), np.float32))
    changed = cli("package", SOURCE, *SHAPE, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "c.edgepkg")
    assert changed.exit_code == 2 and f"was calibrated with {calib.resolve()}, which has changed since" in \
        changed.stderr, changed.stderr


def test_a_qat_bundle_for_a_runtime_this_host_does_not_run_is_not_timed_here():
    """Timing the QAT bundle against float on this host needs its runtime here: for TensorRT (a Jetson's) it
    failed the packaging, which never needed TensorRT on the host (a code review)."""
    import types

    from edgeopt.pipeline import _qat_host_hint
    stages = [types.SimpleNamespace(name="source", onnx_path=pathlib.Path("float.onnx")),
              types.SimpleNamespace(name="qat", onnx_path=pathlib.Path("qat.onnx"))]
    conversion = types.SimpleNamespace(runtime={"name": "tensorrt"}, model_path=pathlib.Path("model.onnx"),
                                       compression={})
    assert _qat_host_hint(stages, None, conversion, None, None) == [] and conversion.compression == {}
