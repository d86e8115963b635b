"""PyTorch intake: a `module:callable` returning an nn.Module, a TorchScript file, or an
ExportedProgram (.pt2), exported to one ONNX file (`export`), or, for a backend that converts
PyTorch itself (LiteRT: litert-torch), kept as a module with example inputs (`load`), with the
module as the parity reference. torch is imported only here."""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import logging
import pathlib
import sys
import traceback
import warnings
import zipfile

from .errors import BadInput, first_line, host_file_problem


def _require_torch():
    try:
        import torch
    except ImportError:
        raise BadInput("PyTorch input needs the torch extra: pip install 'edgeopt[torch]'") from None
    return torch


def _callable_from(reference: str):
    target, _, attr = reference.rpartition(":")
    if target.endswith(".py"):
        path = pathlib.Path(target)
        if not path.is_file():
            raise BadInput(f"{reference}: file {target} not found")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent.resolve()))
        try:
            spec.loader.exec_module(module)
        except Exception as e:   # noqa: BLE001 - the user's code: any error in it is bad input, said in one line
            raise BadInput(f"{reference}: cannot load {target}: {_user_error(e)}") from None
        finally:
            sys.path.pop(0)
    else:
        try:
            module = importlib.import_module(target)
        except Exception as e:   # noqa: BLE001 - ImportError, or any error the module raises as it is imported
            # `nets:build` beside nets.py: the working directory is not on sys.path (a console script's is not)
            beside = pathlib.Path(*target.split(".")).with_suffix(".py")
            hint = (f" (a file here: give {beside}:{attr})" if isinstance(e, ModuleNotFoundError)
                    and e.name == target.split(".")[0] and beside.is_file() else "")
            raise BadInput(f"{reference}: cannot import {target}: {_user_error(e)}{hint}") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise BadInput(f"{reference}: {target} has no attribute {attr!r}")
    return fn


def _user_error(e: BaseException) -> str:
    """An error raised by the user's code as one line: its type, first line, and where in their file."""
    text = (str(e).splitlines() or [""])[0]
    if isinstance(e, SyntaxError):
        return f"SyntaxError: {e.msg} ({e.filename}, line {e.lineno})"
    # the deepest frame outside edgeopt and Python's own importer: `nomodule:fn` pointed at
    # "<frozen importlib._bootstrap>, line 1140"
    ours = (str(pathlib.Path(__file__).parent), str(pathlib.Path(importlib.__file__).parent))
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith(("<", *ours))]
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {text}{where}"


def _load_module(reference: str, fmt: str):
    torch = _require_torch()
    if fmt == "pytorch-module":
        obj = _callable_from(reference)
        try:
            module = obj() if not isinstance(obj, torch.nn.Module) else obj
        except Exception as e:   # noqa: BLE001 - the user's builder failed: bad input, in one line
            raise BadInput(f"{reference}: building the model failed: {_user_error(e)}") from None
        if not isinstance(module, torch.nn.Module):
            raise BadInput(f"{reference} returned {type(module).__name__}, not a torch.nn.Module")
        return module.eval()
    if fmt == "torchscript":
        _refuse_a_damaged_archive(reference, "a TorchScript file")
        try:
            return torch.jit.load(reference, map_location="cpu").eval()
        except Exception as e:  # torch raises RuntimeError / ValueError subclasses for bad archives
            raise BadInput(_not_torchscript(reference, e)) from None
    raise AssertionError(fmt)


# What to give instead of a torch.save pickle, which only its own Python code can load.
INSTEAD = ("give file.py:callable returning the model (load the weights there), or save it as TorchScript "
           "(torch.jit.save) or an ExportedProgram (torch.export.save, .pt2)")


def _load_program(reference: str):
    """torch.export.load, its failures one BadInput. A file that is no zip archive is refused before it: torch
    logs its own traceback (a dozen lines) before it raises on one."""
    torch = _require_torch()
    if not zipfile.is_zipfile(reference):
        raise BadInput(f"{reference} is not a loadable ExportedProgram: {_not_an_archive(reference, 'torch.export')}")
    _refuse_a_damaged_archive(reference, "an ExportedProgram")
    logged, logger = _Kept(), logging.getLogger("torch.export")
    # torch logs the real cause as a 30-line traceback, on its own handler, then raises "see the warnings above"
    handlers, propagate = logger.handlers, logger.propagate
    logger.handlers, logger.propagate = [logged], False
    try:
        return torch.export.load(reference)
    except Exception as e:  # torch raises RuntimeError / zipfile / pickle errors for bad archives
        raise BadInput(f"{reference} is not a loadable ExportedProgram: {_load_failure(e, logged.errors)}") from None
    finally:
        logger.handlers, logger.propagate = handlers, propagate


