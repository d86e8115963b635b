"""Graph simplification once input shapes are static: constants folded, redundant nodes removed,
Conv+BatchNormalization (and Conv+Add/Mul) fused.

With static shapes, an exporter's Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains are
constants, and so are the zero biases the dynamo exporter builds at run time with Expand/CastLike.
Left in, they cost time on every inference and, worse, block quantization: a Conv whose bias is
computed, or whose output goes through a float BatchNormalization, cannot become one QLinearConv
(see docs/architecture.md, "INT8 speed on ONNX Runtime").

The tool is ONNX Runtime's own graph optimizer run offline at the basic level
(`SessionOptions.optimized_model_filepath`, ORT_ENABLE_BASIC): the step ONNX Runtime's documented
quantization pre-processing (`quant_pre_process`) runs, and at that level it writes standard ONNX
ops only (the extended/all levels write com.microsoft ops and a CPU-specific layout, so they are
never used here). onnxslim is not a dependency of edgeopt (yet); ORT is in the base install.
"""
from __future__ import annotations

import collections
import errno
import os
import pathlib
import shutil

from .errors import BadInput, first_line

TOOL = "onnxruntime-basic"


def node_counts(model) -> dict:
    return dict(collections.Counter(n.op_type for n in model.graph.node))


def simplify(src: pathlib.Path, out: pathlib.Path) -> dict:
    """Write the simplified model of `src` (static input shapes) to `out`. Returns what was done:
    {"applied": True, "tool", "version", "nodes_before", "nodes_after", "removed": {op: count}}, or
    {"applied": False, "reason", "tool", "version"} with nothing written, when the optimizer added an
    op type: ORT inlines the function body of an op its CPU kernels lack (Bernoulli becomes
    RandomUniformLike, Greater, Cast), which another backend may have converted as it was."""
    import onnx
    import onnxruntime

    model = onnx.load(str(src))
    given_path = src
    before = node_counts(model)
    staged = out.with_name(out.stem + ".staged.onnx")
    if _castlike_to_cast(model):
        onnx.save(model, str(staged))
        src = staged
    # What ORT is handed, subgraphs included: an If whose condition folds to a constant is inlined, and its
    # branch's ops are not new ops.
    given = set(node_counts(model)) | _subgraph_ops(model.graph)
    del model   # its weights, not held while ONNX Runtime loads its own copies (ort_optimize, load_error)
    try:
        ort_optimize(src, out)
    finally:
        staged.unlink(missing_ok=True)
    simplified = onnx.load(str(out))
    after = node_counts(simplified)
    done = {"tool": TOOL, "version": onnxruntime.__version__}
    added = sorted(set(after) - given)
    if added:
        out.unlink()
        replaced = ", ".join(sorted(set(before) - set(after)))
        return dict(applied=False, reason=f"onnxruntime replaced {replaced} with {', '.join(added)}; "
                                          "the graph is kept as given", **done)
    _drop_unused_opsets(simplified)
    onnx.save(simplified, str(out))
    del simplified   # nor through load_error's session
    refused = load_error(out)
    if refused is not None and load_error(given_path) is None:
        # ORT's fusions at its default level can clash with what its basic level wrote (a BERT's MatMulAddFusion
        # names an initializer the first pass made: "Attempt to replace the existing tensor"), and the bundle
        # would not load here or on the device
        out.unlink()
        said = refused.rsplit(" : ", 1)[-1][-200:]   # ORT's reason comes last, after its C++ frames
        return dict(applied=False, reason=f"onnxruntime cannot load the simplified graph at its default level "
                                          f"({said}); the graph is kept as given", **done)
    removed = {op: n - after.get(op, 0) for op, n in before.items() if n > after.get(op, 0)}
    # More of an op can come out than went in (an If inlined, a function expanded into ops the graph had):
    # a count that grew is said, so "simplified" beside more nodes reads as what happened
    grown = {op: n - before.get(op, 0) for op, n in after.items() if n > before.get(op, 0)}
    return dict(applied=True, **done, nodes_before=sum(before.values()), nodes_after=sum(after.values()),
                removed=dict(sorted(removed.items())), grown=dict(sorted(grown.items())))


def _subgraph_ops(graph) -> set:
    """Op types inside every subgraph (If branches, Loop bodies) of `graph`, recursively."""
    ops = set()
    for node in graph.node:
        for attr in node.attribute:
            for sub in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
                ops |= {n.op_type for n in sub.node} | _subgraph_ops(sub)
    return ops


def ort_optimize(src: pathlib.Path, out: pathlib.Path) -> None:
    """ONNX Runtime's basic-level graph optimizations applied offline, saved to `out`."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(out)
    so.log_severity_level = 3
    try:
        ort.InferenceSession(str(src), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
        if "serializ" in str(e).lower() and shutil.disk_usage(out.parent).free < src.stat().st_size:   # ORT's
            # "Protobuf serialization failed" writing into a full folder blamed the model
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out.parent)) from None
        first = first_line(e)
        raise BadInput(f"{src}: onnxruntime cannot load the model to simplify it: {first[:300]} "
                       "(--no-simplify skips this step)") from None


def load_error(path: pathlib.Path) -> str | None:
    """Why ONNX Runtime cannot load the model at its default optimization level (as parity and the device's agent
    load it), or None."""
    from .convert.onnxruntime import ort_session

    try:
        ort_session(path)
    except Exception as e:  # noqa: BLE001 - ORT's own Fail/InvalidGraph/NotImplemented types
        return first_line(e)
    return None


def _castlike_to_cast(model) -> int:
    """CastLike(x, like) -> Cast(x, to=type of like), wherever that type is known.

    ORT's constant folding will not fold a node that reads a graph input, even for its type only,
    so the dynamo exporter's CastLike(0, input) keeps a whole zero-bias chain alive; Cast folds."""
    import onnx

    from .models import shapes_of

    if not any(n.op_type == "CastLike" for n in model.graph.node):
        return 0
    types = {vi.name: vi.type.tensor_type.elem_type for vi in shapes_of(model).graph.value_info}
    types.update({vi.name: vi.type.tensor_type.elem_type for vi in model.graph.input})
    types.update({t.name: t.data_type for t in model.graph.initializer})
    changed = 0
    for node in model.graph.node:
        if node.op_type == "CastLike" and node.domain in ("", "ai.onnx") and types.get(node.input[1]):
            cast = onnx.helper.make_node("Cast", [node.input[0]], list(node.output), name=node.name,
                                         to=types[node.input[1]])
            node.CopyFrom(cast)
            changed += 1
    return changed


def _drop_unused_opsets(model) -> None:
    """ORT declares every domain it knows (ai.onnx.ml 5, com.microsoft, ...) in the file it writes;
    an older runtime on a device, or another converter, may refuse a declaration it does not know."""
    used = {n.domain or "" for n in model.graph.node} | {f.domain or "" for f in model.functions} | {""}
    keep = [o for o in model.opset_import if (o.domain or "") in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)
