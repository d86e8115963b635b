"""Model intake: ONNX as is, PyTorch exported; shapes fixed; bad models refused in one line."""
import pathlib
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import MODEL, SAMPLES

ASSETS = pathlib.Path(__file__).parent / "assets"


def test_inspect_onnx_reports_structure(cli):
    r = cli("inspect", MODEL, "--json")
    assert r.exit_code == 0, r.stderr
    info = r.json()
    assert info["inputs"] == [{"name": "image", "shape": [1, 1, 8, 8], "dtype": "float32"}]
    assert info["outputs"][0]["name"] == "logits" and info["outputs"][0]["shape"][-1] == 10
    assert info["opset"]["ai.onnx"] == 17
    assert info["dynamic_dims"] == {"image": ["batch"]}
    # Conv(1->16) 64 px * 9, Conv(16->32) 64 px * 144, Conv(32->64) 16 px * 288, Gemm 256*10 -> MACs
    macs = 16 * 64 * 9 + 32 * 64 * 144 + 64 * 16 * 288 + 10 * 256
    assert info["flops_estimate"] == 2 * macs
    params = sum(int(np.prod(t.dims)) for t in onnx.load(str(MODEL)).graph.initializer)
    assert info["parameters"] == params


def _dynamic_model(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_dynamic_dims_need_input_shape(cli, tmp_path):
    model = _dynamic_model(tmp_path / "dyn.onnx")
    r = cli("package", model, "-o", tmp_path / "b.edgepkg")
    assert r.exit_code == 2
    assert "input 'x' has dynamic dims (n,3,h,w); fix them with --input-shape x=" in r.stderr
    r = cli("inspect", model, "--input-shape", "x=2,3,16,16", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["inputs"][0]["shape"] == [2, 3, 16, 16]
    assert r.json()["dynamic_dims"] == {"x": ["n", "h", "w"]}


@pytest.mark.parametrize("shape, message", [
    ("x=1,3,16", "rank 3, the model's input has rank 4"),
    ("y=1,3,4,4", "names 'y', which is not an input"),
    ("x=1,4,4,4", "contradicts the model's static dim 3"),
    ("x=1,a,4,4", "dims must be integers"),
    ("x", "dims must be integers, e.g. image=1,3,224,224 (NAME=D,D,..., or D,D,... for the only input)"),
    ("x=99999999999,3,16,16", "'x=99999999999,3,16,16': 7.68e+13 elements (2.86e+05 GiB as float32), more than a "
                              "device holds"),   # a traceback from the parity check's 23 TiB of random inputs
])
def test_bad_input_shapes(cli, tmp_path, shape, message):
    r = cli("inspect", _dynamic_model(tmp_path / "dyn.onnx"), "--input-shape", shape)
    assert r.exit_code == 2 and message in r.stderr


def test_a_model_no_runtime_can_run_is_refused_naming_the_users_file(cli, tmp_path):
    """A custom operator went to the parity check's reference with --no-simplify (a traceback, exit 1), or named
    the temporary working copy; a graph without inputs was "generator raised StopIteration"."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    custom = tmp_path / "custom.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("FooOp", ["x"], ["y"], domain="my.domain")],
                                                  "g", [x], [y]),
                                opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.domain", 1)]),
              str(custom))
    constant = tmp_path / "constant.onnx"
    value = helper.make_tensor("v", TensorProto.FLOAT, [1, 4], [1, 2, 3, 4])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Constant", [], ["y"], value=value)], "g", [], [y]),
                                opset_imports=[helper.make_opsetid("", 17)]), str(constant))
    text = tmp_path / "text.onnx"   # refused after conversion and parity, as the bundle's `inputs[0].dtype`
    s = helper.make_tensor_value_info("s", TensorProto.STRING, [1, 4])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["s"], ["t"])], "g", [s],
                                                  [helper.make_tensor_value_info("t", TensorProto.STRING, [1, 4])]),
                                opset_imports=[helper.make_opsetid("", 17)]), str(text))
    future = tmp_path / "future.onnx"   # onnxruntime's refusal, cut before its reason, behind a --no-simplify hint
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                                opset_imports=[helper.make_opsetid("", 99)]), str(future))
    for model, extra, said in (
            (text, (), f"{text}: input 's' is a string tensor: edgeopt feeds numeric and bool inputs only"),
            (future, (), f"{future}: opset 99 is newer than this edgeopt's onnx {onnx.__version__} knows (opset "),
            (custom, (), f"{custom}: node 'FooOp' is my.domain:FooOp, a custom operator"),
            (custom, ("--no-simplify",), f"{custom}: node 'FooOp' is my.domain:FooOp, a custom operator"),
            (constant, (), f"{constant}: the model has no inputs (its outputs are constants)")):
        r = cli("package", model, "-o", tmp_path / "o.edgepkg", *extra, "-q")
        assert r.exit_code == 2 and r.stderr.startswith(f"edgeopt: error: {said}"), r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_an_input_given_two_shapes_is_refused(cli, tmp_path):
    """The last one had won silently: a bundle at 1x3x112x112 where the user also asked for 224."""
    model = _dynamic_model(tmp_path / "dyn.onnx")
    r = cli("inspect", model, "--input-shape", "x=1,3,16,16", "--input-shape", "x=1,3,8,8")
    assert r.exit_code == 2 and "input x given a shape twice (1,3,16,16 and 1,3,8,8)" in r.stderr
    r = cli("inspect", model, "--input-shape", "1,3,16,16", "--input-shape", "1,3,8,8")
    assert r.exit_code == 2 and "given a shape twice" in r.stderr


def test_corrupt_and_truncated_onnx_are_one_line_errors(cli, tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07this is not protobuf at all" * 10)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(MODEL.read_bytes()[: MODEL.stat().st_size // 2])
    for path in (garbage, truncated):
        r = cli("inspect", path)
        assert r.exit_code == 2, r.stderr
        assert f"{path} is not a valid ONNX model" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_missing_and_unknown_format(cli, tmp_path):
    r = cli("inspect", tmp_path / "nope.onnx")
    assert r.exit_code == 2 and "model not found" in r.stderr
    other = tmp_path / "model.caffemodel"
    other.write_bytes(b"x")
    r = cli("inspect", other)
    assert r.exit_code == 2 and "unknown model format" in r.stderr


@pytest.mark.parametrize("name", ["nope.onnx", "nope.pt", "nope.pt2", "nope.tflite", "nope.xml"])
def test_every_verb_refuses_a_missing_model_in_one_line(cli, tmp_path, name):
    """`package missing.onnx` ended in a FileNotFoundError traceback (exit 1), and `optimize` recorded the study
    before it failed, so the next try read "study exists"."""
    missing = tmp_path / name
    for verb in (["package", missing, "-o", tmp_path / "x.edgepkg"], ["inspect", missing],
                 ["optimize", missing, "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "opt"]):
        r = cli(*verb)
        assert r.exit_code == 2 and r.stderr.strip() == f"edgeopt: error: model not found: {missing}", r.stderr
    assert not (tmp_path / "results").exists()   # refused before the study was made
    r = cli("package", tmp_path, "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and "is not a file" in r.stderr


def test_a_study_whose_model_cannot_be_packaged_leaves_its_name_free(cli, tmp_path):
    """The baseline of a corrupt model fails as bad input; the study it was in measured nothing and is removed,
    so the same command runs again once the model is fixed (it read "study 'edgeopt' exists in the store")."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    for _ in range(2):
        r = cli("optimize", bad, "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "opt")
        assert r.exit_code == 2 and "is not a valid ONNX model" in r.stderr, r.stderr
        assert list((tmp_path / "opt").iterdir()) == []   # nor an empty OUTPUT_DIR/STUDY/bundles per try


def test_pytorch_module_callable_is_exported(cli):
    r = cli("inspect", f"{ASSETS / 'tiny_torch.py'}:make_cnn", "--input-shape", "pixels=1,3,16,16", "--json")
    assert r.exit_code == 0, r.stderr
    info = r.json()
    assert info["format"] == "pytorch-module"
    assert info["inputs"] == [{"name": "pixels", "shape": [1, 3, 16, 16], "dtype": "float32"}]
    assert info["outputs"][0]["shape"] == [1, 4]
    # its ONNX export is what is described (node names, parameters): said, where it read as the module's own
    assert any(n.startswith("described from its ONNX export") for n in info["notes"]), info["notes"]
    assert not any("ONNX export" in n for n in cli("inspect", MODEL, "--json").json()["notes"])


def test_a_module_of_two_inputs_takes_them_in_its_forwards_order(cli, tmp_path):
    """Each --input-shape is a float32 input, ordered by forward's parameters, on the ONNX path (which took one
    input only) and from TorchScript (whose forward's names come from its schema)."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("tiny_torch", ASSETS / "tiny_torch.py")
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    script = tmp_path / "two.pt"
    torch.jit.save(torch.jit.script(tiny.make_two_inputs()), str(script))
    for model in (f"{ASSETS / 'tiny_torch.py'}:make_two_inputs", script):
        r = cli("package", model, "--input-shape", "meta=1,6", "--input-shape", "image=1,3,16,16",
                "-o", tmp_path / "two.edgepkg", "--force", "--json")
        assert r.exit_code == 0, r.stderr
        m = r.json()
        assert [(i["name"], i["shape"]) for i in m["inputs"]] == [("image", [1, 3, 16, 16]), ("meta", [1, 6])]
        assert [o["shape"] for o in m["outputs"]] == [[1, 5], [1, 2]] and m["parity"]["passed"]
    # passed by position: `meta` alone would have been fed as `image` (a code review)
    r = cli("inspect", f"{ASSETS / 'tiny_torch.py'}:make_two_inputs", "--input-shape", "meta=1,6")
    assert r.exit_code == 2 and "forward(image, meta) takes image before meta, and the inputs are passed in that " \
        "order: give image an --input-shape too" in r.stderr, r.stderr
    # one misspelt (img): taken by position without a word, so `meta`, given first, was fed as `image` (a user
    # walkthrough)
    r = cli("inspect", f"{ASSETS / 'tiny_torch.py'}:make_two_inputs", "--input-shape", "meta=1,6",
            "--input-shape", "img=1,3,16,16")
    assert r.exit_code == 2 and "--input-shape img: forward(image, meta) has no parameter img, and the others are " \
        "named as its parameters" in r.stderr, r.stderr


def test_pytorch_errors(cli):
    r = cli("inspect", f"{ASSETS / 'tiny_torch.py'}:make_cnn")
    assert r.exit_code == 2 and "a PyTorch module has no input shapes of its own: give each input's with " \
        "--input-shape" in r.stderr
    r = cli("inspect", f"{ASSETS / 'tiny_torch.py'}:not_a_module", "--input-shape", "1,3,8,8")
    assert r.exit_code == 2 and "returned int, not a torch.nn.Module" in r.stderr
    r = cli("inspect", "no_such_module_xyz:make", "--input-shape", "1,3,8,8")
    assert r.exit_code == 2 and "cannot import no_such_module_xyz" in r.stderr and "a file here" not in r.stderr
    r = cli("inspect", SAMPLES / "digits_resnet.pt")   # the sample's weights: torch would call it "corrupted"
    assert r.exit_code == 2 and "holds weights (a state_dict), not a TorchScript model: give file.py:callable" \
        in r.stderr, r.stderr
    # the commonest slip: a shape the module cannot take (3 channels for a 1-channel CNN); one line, not a traceback
    r = cli("inspect", f"{ASSETS / 'tiny_torch.py'}:make_cnn", "--input-shape", "pixels=1,5,16,16")
    assert r.exit_code == 2 and "failed on float32 inputs of shape 1x5x16x16 (check --input-shape" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("saved, said", [
    ("module", "is a whole torch.nn.modules.container.Sequential pickled with torch.save(model), not TorchScript: "
               "edgeopt does not unpickle it (that runs the model's Python code); give file.py:callable returning "
               "the model (load the weights there), or save it as TorchScript (torch.jit.save) or an "
               "ExportedProgram (torch.export.save, .pt2)"),
    ("checkpoint", "is a dict saved with torch.save (a training checkpoint?), not a model: give file.py:callable"),
])
def test_a_torch_save_pickle_is_named_for_what_it_is_not_corrupt(cli, tmp_path, saved, said):
    """torch.save(model) and a checkpoint dict fail TorchScript's loader, whose message calls the file "likely
    corrupted": the user would re-download a good file. Say what it is and what edgeopt takes instead."""
    import torch
    module = _tiny_cnn()
    path = tmp_path / "model.pt"
    torch.save(module if saved == "module" else {"model": module.state_dict(), "epoch": 3}, path)
    for verb in (["inspect"], ["package", "-o", tmp_path / "x.edgepkg"]):
        r = cli(*verb, path, "--input-shape", "input=1,3,16,16")
        assert r.exit_code == 2, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith(f"edgeopt: error: {path} {said}"), r.stderr
        assert "corrupt" not in r.stderr
    assert not (tmp_path / "x.edgepkg").exists()


def test_an_old_format_pickle_and_a_file_that_is_no_archive_are_named_in_one_line(cli, tmp_path):
    """torch.save before 1.6 wrote no zip archive: torch called the file corrupted. An empty or foreign .pt2 made
    torch log a dozen-line traceback before edgeopt's line."""
    import torch
    old = tmp_path / "old.pt"
    torch.save(_tiny_cnn(), old, _use_new_zipfile_serialization=False)
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "empty.pt2").write_bytes(b"")
    (tmp_path / "text.pt2").write_text("not a model\n")
    for path, said in ((old, "is a whole torch.nn.modules.container.Sequential pickled with torch.save(model)"),
                       (tmp_path / "empty.pt", "is not a loadable TorchScript file: the file is empty (0 bytes)"),
                       (tmp_path / "empty.pt2", "is not a loadable ExportedProgram: the file is empty (0 bytes)"),
                       (tmp_path / "text.pt2", "is not a loadable ExportedProgram: not a zip archive, which "
                                               "torch.export.save writes")):
        r = cli("inspect", path, "--input-shape", "input=1,3,16,16")
        assert r.exit_code == 2 and r.stderr.startswith(f"edgeopt: error: {path} {said}"), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "corrupt" not in r.stderr, r.stderr


def _tiny_cnn():
    import importlib.util
    spec = importlib.util.spec_from_file_location("tiny_torch", ASSETS / "tiny_torch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_cnn().eval()


def _torch_parity(onnx_path, module, shape):
    import onnxruntime as ort
    import torch
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path))
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    return float(np.max(np.abs(got - want)))


def test_torchscript_file_matches_torch(tmp_path):
    import torch
    from edgeopt.models import load_model
    module = _tiny_cnn()
    path = tmp_path / "m.pt"
    torch.jit.trace(module, torch.zeros(1, 3, 16, 16)).save(str(path))
    src = load_model(str(path), {"": [1, 3, 16, 16]}, tmp_path)
    assert src.format == "torchscript"
    assert _torch_parity(src.onnx_path, module, (1, 3, 16, 16)) < 1e-5


def test_exported_program_file_matches_torch(tmp_path):
    import torch
    from edgeopt.models import load_model
    module = _tiny_cnn()
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(module, (torch.zeros(1, 3, 16, 16),)), str(path))
    src = load_model(str(path), {}, tmp_path)
    assert src.format == "exported-program"
    assert src.inputs[0].shape == [1, 3, 16, 16]
    assert _torch_parity(src.onnx_path, module, (1, 3, 16, 16)) < 1e-5


