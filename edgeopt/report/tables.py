"""Rich tables for the terminal. Printing lives here and in the CLI, nowhere else."""
from __future__ import annotations

import math
import pathlib
import re
import statistics

from rich.cells import cell_len
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from device_agent.manifest import REFERENCE_STAGES

from ..budgets import KINDS, SAME_EVERY_RUN, number_in, unit_suffix, with_unit
from ..results import UNREADABLE
from ..search.judging import best_warnings, median_of_runs, objective_limit
from ..search.trial import PHASES
from .rows import batch, quantile_change, undecided, utc_time, within_effect

STATUS_STYLE = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]", "unmeasured": "[yellow]NOT MEASURED[/]"}


class WordsWholeTable(Table):
    """A table whose columns, where the console cannot hold them, fold at spaces before any word is broken: rich
    shrinks every column alike, and at 80 columns history's bundle names read "digit / s_cnn / -int8" on three
    lines while the time kept its 19 characters (a walkthrough). Where even the widest words do not fit, rich's own
    folding."""

    def __rich_console__(self, console, options):
        room = options.max_width - self._extra_width - sum(self.padding[1] + self.padding[3] for _ in self.columns)
        natural = [_widest(c, str.splitlines) for c in self.columns]
        floor = [n if c.no_wrap else _widest(c, str.split) for n, c in zip(natural, self.columns)]
        widths = [c.width for c in self.columns]
        if sum(natural) > room >= sum(floor):
            slack, extra = room - sum(floor), [n - f for n, f in zip(natural, floor)]
            for column, least, more in zip(self.columns, floor, extra):
                column.width = least + more * slack // sum(extra)
        try:   # for this width only: printed again on a wider console, the table takes its room (a review)
            yield from super().__rich_console__(console, options)
        finally:
            for column, width in zip(self.columns, widths):
                column.width = width


def _widest(column, parts) -> int:
    """The widest of a column's header and cells' parts (str.split: words; str.splitlines: lines), in terminal
    cells: a Japanese device name is two a character (len() cut it to "ラズベリ …": a review)."""
    texts = [str(column.header), *(Text.from_markup(str(c)).plain for c in column.cells)]
    return max((cell_len(part) for text in texts for part in parts(text)), default=1)


def _num(value, fmt="{:.3f}"):
    """`value` in `fmt`; one that would read as zero (3.7e-05 ms as "0.0000") or as hundreds of digits (1e308
    squeezed every other column away) in three significant digits instead."""
    if value is None:
        return "—"
    text = fmt.format(value)
    if isinstance(value, float) and value and (abs(value) >= 1e9 or not re.search("[1-9]", text)):
        return re.sub(r"\{[^}]*\}", "{:.3g}", fmt, count=1).format(value)   # its unit kept: "0.001 MiB"
    return text


# A latency column's milliseconds, the same in every table (compare, fleet bench, history): a 0.02 ms model's p90
# read 0.020 in history and fleet bench beside 0.0204 in compare.
LATENCY_MS = "{:.4f}"


def profiles_table(profiles: list) -> Table:
    t = Table(title="Hardware profiles")
    for col in ("name", "backend", "precision", "threads", "power sensor", "cpu", "from"):
        t.add_column(col, no_wrap=col not in ("cpu", "from"), overflow="fold")
    for p in profiles:
        d = p["device"]
        cpu = d["cpu"] if not d["cores"] else f"{d['cores']}x {d['cpu']}"
        # a profile of $EDGEOPT_PROFILES is named by its file, and one that replaces a built-in says so
        source = "built-in" if p.get("shadows") is None and _builtin(p["path"]) else escape(p["path"])
        if p.get("shadows"):
            source = f"[yellow]{source} (in place of the built-in)[/]"
        t.add_row(p["name"], p["backend"], p["default_precision"], str(p["runtime"]["threads"] or "auto"),
                  p["runtime"]["power_sensor"], escape(cpu), source)  # cpu is free text from a profile
    return t


def _builtin(path: str) -> bool:
    from ..profiles import builtin_dirs
    return any(pathlib.Path(path).resolve().parent == d.resolve() for d in builtin_dirs())


def key_values(title: str, rows) -> Table:
    t = Table(title=escape(title), show_header=False)
    t.add_column("key", style="bold")
    t.add_column("value")
    for k, v in rows:
        # values are users' text (profile descriptions, model and file names): shown as written, never as markup
        t.add_row(escape(str(k)), v if isinstance(v, Text) else escape(str(v)))
    return t


def probe_rows(facts: dict) -> list:
    """The agent's probe as a person reads it: runtimes by version or absent, power by its reader or why none,
    memory in whole MiB; anything else as the agent reported it."""
    def shown(key, value):
        if key == "runtimes" and isinstance(value, dict):
            return "; ".join(f"{name} {version or 'not installed'}" for name, version in value.items()) or "none"
        if key == "power" and isinstance(value, dict):
            return value.get("reader") or value.get("reason") or "none"
        if key == "ram_mb" and isinstance(value, (int, float)):
            return f"{value:.0f}"   # no thousands separator: -q lines are read by scripts
        return "—" if value is None else value
    return [(key, shown(key, value)) for key, value in facts.items()]


def _layer_names(layers) -> str:
    if layers is None:
        return "—"
    if not layers:
        return "none (no layer with weights)"
    shown = ", ".join(layer["name"] for layer in layers[:6])
    return f"{len(layers)}: {shown}" + (", … (--json lists all)" if len(layers) > 6 else "")


def inspect_rows(info: dict):
    fmt = _tensors
    flops = info["flops_estimate"]
    dynamic = "; ".join(f"{name}: {', '.join(map(str, dims))}" for name, dims in (info["dynamic_dims"] or {}).items())
    return [("model", info["model"]), ("format", info["format"]), ("sha256", info["sha256"]),
            ("opset", ", ".join(f"{k} {v}" for k, v in info["opset"].items())), ("producer", info["producer"] or "—"),
            ("inputs", fmt(info["inputs"])), ("outputs", fmt(info["outputs"])),
            ("dynamic dims", dynamic or "none"), ("parameters", f"{info['parameters']:,}"),
            ("FLOPs (estimate)", _flops_text(flops, info.get("flops_note") or "")), ("nodes", info["nodes"]),
            ("op types", ", ".join(f"{k}×{v}" for k, v in info["op_types"].items())),
            ("layers (--keep-float)", _layer_names(info.get("layers"))),
            ("notes", "; ".join(info["notes"]) or "—")]


def _tensors(tensors: list) -> str:
    """name dtype[1, 3, batch, h]: a dynamic dim by its name, unquoted (it read ['batch', 3, 'h', 'w']); then what
    the code feeding it needs: a layout the conversion changed, an INT8 tensor's scale and zero-point (a walkthrough
    of a LiteRT INT8 bundle found them only in its manifest)."""
    def shape(dims):
        return f"[{', '.join(map(str, dims))}]" if isinstance(dims, list) else str(dims)
    return "; ".join(f"{x['name']} {x['dtype']}{shape(x['shape'])}{_tensor_notes(x)}" for x in tensors)   # escaped by key_values


def _tensor_notes(x: dict) -> str:
    notes = []
    if isinstance(x.get("layout"), str):
        source = x.get("source_layout")
        notes.append(x["layout"] + (f", from the source's {source}" if isinstance(source, str) else ""))
    if isinstance(x.get("source_dtype"), str):
        notes.append(f"from the source's {x['source_dtype']}")
    q = x.get("quantization") if isinstance(x.get("quantization"), dict) else {}
    scale, zero_point = (number_in(q.get(k), -math.inf, math.inf) for k in ("scale", "zero_point"))
    if scale is not None and zero_point is not None:
        notes.append(f"scale {scale:.6g}, zero-point {zero_point:g}")
    return f" ({'; '.join(notes)})" if notes else ""


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def bundle_rows(m: dict):
    """`inspect BUNDLE`: what `package` printed of it, then what it carries to the device."""
    source = m.get("source") or {}
    runtime = m.get("runtime") or {}
    budgets = ", ".join(f"{k} {'≥' if k in KINDS and KINDS[k].higher_is_better else '≤'} {v:g}"
                        for k, v in (m.get("budgets") or {}).items())
    rows = [row for row in package_rows(m) if row[0] != "signed"]   # said below, with who signed it: it came twice
    labels = [label for label, _ in rows]
    after_size = labels.index("model size") + 1
    notes = labels.index("note") if "note" in labels else len(rows)
    return [rows[0],
            ("created", f"{m.get('created', '—')} by edgeopt {(m.get('tools') or {}).get('edgeopt', '?')}"),
            ("source", f"{source.get('format', '?')} {source.get('reference', '?')} (sha256 "
                       f"{str(source.get('sha256') or '?')[:12]}…)"),
            *rows[1:after_size],
            ("runtime", f"{runtime.get('name', '?')}, " + (
                _plural(runtime["threads"], "thread") if runtime.get("threads") else "one thread per physical core of "
                "the device") + " by default (bench --threads overrides)"),
            ("inputs", _tensors(m.get("inputs") or [])), ("outputs", _tensors(m.get("outputs") or [])),
            ("budgets", budgets or "none"),
            ("data", _bundle_data(m)),
            ("transforms", ", ".join(str(t.get("stage", "?")) for t in m.get("transforms") or []
                                     if t.get("stage") not in REFERENCE_STAGES) or "none"),
            *rows[after_size:notes],
            ("signed", _signed(m)),
            ("manifest sha256", m.get("manifest_sha256", "—")),
            *rows[notes:]]


