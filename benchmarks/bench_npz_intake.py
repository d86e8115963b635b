"""Malformed calibration/eval .npz files through `edgeopt package` (in-process, as the CLI runs them):
how many are handled (exit 2, one line), end in a traceback, or are wrongly accepted (exit 0).

A fixed corpus: each case is one file given to --calib (with --quantize int8, so ORT's calibrator sees it)
or --eval-data, for the shipped digits CNN (image [1, 1, 8, 8]) or the state + scalar model of
tests/sample_models.py (image [1, 1, 8, 8], state [2, 1, 16], sr []). A few valid files are run too and
reported apart. Runs against whichever edgeopt is importable, so the same script measures main:

    HOME=/tmp/h PYTHONPATH=/path/to/main python benchmarks/bench_npz_intake.py [--json out.json]
"""
from __future__ import annotations

import argparse
import io
import json
import pathlib
import sys
import tempfile
import zipfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from sample_models import stacked_samples, write_model  # noqa: E402

rng = np.random.default_rng(0)
IMG = rng.standard_normal((20, 1, 8, 8)).astype(np.float32)
LAB = rng.integers(0, 10, 20)


def digits(**over):
    return dict({"image": IMG}, **over)


def with_nan(a, value=np.nan, at=(3, 0, 4, 4)):
    a = a.astype(a.dtype, copy=True)
    a[at] = value
    return a