def test_an_exported_program_returning_an_unregistered_class_says_so_in_one_line(cli_subprocess, tmp_path):
    """A .pt2 of a module returning a Hugging Face ModelOutput: torch logged a 30-line traceback and edgeopt said
    "Please check the warnings above". The cause and what to export instead are the message now, and nothing else
    reaches stderr. The class is registered with pytree in the exporting process only, as transformers does."""
    import subprocess
    import sys

    script = tmp_path / "export_it.py"
    script.write_text(f"""
import dataclasses, torch, torch.utils._pytree as pytree

@dataclasses.dataclass
class Output:
    logits: torch.Tensor

pytree.register_dataclass(Output, serialized_type_name="mymodels.Output")

class Net(torch.nn.Module):
    def forward(self, x):
        return Output(logits=x * 2)

torch.export.save(torch.export.export(Net(), (torch.zeros(1, 4),)), {str(tmp_path / "out.pt2")!r})
""")
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True, cwd=tmp_path)
    r = cli_subprocess("inspect", tmp_path / "out.pt2")
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1, r.stderr
    assert "mymodels.Output in pytree is not registered" in r.stderr and "a tensor or a tuple of them" in r.stderr


def test_inspect_reports_dynamic_dims_without_input_shape(cli, tmp_path):
    import numpy as np
    import onnx
    import onnx.helper as h

    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3, "h", "w"])
    y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 4, "h2", "w2"])
    w = onnx.numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = h.make_graph([h.make_node("Conv", ["x", "w"], ["y"])], "g", [x], [y], [w])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), tmp_path / "dyn.onnx")
    r = cli("inspect", tmp_path / "dyn.onnx", "--json")
    assert r.exit_code == 0, r.stderr
    info = r.json()
    assert info["dynamic_dims"] == {"x": ["batch", "h", "w"]} and info["parameters"] == 108
    shown = cli("inspect", tmp_path / "dyn.onnx").stdout   # escaped once: `x float32\[batch, 3, h, w]` read twice
    assert "x float32[batch, 3, h, w]" in shown and "\\[" not in shown, shown
    assert info["flops_estimate"] is None and "--input-shape x=" in info["flops_note"]
    fixed = cli("inspect", tmp_path / "dyn.onnx", "--input-shape", "x=1,3,8,8", "--json").json()
    assert fixed["flops_estimate"] == 2 * 4 * 6 * 6 * 27