class _Kept(logging.Handler):
    """The exceptions of the log records sent to it, shown nowhere."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.errors = []

    def emit(self, record):
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])


def _load_failure(error, logged: list) -> str:
    """The cause of torch.export.load's failure: the exception torch logged where its own error only says to look
    above it. An output class torch cannot rebuild (a Hugging Face ModelOutput) says what to export instead."""
    cause = logged[-1] if logged else error
    cause = f"{type(cause).__name__}: {first_line(cause)}" if logged else first_line(cause)
    if "in pytree is not registered" in cause:
        cause += (" (torch.export.load rebuilds only outputs of built-in types: export a module that returns "
                  "a tensor or a tuple of them, e.g. a Hugging Face model with return_dict=False)")
    return cause


def _refuse_a_damaged_archive(reference: str, what: str) -> None:
    """A member whose bytes fail its zip CRC (a bit flipped in storage or transfer): torch loads it without
    checking, and a model with other weights than the ones saved was packaged without a word."""
    if not zipfile.is_zipfile(reference):
        return   # torch's own refusal names what the file is not
    try:
        with zipfile.ZipFile(reference) as archive:
            damaged = next((info.filename for info in archive.infolist() if not _crc_holds(archive, info)), None)
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
        raise BadInput(f"{reference}: {what} whose zip archive cannot be read: {first_line(e)}") from None
    if damaged is not None:
        raise BadInput(f"{reference}: {what} with a damaged member: {damaged} fails its zip checksum (the file "
                       "changed after it was saved: copy or save it again)")


def _crc_holds(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Whether a member's bytes match its stored CRC; one stored as 0 holds none to check (torch.save after
    torch.serialization.set_crc32_options(False)), and is taken as it is."""
    if info.CRC == 0:
        return True
    try:
        with archive.open(info) as member:   # zipfile compares the CRC at the member's end
            while member.read(1 << 20):
                pass
    except zipfile.BadZipFile:
        return False
    return True


def _not_an_archive(reference: str, saver: str) -> str:
    """Why a file is no archive torch wrote, in words: torch's own is "PytorchStreamReader failed reading zip
    archive: not a ZIP archive. This is an internal miniz error. If you are seeing this error, ..."."""
    if pathlib.Path(reference).stat().st_size == 0:
        return "the file is empty (0 bytes)"
    return f"not a zip archive, which {saver}.save writes"


def _not_torchscript(reference: str, error: Exception) -> str:
    """Why a .pt failed TorchScript's loader. torch calls any torch.save pickle "likely corrupted": say which
    pickle it is instead (a state_dict, a whole module, a checkpoint dict), and what edgeopt takes."""
    if _holds_weights(reference):
        return (f"{reference} holds weights (a state_dict), not a TorchScript model: give file.py:callable "
                "returning the model with these weights loaded")
    pickled = _pickled_type(reference)
    if pickled is None:
        why = first_line(error) if zipfile.is_zipfile(reference) else _not_an_archive(reference, "torch.jit")
        return f"{reference} is not a loadable TorchScript file: {why}"
    if pickled == "dict":
        return f"{reference} is a dict saved with torch.save (a training checkpoint?), not a model: {INSTEAD}"
    if pickled in ("list", "tuple"):
        return f"{reference} is a {pickled} saved with torch.save, not a model: {INSTEAD}"
    return (f"{reference} is a whole {pickled} pickled with torch.save(model), not TorchScript: edgeopt does not "
            f"unpickle it (that runs the model's Python code); {INSTEAD}")


def _pickled_type(reference: str) -> str | None:
    """The type of the object a torch.save archive holds ("dict", "list", a class as module.Name), read from its
    pickle's first opcode without unpickling anything; None for a file that is no torch.save archive (a
    TorchScript one has code/ and constants.pkl beside its data.pkl)."""
    if not zipfile.is_zipfile(reference):
        return _legacy_pickled_type(reference)
    try:
        with zipfile.ZipFile(reference) as archive:
            names = archive.namelist()
            pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1 or any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
                return None
            return _top_type(archive.read(pickles[0]))
    # A damaged archive, or a compression zipfile lacks: torch's own message says what is wrong with it.
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, RuntimeError, NotImplementedError):
        return None