def _signed(m: dict) -> str:
    """Who signed a bundle: a signature is only as good as the key that made it, and a forged one read "yes"."""
    sig = m.get("signature") or {}
    if not m.get("signed"):
        return "no"
    if sig.get("matches_manifest") is False:   # what key it names is then no one's word for this bundle
        return ("yes, but the signature is not one of this manifest: the manifest changed after signing, or the "
                "signature was taken from another bundle")
    key = f"by {sig.get('key_type') or 'an SSH'} key {sig['key']}" if sig.get("key") else "by an unreadable signature"
    if sig.get("verified"):
        return f"yes, {key}: verified, principal {sig['principal']} of {sig['allowed_signers']}"
    return (f"yes, {key}; not verified here (inspect --allowed-signers FILE checks it here, bench --allowed-signers "
            "on the device)")


def _bundle_data(m: dict) -> str:
    """The eval samples a bundle carries (`check` judges accuracy on them) and the calibration file it recorded
    (`package --recipe BUNDLE` takes it again while its sha256 is unchanged)."""
    ev = ((m.get("data") or {}).get("eval") or {})
    calib = ((m.get("compression") or {}).get("calibration") or {})
    parts = [f"eval {_plural(ev['samples'], 'sample')}{', labelled' if ev.get('labels') else ', no labels'}"
             if isinstance(ev.get("samples"), int) else "no eval data (accuracy budgets read NOT MEASURED)"]
    if isinstance(calib, dict) and calib.get("file"):
        parts.append(f"calibrated with {calib['file']} (sha256 {str(calib.get('sha256'))[:12]}…)")
    return "; ".join(parts)


def _flops_text(flops, note: str) -> str:
    """The count, and how it was had where that was not the plain way; else why there is none."""
    if flops is None:
        return note.replace("not estimated: ", "unknown: ", 1) if note else "unknown"
    from ..models import FOLDED
    return f"{flops:,}" + (f" ({FOLDED})" if FOLDED in note else "")


def _seconds(value: float) -> str:
    """Three figures below 100 s ("0.00123", "12.3"), whole seconds above ("1234", not "1.23e+03")."""
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def package_rows(m: dict):
    from ..parity import headline   # numpy: not for every command that prints a table

    parity = m["parity"]
    verdict = "pass" if parity["passed"] else f"FAIL (allowed by {parity.get('allowed_by', '--allow-mismatch')})"
    asked, ran = m["profile"]["precision"], parity.get("host_inference_precision")
    ran = {"f32": "fp32", "f16": "fp16"}.get(ran, ran)
    # OpenVINO on a CPU with bf16 runs an fp16 hint as bf16, and parity judges what ran (its tolerance)
    precision = asked if not ran or ran == asked else f"{asked} (ran as {ran} on this host; parity judged {ran})"
    rows = [("bundle", m["path"]), ("profile", f"{m['profile']['name']} ({m['profile']['backend']})"),
            ("float precision", precision), ("compression", _compression_with_transforms(m)),
            ("model size", f"{_model_bytes(m) / 1048576:.3f} MiB"),
            ("parity", f"{headline(parity)}, {parity['samples']} samples of {parity['samples_source']}: {verdict}"
                       + _parity_caveat(m))]
    # why a lower agreement did not fail it; not where the artifact ran as its source (a QDQ export compared with
    # itself: "not judged: ... the error a 10 dB artifact has" under identical outputs)
    if "top1_why_not" in parity and "top1_agreement" in parity and not _parity_caveat(m):
        rows.append(("top-1 agreement", f"{parity['top1_agreement']:.4f}, not judged: {parity['top1_why_not']}"))
    if "source_top1" in parity:
        original = ((m.get("source") or {}).get("accuracy") or {}).get("top1") if m.get("transforms") else None
        if original is not None:   # what the transforms cost, beside what the conversion did
            rows.append((f"top-1 {accuracy_reference(m.get('source'))} → after transforms → artifact",
                         f"{original:.4f} → {parity['source_top1']:.4f} → {parity['artifact_top1']:.4f}"))
        else:
            before = "after transforms" if m.get("transforms") else "source"
            rows.append((f"top-1 {before} → artifact", f"{parity['source_top1']:.4f} → {parity['artifact_top1']:.4f}"))
    simp = m.get("simplification") or {}
    if simp.get("applied"):
        grown = ", ".join(f"{op} +{n}" for op, n in (simp.get("grown") or {}).items())
        rows.append(("simplified", f"{simp['nodes_before']} → {simp['nodes_after']} nodes ({simp['tool']} "
                                   f"{simp['version']}){'; grew: ' + grown if grown else ''}"))
    elif simp:
        rows.append(("simplified", f"no: {simp['reason']}"))
    hint = m["compression"].get("host_hint")
    if hint and "ratio" in hint:
        label = ("INT8/FP32" if m["compression"].get("quantize") in ("int8", "dynamic") else
                 "FP16/FP32" if m["compression"].get("precision") == "fp16" else "quantized/float")
        rows.append((f"{label} on this host", f"{hint['ratio']:.2f}x latency ({hint['int8_ms']:.3g} / "
                                               f"{hint['fp32_ms']:.3g} ms, {hint['threads']} thread, "
                                               f"{hint.get('runtime', 'onnxruntime')}); the device's number is the one "
                                               "that counts"))
    if m.get("signed"):
        rows.append(("signed", _signed(m).split(";")[0]))   # just signed: whether it verifies is the device's word
    intake = m.get("intake_seconds")
    # a PyTorch source's time is its export to ONNX and the checks of it ("reading" a 13 s export: a walkthrough)
    exported = (m.get("source") or {}).get("format") in ("pytorch-module", "torchscript", "exported-program") \
        and (m.get("profile") or {}).get("backend") != "tflite"   # LiteRT converts the module itself
    reading = "loading and exporting the source" if exported else "reading the source"
    before = (f" (after {intake:.2f} s {reading}" + (" and its transforms)" if m.get("transforms") else ")")
              if intake is not None and intake >= 0.5 else "")
    rows.append(("conversion", f"{m['conversion_seconds']:.2f} s{before}"))
    rows += [("note", n) for n in m.get("notes", []) if not n.startswith("warning:")]   # printed loud, below it
    return rows


def _parity_caveat(m: dict) -> str:
    """Where the artifact is what parity compares it with, so a pass says only that it loads and runs here."""
    c = m["compression"]
    if c.get("precision") == "as-is":
        return " (the artifact is the given file: this checks that it loads and runs here, not a conversion)"
    if c.get("method") == "qat" and m["profile"].get("backend") == "onnxruntime":   # "sqnr 200 dB" checked nothing
        return (" (the artifact is QAT's QDQ export, run as it is: this checks that it loads and runs here; what QAT "
                "cost is the transforms' top-1)")
    return ""


def package_warnings(m: dict) -> list:
    """Loud lines: every `warning:` note (a quantized model no faster than float on this host, a budget the
    bundle cannot measure, ...)."""
    return [f"[yellow]warning[/] {escape(n.removeprefix('warning:').strip())}"
            for n in m.get("notes", []) if n.startswith("warning:")]


def _model_bytes(m: dict) -> int:
    return sum(f["bytes"] for f in m["files"] if f["role"] == "model")


def _compression_with_transforms(m: dict) -> str:
    """The quantization, then the model transforms: a pruned bundle read "compression none"."""
    stages = [t.get("stage") for t in m.get("transforms") or [] if isinstance(t, dict) and t.get("stage")
              and t.get("stage") not in REFERENCE_STAGES]
    said = _compression(m["compression"])
    if not stages:
        return said
    return ("no quantization" if said == "none" else said) + f"; transforms {' + '.join(stages)} (below)"


def _compression(c: dict) -> str:
    if c.get("precision") == "as-is":   # a .tflite packaged as it is: its own quantization, whatever it is
        return "as given (the model's own, unchanged here)"
    if c.get("quantize", "none") == "none":
        return "none"
    if c.get("method") == "nncf":
        ops = c.get("ops", {})
        done = f"{ops.get('compute_ops', 0) - ops.get('left_in_float', 0)}/{ops.get('compute_ops', 0)} compute ops"
        if c.get("algorithm") == "compress_weights":
            return f"{c['mode']} weight-only (NNCF), {done} compressed{_weight_types(ops)}"
        aware = f", accuracy-aware (max drop {c['max_accuracy_drop']:g})" if "max_accuracy_drop" in c else ""
        return f"INT8 NNCF {c['preset']} preset, {c['subset_size']} calibration samples{aware}, {done} quantized"
    if c.get("tool") == "ai-edge-quantizer":
        if c["quantize"] == "int8" and c.get("int8_method", {}).get("used") != "dynamic":
            int8_ops = c.get("int8_ops") or {}
            ops = "conv/FC ops only, the rest float" if int8_ops.get("used") == "compute" else "full-integer"
            if int8_ops.get("float_depthwise"):
                ops += f" but {int8_ops['float_depthwise']} wide depthwise conv(s) float"
            return f"INT8 {ops}, {c['io']} I/O, {c['calibration']['samples']} calibration samples (ai-edge-quantizer)"
        return "INT8 dynamic-range weights, activations quantized at run time (ai-edge-quantizer)"
    recurrent = "".join(f", {n} {op}" for op, n in (c.get("float_recurrent") or {}).items())
    if c.get("method") == "static":
        return (f"INT8 static {c['format']} {c['scheme']} per-channel, {c['calibration']['samples']} calibration "
                f"samples" + (f"; float{recurrent[1:]}" if recurrent else ""))
    if c.get("method") == "dynamic" and "integer_ops" in c:
        made = ", ".join(f"{n} {op}" for op, n in c["integer_ops"].items()) or "no op"
        conv = "Conv" if c.get("float_conv", 1) else ""   # a record without the count: said as before
        left = f"{conv}{recurrent}".lstrip(", ")
        return f"INT8 dynamic (activation ranges at run time): {made}; {left + ' and ' if left else ''}the rest float"
    return f"INT8 {c.get('method')}"