def test_recurrent_ops_count_in_flops(tmp_path):
    """An LSTM runs X @ W^T and H @ R^T for all 4 gates at every step: T x B x (|W| + |R|) MACs."""
    from edgeopt.models import macs_per_node, matmul_mac_share

    t, b, i, h = 5, 2, 6, 4
    w = numpy_helper.from_array(np.zeros((1, 4 * h, i), np.float32), "W")
    r = numpy_helper.from_array(np.zeros((1, 4 * h, h), np.float32), "R")
    node = helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=h)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [t, b, i])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [t, 1, b, h])], [w, r])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert [macs for _, macs in macs_per_node(model)] == [t * b * 4 * h * (i + h)]
    assert matmul_mac_share(model) is None   # recurrent MACs stay out of the static/dynamic rule
    onnx.save(model, tmp_path / "lstm.onnx")
    from edgeopt.models import inspect_model
    assert inspect_model(str(tmp_path / "lstm.onnx"), {}, tmp_path)["flops_estimate"] == 2 * t * b * 4 * h * (i + h)


def _sliced_by_shape_arithmetic(path):
    """x[1, 4, 8, 8] -> its first C/2 channels, C read with Shape and halved with Div (as a legacy export of
    `torch.chunk` does) -> Conv(2 -> 3, 1x1): ONNX's shape inference leaves the Slice's size unknown."""
    const = lambda name, value: helper.make_node("Constant", [], [name], value=numpy_helper.from_array(
        np.array(value, np.int64), name))
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), const("one", 1), const("two", 2), const("zero", [0]),
             const("axes", [1]), helper.make_node("Gather", ["shape", "one"], ["c"]),
             helper.make_node("Div", ["c", "two"], ["half"]), helper.make_node("Unsqueeze", ["half", "zero"], ["end"]),
             helper.make_node("Slice", ["x", "zero", "end", "axes"], ["s"]),
             helper.make_node("Conv", ["s", "w"], ["y"], name="/head/Conv")]
    w = numpy_helper.from_array(np.ones((3, 2, 1, 1), np.float32), "w")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_flops_of_a_graph_sized_by_shape_arithmetic_are_counted_on_the_folded_graph(cli, tmp_path):
    from edgeopt.models import estimate_flops, unknown_macs

    path = _sliced_by_shape_arithmetic(tmp_path / "sliced.onnx")
    assert estimate_flops(onnx.load(path)) is None   # what inspect said before: "unknown", and no reason
    assert unknown_macs(onnx.load(path)) == "the shapes of Conv node /head/Conv are not static"
    r = cli("inspect", path, "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["flops_estimate"] == 2 * 3 * 64 * 2
    assert "constant-folded graph, since as given the shapes of Conv node /head/Conv" in r.json()["flops_note"]
    assert "(counted on the constant-folded graph)" in cli("inspect", path).stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sliced.onnx"]   # the folded copy is not left behind


@pytest.mark.parametrize("code, said", [
    ("def build(:\n    pass\n", "cannot load net.py: SyntaxError: invalid syntax ({path}, line 1)"),
    ("import no_such_package_x\n", "cannot load net.py: ModuleNotFoundError: No module named 'no_such_package_x' "
                                   "({path}, line 1)"),
    ("def build():\n    raise ValueError('widths must be positive')\n",
     "building the model failed: ValueError: widths must be positive ({path}, line 2)"),
])
def test_a_model_file_whose_code_fails_is_one_line_exit_2(cli, tmp_path, monkeypatch, code, said):
    """The user's own Python failing (to parse, to import, to build) is bad input: exit 2 and where in their file,
    not a traceback and Python's exit 1 (a failed budget to CI)."""
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(code)
    for verb in (["inspect"], ["package", "-o", tmp_path / "x.edgepkg"]):
        r = cli(*verb, "net.py:build", "--input-shape", "input=1,3,32,32")
        assert r.exit_code == 2 and "Traceback" not in r.stderr, r.stderr
        error = r.stderr.strip().splitlines()[-1]   # after the progress lines
        assert error.startswith("edgeopt: error: net.py:build: ") and said.format(path=tmp_path / "net.py") in error


def test_a_module_sources_sha256_changes_with_its_weights_and_code(cli, tmp_path, monkeypatch):
    """It was the sha256 of the text "net.py:build": new weights (or code) behind the same reference read the same
    source.sha256 in inspect and in the bundle (a user walkthrough)."""
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text("import torch\ndef build():\n    m = torch.nn.Linear(4, 2)\n"
                                     "    m.load_state_dict(torch.load('w.pt'))\n    return m.eval()\n")

    def sha(seed):
        torch.manual_seed(seed)
        torch.save(torch.nn.Linear(4, 2).state_dict(), tmp_path / "w.pt")
        r = cli("inspect", "net.py:build", "--input-shape", "x=1,4", "--json")
        assert r.exit_code == 0, r.stderr
        return r.json()["sha256"]
    first = sha(0)
    second = sha(1)
    assert sha(0) == first and second != first   # the same weights alike; others not
    (tmp_path / "net.py").write_text((tmp_path / "net.py").read_text() + "# the code changed\n")
    assert sha(1) != second


def test_an_operator_onnx_cannot_export_is_one_line_without_the_graph(cli_subprocess, tmp_path):
    """A failed export printed its whole TorchScript graph ("Torch IR graph at exception: ...", ten lines and more)
    on the process's stdout, before the one line that names the operator (a user walkthrough)."""
    pytest.importorskip("torch")
    (tmp_path / "net.py").write_text("import torch\nclass Inv(torch.nn.Module):\n    def forward(self, x):\n"
                                     "        return torch.linalg.inv(x @ x.transpose(-1, -2) + torch.eye(4))\n"
                                     "def build():\n    return Inv().eval()\n")
    r = cli_subprocess("package", "net.py:build", "--input-shape", "x=1,4,4", "-o", tmp_path / "x.edgepkg",
                       cwd=tmp_path)
    # printed on the process's stdout (a --json reader's), beside Python's redirected one
    assert r.exit_code == 2 and r.stdout == "" and "Torch IR graph" not in r.stderr, r.stdout + r.stderr
    assert [line for line in r.stderr.splitlines() if not line.startswith("·")] == [
        "edgeopt: error: net.py:build: ONNX export failed: Exporting the operator 'aten::linalg_inv' to ONNX opset "
        "version 17 is not supported; a .pt2 may export where this does not: save torch.export.export(model, "
        "example_inputs) with torch.export.save and package that file"], r.stderr


def test_a_bundle_given_as_the_recipe_rebuilds_a_module_at_its_recorded_shapes(cli, tmp_path):
    """`package MODEL --recipe BUNDLE` "rebuilds it", but a PyTorch module has no shapes of its own and the
    bundle recorded none: the rebuild asked for --input-shape. Another model is given none of them."""
    cnn = f"{ASSETS / 'tiny_torch.py'}:make_cnn"
    first = cli("package", cnn, "--input-shape", "pixels=1,3,16,16", "-o", tmp_path / "a.edgepkg", "--json")
    assert first.exit_code == 0, first.stderr
    assert first.json()["source"]["input_shapes"] == {"pixels": [1, 3, 16, 16]}
    again = cli("package", cnn, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "b.edgepkg", "--json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["inputs"] == first.json()["inputs"]
    other = cli("package", f"{ASSETS / 'tiny_torch.py'}:make_wide_depthwise", "--recipe", tmp_path / "a.edgepkg",
                "-o", tmp_path / "c.edgepkg")
    assert other.exit_code == 2 and "give each input's with --input-shape" in other.stderr
    # the same file named another way, and a TorchScript copy of the model moved elsewhere (same content), are
    # the same source: a rebuild from another folder found no shapes
    import os
    same = f"{os.path.relpath(ASSETS / 'tiny_torch.py')}:make_cnn"
    assert same != cnn and cli("package", same, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "d.edgepkg",
                               "-q").exit_code == 0
    from edgeopt.recipe import _same_source
    script = tmp_path / "cnn.pt"
    script.write_bytes(b"model bytes")
    copy_ = tmp_path / "elsewhere.pt"
    copy_.write_bytes(b"model bytes")
    from edgeopt.models import sha256_of
    recorded = {"reference": str(script), "sha256": sha256_of(script)}
    assert _same_source(recorded, str(copy_)) and not _same_source(dict(recorded, sha256="0" * 64), str(copy_))


class _SelfNamedS(__import__("torch").nn.Module):
    def __init__(s):
        super().__init__()
        s.fc = __import__("torch").nn.Linear(4, 2)

    def forward(s, x):   # noqa: N805 - the module's own name for itself, as users write it
        return s.fc(x)


def test_a_torchscript_forward_whose_module_is_not_named_self_takes_its_inputs(cli, tmp_path):
    """`def forward(s, x)` read as an input `s` before `x`: "give s an --input-shape too" (a user review)."""
    import torch
    script = tmp_path / "s.pt"
    torch.jit.save(torch.jit.script(_SelfNamedS()), str(script))
    r = cli("inspect", script, "--input-shape", "x=1,4", "--json")
    assert r.exit_code == 0, r.stderr
    assert [i["name"] for i in r.json()["inputs"]] == ["x"]


def test_an_onnx_sources_sha256_covers_its_external_data(cli, tmp_path):
    """A model saved with external data keeps its weights in another file: two models that differ only there had
    one sha256 in inspect and in their bundles (a user walkthrough)."""
    def save(folder, scale):
        folder.mkdir()
        model = onnx.load(str(MODEL))
        for tensor in model.graph.initializer:
            if tensor.data_type == TensorProto.FLOAT and np.prod(tensor.dims) > 100:
                tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * scale, tensor.name))
        onnx.save(model, str(folder / "m.onnx"), save_as_external_data=True, location="m.weights", size_threshold=0)
        return folder / "m.onnx"

    one, other = save(tmp_path / "a", 1.0), save(tmp_path / "b", 1.5)
    assert one.read_bytes() == other.read_bytes()   # the graphs are one; only the weights differ
    shas = [cli("inspect", path, "--json").json()["sha256"] for path in (one, other)]
    assert shas[0] != shas[1]
    built = cli("package", one, "-o", tmp_path / "a.edgepkg", "--json")
    assert built.exit_code == 0 and built.json()["source"]["sha256"] == shas[0], built.stderr
    # a rebuild from the bundle knows its source by content, weights included
    r = cli("package", other, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "b.edgepkg", "--json")
    assert r.exit_code == 0 and r.json()["source"]["sha256"] == shas[1]