def npz_bytes(arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def zip_of(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def crc_broken() -> bytes:
    data = bytearray(npz_bytes(digits()))
    data[len(data) // 2] ^= 0xFF          # inside the image member's float data: the zip's CRC no longer holds
    return bytes(data)


def npy_bytes(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def state(**over):
    return dict(stacked_samples(8), **over)


S8 = stacked_samples(8)
# (id, model, flag, content (arrays dict or raw bytes), array the message should name or None)
MALFORMED = [
    ("text file", "digits", "calib", b"hello", None),
    ("empty file", "digits", "calib", b"", None),
    (".npy given for .npz", "digits", "calib", npy_bytes(IMG), None),
    ("truncated npz", "digits", "calib", npz_bytes(digits())[:300], None),
    ("zip without .npy members", "digits", "calib", zip_of({"notes.txt": b"hi"}), None),
    ("npz with no arrays", "digits", "calib", zip_of({}), None),
    ("member CRC broken", "digits", "calib", crc_broken(), "image"),
    ("member with a bad .npy header", "digits", "calib", zip_of({"image.npy": b"\x93NUMPY\x01\x00{bad"}), "image"),
    ("object array (pickle)", "digits", "calib", {"image": np.array([object()] * 20)}, "image"),
    ("unicode strings", "digits", "calib", {"image": IMG.astype(str)}, "image"),
    ("bytes strings", "digits", "calib", {"image": IMG.astype("S8")}, "image"),
    ("complex64", "digits", "calib", {"image": IMG.astype(np.complex64)}, "image"),
    ("complex128", "digits", "eval", {"image": IMG.astype(np.complex128)}, "image"),
    ("structured dtype", "digits", "calib", {"image": np.zeros((20, 1, 8, 8), [("a", "f4"), ("b", "i4")])}, "image"),
    ("datetime64", "digits", "calib", {"image": np.zeros((20, 1, 8, 8), "datetime64[s]")}, "image"),
    ("NaN in calib", "digits", "calib", {"image": with_nan(IMG)}, "image"),
    ("all NaN calib", "digits", "calib", {"image": np.full_like(IMG, np.nan)}, "image"),
    ("+Inf in calib", "digits", "calib", {"image": with_nan(IMG, np.inf)}, "image"),
    ("-Inf in calib", "digits", "calib", {"image": with_nan(IMG, -np.inf)}, "image"),
    ("NaN in eval data", "digits", "eval", {"image": with_nan(IMG), "labels": LAB}, "image"),
    ("float64 beyond float32", "digits", "calib", {"image": IMG.astype(np.float64) * 1e300}, "image"),
    ("int64 not exact in float32", "digits", "calib", {"image": np.full((20, 1, 8, 8), 2 ** 40 + 1)}, "image"),
    ("wrong channel count", "digits", "calib", {"image": np.zeros((20, 3, 8, 8), np.float32)}, "image"),
    ("channels-last", "digits", "calib", {"image": IMG.transpose(0, 2, 3, 1)}, "image"),
    ("0-d array", "digits", "calib", {"image": np.float32(1.0)}, "image"),
    ("flattened 1-D", "digits", "calib", {"image": IMG.reshape(-1)}, "image"),
    ("two extra axes", "digits", "calib", {"image": IMG[:, None, None]}, "image"),
    ("zero samples", "digits", "calib", {"image": IMG[:0]}, None),
    ("zero samples, eval", "digits", "eval", {"image": IMG[:0], "labels": LAB[:0]}, None),
    ("labels 2-D", "digits", "eval", digits(labels=LAB[:, None]), "labels"),
    ("labels one-hot", "digits", "eval", digits(labels=np.eye(10)[LAB]), "labels"),
    ("labels float", "digits", "eval", digits(labels=LAB.astype(np.float32)), "labels"),
    ("labels strings", "digits", "eval", digits(labels=LAB.astype(str)), "labels"),
    ("labels bool", "digits", "eval", digits(labels=LAB > 4), "labels"),
    ("labels negative", "digits", "eval", digits(labels=-LAB - 1), "labels"),
    ("labels 0-d", "digits", "eval", digits(labels=np.int64(3)), "labels"),
    ("labels count differs", "digits", "eval", digits(labels=LAB[:7]), "labels"),
    ("labels uint64 beyond int64", "digits", "eval", digits(labels=np.full(20, 2 ** 64 - 1, np.uint64)), "labels"),
    ("labels object", "digits", "eval", digits(labels=np.array([object()] * 20)), "labels"),
    ("missing input (two other arrays)", "digits", "calib", {"a": IMG, "b": IMG}, "image"),
    ("only labels", "digits", "eval", {"labels": LAB}, "image"),
    ("extra array", "digits", "calib", digits(extra=np.zeros(20)), "extra"),
    ("state model: missing sr", "state", "calib", {k: v for k, v in S8.items() if k != "sr"}, "sr"),
    ("state model: extra array", "state", "calib", state(mask=np.ones(8)), "mask"),
    ("state model: sr with fractions", "state", "calib", state(sr=np.full(8, 16000.5)), "sr"),
    ("state model: sr shape (N, 1)", "state", "calib", state(sr=np.full((8, 1), 16000)), "sr"),
    ("state model: sr as strings", "state", "calib", state(sr=np.full(8, "16k")), "sr"),
    ("state model: state as rows", "state", "calib", state(state=S8["state"][:, 0]), "state"),
    ("state model: state wrong shape", "state", "calib", state(state=np.zeros((8, 2, 16), np.float32)), "state"),
    ("state model: counts differ", "state", "calib", state(sr=np.full(5, 16000)), "sr"),
    ("state model: NaN in state", "state", "eval", state(state=with_nan(S8["state"], at=(2, 1, 0, 3))), "state"),
    ("state model: labels 2-D", "state", "eval", state(labels=S8["labels"][:, None]), "labels"),
]
VALID = [
    ("digits rows (the shipped form)", "digits", "calib", digits()),
    ("digits stacked", "digits", "calib", {"image": IMG[:, None]}),
    ("digits float64 + int32 labels", "digits", "eval", {"image": IMG.astype(np.float64), "labels": LAB.astype(np.int32)}),
    ("state model stacked", "state", "calib", state()),
    ("state model stacked, eval with labels", "state", "eval", state()),
    ("state model, image as rows", "state", "calib", state(image=S8["image"][:, 0])),
    ("state model, sr as whole-number floats", "state", "calib", state(sr=np.full(8, 16000.0))),
]


def run_case(cli_main, model, flag, content, tmp: pathlib.Path):
    from click.testing import CliRunner

    path = tmp / "samples.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with zipfile.ZipFile(path, "w") as z:   # like np.savez, but also writes object arrays as pickles
            for key, value in content.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=True)
                z.writestr(key + ".npy", buf.getvalue())
    data = ["--quantize", "int8", "--calib", path] if flag == "calib" else ["--eval-data", path]
    args = ["package", model, "--profile", "generic", *data, "-o", tmp / "x.edgepkg", "--quiet"]
    r = CliRunner().invoke(cli_main, [str(a) for a in args], catch_exceptions=True)
    lines = r.stderr.strip().splitlines()
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        return "traceback", f"{type(r.exception).__name__}: {str(r.exception).splitlines()[0] if str(r.exception) else ''}"
    if "Traceback" in r.stderr:
        return "traceback", lines[-1] if lines else ""
    if r.exit_code == 0:
        return "accepted", ""
    if r.exit_code == 2 and len(lines) == 1 and str(path) in lines[0]:
        return "refused", lines[0]
    return f"exit {r.exit_code}, {len(lines)} lines", " | ".join(lines)[:200]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", help="write every case's outcome here")
    args = parser.parse_args()
    from edgeopt.api import sample_paths
    from edgeopt.cli import main as cli_main

    rows = []
    with tempfile.TemporaryDirectory(prefix="npz-intake-") as tmp:
        models = {"digits": str(sample_paths()["model"]), "state": str(write_model(pathlib.Path(tmp) / "state.onnx"))}
        for i, (case, model, flag, content, array) in enumerate(MALFORMED + [v + (None,) for v in VALID]):
            work = pathlib.Path(tmp) / str(i)
            work.mkdir()
            outcome, message = run_case(cli_main, models[model], flag, content, work)
            valid = i >= len(MALFORMED)
            names = array is None or f"'{array}'" in message or f" {array}" in message
            rows.append({"case": case, "model": model, "flag": flag, "valid": valid, "outcome": outcome,
                         "names_array": names if outcome == "refused" else None, "message": message})
    summarise(rows)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))


def summarise(rows):
    bad = [r for r in rows if not r["valid"]]
    handled = sum(r["outcome"] == "refused" for r in bad)
    tracebacks = sum(r["outcome"] == "traceback" for r in bad)
    accepted = sum(r["outcome"] == "accepted" for r in bad)
    other = len(bad) - handled - tracebacks - accepted
    unnamed = sum(r["outcome"] == "refused" and not r["names_array"] for r in bad)
    for r in rows:
        print(f"{'valid' if r['valid'] else 'bad':5} {r['model']:6} {r['flag']:5} {r['case']:38} {r['outcome']:10} "
              f"{r['message'][:150]}")
    print(f"\nmalformed: {len(bad)} cases: handled (exit 2, one line) {handled}, traceback {tracebacks}, "
          f"wrongly accepted {accepted}, other {other}; handled but not naming the array {unnamed}")
    good = [r for r in rows if r["valid"]]
    print(f"valid: {len(good)} cases: accepted {sum(r['outcome'] == 'accepted' for r in good)}, "
          f"refused {sum(r['outcome'] == 'refused' for r in good)}, "
          f"traceback {sum(r['outcome'] == 'traceback' for r in good)}")


if __name__ == "__main__":
    main()