def _weight_types(ops: dict) -> str:
    """What the compute ops' weights became: INT4 groups that a layer's channels do not divide fall back to
    INT8, which the op count alone hides."""
    kinds = ops.get("weights_by_type") or {}
    return f" (weights: {', '.join(f'{n} {kind}' for kind, n in sorted(kinds.items()))})" if len(kinds) > 1 else ""


def accuracy_reference(source) -> str:
    """What a bundle's accuracy drop is measured against: the source as given, or distillation's --teacher, the
    model the user means to replace (pipeline._original_accuracy): "drop vs source" had named the wrong model."""
    model = str(((source or {}).get("accuracy") or {}).get("model") or "")
    return "the teacher" if model.startswith("the teacher") else "source"


def _accuracy_text(acc: dict, transforms=None, reference: str = "source") -> str:
    """Top-1 (or why not) and the outputs' error against the shipped reference, on the bundle's eval samples. The
    drop is against the `reference` (accuracy_reference); the reference outputs are of the model after its
    `transforms`, which a bench of a pruned bundle read as "max abs error 0 vs the source's outputs" beside a drop
    of 0.9."""
    top1 = (f"top-1 {acc['top1']:.4f} (drop {acc.get('drop', 0):+.4f} vs {reference})" if "top1" in acc
            else f"top-1 absent: {acc.get('top1_absent', 'not measured')}")
    transforms = [t for t in transforms if t not in REFERENCE_STAGES] if isinstance(transforms, list) else None
    against = (f"the outputs of the model after {', '.join(map(str, transforms))}"
               if isinstance(transforms, list) and transforms else "the source's outputs")
    error = (f"max abs error {acc['max_abs_error']:.4g}{_by_output(acc)} vs {against}" if "max_abs_error" in acc
             else f"max abs error absent: {acc['max_abs_error_absent']}" if "max_abs_error_absent" in acc else "")
    return f"{top1}; {error} on {acc.get('n', '?')} samples" if error else f"{top1} on {acc.get('n', '?')} samples"


def _by_output(acc: dict) -> str:
    """Each output's own error where a bundle has several (the agent's max_abs_error_by_output): a detector's boxes,
    in pixels, hid its scores' (0..1) behind the one maximum. Only finite numbers named by text are shown."""
    each = acc.get("max_abs_error_by_output")
    if not isinstance(each, dict) or not all(isinstance(k, str) and isinstance(v, (int, float))
                                             and not isinstance(v, bool) and math.isfinite(v) for k, v in each.items()):
        return ""
    return " (" + ", ".join(f"{escape(k)} {v:.4g}" for k, v in each.items()) + ")"


def _signature_text(signature) -> str:
    """The bundle's signature as the agent judged it: who signed it where it was checked (only the JSON said)."""
    if not isinstance(signature, dict):
        return ""
    if signature.get("verified"):
        return f" (signature verified: {signature.get('principal', '?')})"
    return f" ({signature['reason']})" if signature.get("signed") and signature.get("reason") else ""


def bench_rows(doc: dict):
    lat, mem, acc = doc["latency"], doc["memory"], doc.get("accuracy", {})
    ci = lat.get("ci95", {})
    def pct(k):
        if k not in lat:
            return f"absent: {lat.get(k + '_absent', 'not measured')}"
        c, why = ci.get(k), lat.get(f"ci95_{k}_absent")
        return f"{lat[k]:.4f} ms" + (f"  (95% CI {c[0]:.4f}–{c[1]:.4f})" if c else f"  (no 95% CI: {why})" if why else "")
    rows = [("bundle", doc["bundle"]["name"] + _signature_text(doc["bundle"].get("signature"))), ("device", f"{doc['device']['name']} ({doc['device'].get('cpu_model', '?')}, {doc['device'].get('arch', '?')})"),
            ("runtime", f"{doc['runtime']['name']} {doc['runtime']['version']}, {_threads_text(doc)}"),
            *_runtime_settings(doc["runtime"]),
            ("load / first inference", f"{lat['load_ms']:.2f} ms / {lat['first_inference_ms']:.4f} ms"),
            ("runs", f"{lat['n']} in {_seconds(lat['duration_s'])} s after {lat['warmup_count']} warm-up; stopped by {lat['stopped_by']}"),
            ("mean ± std", f"{lat['mean_ms']:.4f} ± {lat['std_ms']:.4f} ms (cv {lat['cv']:.2f})" if "std_ms" in lat
             else f"{lat['mean_ms']:.4f} ms; std absent: {lat.get('std_ms_absent', 'not measured')}"),
            *_batch_rows(doc),
            ("p50", pct("p50_ms")), ("p90", pct("p90_ms")), ("p99", pct("p99_ms")),
            ("RSS import / load / peak", f"{_num(mem.get('rss_after_import_mb'), '{:.1f}')} / {_num(mem.get('rss_after_load_mb'), '{:.1f}')} / {_num(mem.get('peak_rss_mb'), '{:.1f}')} MiB")]
    if acc.get("available") is False:
        rows.append(("accuracy", f"absent: {acc['reason']}"))
    elif acc:
        bundle = doc.get("bundle") or {}
        rows.append(("accuracy", _accuracy_text(acc, bundle.get("transforms"), accuracy_reference(bundle.get("source")))))
    rows += throughput_rows(doc.get("throughput")) + layer_rows(doc.get("layer_profile"))
    rows += power_rows(doc.get("power") or {}) + thermal_rows(doc.get("thermal") or {})
    transfers = (doc.get("transport") or {}).get("transfers") or []
    if transfers:
        rows.append(("shipped", ", ".join(_transfer(t) for t in transfers)))
    rows += [("warning", _warning_text(w)) for w in doc.get("warnings", [])]
    rows.append(("saved", doc.get("_path", "—")))
    if doc.get("_replaced"):
        rows.append(("replaced", doc["_replaced"]))
    return rows


def _threads(n) -> str:
    return f"{n} thread" if n == 1 else f"{n} threads"


def _threads_text(doc: dict) -> str:
    """`4 threads (command line)`, and what ran where the runtime reports fewer (OpenVINO caps them at the CPUs it
    finds: a result said 4 where 2 ran)."""
    asked, ran = doc["settings"]["threads"], doc["runtime"].get("inference_num_threads")
    text = f"{_threads(asked)} ({doc['settings']['threads_source']})"
    counted = isinstance(ran, int) and not isinstance(ran, bool) and ran > 0   # as the agent reads it back
    return f"{text}, {ran} ran" if counted and ran != asked else text


def _batch_rows(doc: dict) -> list:
    """A batch above 1 says that every latency below is a call's, of that many samples."""
    n = batch(doc)
    if n is None:
        return []
    shapes = ", ".join(f"{i.get('name', '?')} {i['shape']}" for i in doc["bundle"]["inputs"])
    return [("batch", f"{n} samples a call ({shapes}): the latencies are per call, not per sample")]


def _figure(d: dict, key: str, fmt: str) -> str:
    return fmt.format(d[key]) if key in d else f"absent ({d.get(key + '_absent', 'not measured')})"


def throughput_rows(t) -> list:
    """FPS with several inferences in flight, or why it is absent (a result of an older agent has no section)."""
    if not isinstance(t, dict):
        return []
    if t.get("available") is False:
        return [("throughput", f"absent: {t.get('reason', 'not measured')}")]
    how = f"{t['completed']} completed in {t['duration_s']:.2f} s, {t.get('concurrency', '?')} in flight; {t.get('method', '?')}"
    return [("throughput", f"{_figure(t, 'fps', '{:.1f} FPS')} ({how})")]


LAYERS_SHOWN = 5


def layer_rows(p) -> list:
    """The slowest layers of the layer profile (the result keeps more: --json, edgeopt report)."""
    if not isinstance(p, dict):
        return []
    if p.get("available") is False:
        return [("layer profile", f"absent: {p.get('reason', 'not measured')}")]
    rows = [("layer profile", f"{p['total_ms']:.4g} ms per inference in {p['layer_count']} layers over {p['runs']} "
                              f"profiled runs ({p.get('method', '?')}); the profiler's own cost inflates these "
                              "times: read the shares")]
    for i, x in enumerate(p["layers"][:LAYERS_SHOWN], 1):
        rows.append((f"  layer {i}", f"{x['share_pct']:5.1f} %  {x['mean_ms']:.4g} ms  {x['name']} ({x['op_type']})"))
    more = p["layer_count"] - min(LAYERS_SHOWN, len(p["layers"]))
    if more > 0:
        rows.append(("  …", f"{more} more layer(s): --json or edgeopt report lists the top {len(p['layers'])}"))
    return rows


def power_rows(p: dict) -> list:
    if p.get("available") is False:
        return [("power", f"absent: {p.get('reason', 'not measured')}")]
    rows = [("power", f"{p['mean_w']:.3f} W mean, {_figure(p, 'peak_w', '{:.3f} W')} peak, "
                      f"idle {_figure(p, 'idle_w', '{:.3f} W')}" + (f" ({p['mean_w_scope']})" if "mean_w_scope" in p else "")),
            ("energy / inference", f"{_figure(p, 'energy_mj_per_inference', '{:.4g} mJ')}, "
                                   f"{_figure(p, 'dynamic_energy_mj_per_inference', '{:.4g} mJ')} above idle"),
            ("power sensor", f"{p['reader']}: {p['total']}, {p['samples']} samples at {p['sample_rate_hz']:g} Hz"
                             + _achieved(p) + f" ({p['samples_failed']} failed)")]
    return rows + [("power note", n) for n in p.get("notes", [])]