# torch.save's format before PyTorch 1.6 (no zip archive) pickles this magic number first.
LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


def _legacy_pickled_type(reference: str) -> str | None:
    """_pickled_type of a torch.save file in the format before 1.6: pickles one after another, the magic number,
    the protocol version and the system's facts, then the object; None for any other file."""
    import pickletools

    try:
        with open(reference, "rb") as f:
            if f.read(len(LEGACY_MAGIC)) != LEGACY_MAGIC:
                return None
            f.seek(0)
            for _ in range(3):
                for _ in pickletools.genops(f):   # read to the pickle's STOP, leaving f at the next one
                    pass
            data = f.read()
    except (OSError, ValueError, EOFError):
        return None
    return _legacy_module(data) or _top_type(data)


def _legacy_module(data: bytes) -> str | None:
    """The class of a whole module in the old format, which pickles it as a persistent id: ("module", the class,
    its source file, its source)."""
    import itertools
    import pickletools

    try:
        ops = [(op.name, arg) for op, arg, _ in itertools.islice(pickletools.genops(data), 8)
               if op.name not in ("PROTO", "BINPUT", "LONG_BINPUT", "MEMOIZE")]
    except (ValueError, EOFError):
        return None
    if [name for name, _ in ops[:3]] == ["MARK", "BINUNICODE", "GLOBAL"] and ops[1][1] == "module":
        return ops[2][1].replace(" ", ".", 1)
    return None


# A pickle's first opcode that makes a builtin container: the object it starts is that container.
_CONTAINERS = {"EMPTY_DICT": "dict", "DICT": "dict", "EMPTY_LIST": "list", "LIST": "list", "EMPTY_TUPLE": "tuple",
               "MARK": "tuple"}


def _top_type(data: bytes) -> str | None:
    """The type of a pickle's top-level object from its first opcode (protocol 2, as torch.save writes)."""
    import pickletools

    for op, arg, _ in pickletools.genops(data):
        if op.name in ("PROTO", "FRAME"):
            continue
        if op.name == "GLOBAL":
            module, name = arg.split(" ", 1)
            return "dict" if (module, name) == ("collections", "OrderedDict") else f"{module}.{name}"
        return _CONTAINERS.get(op.name, "object")
    return None


def _holds_weights(reference: str) -> bool:
    """Whether a .pt that TorchScript cannot load is a pickled state_dict (torch.save of a dict of tensors)."""
    torch = _require_torch()
    try:
        loaded = torch.load(reference, map_location="cpu", weights_only=True)   # weights_only: no code runs
    except Exception:  # noqa: BLE001 - not loadable as weights either: no hint
        return False
    return isinstance(loaded, dict) and bool(loaded) and all(isinstance(v, torch.Tensor) for v in loaded.values())


def module_inputs(module, shapes: dict, reference: str) -> tuple:
    """(input names, float32 example tensors) for a module source: one per --input-shape, in the order of the
    forward's parameters where the names are theirs, else as given. The ONNX path took one input only, and
    said "several inputs" to a user who had forgotten --input-shape."""
    torch = _require_torch()
    if not shapes:
        raise BadInput(f"{reference}: a PyTorch module has no input shapes of its own: give each input's with "
                       "--input-shape (e.g. --input-shape input=1,3,224,224)")
    order = _forward_parameters(module)
    strangers = [name for name in shapes if name not in order]
    if order and strangers and len(strangers) < len(shapes):   # some named as forward's, some not: a misspelling
        raise BadInput(f"{reference}: --input-shape {strangers[0]}: forward({', '.join(order)}) has no parameter "
                       f"{strangers[0]}, and the others are named as its parameters: name each input as forward "
                       "does (the inputs are matched by name where every one is a parameter's, else by position)")
    if set(shapes) <= set(order):
        shapes = {name: shapes[name] for name in order if name in shapes}
        skipped = [name for name in order[:order.index(list(shapes)[-1])] if name not in shapes]
        if skipped:   # the inputs are passed by position: `mask` given without `y` would have been fed as `y`
            raise BadInput(f"{reference}: forward({', '.join(order)}) takes {', '.join(skipped)} before "
                           f"{list(shapes)[-1]}, and the inputs are passed in that order: give "
                           f"{', '.join(skipped)} an --input-shape too, or wrap the model in a module whose forward "
                           "takes only the inputs to export")
    return [name or "input" for name in shapes], tuple(torch.randn(*shape) for shape in shapes.values())