@pytest.mark.parametrize("forward, tracer", [
    ("y = self.a(x)\n        return y * 2 if float(y.sum()) > 0 else -y", True),   # a branch on a value
    ("self.calls += 1\n        return self.a(x) + self.calls", False),             # state changed in forward
])
def test_an_export_that_fixed_one_path_of_the_module_is_refused(cli, tmp_path, forward, tracer):
    """The trace records the path its one example took: the ONNX file then differed from the module on other
    inputs, and every later parity check took that file as the source: a wrong model packaged with "parity:
    max_abs_error 0" (a user walkthrough)."""
    pytest.importorskip("torch")
    (tmp_path / "net.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        torch.manual_seed(0)\n        self.a = torch.nn.Linear(8, 4)\n"
        "        self.register_buffer('calls', torch.zeros(1))\n"
        f"    def forward(self, x):\n        {forward}\n"
        "def build():\n    return Net().eval()\n")
    r = cli("package", tmp_path / "net.py:build", "--input-shape", "x=1,8", "-o", tmp_path / "n.edgepkg")
    said = [line for line in r.stderr.splitlines() if line.startswith("edgeopt:")]
    assert r.exit_code == 2 and len(said) == 1, r.stderr
    assert re.search(r"the ONNX export differs from the module itself on [1-4] of 4 random inputs", said[0])
    assert ("the tracer warned: Converting a tensor to a Python float" in said[0]) == tracer