def _achieved(p: dict) -> str:
    """", 118 Hz achieved" where the sensor kept well below the rate asked (a meter slower than --power-rate)."""
    achieved = p.get("achieved_rate_hz")
    if isinstance(achieved, (int, float)) and achieved < 0.8 * p["sample_rate_hz"]:
        return f" asked, {achieved:.3g} Hz achieved"
    return ""


def thermal_rows(t: dict) -> list:
    if t.get("available") is False:
        return [("thermal", f"absent: {t.get('reason')}")]
    rows = []
    if t.get("end_c"):
        zone = max(t["end_c"], key=t["end_c"].get)
        rows.append(("thermal", f"{zone}: {t['start_c'].get(zone, float('nan')):.1f} → {t['end_c'][zone]:.1f} °C"))
    elif t.get("start_c_absent"):   # zones unreadable while the rest (cpufreq) read: the row was left out
        rows.append(("thermal", f"absent: {t['start_c_absent']}"))
    for name, f in (t.get("cpufreq") or {}).items():
        during = f.get("during_mhz") or {}
        rows.append((f"cpufreq {name}", f"{_num(f.get('before_mhz'), '{:.0f}')} / {_num(during.get('mean'), '{:.0f}')} / "
                                        f"{_num(f.get('after_mhz'), '{:.0f}')} MHz before / during / after "
                                        f"(max {_num(f.get('hw_max_mhz'), '{:.0f}')})"))
    cooled = t.get("cooldown")
    if cooled and cooled.get("rule") is None:   # nothing to watch: skipped, with why ("NOT reached (None)")
        rows.append(("cooldown", f"skipped: {cooled.get('reason', 'no reason given')}"))
    elif cooled:
        rows.append(("cooldown", f"{'reached' if cooled.get('reached') else 'NOT reached'} ({cooled.get('rule')}) "
                                 f"after {cooled.get('waited_s', 0):.0f} s"))
    return rows


def _warning_text(w: str) -> str:
    from ..results import is_throttle_warning
    return Text(w, style="red") if is_throttle_warning(w) else w


def _transfer(t: dict) -> str:
    if not t["sent_bytes"]:
        return f"{t['kind']} cached on the device"
    return f"{t['kind']} {t['sent_bytes'] / 1e6:.2f} MB in {t['seconds']:.2f} s"


def _runtime_settings(rt: dict) -> list:
    """What a runtime reported it really used (OpenVINO: hint, streams, precision, cache; LiteRT:
    XNNPACK, int8 I/O), if anything."""
    if "xnnpack" in rt:
        x = rt["xnnpack"]
        used = "XNNPACK applied" if x["applied"] else ("XNNPACK off" if not x["requested"] else
                                                       "XNNPACK requested but not applied")
        return [("runtime settings", f"{rt['interpreter']}, {used}, {'int8' if rt['int8_io'] else 'float'} I/O")]
    if "inference_precision" not in rt:
        return []
    cache = rt.get("model_cache", {})
    cached = ("cache hit" if cache.get("hit") else "compiled, now cached") if cache.get("enabled") else "no model cache"
    ran = ", ".join(f"{k}×{v}" for k, v in (rt.get("execution_precisions") or {}).items())
    return [("runtime settings", f"{rt.get('performance_hint')} hint, {rt.get('num_streams')} stream(s), "
                                 f"inference precision {rt['inference_precision']}, compile {rt.get('compile_ms', 0):.1f} ms "
                                 f"({cached})"),
            ("layers ran in", ran or "—")]


def check_table(report: dict) -> Table:
    t = WordsWholeTable(title="Budget check")
    for col in ("result", "budget", "limit", "measured", "verdict"):
        t.add_column(col)
    for e, label in zip(report["results"], _labels_apart(report["results"])):
        if e["status"] != "ok":
            failed = "UNREADABLE" if e["status"] == UNREADABLE else "DEVICE FAILED"
            t.add_row(label, "—", "—", "—", f"[red]{failed}[/]: {escape(e.get('error', ''))}")
        for r in e["budgets"]:
            measured = f"{_beside(r['measured'], r['limit'])} {r['unit']}".strip() if r["measured"] is not None \
                else escape(r["reason"])
            t.add_row(label, r["budget"], f"{r['comparison']} {r['limit']:g} {r['unit']}".strip(), measured,
                      STATUS_STYLE[r["status"]])
    return t


def check_tally(report: dict) -> str:
    """The count under check's table: 201 verdict rows of 1,781 results ended without one (a scale walkthrough)."""
    entries = report["results"]
    statuses = [[r["status"] for r in e["budgets"]] for e in entries if e["status"] == "ok"]
    counts = (("met every budget", sum(bool(s) and all(v == "pass" for v in s) for s in statuses)),
              ("missed a budget", sum("fail" in s for s in statuses)),
              ("left a budget unmeasured", sum("fail" not in s and "unmeasured" in s for s in statuses)),
              ("had no budget", sum(not s for s in statuses)),
              ("no result (device failed)", sum(e["status"] not in ("ok", UNREADABLE) for e in entries)),
              ("unreadable", sum(e["status"] == UNREADABLE for e in entries)))
    text = f"{len(entries)} result{'s' * (len(entries) != 1)}: " + ", ".join(f"{n} {what}" for what, n in counts if n)
    verdicts = [r.get("verdict") for r in report.get("regressions") or []]
    if verdicts:
        text += "; regression gate: " + ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts))
    return text


def _labels_apart(entries: list) -> list:
    """bundle@device per result; where one is there many times (`check results/history`), told apart by when."""
    labels = [_label(e) for e in entries]
    return [label + (f" {_time(e.get('created'), seconds=True)}" if labels.count(label) > 1 else "")
            for e, label in zip(entries, labels)]


def _beside(measured: float, limit: float) -> str:
    """A measured figure to 4 digits, or as many more as tell it from its limit: `<= 66.89 MiB`, `66.89 MiB`, FAIL
    (66.890625) read as a pass that failed (a walkthrough)."""
    shown_limit = float(f"{limit:g}")   # as the limit column shows it
    side = (measured > limit) - (measured < limit)
    for digits in range(4, 13):
        text = f"{measured:.{digits}g}"   # on the same side of the shown limit as the figure is of the limit
        if (float(text) > shown_limit) - (float(text) < shown_limit) == side:
            return text
    return repr(measured)


def compare_table(rows: list, title: str = "Comparison", every_column: bool = False) -> Table:
    """One row per result. A column no row has a figure for (FPS and the slowest layer where neither pass ran) is
    left out, and figures never wrap: at a pipe's 120 columns, 13 columns folded 0.0330 into "0.033" over "0".
    Where every row is of one day, the day goes in the title and the column keeps the hour: the eleven
    characters saved keep "onnxruntime" and the bundle names whole at that width. `every_column` (the plain lines
    of -q, read by scripts): every column and whole times, whatever the rows hold, so a field keeps its place."""
    days = {_time(r.get("created"))[:10] for r in rows}
    one_day = len(days) == 1 and "—" not in days and not every_column
    # two runs of one bundle on one device in the same minute read alike ("d  dev-a  23:49" twice): seconds then
    shown = [(r["bundle"], r.get("device"), _time(r.get("created"))) for r in rows]
    seconds = len(set(shown)) < len(shown)
    t = Table(title=f"{title}, {days.pop()} (UTC)" if one_day else title)
    batch_apart = every_column   # -q's fields: the bundle's own name, its batch in a column of its own
    cells = [[escape(r["bundle"] or "—") + (f"\n(batch {r['batch']})" if r.get("batch") and not batch_apart else ""),
              escape(r.get("device") or "—"),
              _time(r.get("created"), seconds)[11 if one_day else 0:],
              escape(" ×".join(str(x) for x in (r.get("runtime"), r.get("threads")) if x) or "—"),
              _num(r["size_mb"], "{:.3f}"), _num(r["p50_ms"], LATENCY_MS), _num(r["p90_ms"], LATENCY_MS),
              _num(r["p99_ms"], LATENCY_MS), _num(r.get("throughput_fps"), "{:.1f}"), _num(r["peak_rss_mb"], "{:.1f}"),
              _num(r["top1"], "{:.4f}"),
              escape(r.get("slowest_layer") or "—") if every_column else escape(_short(r.get("slowest_layer"))),
              r["verdict"], _num(r.get("power_w"), "{:.3f}"), _num(r.get("energy_mj"), "{:.4g}"),
              str(r.get("batch") or 1)] for r in rows]
    columns = [(i, col, just) for i, (col, just) in enumerate(COMPARE_COLUMNS)
               if i == 0 or every_column or (col != "batch" and (not cells or any(row[i] != "—" for row in cells)))]
    for _, col, just in columns:
        # names wrap rather than end in an ellipsis: telling rows apart is the table's job
        t.add_column("time" if one_day and col == "time (UTC)" else col, justify=just, overflow="fold",
                     no_wrap=just == "right" or col == "time (UTC)")
    for row in cells:
        t.add_row(*(row[i] for i, _, _ in columns))
    return t