def _forward_parameters(module) -> list:
    """The names of forward's parameters, self apart (a TorchScript module's from its schema); [] if unknown."""
    import inspect as pyinspect

    schema = getattr(getattr(module, "forward", None), "schema", None)
    if schema is not None:   # its first argument is the module, whatever it is called (`def forward(s, x)`)
        return [a.name for a in schema.arguments[1:]]
    try:
        return list(pyinspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        return []


def export(reference: str, fmt: str, shapes: dict, workdir: pathlib.Path) -> tuple:
    """(the ONNX export, the source's sha256: reference_sha256)."""
    out = workdir / "exported.onnx"
    if fmt == "exported-program":
        return _export_program(reference, out), reference_sha256(reference, fmt)
    module = _load_module(reference, fmt)
    names, examples = module_inputs(module, shapes, reference)
    traced = []
    export_module(module, examples, names, out, reference, traced)
    _check_trace(module, examples, names, out, reference, traced)   # the user's float module, not a QAT stage's
    return out, reference_sha256(reference, fmt, module)


def export_module(module, examples: tuple, input_names: list, out: pathlib.Path, reference: str,
                  traced: list | None = None, changed_by: str | None = None) -> pathlib.Path:
    """A module (the user's, or one the transform stage changed) -> ONNX at opset 17 with the given
    input names; outputs named `output` or `output_0..`. `traced`: a list the tracer's warnings are added to.
    changed_by: the transform that made this module from one that ran on these inputs (its failure is the
    transform's, not the inputs')."""
    torch = _require_torch()
    n_out = len(_outputs(module, examples, reference, changed_by))   # a forward that fails: one line
    out_names = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    with _quiet_exporter(), warnings.catch_warnings(record=True) as said:  # also the deprecation notice
        warnings.simplefilter("always", torch.jit.TracerWarning)
        try:
            torch.onnx.export(module, tuple(examples), str(out), input_names=list(input_names),
                              output_names=out_names, opset_version=17, dynamo=False)
        except Exception as e:  # exporter errors are many types; report the first line
            if isinstance(e, OSError) and host_file_problem(e):   # the host's disk, not the module: no other way
                raise
            # torch.export's exporter (a .pt2, which packages through dynamo) takes some of what the TorchScript
            # one refuses: AdaptiveAvgPool2d((3, 3)) on a 16x16 map (a walkthrough)
            other_way = "" if changed_by or isinstance(module, torch.jit.ScriptModule) else (
                "; a .pt2 may export where this does not: save torch.export.export(model, example_inputs) with "
                "torch.export.save and package that file")
            raise BadInput(f"{reference}: ONNX export failed: {first_line(e)}{other_way}") from None
    if traced is not None:
        traced += [str(w.message) for w in said if issubclass(w.category, torch.jit.TracerWarning)]
    return out


TRACE_CHECK_INPUTS = 4      # seeded random inputs the export is run on beside the module itself
TRACE_TOLERANCE = 1e-3      # of the largest output magnitude: float32 rounding is far below, a wrong branch far above


def _check_trace(module, examples: tuple, input_names: list, out: pathlib.Path, reference: str, traced: list):
    """The export, run by ONNX Runtime, against the module itself on other inputs than the one it was traced on.
    The trace records the one path the example took: a branch on a value (`if float(y.sum()) > 0`) or a buffer
    changed in forward is frozen in the ONNX file, which every later parity check takes as the source, so a wrong
    model packaged with "parity: max_abs_error 0"."""
    torch = _require_torch()
    from .convert.onnxruntime import ort_session

    try:
        session = ort_session(out, 0)
    except Exception:  # noqa: BLE001 - an export ONNX Runtime cannot load is refused where it is loaded, in one line
        return
    kept = [i.name for i in session.get_inputs()]
    if not set(kept) <= set(input_names):   # its inputs are not the ones named: refused later, naming them
        return
    generator = torch.Generator().manual_seed(0)
    differing, worst = 0, 0.0
    for _ in range(TRACE_CHECK_INPUTS):
        inputs = tuple(torch.randn(t.shape, generator=generator) for t in examples)
        expected = [t.detach().numpy() for t in _outputs(module, inputs, reference)]
        fed = dict(zip(input_names, inputs))   # an input the export dropped (unused by forward) is not fed
        got = session.run(None, {name: fed[name].numpy() for name in kept})
        errors = [_trace_error(g, e) for g, e in zip(got, expected)]
        if len(got) != len(expected) or any(error is not None for error in errors):
            differing += 1
            worst = max([worst, *(error for error in errors if error is not None)])
    if differing:
        why = f"; the tracer warned: {traced[0].split('. ')[0]}" if traced else ""
        raise BadInput(f"{reference}: the ONNX export differs from the module itself on {differing} of "
                       f"{TRACE_CHECK_INPUTS} random inputs (max abs error {worst:.3g}): its forward takes a branch "
                       f"on a tensor's value, or changes its state, which an export fixes at one path{why}")


def _trace_error(got, expected) -> float | None:
    """The export's largest error on one output where it exceeds TRACE_TOLERANCE of the output's largest finite
    magnitude, else None. NaN and infinities (a log of a random negative input, a mask of -inf) agree where they
    stand in the same places with the same signs: they are the module's own outputs, not a wrong trace."""
    import numpy as np

    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    if got.shape != expected.shape:
        return float("inf")
    finite = np.isfinite(expected)
    same_places = np.array_equal(finite, np.isfinite(got)) and np.array_equal(np.isnan(expected), np.isnan(got))
    if not same_places or not np.array_equal(np.sign(expected[np.isinf(expected)]), np.sign(got[np.isinf(got)])):
        return float("inf")
    if not finite.any():
        return None
    error = float(np.max(np.abs(got[finite] - expected[finite])))
    scale = float(np.max(np.abs(expected[finite]))) or 1.0
    return error if error > TRACE_TOLERANCE * scale else None


def _export_program(reference: str, out: pathlib.Path) -> pathlib.Path:
    program = _load_program(reference)
    torch = _require_torch()
    with _quiet_exporter():
        try:
            torch.onnx.export(program, (), str(out), dynamo=True, external_data=False, verbose=False)
        except Exception as e:
            raise BadInput(f"{reference}: ONNX export failed: {first_line(e)}") from None
    return out


@contextlib.contextmanager
def _quiet_exporter():
    """The dynamo exporter logs registry chatter and prints progress, and a failed export prints its whole graph
    ("Torch IR graph at exception: ..."): captured, so stdout stays clean for --json and a refusal is the one line
    that names the operator."""
    from .capture import captured_output

    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with captured_output():
            yield
    finally:
        logger.setLevel(level)


def load(reference: str, fmt: str, shapes: dict):
    """A SourceModel holding the module itself: a module:callable (each --input-shape a float32
    input: module_inputs) or an ExportedProgram (its own example inputs). Outputs are the module's,
    flattened (as litert-torch flattens them)."""
    from .source import SourceModel

    notes = []
    if fmt == "exported-program":
        module, examples, names, notes = _program_module(reference, shapes)
    else:
        module = _load_module(reference, fmt)
        names, examples = module_inputs(module, shapes, reference)
    outputs = _outputs(module, examples, reference)
    return SourceModel(reference, fmt, reference_sha256(reference, fmt, module), None, _specs(names, examples),
                       _specs(["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))],
                              outputs), notes, torch_module=module, torch_examples=examples)


def _specs(names, tensors) -> list:
    from .source import TensorSpec

    return [TensorSpec(n, list(t.shape), str(t.dtype).removeprefix("torch.")) for n, t in zip(names, tensors)]


def _program_module(reference: str, shapes: dict):
    torch = _require_torch()
    program = _load_program(reference)
    args, kwargs = program.example_inputs or ((), {})
    if kwargs or not args:
        raise BadInput(f"{reference}: the ExportedProgram has no positional example inputs; save it with "
                       "torch.export.export(model, (x,)) so its inputs are known")
    names = [s.arg.name for s in program.graph_signature.input_specs
             if s.kind == torch.export.graph_signature.InputKind.USER_INPUT]
    if shapes:
        raise BadInput(f"{reference}: an ExportedProgram keeps its own input shapes; drop --input-shape")
    names = names[:len(args)]
    return _fixed_mode(program.module()), tuple(args), names, _frozen_dims(program, names, args)


def _frozen_dims(program, names: list, args) -> list:
    """A note for each input whose dims the program keeps dynamic: the module is converted at its example
    inputs' shapes, which it says, where a dynamic batch and sequence were frozen at [2, 12] without a word (a
    walkthrough)."""
    torch = _require_torch()
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    notes = []
    for name, example in zip(names, args):
        value = getattr(placeholders.get(name), "meta", {}).get("val")
        dynamic = [i for i, d in enumerate(getattr(value, "shape", ())) if isinstance(d, torch.SymInt)]
        if dynamic:
            notes.append(f"input {name}: the ExportedProgram keeps dim{'s' if len(dynamic) > 1 else ''} "
                         f"{', '.join(map(str, dynamic))} dynamic; packaged at its example input's shape "
                         f"{list(example.shape)} (export with another example to package another)")
    return notes


def _fixed_mode(graph_module):
    """The module of an ExportedProgram, inside a wrapper whose train()/eval() leave it alone: its graph keeps
    the mode it was exported in, and torch makes train()/eval() raise on it, so a converter that sets eval mode
    on what it is given (litert-torch's channel-last wrapper, the ONNX exporter) would fail with "Calling train()
    is not supported yet"."""
    torch = _require_torch()

    class ExportedProgramModule(torch.nn.Module):
        def __init__(self, program_module):
            super().__init__()
            self.program = program_module

        def forward(self, *args):
            return self.program(*args)

        def train(self, mode: bool = True):
            self.training = mode   # the program's own graph is fixed: no recursion into it
            return self

    return ExportedProgramModule(graph_module)


def refuse_fixed_batch(module, examples, what: str) -> None:
    """Refuse an ExportedProgram that only takes its example's batch size: distillation feeds the teacher
    batches of many samples, and torch's shape guard would fail there, mid-training, with a traceback."""
    torch = _require_torch()
    doubled = tuple(torch.cat([x, x]) if x.dim() else x for x in examples)
    try:
        with torch.no_grad():
            module(*doubled)
    except Exception:  # noqa: BLE001 - a guard failure (AssertionError) or a shape error from its graph
        batch = examples[0].shape[0] if examples and examples[0].dim() else 1
        raise BadInput(f"{what}: the ExportedProgram takes only its example's batch size ({batch}); distillation "
                       "feeds batches: export it with a dynamic batch dimension (torch.export.Dim) or give "
                       "model.py:build") from None


def output_shapes(module, examples, reference: str) -> list:
    return [list(t.shape) for t in _outputs(module, examples, reference)]


def _outputs(module, examples, reference: str, changed_by: str | None = None) -> list:
    torch = _require_torch()
    from torch.utils._pytree import tree_flatten

    try:
        with torch.no_grad():
            result = module(*examples)
    except Exception as e:  # a user's forward raises anything
        shapes = ", ".join("x".join(map(str, t.shape)) for t in examples)
        if changed_by:   # "check --input-shape" blamed the inputs the model had just run on
            raise BadInput(f"{reference}: after {changed_by}, the module fails on the inputs it ran on before: "
                           f"{_cause(e)}") from None
        raise BadInput(f"{reference}: the module failed on float32 inputs of shape {shapes} (check --input-shape; "
                       f"a model of integer inputs, token ids, packages from a .pt2 or ONNX export): "
                       f"{_cause(e)}") from None
    flat = [t for t in tree_flatten(result)[0] if isinstance(t, torch.Tensor)]
    if not flat:
        raise BadInput(f"{reference}: the module returned no tensors")
    return flat


def _cause(error) -> str:
    """An exception's telling line: TorchScript's first line is "The following operation failed in the
    TorchScript interpreter.", and the cause is its last."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
    return lines[-1] if "TorchScript interpreter" in lines[0] else lines[0]


def reference_runner(source):
    """{input: array} -> [outputs] of the PyTorch module itself (the parity reference)."""
    import numpy as np

    torch = _require_torch()
    from torch.utils._pytree import tree_flatten

    names = [spec.name for spec in source.inputs]

    def run(feed):
        with torch.no_grad():
            result = source.torch_module(*[torch.from_numpy(np.asarray(feed[n], order="C")) for n in names])
        return [t.detach().numpy() for t in tree_flatten(result)[0] if isinstance(t, torch.Tensor)]
    return run


def reference_sha256(reference: str, fmt: str, module=None) -> str:
    """A file's sha256; a `module:callable`'s, of what it built: its code file (file.py:callable; else the
    reference) and every parameter and buffer it holds, by name. The reference's text alone was its sha256, which
    stayed the same when the weights or the code changed, so a bundle's source.sha256 could not show it."""
    if fmt != "pytorch-module":
        from .models import sha256_of
        return sha256_of(pathlib.Path(reference))
    digest = hashlib.sha256()
    code = pathlib.Path(reference.rsplit(":", 1)[0])
    digest.update(code.read_bytes() if code.suffix == ".py" and code.is_file() else reference.encode())
    for name, tensor in (module.state_dict() if module is not None else {}).items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        try:   # every dtype as bytes (numpy has no bfloat16)
            digest.update(tensor.detach().cpu().contiguous().flatten().view(_require_torch().uint8).numpy().tobytes())
        except (RuntimeError, TypeError):   # a sparse or quantized tensor: its values as text
            digest.update(repr(tensor).encode())
    return digest.hexdigest()


def loader_to_npz(reference: str, input_names: list, out: pathlib.Path) -> pathlib.Path:
    """A `module:callable` returning a DataLoader (any iterable of batches) -> an .npz of stacked samples, so the
    training data is read and checked exactly as a file would be. A batch is a tensor (the only input), a
    tuple/list of the inputs in order with the labels last (optional), or a dict of input names and `labels`."""
    import numpy as np

    torch = _require_torch()
    loader = _loader(reference)
    columns = {}
    try:
        for batch in loader:
            for name, value in _batch_columns(batch, input_names, reference).items():
                columns.setdefault(name, []).append(np.asarray(value.detach().cpu().numpy()
                                                               if isinstance(value, torch.Tensor) else value))
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001 - a user's dataset raises anything
        raise BadInput(f"--train-data {reference}: reading its batches failed: {_user_error(e)}") from None
    if not columns:
        raise BadInput(f"--train-data {reference}: the DataLoader gave no batches")
    for name, values in columns.items():   # `return [1, 2, 3]` was a traceback from np.concatenate
        flat = next((v for v in values if v.ndim == 0 or v.dtype == object), None)
        if flat is not None:
            # one value of it, as Python has it, to name what it is
            first = flat.item() if flat.ndim == 0 else flat.reshape(-1)[0] if flat.size else None
            raise BadInput(f"--train-data {reference}: a batch's {name} holds {type(first).__name__} "
                           f"{_short_repr(first)}, not a tensor with a batch axis: give batches of tensors (inputs..., "
                           "labels) as a DataLoader makes them")
    try:
        stacked = {k: np.concatenate(v) for k, v in columns.items()}
    except ValueError as e:   # batches whose samples differ in shape
        raise BadInput(f"--train-data {reference}: its batches do not stack: {e}") from None
    np.savez(out, **stacked)
    return out


def _short_repr(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _loader(reference: str):
    """The iterable of batches `--train-data module:callable` names: what the callable returns (a DataLoader
    object named directly is taken as it is). Each way it can fail is one line naming the reference."""
    from collections.abc import Iterable

    torch = _require_torch()
    try:
        source = _callable_from(reference)
    except BadInput as e:   # said as the model's intake says it: name the flag, the model may be a .py too
        raise BadInput(f"--train-data {e}") from None
    loader = source
    if callable(source) and not isinstance(source, torch.utils.data.DataLoader):
        try:
            loader = source()
        except Exception as e:  # noqa: BLE001 - the user's function failed: bad input, in one line
            raise BadInput(f"--train-data {reference}: calling it failed: {_user_error(e)}") from None
    if not isinstance(loader, Iterable) or isinstance(loader, (str, bytes)):
        what = "returned" if loader is not source else "is"
        raise BadInput(f"--train-data {reference} {what} {type(loader).__name__}, not a DataLoader (or another "
                       "iterable of batches)")
    return loader


def _batch_columns(batch, input_names: list, reference: str) -> dict:
    if isinstance(batch, dict):
        return batch
    if not isinstance(batch, (tuple, list)):
        batch = (batch,)
    if len(batch) == len(input_names):
        return dict(zip(input_names, batch))
    if len(batch) == len(input_names) + 1:
        return dict(zip(input_names + ["labels"], batch))
    raise BadInput(f"--train-data {reference}: a batch has {len(batch)} items; expected the model's "
                   f"{len(input_names)} input(s), optionally followed by labels")