@pytest.mark.parametrize("suffix", [".pt2", ".pt"])
def test_a_torch_archive_with_a_member_changed_after_saving_is_refused(cli, tmp_path, suffix):
    """torch loads an archive's members without their zip checksums: a .pt2 with four bytes of a weight flipped
    packaged, with other weights than the ones saved, without a word (a user walkthrough)."""
    import zipfile

    import torch
    module = _tiny_cnn()
    path = tmp_path / f"m{suffix}"
    if suffix == ".pt2":
        torch.export.save(torch.export.export(module, (torch.zeros(1, 3, 16, 16),)), str(path))
    else:
        torch.jit.save(torch.jit.trace(module, torch.zeros(1, 3, 16, 16)), str(path))
    with zipfile.ZipFile(path) as archive:   # a weight, stored uncompressed
        member = max((m for m in archive.infolist() if "data" in m.filename), key=lambda m: m.file_size)
    data = bytearray(path.read_bytes())
    header = member.header_offset   # the local header's own name and extra lengths: torch pads its extra field
    start = header + 30 + int.from_bytes(data[header + 26:header + 28], "little") + \
        int.from_bytes(data[header + 28:header + 30], "little") + 8
    data[start:start + 4] = bytes(b ^ 0xFF for b in data[start:start + 4])
    path.write_bytes(bytes(data))
    r = cli("inspect", path, *(["--input-shape", "1,3,16,16"] if suffix == ".pt" else []))
    assert r.exit_code == 2 and r.stderr.strip() == (
        f"edgeopt: error: {path}: {'an ExportedProgram' if suffix == '.pt2' else 'a TorchScript file'} with a "
        f"damaged member: {member.filename} fails its zip checksum (the file changed after it was saved: copy or "
        "save it again)"), r.stderr