def compare_view(rows: list, title: str = "Comparison"):
    """compare's table where the console holds it whole, else a block per result: at 80 columns the bundle, device
    and runtime columns shrank to a character or two and the numbers were cut (`1028.81` for 1028.8172), and at
    120 long bundle names wrapped in slices of six (a scale walkthrough)."""
    class View:
        def __rich_console__(self, console, options):
            table = compare_table(rows, title)
            yield table if _unbroken_width(table) <= options.max_width else _compare_blocks(table, options.max_width)
    return View()


def _unbroken_width(table: Table) -> int:
    """The width a table needs for no word of its headers and cells to be broken: its columns fold, so rich's own
    minimum is a character a column."""
    return sum(_widest(c, str.split) + 3 for c in table.columns) + 1


def _compare_blocks(table: Table, width: int) -> Table:
    """Each row of compare's table as a heading line (bundle @ device, time) and its figures as name=value, packed
    to the width."""
    names = [str(c.header).replace("\n", " ") for c in table.columns]
    t = Table.grid(padding=(0, 0))
    t.title = table.title
    t.add_column()
    for row in zip(*(column.cells for column in table.columns)):
        shown = dict(zip(names, row))
        when = shown.pop("time (UTC)", shown.pop("time", ""))
        head = f"[bold]{shown.pop('bundle')}[/] @ {shown.pop('device', '—')}  {when}"
        verdict = shown.pop("budgets", "")
        figures = _packed([f"{escape(n)}={v}" for n, v in shown.items() if v != "—"], width - 2)
        t.add_row(head.replace("\n", " "))
        t.add_row("\n".join("  " + line for line in figures.splitlines()))
        t.add_row(f"  budgets: {verdict}")
        t.add_row()
    return t


COMPARE_COLUMNS = (("bundle", "left"), ("device", "left"), ("time (UTC)", "left"), ("runtime ×threads", "left"),
                   ("size\nMiB", "right"), ("p50 ms", "right"), ("p90 ms", "right"), ("p99 ms", "right"), ("FPS", "right"),
                   ("peak RSS\nMiB", "right"), ("top-1", "right"), ("slowest layer", "left"), ("budgets", "left"),
                   # last: added later, so that -q's fields before them keep their places for scripts
                   ("power W", "right"), ("energy mJ/inf", "right"), ("batch", "right"))


def _short(text, width: int = 32) -> str:
    """Long layer names keep their end (the part that tells layers apart) in a narrow column."""
    if not text:
        return "—"
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _time(created, seconds: bool = False) -> str:
    """An ISO time as `YYYY-MM-DD HH:MM[:SS]` in UTC, as the columns say: results are stamped in UTC, but a time
    with another offset (23:56+05:00) was shown as it stood, under "(UTC)", and sorted as later than 20:56 UTC."""
    shown = utc_time(created, seconds)
    return escape(shown) if shown else "—"


VERDICT_STYLE = {"slower": "[bold red]SLOWER[/]", "faster": "[green]faster[/]",
                 "no significant change": "no significant change", "inconclusive": "[yellow]inconclusive[/]"}


def regression_table(entries: list) -> Table:
    """One row per candidate: its baseline, the p50 and p90 change with the 95% interval, the verdict."""
    effect = next((e["effect"] for e in entries if "effect" in e), None)
    title = "Regression gate" + (f" (minimum effect {effect:.0%})" if effect is not None else "")
    t = Table(title=title)
    for col in ("device", "bundle", "baseline", "p50 ms", "p90 ms", "p", "verdict"):
        t.add_column(col, justify="right" if col == "p" else "left")
    for e in entries:
        base = e.get("baseline") or {}
        # to the second: a store's runs of one bundle a minute apart read alike (a walkthrough)
        against = f"{escape(base.get('bundle') or '—')} {_time(base.get('created'), seconds=True)}" if base else "—"
        if "p50" not in e:
            t.add_row(escape(e["device"] or "—"), escape(e["bundle"] or "—"), against, "—", "—", "—",
                      f"[yellow]{e['verdict']}[/]: {escape(e['reason'])}")
            continue
        notes = "".join(f"\n[yellow]{escape(n)}[/]" for n in e.get("notes", []))
        t.add_row(escape(e["device"] or "—"), escape(e["bundle"] or "—"), against, quantile_change(e["p50"]),
                  quantile_change(e["p90"]), f"{e['p_value']:.2g}", _verdict_cell(e) + notes)
    return t


def _verdict_cell(e: dict) -> str:
    """A significant change inside --min-effect is no "no significant change" beside its p of 7e-08 (a walkthrough)."""
    within = within_effect(e)
    return within if within else VERDICT_STYLE[e["verdict"]]


def regression_lines(entries: list) -> list:
    """An inconclusive verdict is only as useful as its reason (which quantile moved, why it was not called, what
    to do): one line each under the table, too long for its cell. So is a quantile beyond the effect that is no
    verdict (+57 % read "no significant change" with no word why)."""
    return [f"[yellow]{_label(e)}: regression gate {undecided(e)}:[/] {escape(e['reason'])}"
            for e in entries if undecided(e)]


def warning_lines(report: dict) -> list:
    """The results' own warnings (noisy run, swap, ...), one line each, under a check or comparison.
    A throttled or frequency-capped run stands out: its figures hold only in that state."""
    said = {}   # one line per warning, the results it holds for beside it: a fleet of 40 said one text 40 times
    for e, label in zip(report["results"], _labels_apart(report["results"])):
        for w in e["warnings"]:
            said.setdefault(w, []).append(label)
    return [_warning_line(_some(labels), w) for w, labels in said.items()]


def _some(labels: list, shown: int = 3) -> str:
    """Labels joined, the first `shown` of many and how many more."""
    more = len(labels) - shown
    return ", ".join(labels[:shown]) + (f" and {more} more" if more > 0 else "")


def _label(entry: dict) -> str:
    """bundle@device as rich markup: names come from result files, so any `[` in them is escaped."""
    return escape(f"{entry['bundle']}@{entry['device']}")


def _warning_line(label: str, w: str) -> str:
    from ..results import is_throttle_warning
    if is_throttle_warning(w):
        kind, _, text = w.partition(":")
        return f"[bold red]{escape(kind.upper())}[/] {label}:{escape(text)}"
    return f"[yellow]warning[/] {label}: {escape(w)}"


def fleet_table(report: dict) -> Table:
    t = WordsWholeTable(title=f"Fleet run {report['run_id']}")
    for col, just in (("device", "left"), ("status", "left"), ("p50 ms", "right"), ("p90 ms", "right"),
                      ("p99 ms", "right"), ("peak RSS MiB", "right"), ("power W", "right"),
                      ("budgets, or why it failed", "left")):
        # a failure's message folds rather than ends in an ellipsis: it may hold a host-key fingerprint to compare
        t.add_column(col, justify=just, overflow="fold")
    rows = {r["device"]: r for r in report["check"]["rows"]}
    for name, doc in report["documents"].items():
        if doc.get("status") != "ok":
            t.add_row(escape(name), "[red]failed[/]", "—", "—", "—", "—", "—", escape(doc["error"]["message"]))
            continue
        lat, row = doc["latency"], rows.get(name, {})
        power = doc.get("power", {})
        t.add_row(escape(name), "[green]ok[/]" + (" (kept)" if name in report["skipped"] else ""),
                  _num(lat.get("p50_ms"), LATENCY_MS), _num(lat.get("p90_ms"), LATENCY_MS), _num(lat.get("p99_ms"), LATENCY_MS),
                  _num(doc["memory"].get("peak_rss_mb"), "{:.1f}"),
                  _num(power.get("mean_w"), "{:.2f}") if power.get("available", True) else "n/a",
                  row.get("verdict", "—"))
    t.caption, t.caption_justify = _power_absent(report["documents"]), "left"
    return t


def _power_absent(documents: dict) -> str | None:
    """Why a fleet table's power reads n/a, once per reason with the devices it holds for: "n/a" alone hid it."""
    why = {}
    for name, doc in documents.items():
        power = doc.get("power") or {}
        if doc.get("status") == "ok" and power.get("available") is False:
            why.setdefault(str(power.get("reason") or "not measured"), []).append(name)
    ok = sum(doc.get("status") == "ok" for doc in documents.values())
    return "\n".join(escape(f"power n/a on {f'every device ({ok})' if len(names) == ok > 1 else _some(names, 8)}: "
                             f"{reason}") for reason, names in why.items()) or None


def devices_table(devices: list) -> Table:
    t = WordsWholeTable(title="Devices")
    for col in ("name", "address", "python", "profile", "workdir"):
        t.add_column(col)
    for d in devices:
        address = "local" if d["connection"] == "local" else \
            f"{d['user'] + '@' if d['user'] else ''}{d['host']}{':' + str(d['port']) if d['port'] else ''}"
        profile = escape(d["profile"] or "—") + (" [yellow](not found here)[/]" if d.get("profile_found") is False else "")
        t.add_row(escape(d["name"]), escape(address), escape(d["python"]), profile, escape(d["workdir"]))
    return t


def doctor_table(report: dict) -> Table:
    t = Table(title=escape(f"Device {report['device']}"))
    for col in ("check", "status", "detail", "to fix"):
        t.add_column(col, overflow="fold")   # a fingerprint to compare is shown whole
    for c in report["checks"]:
        # "missing" read wrong of an arch that does not match, or a host key that changed
        status = "[red]fail[/]" if not c["ok"] else "[yellow]note[/]" if c.get("note") else "[green]ok[/]"
        t.add_row(escape(c["check"]), status, escape(c["detail"]), escape(c["hint"]))
    return t