def test_a_module_name_of_a_file_in_the_working_directory_names_the_file(cli, tmp_path, monkeypatch):
    """`nets:build` beside nets.py: "No module named 'nets'" and no way out (the working directory is not on a
    console script's sys.path; a user walkthrough)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text("def build():\n    pass\n")
    r = cli("inspect", "nets:build", "--input-shape", "1,3,8,8")
    assert r.exit_code == 2 and r.stderr.strip().endswith(
        "cannot import nets: ModuleNotFoundError: No module named 'nets' (a file here: give nets.py:build)"), r.stderr


def test_a_dynamic_batch_of_a_pt2_is_listed_among_its_dynamic_dims(cli, tmp_path):
    """inspect said "dynamic dims: none" and, a line below, "dynamic batch dim, packaged at 1" (a user walkthrough)."""
    import torch
    module = torch.nn.Sequential(torch.nn.Linear(8, 4)).eval()
    batch = torch.export.Dim("batch", max=64)
    path = tmp_path / "dyn.pt2"
    torch.export.save(torch.export.export(module, (torch.zeros(2, 8),), dynamic_shapes=({0: batch},)), str(path))
    info = cli("inspect", path, "--json").json()
    (name, dims), = info["dynamic_dims"].items()
    assert len(dims) == 1 and f"input {name}: dynamic batch dim, packaged at 1" in " ".join(info["notes"])
    fixed = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(module, (torch.zeros(2, 8),)), str(fixed))
    assert cli("inspect", fixed, "--json").json()["dynamic_dims"] == {}


@pytest.mark.parametrize("forward, shapes, said", [
    ("return self.a(torch.log(x + 1e-6))", ["x=1,8"], None),   # NaN on a random negative input, in both
    ("y = self.a(x)\n        return y.masked_fill(y < 0, float('-inf'))", ["x=1,8"], None),   # -inf, in both
    ("return self.a(x)", ["x=1,8", "mask=1,8"], "--input-shape names 'mask', which is not an input; inputs: x"),
])
def test_the_export_check_takes_what_the_module_itself_outputs(cli, tmp_path, forward, shapes, said):
    """The check of the export against the module refused a log-mel front end (NaN on random negative inputs, in
    both), and an unused input the exporter drops was an ONNX Runtime traceback (a code review)."""
    pytest.importorskip("torch")
    (tmp_path / "net.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        torch.manual_seed(0)\n        self.a = torch.nn.Linear(8, 4)\n"
        f"    def forward(self, x, mask=None):\n        {forward}\n"
        "def build():\n    return Net().eval()\n")
    r = cli("inspect", tmp_path / "net.py:build", *[a for s in shapes for a in ("--input-shape", s)])
    assert (r.exit_code, "Traceback" in r.stderr) == ((2, False) if said else (0, False)), r.stderr
    assert said is None or r.stderr.strip().endswith(said), r.stderr


def test_an_export_the_torchscript_exporter_refuses_names_the_pt2_way(cli, tmp_path):
    """AdaptiveAvgPool2d((3, 3)) on a 16x16 map: the TorchScript-based exporter refuses it with its own text, and
    the same model saved with torch.export as a .pt2 packages (a walkthrough on the Intel path)."""
    import torch

    (tmp_path / "net.py").write_text(
        "import torch\n\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.conv, self.pool = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d((3, 3))\n\n"
        "    def forward(self, x):\n        return self.pool(self.conv(x)).flatten(1)\n\n\ndef build():\n"
        "    return Net().eval()\n")
    r = cli("package", f"{tmp_path / 'net.py'}:build", "--input-shape", "x=1,3,16,16", "-o", tmp_path / "a.edgepkg")
    assert r.exit_code == 2 and "ONNX export failed: Unsupported: ONNX export of operator adaptive_avg_pool2d" \
        in r.stderr and "a .pt2 may export where this does not" in r.stderr, r.stderr
    import importlib.util
    spec = importlib.util.spec_from_file_location("net_for_pt2", tmp_path / "net.py")
    net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(net)
    torch.export.save(torch.export.export(net.build(), (torch.randn(1, 3, 16, 16),)), tmp_path / "n.pt2")
    r = cli("package", tmp_path / "n.pt2", "--budget", "accuracy_drop=none", "-o", tmp_path / "b.edgepkg")
    assert r.exit_code == 0, r.stderr


def test_an_output_that_is_no_tensor_is_refused_by_name(cli, tmp_path):
    """SplitToSequence's sequence and sklearn-onnx's ZipMap (a sequence of maps) were a KeyError traceback, exit 1,
    from inspect and every package (a walkthrough)."""
    w = numpy_helper.from_array(np.ones((16, 8), np.float32), "w")
    maps = helper.make_sequence_type_proto(helper.make_map_type_proto(TensorProto.INT64,
                                                                      helper.make_tensor_type_proto(TensorProto.FLOAT, [])))
    outputs = {"seq": helper.make_tensor_sequence_value_info("out", TensorProto.FLOAT, None),
               "zipmap": helper.make_value_info("out", maps)}
    for name, output in outputs.items():
        nodes = [helper.make_node("MatMul", ["x", "w"], ["g"]), helper.make_node("SplitToSequence", ["g"], ["out"])]
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                                  [output], [w])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        for args in (("inspect", path), ("package", path, "-o", tmp_path / "o.edgepkg")):
            r = cli(*args)
            assert r.exit_code == 2 and "output 'out' is a sequence, not a tensor" in r.stderr, r.stderr
            assert ("{'zipmap': False}" in r.stderr) is (name == "zipmap"), r.stderr


@pytest.mark.parametrize("profile, refused", [("generic", False), ("intel-cpu", True), ("raspberry-pi-5", True)])
def test_an_output_that_passes_an_input_through_is_refused_where_it_cannot_be_kept(cli, tmp_path, profile, refused):
    """OpenVINO's converter made two parameters of such an input and fed one, so parity saw uninitialised memory
    (max_abs_error 1.8e28; --allow-mismatch packaged it); the LiteRT path was a traceback (a walkthrough)."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "through",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8]),
                               helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "through.onnx"))
    r = cli("package", tmp_path / "through.onnx", "--profile", profile, "--budget", "accuracy_drop=none", "-o",
            tmp_path / "o.edgepkg", "--allow-mismatch")
    assert r.exit_code == (2 if refused else 0), r.stderr
    assert ("output 'x' is the input of that name passed through unchanged" in r.stderr) is refused, r.stderr