def history_table(rows: list, empty_caption: str = "no results in the store", whole: bool = False) -> Table:
    """Past results, newest first; a failed run with the first line of why (its first 80 characters, or with
    `whole` all of it: --quiet's lines are read by scripts). `empty`: the caption when no row matched (naming the
    filters, so an unknown bundle or device reads as that, not as an empty store)."""
    cells = [{"created (UTC)": _time(r["created"], seconds=True), "bundle": escape(r["bundle"] or "—"),
              "profile": escape(r.get("profile") or "—"), "made into": escape(r.get("variant") or "—"),
              "device": escape(r["device"]), "host": escape(r.get("host") or "—"), "status": r["status"],
              "p90 ms": _num(r["p90_ms"], LATENCY_MS), "peak RSS MiB": _num(r["peak_rss_mb"], "{:.1f}"),
              "top-1": _num(r["top1"], "{:.4f}"), "error": escape(_first_line(r.get("error"), whole))} for r in rows]
    # under 120 columns the names read "same…", "gene…" and p90 "0.01…" (a walkthrough): for a reader (not
    # --quiet's scripts, which get every column), a column alike in every row is said once, an empty one left out
    alike = {} if whole or len(rows) < 2 else {c: cells[0][c] for c in ("profile", "host", "status")
                                                 if len({row[c] for row in cells}) == 1}
    empty = set() if whole or any(row["error"] for row in cells) else {"error"}
    columns = [c for c in (cells[0] if cells else HISTORY_COLUMNS) if c not in alike and c not in empty]
    caption = empty_caption if not rows else ("every row: " + ", ".join(f"{c} {v}" for c, v in alike.items())
                                             if alike else None)
    t = WordsWholeTable(title="History", caption=caption)
    for col in columns:
        figure = col in ("p90 ms", "peak RSS MiB", "top-1")
        t.add_column(col, justify="right" if figure else "left", overflow="fold")
    for row in cells:
        t.add_row(*(row[c] for c in columns))
    return t


HISTORY_COLUMNS = ("created (UTC)", "bundle", "profile", "made into", "device", "host", "status", "p90 ms",
                   "peak RSS MiB", "top-1", "error")


def _first_line(error, whole: bool) -> str:
    """A failed run's why: its first line, its first 80 characters unless `whole` (--quiet's lines)."""
    error = ((error or "").splitlines() or [""])[0]
    return error if whole or len(error) <= 80 else error[:79] + "…"