def test_inspect_reads_a_node_name_that_is_not_utf8(cli, tmp_path):
    """ONNX's proto2 strings are not checked: such a name came as bytes, a TypeError in inspect (a fuzzing audit)."""
    from conftest import MODEL
    data = pathlib.Path(MODEL).read_bytes()
    assert b'\n/head/Gemm"' in data
    odd = tmp_path / "odd.onnx"
    odd.write_bytes(data.replace(b'\n/head/Gemm"', b'\n/hea\xa0/Gemm"'))
    r = cli("inspect", odd, "--json")
    assert r.exit_code == 0 and "/hea\ufffd/Gemm" in [layer["name"] for layer in r.json()["layers"]], r.stderr


def test_a_file_name_with_a_colon_is_a_file_not_a_module(cli, tmp_path):
    """A mistyped `data/trian:v2.npz` read "cannot import data/trian: ModuleNotFoundError" (a walkthrough): a name
    with a data or model file's suffix is a file, said missing as one is."""
    from edgeopt.models import callable_reference
    assert callable_reference("nets.py:build") and callable_reference("pkg.mod:Factory.create")
    assert not callable_reference("data/trian:v2.npz") and not callable_reference("m:v2.onnx")
    assert not callable_reference("nets.py:not a name") and not callable_reference("plain.npz")
    existing = tmp_path / "a:b"
    existing.write_bytes(b"")
    assert not callable_reference(str(existing))   # there: a file, whatever follows the colon
    r = cli("package", f"{ASSETS / 'tiny_torch.py'}:make_cnn", "--input-shape", "input=1,3,16,16", "--distill",
            "--train-data", tmp_path / "trian:v2.npz", "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and f"training data file not found: {tmp_path / 'trian:v2.npz'}" in r.stderr, r.stderr


def test_inputs_that_share_a_named_dim_take_one_value():
    """Images given batch 4 beside a metadata input of the same `batch` packaged it at 1, broadcasting sample 0's
    metadata over all four without a word; two values for one `seq` read as the model's fault (a walkthrough)."""
    from edgeopt.errors import BadInput
    from edgeopt.models import resolve_static_shapes
    declared = {"image": ["batch", 3, 16, 16], "meta": ["batch", 4]}
    resolved, notes = resolve_static_shapes(declared, {"image": [4, 3, 16, 16]})
    assert resolved == {"image": [4, 3, 16, 16], "meta": [4, 4]}
    assert notes == ["input meta: batch=4 as image has it (a dim they share)"]
    text = {"input_ids": ["batch", "seq"], "attention_mask": ["batch", "seq"]}
    resolved, notes = resolve_static_shapes(text, {"input_ids": [1, 12]})   # seq known: no refusal of the mask
    assert resolved["attention_mask"] == [1, 12] and notes == ["input attention_mask: batch=1, seq=12 as "
                                                               "input_ids has it (a dim they share)"]
    with pytest.raises(BadInput, match=r"--input-shape: dim 'seq' is 12 for input_ids and 16 for attention_mask; "
                                       r"inputs that share a dim take one value"):
        resolve_static_shapes(text, {"input_ids": [1, 12], "attention_mask": [1, 16]})
    # "?" is no name: two unnamed dims are not one
    resolved, _ = resolve_static_shapes({"a": ["?", 3], "b": ["?", 2]}, {"a": [5, 3]})
    assert resolved["b"] == [1, 2]


def test_a_pt2_converted_as_a_module_says_its_dynamic_dims_were_frozen_at_its_example(tmp_path):
    """On the Pi (LiteRT converts the module itself) a program with a dynamic batch and sequence was packaged at
    its example's [2, 12] without a word (a walkthrough)."""
    import torch

    from edgeopt import torch_export
    module = torch.nn.Sequential(torch.nn.Linear(8, 4)).eval()
    path = tmp_path / "dyn.pt2"
    torch.export.save(torch.export.export(module, (torch.zeros(2, 8),),
                                          dynamic_shapes=({0: torch.export.Dim("batch", max=64)},)), str(path))
    source = torch_export.load(str(path), "exported-program", {})
    (note,) = source.notes
    assert note.endswith("keeps dim 0 dynamic; packaged at its example input's shape [2, 8] (export with another "
                         "example to package another)"), note
    fixed = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(module, (torch.zeros(2, 8),)), str(fixed))
    assert torch_export.load(str(fixed), "exported-program", {}).notes == []