def transform_table(stages: list) -> Table:
    """Before/after per stage of the transform stage (edgeopt/transform.py): what each step bought and cost.
    Ratios are against the source stage; a figure not measured shows as — (the manifest says why)."""
    t = Table(title="Transforms (host-side figures of each stage, exported to ONNX)")
    for col in ("stage", "parameters", "FLOPs", "size", "latency (host)", "top-1"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    base = next((s["figures"] for s in stages if s["stage"] == "source"), stages[0]["figures"])
    for s in stages:
        f = s["figures"]
        # QAT's stage is its fake-quant graph: float weights beside their scales, larger than what ships (INT8)
        name = escape(s["stage"]) + ("\n(float + fake-quant;\nthe bundle is INT8)" if s["stage"] == "qat" else "")
        t.add_row(name, _vs(f.get("parameters"), base.get("parameters"), "{:,}"),
                  _vs(f.get("flops"), base.get("flops"), "{:.3g}"),
                  _vs(f.get("bytes") and f["bytes"] / 1048576, base.get("bytes") and base["bytes"] / 1048576,
                      "{:.2f} MiB"),
                  _vs(f.get("latency_ms"), base.get("latency_ms"), "{:.3g} ms"), _num(f.get("top1"), "{:.4f}"))
    return t


def _vs(value, base, fmt: str) -> str:
    """A figure and its ratio to the source stage's."""
    if value is None:
        return "—"
    ratio = f" ({value / base:.2f}x)" if base else ""
    return fmt.format(value) + ratio


WIDE_TABLE = 140   # console columns below which the trials are listed one block each, not as a table


def optimize_trials(outcome: dict):
    """Every trial of an optimize study: a table on a console of WIDE_TABLE columns or more, else a block per
    trial (at 120 columns, a pipe's width, the table left the configuration 12 characters and folded it)."""
    class Trials:
        def __rich_console__(self, console, options):
            yield (optimize_table(outcome) if options.max_width >= WIDE_TABLE
                   else _trial_blocks(outcome, options.max_width))
    return Trials()


def optimize_table(outcome: dict) -> Table:
    """Every trial of an optimize study: its configuration, measured figures (worst device), verdict."""
    t = WordsWholeTable(title=_trials_title(outcome))
    columns = figure_columns(outcome)
    for col in ["trial", "configuration", *columns, "size", "time", "verdict"]:
        t.add_column(escape(col), justify="left" if col in ("configuration", "verdict") else "right",
                     overflow="fold")
    for row, label, figures, verdict in _trial_cells(outcome):
        t.add_row(label, escape(_wrappable(row["config"]) or "—"), *figures, verdict)
    return t


def _trial_blocks(outcome: dict, width: int) -> Table:
    """Each trial in three lines beside its number: configuration, figures (name=value), verdict."""
    label_width = len(f"trial {len(outcome['trials'])}*") + 2
    t = Table.grid(padding=(0, 2))
    t.title = _trials_title(outcome)
    t.add_column(justify="right", no_wrap=True)
    t.add_column()
    names = [*figure_columns(outcome), "size", "time"]
    # a repeat the study answered is its configuration and where its figures are: 16 of a study's 27 blocks
    # repeated a few trials' figures and verdicts word for word (a user walkthrough)
    first = {}
    for row in outcome["trials"]:   # the trial that measured it: a failed one (the device died) answered nothing
        if not row["cached"] and row["state"] == "complete":
            first.setdefault(row["config"], row["trial"])
    for row, label, figures, verdict in _trial_cells(outcome):
        if row["cached"] and row["config"] in first:
            t.add_row(f"trial {label}", f"{escape(_wrappable(row['config']) or '—')}\n[dim]the figures and verdict of "
                                        f"trial {first[row['config']]} (answered from the study, not counted)[/]")
            t.add_row()
            continue
        measured = _packed([f"{escape(n)}={v}" for n, v in zip(names, figures) if v != "—"], width - label_width)
        lines = [escape(_wrappable(row["config"]) or "—"), measured, verdict]
        t.add_row(f"trial {label}", "\n".join(line for line in lines if line))
        t.add_row()
    return t


def _packed(items: list, width: int) -> str:
    """`items` two spaces apart, in lines of at most `width` characters, none split: "time=12.1 s" folded
    between its figure and its unit at 120 columns."""
    lines = [""]
    for item in items:
        if lines[-1] and len(lines[-1]) + 2 + len(item) > width:
            lines.append("")
        lines[-1] += ("  " if lines[-1] else "") + item
    return "\n".join(lines)


def _trials_title(outcome: dict) -> str:
    if outcome.get("multi_objective"):   # --pareto: it searched a front; the chosen one is its fastest
        return escape(f"Study {outcome['study']}: the Pareto front over {', '.join(outcome['pareto_figures'])} (of "
                      f"every trial measured); the chosen one minimises {outcome['objective']} within the budgets")
    return escape(f"Study {outcome['study']}: minimise {outcome['objective']} within the budgets")


def figure_columns(outcome: dict) -> list:
    """The objective, then every other budget, then (--pareto) the front's other figures: energy per inference
    was searched on but not shown. Size has its own column."""
    objective = outcome["objective"]
    front = outcome["pareto_figures"] if outcome.get("multi_objective") else []
    # an absolute size budget's figure is the size column's (shown twice, as size_mb=2.64 and size=2.64 MiB)
    budgets = [b for b in outcome["budgets"] if b != "size_mb" or b in (outcome.get("relative_budgets") or {})]
    return list(dict.fromkeys([objective, *budgets, *(f for f in front if f != "size_mb")]))


def _three_figures(value) -> str:
    """Three significant figures, trailing zeros kept (a latency of 1.003 read "1", as if counted); 0 as 0."""
    return "0" if value == 0 else _num(value, "{:#.3g}").rstrip(".")


def _trial_cells(outcome: dict):
    """(row, its label, [figure of each figure_columns, size, time], verdict) of each trial."""
    pareto = set(outcome.get("pareto", []))
    best = (outcome.get("best") or {}).get("trial")
    for row in outcome["trials"]:
        f, paired = judged_figures(outcome, row)
        figures = [_three_figures(f.get(b)) + (f" ({paired[b]:.2f}x)" if paired.get(b) is not None else "")
                   for b in figure_columns(outcome)]
        spent = sum(row.get("seconds", {}).get(p, 0.0) for p in PHASES)
        figures += [_num(f.get("size_mb"), "{:.2f} MiB"), _num(spent or None, "{:.1f} s")]
        # the front is marked where it was searched (--pareto); a single objective's table says what it minimised
        # the chosen one's star, and a space in its place on the others: right-aligned numbers stay in a column
        mark = "*" if row["trial"] == best else " " if best is not None else ""
        yield row, str(row["trial"]) + mark, figures, _verdict(
            outcome, row, row["trial"] in pareto and bool(outcome.get("multi_objective")))


def _verify_hint(outcome: dict, best: dict) -> list:
    """How to check the chosen bundle as CI will: bench it, then check its result against the limits it carries
    (a successful study said only where the bundle was)."""
    import pathlib
    import shlex

    from ..results import file_stem

    devices = outcome.get("devices") or []
    if not devices or not best.get("bundle"):
        return []
    bundle, device = pathlib.Path(best["bundle"]), devices[0]
    stored = outcome.get("store_flags") or []
    folder = stored[1] if stored[:1] == ["--results-dir"] else "results"
    # where bench saves it
    result = str(pathlib.PurePath(folder) / f"{file_stem(bundle.stem)}@{file_stem(device)}.json")
    inventory = f" -i {shlex.quote(outcome['inventory'])}" if outcome.get("inventory") else ""
    inventory += "".join(f" {shlex.quote(flag)}" for flag in (outcome.get("ssh_flags") or []) + stored)
    others = f" (and on each of its other {len(devices) - 1} devices)" if len(devices) > 1 else ""
    return [escape(f"to verify it: edgeopt bench {shlex.quote(str(bundle))} --device {shlex.quote(device)}{inventory} "
                   f"&& edgeopt check {shlex.quote(result)}{others}")]


def judged_figures(outcome: dict, row: dict) -> tuple:
    """(figures, paired ratios) of a trial as the study judged it: where it measured the trial again, the
    objective's are the median of its runs (the verdict lists them), not its first run's beside a median verdict."""
    figures, paired = dict(row["figures"]), dict(row.get("paired") or {})
    objective, ratio = outcome["objective"], objective_limit(outcome)[1]
    median = median_of_runs(row)
    if median is not None:
        figures[objective] = median
    if ratio and len(row.get("rechecked") or []) > 1 and not row.get("baseline"):
        paired[objective] = statistics.median(row["rechecked"])
    return figures, paired


def _wrappable(config: str | None) -> str | None:
    """A configuration with a space after each option's comma, so that a narrow column wraps it between options
    (prune(channels=0.3,criterion=l2,...) was folded mid-word)."""
    return config and config.replace(",", ", ")


def _verdict(outcome: dict, row: dict, on_front: bool) -> str:
    if row["state"] == "fail":
        return f"[red]failed[/] {escape(row.get('error') or '')}"
    marks = trial_marks(outcome, row, on_front)
    figures = row.get("figures") or {}
    missed = [k for k, v in row["violations"].items() if v > 0 and k in figures]
    unmeasured = [k for k, v in row["violations"].items() if v > 0 and k not in figures]  # accuracy, screened only
    if row["feasible"]:
        head = "[green]meets budgets[/]"
    else:
        head = ("[red]misses[/] " + ", ".join(missed) if missed else "") + (
            ("; " if missed else "") + "not measured: " + ", ".join(unmeasured) if unmeasured else "")
    return head + (f" ({', '.join(marks)})" if marks else "")


def screened_only(row: dict) -> str:
    """"screened only", with what ruled it out: a screened trial within every budget read "not measured:
    accuracy_drop (screened only)", and nothing said it was left out for being slower than the best."""
    why = row.get("ruled_out") or {}
    if why.get("by") == "best":
        return f"screened only: over {why['margin']:.0%} slower than trial {why['trial']}, the best then"
    if why.get("by") == "budgets" and why.get("budgets"):
        return f"screened only: missed {', '.join(why['budgets'])} by over {why['margin']:.0%}"
    return "screened only"


def trial_marks(outcome: dict, row: dict, on_front: bool) -> list:
    """What a trial is beside its figures (the baseline, INT8 by hand, a cached answer...), for the terminal and
    the HTML alike: the HTML's list lacked INT8 by hand."""
    return [m for m, on in (("baseline", row["baseline"]), ("INT8 by hand", row.get("textbook")),
                            ("cached", row["cached"]),
                            (f"the same bundle as trial {row.get('twin_of')}, answered by its measurement",
                             row.get("twin_of") is not None and not row["cached"]),
                            (screened_only(row), row["measurement"] == "screening"), ("on the Pareto front", on_front))
            if on] + study_marks(outcome, row)


def study_marks(outcome: dict, row: dict) -> list:
    """What the study decided about a trial besides its measurement, for the terminal and the HTML alike."""
    again = measured_again(outcome, row)
    return [m for m, on in ((f"ruled out before training: {', '.join(row.get('untrained') or [])} not trained",
                             bool(row.get("untrained"))),
                            (f"parity {row.get('parity')}: left to the accuracy budget", bool(row.get("parity"))),
                            (again, bool(again) and row.get("twin_of") is None))
            if on]


def in_brackets(text: str) -> str:
    return f" ({text})" if text else ""


def measured_again(outcome: dict, row: dict) -> str:
    """A trial's readings of the objective, where the study measured it again (the best, its near ties, a near
    miss), which judge it by their median: one run alone can be one noisy run. `outcome`: optimize's outcome or
    a study as `report` loads it."""
    readings = row.get("rechecked")
    ratio = objective_limit(outcome)[1]   # a paired objective's readings are ratios to the baseline beside them
    if not readings or (ratio and row.get("baseline")):   # the baseline's ratio to itself is 1 by definition
        return ""
    shown = ", ".join(f"{r:.2f}x" if ratio else f"{r:.3g}" for r in readings)
    times = "twice" if len(readings) == 2 else f"{len(readings)} times"
    median = (f"; judged by their median, {statistics.median(readings):{'.2f' if ratio else '.3g'}}"
              f"{'x' if ratio else ''}" if len(readings) > 1 else "")
    return f"measured {times}: {shown}{' its paired baseline' if ratio else ''}{median}"


LOOSER_SAID = 0.10   # a carried limit more than this much looser than its ratio on a device is said (devices differ)


def carried_limit(outcome: dict, key: str) -> str:
    """What the chosen bundle carries for a paired relative budget, or "" (none, or a study before it did)."""
    c, ratio = (outcome.get("carried_limits") or {}).get(key), (outcome.get("relative_budgets") or {}).get(key)
    if not (c and ratio):
        return ""
    said = (f"the chosen bundle carries {key} ≤ {with_unit(c['limit'], key)}, {ratio:g}x the median of the baseline's "
            f"{c['runs']} runs ({with_unit(c['median'], key)}), which `edgeopt check` applies")
    devices = c.get("devices") or {}
    looser = {d: c["limit"] / v for d, v in devices.items() if v > 0 and c["limit"] / v > ratio * (1 + LOOSER_SAID)}
    if not looser:
        return said
    worst = max(devices, key=devices.get)   # every relative budget is on a figure where lower is better
    return (f"{said}; the baseline's worst device, {worst} ({with_unit(devices[worst], key)} first run), set it: "
            "on " + ", ".join(f"{d} it is {r:.2f}x that device's own baseline" for d, r in looser.items())
            + " (`edgeopt check --baseline` of each device's result tests it against its own)")


def _time_spent(trials: list, seconds: dict | None = None) -> str:
    """Where the study's time went: the trials' phases, then (a study this run answered) the wall time in all,
    with what the trials' phases leave out: setup, and measuring the finalists again at the end."""
    phases = {p: sum(t.get("seconds", {}).get(p, 0.0) for t in trials) for p in PHASES}
    cached = sum(t["cached"] for t in trials)
    twins = sum(t.get("twin_of") is not None and not t["cached"] for t in trials)
    screened = sum(t["measurement"] == "screening" and not t.get("cached") for t in trials)   # a cached copy: once
    reference = f", the baseline beside them {phases['reference']:.0f} s" if phases["reference"] else ""
    whole = (f"; this run {seconds['total']:.0f} s: setup {seconds['setup']:.0f} s, trials {seconds['trials']:.0f} s, "
             f"measuring again at the end {seconds['at_the_end']:.0f} s, the answer {seconds['answer']:.0f} s"
             if seconds else "")
    return (f"{len(trials)} trials: packaging {phases['package']:.0f} s, screening {phases['screen']:.0f} s, "
            f"full measurements {phases['measure']:.0f} s{reference}; {screened} screened only, {cached} answered "
            "from the study's cache (not counted in --trials)"
            + (f"; {twins} packaged to a bundle already measured, and answered by its measurement" if twins else "")
            + whole)


def _unmeasured(budgets: list, measurement: str | None, ruled_out: dict | None = None) -> str:
    """The budgets a closest miss never measured (accuracy, when a screening run ruled it out on speed), and what
    ruled it out: a budget its screening run missed by far, or a best of its time that measuring again demoted (a
    closest miss is shown only where no best is left)."""
    why = ""
    if measurement == "screening":
        why = " (a screening run ruled it out first)"
        if (ruled_out or {}).get("by") == "best":
            why = (f" (its screening run read over {ruled_out['margin']:.0%} slower than trial {ruled_out['trial']}, "
                   "the best until measuring again ruled that one out)")
    return f"; {', '.join(budgets)} not measured{why}" if budgets else ""


def versus_textbook_line(versus: dict) -> str:
    """The best against INT8 by hand, from their readings made in turn at the study's end."""
    ratios = ", ".join(f"{r:.2f}" for r in versus["ratios"])
    median = versus["median"]
    # which way round each pair's number is, said: "1.08x lower" beside pairs of 0.60 and 1.49 read backwards
    # "1.29x lower" read ambiguously (a user walkthrough): a latency is faster or slower
    better, worse = ("faster", "slower") if versus["objective"].startswith("latency") else ("lower", "higher")
    verdict = ("the same as INT8 by hand's (1.00x)" if f"{median:.2f}" == "1.00" or f"{1 / median:.2f}" == "1.00"
               else f"{median:.2f}x {better} than INT8 by hand's" if median >= 1
               else f"{1 / median:.2f}x {worse} than INT8 by hand's")
    line = (f"against INT8 by hand (trial {versus['textbook']}): the answer's {versus['objective']} is {verdict}, "
            f"by the median of {len(versus['ratios'])} pairs measured in turn at the end (INT8 by hand's ÷ the "
            f"answer's: {ratios}; above 1 the answer is {better})")
    line += _pairs_disagree(versus["ratios"], better, worse)
    missed, runs = versus.get("textbook_missed"), versus.get("textbook_runs")
    which = (f"the median of its {len(runs)} runs" if runs else
             f"its one {versus.get('textbook_measurement') or ''} run".replace("  ", " "))
    if median < 1 and missed and all(m in SAME_EVERY_RUN for m in missed):   # no noise: the eval data's verdict
        line += (f"; INT8 by hand was ruled out because it missed {', '.join(missed)}, which every run of its bundle "
                 "reads the same")
    elif median < 1 and missed:   # the one ruled out read faster: say on what, so the user can measure again
        line += (f"; INT8 by hand was ruled out because {which} missed {', '.join(missed)}: on a busy device that "
                 "may be the noise, so measure both bundles again (`edgeopt bench`)")
    elif median < 1 and "textbook_missed" in versus:   # both met the budgets; the study ranked INT8 by hand slower
        line += (f"; the study ranked INT8 by hand behind the answer on {which}: on a busy device measure both "
                 "bundles again (`edgeopt bench`)")
    return line


PAIRS_AGREE_WITHIN = 1.05   # pairs of the best and INT8 by hand read the same way unless one is this far the other side


def _pairs_disagree(ratios: list, better: str, worse: str) -> str:
    """Pairs that say opposite things: "6.37x faster" from pairs 0.62, 0.58, 6.76, 6.37, 6.75 (two of five said the
    answer was slower; threads bimodal on a shared 2-core host, a walkthrough) read as a firm figure."""
    ahead = sum(r > PAIRS_AGREE_WITHIN for r in ratios)
    behind = sum(r < 1 / PAIRS_AGREE_WITHIN for r in ratios)
    if not ahead or not behind:
        return ""
    return (f"; but the pairs disagree ({ahead} of {len(ratios)} read the answer {better}, {behind} {worse}): the "
            "device's speed changed between them (other load, throttling, threads contending), so the figure is not "
            "to be relied on; measure both bundles again on a quiet device (`edgeopt bench`)")


def _bundles_kept(kept: dict) -> str:
    """Which trial bundles the study's end kept, and why all where it removed none (outcome._remove_spare_bundles)."""
    if kept.get("kept_all"):
        return f"; all kept: {escape(kept['kept_all'])}"
    removed = kept.get("removed")
    if removed:
        return (": the baseline's, INT8 by hand's, the chosen one's, the front's, those measured again and the closest "
                f"misses; {removed} other{'s' if removed != 1 else ''} removed, {kept['removed_bytes'] / 1048576:.1f} "
                "MiB, which --resume rebuilds where it needs one; --keep-bundles keeps them all")
    return ""


def optimize_lines(outcome: dict) -> list:
    """The answer under the table: where the time went, then the chosen bundle, or the closest miss per budget."""
    lines = [_time_spent(outcome["trials"], outcome.get("seconds"))]
    lines += [f"[yellow]note[/] {escape(n)}" for n in outcome.get("notes", [])]
    base = outcome.get("baseline_figures") or {}
    for key, ratio in (outcome.get("relative_budgets") or {}).items():
        if key in base and key in outcome["budgets"]:
            lines.append(f"budget {key} ≤ {ratio:g}x the baseline" + (
                ", measured again right before each candidate (the ratio in brackets in the table; the baseline's "
                f"first run: {with_unit(base[key], key)})" if outcome.get("paired_baseline") else
                f"'s {with_unit(base[key], key)} = {with_unit(outcome['budgets'][key], key)} (measured in this study)")
                + "".join(f"; {c}" for c in [carried_limit(outcome, key)] if c))
    if outcome.get("stopped"):
        lines.append(f"[red]stopped[/] {escape(outcome['stopped'])}")
    if outcome.get("exhausted"):
        lines.append(f"[yellow]stopped early[/] {escape(outcome['exhausted'])}")
    for number in outcome.get("rebuilt_differs", []):
        lines.append(f"[yellow]rebuilt[/] trial {number}'s bundle was rebuilt on this host from its configuration, "
                     "and its files differ from those measured (training need not give the same bits on another "
                     "CPU): its figures are not this bundle's; measure it with `edgeopt bench`, or take the "
                     "measured one from the host that built it")
    kept = outcome.get("trial_bundles")
    if kept and (kept["count"] or kept.get("removed")):
        lines.append(f"trial bundles: {escape(kept['folder'])} ({kept['count']}, {kept['bytes'] / 1048576:.1f} MiB"
                     + _bundles_kept(kept) + ")")
    if outcome.get("multi_objective"):   # the front is the answer: each member's bundle, to take the trade-off wanted
        rows = {row["trial"]: row for row in outcome["trials"]}
        front = [rows[n] for n in outcome.get("pareto", []) if n in rows]
        # a front member that misses a budget is a trade-off shown, not an answer to take: no bundle line for it
        lines += [f"front trial {row['trial']}: bundle {escape(str(row.get('bundle')))}" for row in front
                  if row["feasible"]]
        missing = [str(row["trial"]) for row in front if not row["feasible"]]
        if missing:
            lines.append(f"on the front but missing a budget (not an answer): trial{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing)}")
    best = outcome.get("best")
    if best:
        value = best["figures"].get(outcome["objective"])
        # unconfirmed: met every budget beside its paired baseline, but misses a limit its bundle carries (exit 1)
        head = "[green]best[/]" if best.get("confirmed", True) else "[red]best, unconfirmed[/]"
        lines.append(f"{head} trial {best['trial']}: {escape(best['config'])} — {outcome['objective']} "
                     f"{_num(value, '{:.3g}')}{in_brackets(measured_again(outcome, best))}; "
                     f"bundle {escape(best['bundle'])}")
        lines += [f"[yellow]warning[/] {escape(w)}" for w in best_warnings(outcome, best)]
        lines += _verify_hint(outcome, best)
        versus = outcome.get("versus_textbook")
        if versus:
            lines.append(versus_textbook_line(versus))
        elif best.get("textbook"):
            lines.append(f"the best is INT8 by hand (the backend's defaults): no other configuration tried did "
                         f"better on {outcome['objective']} within the budgets")
        return lines
    lines += closest_lines(outcome)
    if not lines:
        lines.append("[red]no trial was measured[/]")
    return lines


def _missed_by(key: str, excess: float, figures: dict, outcome: dict) -> str:
    """"latency_p90_ms by 12%", or the figure against its limit where a percentage would read as nonsense (an
    accuracy drop of 0.45 against 0.01 is "by 4400%")."""
    figure, limit = (figures or {}).get(key), (outcome.get("budgets") or {}).get(key)
    if excess <= 2 or figure is None or limit is None:
        return f"{key} by {excess:.0%}"
    return f"{key} ({figure:.3g} against {limit:.3g})"


def closest_lines(outcome: dict) -> list:
    """Where no trial met every budget: the closest miss per budget, and the trial nearest overall (rich markup;
    `Text.from_markup(line).plain` for a report)."""
    lines = []
    closest = outcome.get("closest") or {}
    per_budget = closest.get("per_budget") or {}
    unbinding = [key for key, miss in per_budget.items() if miss.get("met_by_every_trial")]
    if unbinding:
        lines.append(f"[green]met by every trial:[/] {', '.join(unbinding)}")
    for key, miss in per_budget.items():
        if key in unbinding:
            continue
        met = miss["excess"] is not None and miss["excess"] <= 0   # by some trial, not with all the others
        unit = unit_suffix(key)
        against = (f"{miss['paired']:.3g}x its paired baseline against {outcome['relative_budgets'][key]:g}x"
                   if miss.get("paired") is not None and key in (outcome.get("relative_budgets") or {}) else
                   f"{_num(miss['measured'], '{:.4g}')}{unit} against {miss['limit']:.4g}{unit}")
        if miss.get("device"):   # the worst of several devices decides: which one
            against += f" on {escape(miss['device'])}"
        if miss.get("baseline") and not met:   # "closest: trial 0 (quantize=none)" pointed at nothing to take
            against += ": no candidate came closer than the model as given (the baseline)"
        if miss.get("runs"):   # a near miss measured again, judged by the median of its runs
            against += in_brackets(measured_again(outcome, {"rechecked": miss["runs"]}))
        others, unmeasured = miss.get("others_missed") or {}, miss.get("others_unmeasured") or []
        if others:
            cost = ", but missed " + ", ".join(_missed_by(k, v, miss.get("others_figures"), outcome)
                                               for k, v in others.items())
        else:
            cost = "" if unmeasured else ", meeting every other budget"
        cost += _unmeasured(unmeasured, miss.get("measurement"), miss.get("ruled_out"))
        lines.append(f"{'[green]met[/]' if met else '[yellow]closest[/]'} {key}: trial {miss['trial']} "
                     f"({escape(miss['config'] or '')}) measured {against}{cost}")
    if closest.get("overall"):
        o = closest["overall"]
        missed = ", ".join(_missed_by(k, v, o["figures"], outcome) for k, v in o["violations"].items()
                           if v > 0 and k in o["figures"])
        unmeasured = [k for k in o["violations"] if k not in o["figures"]]
        lines.append(f"[yellow]nearest overall[/] trial {o['trial']} ({escape(o['config'])}): "
                     f"{'missed ' + missed if missed else 'met every budget it measured'}"
                     f"{_unmeasured(unmeasured, o.get('measurement'), o.get('ruled_out'))}")
    return lines
