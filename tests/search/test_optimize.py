"""edgeopt optimize end to end: real packaging, real measurement on `local`, on loopback sshd devices, and a
study shared by two worker processes on a real PostgreSQL."""
from __future__ import annotations

import collections
import csv
import io
import json
import os
import pathlib
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time

import optuna
import pytest

from edgeopt.search.rdb import open_storage

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "store"))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "power"))
from pgserver import pg, pg_url  # noqa: E402,F401  (fixtures)
from conftest import CALIB, EVAL, MODEL, bundle_member, ctrl_c_works, write_inventory  # noqa: E402
from powertrees import tree  # noqa: E402

pytestmark = pytest.mark.slow
DATA = ["--calib", CALIB, "--eval-data", EVAL]


def _optimize(cli, tmp_path, *args):
    return cli("optimize", MODEL, *DATA, "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "opt",
               *args, "--json")


def _float_or_int8(tmp_path) -> pathlib.Path:
    """A space file of two candidates beside the baseline: float, and INT8 by hand, on one thread."""
    space = tmp_path / "space.toml"
    space.write_text('quantize = ["none", "int8"]\nprecision = ["fp32"]\nkeep_float = [""]\nthreads = [1]\n')
    return space


def _trials(tmp_path, study, url=None):
    storage = url or f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}"
    return optuna.load_study(study_name=study, storage=str(storage)).get_trials()


def test_reachable_budget_gives_a_bundle_that_check_accepts(cli, tmp_path):
    r = _optimize(cli, tmp_path, "--budget", "latency_p90_ms=50", "--max-accuracy-drop", "0.02", "--trials", "3",
                  "--study", "ok")
    assert r.exit_code == 0, r.stderr
    outcome = r.json()
    best = pathlib.Path(outcome["best"]["bundle"])
    assert best.is_file() and outcome["best"]["feasible"]
    # every candidate's bundle, kept and said with its size (313 MB after three trials of a ResNet-50, unsaid)
    kept = outcome["trial_bundles"]
    assert kept["folder"] == str(tmp_path / "opt" / "ok" / "bundles") and kept["count"] >= 2 and kept["bytes"] == sum(
        p.stat().st_size for p in (tmp_path / "opt" / "ok" / "bundles").glob("*.edgepkg"))
    assert len(outcome["best"]["rechecked"]) in (2, 3)   # measured twice, with rivals or without (a third: RUNS_APART)
    # its figure as the study judged it, the median of those runs; its first run's beside it
    assert outcome["best"]["figures"]["latency_p90_ms"] == pytest.approx(
        statistics.median(outcome["best"]["rechecked_figures"]))
    assert outcome["best"]["first_run"]["figures"]["latency_p90_ms"] == outcome["best"]["rechecked_figures"][0]
    assert outcome["trials"][0]["baseline"] and outcome["trials"][0]["config"].startswith("quantize=none")
    # then INT8 alone with the backend's defaults, what a user tries first by hand
    textbook = outcome["trials"][1]   # at the baseline's threads: the most the device's cores allow
    # (ONNX Runtime: no precision with quantize, which it ignores; the bundle is fp32, as package defaults)
    assert textbook["textbook"] and re.fullmatch(r"quantize=int8 threads=\d+", textbook["config"])
    bench = cli("bench", best, "--results-dir", tmp_path / "check", "--json")
    assert bench.exit_code == 0, bench.stderr
    threads = int(re.search(r"threads=(\d+)", outcome["best"]["config"])[1])   # what the study measured
    assert json.loads(bundle_member(best, "manifest.json"))["runtime"]["threads"] == threads
    # and `package --recipe` of it rebuilds it at those threads, with the budgets it carries
    again = cli("package", MODEL, *DATA, "--recipe", best, "-o", tmp_path / "again.edgepkg", "--json")
    assert again.exit_code == 0 and again.json()["runtime"]["threads"] == threads, again.stderr
    assert again.json()["budgets"] == json.loads(bundle_member(best, "manifest.json"))["budgets"]
    assert bench.json()["settings"]["threads"] == threads
    # where the wall time went: every part of this run, the measurements again at the end included
    spent = outcome["seconds"]
    assert spent["trials"] > 0 and spent["at_the_end"] > 0 and spent["total"] == pytest.approx(
        spent["setup"] + spent["trials"] + spent["at_the_end"] + spent["answer"])
    from edgeopt.report.tables import optimize_lines
    assert f"; this run {spent['total']:.0f} s: setup" in optimize_lines(outcome)[0]
    for row in outcome["trials"]:   # every trial's own bundle records the threads it was measured at, too
        measured_at = re.search(r"threads=(\d+)", row["config"])
        if row.get("bundle") and measured_at:
            assert json.loads(bundle_member(row["bundle"], "manifest.json"))["runtime"]["threads"] == \
                int(measured_at[1]), row
    result = pathlib.Path(bench.json()["_path"])
    assert result.name == "ok-best@local.json"   # named after the study, not after a trial's content key
    assert cli("check", result, "--budget", "latency_p90_ms=50", "--budget", "accuracy_drop=0.02").exit_code == 0
    assert cli("check", result).exit_code == 0   # the budgets the bundle carries: the profile's and the study's
    assert set(outcome["budgets"]) == {"latency_p90_ms", "peak_rss_mb", "accuracy_drop"}
    # the study in a report: alone (its baseline's and best trial's results), in HTML and Markdown
    html = cli("report", "--study", "ok", "--store", f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}",
               "-o", tmp_path / "study.html", "--no-history")
    assert html.exit_code == 0, html.stderr   # the study's verdict: its chosen configuration meets every budget
    page = (tmp_path / "study.html").read_text()
    assert "Optimization study ok" in page and "Trials: latency_p90_ms against accuracy_drop" in page
    assert page.count("<svg") >= 2 and f"Chosen: trial {outcome['best']['trial']}" in page
    md = cli("report", "--study", "ok", "--format", "markdown", "--no-history",
             "--store", f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}")
    # every trial of the study: 3, or 4 where a screened one was measured fully again at the end (again_of)
    assert f"**Optimization study ok**: {len(outcome['trials'])} trials" in md.stdout, md.stdout
    assert "| trial | configuration | latency_p90_ms" in md.stdout
    assert "The Pareto front over latency_p90_ms, accuracy_drop, size_mb (lower is better)" in md.stdout
    # and as a spreadsheet: one row per trial (it gave the baseline's and best's result rows, no trial)
    sheet = cli("report", "--study", "ok", "--format", "csv", "--no-history",
                "--store", f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}")
    rows = list(csv.DictReader(io.StringIO(sheet.stdout)))
    assert sheet.exit_code == 0 and [int(r["trial"]) for r in rows] == [t["trial"] for t in outcome["trials"]]
    assert [r["trial"] for r in rows if r["chosen"] == "True"] == [str(outcome["best"]["trial"])]
    assert rows[0]["baseline"] == "True" and rows[1]["textbook"] == "True" and rows[0]["study"] == "ok"
    chosen = next(r for r in rows if r["chosen"] == "True")
    assert float(chosen["latency_p90_ms"]) == pytest.approx(outcome["best"]["figures"]["latency_p90_ms"])
    assert chosen["feasible"] == "True" and chosen["budgets_missed"] == "" and chosen["accuracy_drop"] != ""
    # every trial that measured its configuration ran at least once (a trial measured once had an empty cell)
    assert all(int(r["runs"]) >= 1 for r in rows if r["state"] == "complete" and r["cached"] == "False"), rows
    # and as JSON: the study's trials, choice and verdict (it held the result rows alone)
    machine = cli("report", "--study", "ok", "--format", "markdown", "--no-history", "--json",
                  "--store", f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}")
    assert machine.exit_code == 0 and machine.json()["study"]["best"]["trial"] == outcome["best"]["trial"]
    assert [t["trial"] for t in machine.json()["study"]["trials"]] == [t["trial"] for t in outcome["trials"]]
    assert "meets every budget" in machine.json()["headline"]
    missing = cli("report", "--study", "nope", "--store", f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}")
    assert missing.exit_code == 2 and "--study nope: no such study in the store (studies: ok)" in missing.stderr
    # from a host that ran none of its trials (a team's store): the results' documents are read from the store
    (tmp_path / "results").rename(tmp_path / "elsewhere")
    away = cli("report", "--study", "ok", "--format", "markdown", "--no-history",
               "--store", f"sqlite:///{tmp_path / 'elsewhere' / 'edgeopt.db'}")
    assert away.exit_code == 0 and "✅ the chosen configuration" in away.stdout, away.stdout + away.stderr
    assert "result files not on this host, read from the results store: " in away.stdout
    assert "/results/history/ok" in away.stdout   # named by the files the worker saved
    (tmp_path / "elsewhere").rename(tmp_path / "results")
    copy = tmp_path / "edited.db"   # a trial's figures edited by hand: a TypeError traceback (a fuzzing audit)
    copy.write_bytes((tmp_path / "results" / "edgeopt.db").read_bytes())
    with sqlite3.connect(copy) as c:
        c.execute("update trial_user_attributes set value_json = '5' where key = 'figures'")
    edited = cli("report", "--study", "ok", "--format", "markdown", "--no-history", "--store", f"sqlite:///{copy}")
    assert edited.exit_code == 2 and "--study ok: the store holds an attribute of it that does not read" in \
        edited.stderr, edited.stderr
    # where the time went, per trial
    assert all(t["seconds"]["package"] > 0 and t["seconds"]["measure"] > t["seconds"]["timed_loop"] > 0
               for t in outcome["trials"] if not t["cached"] and t["measurement"] == "full")


def test_a_relative_budget_is_set_from_the_baseline_measured_in_the_study(cli, tmp_path):
    """KEY=Nx: N times the baseline's own figure in this study, so the host's drift between studies cancels."""
    r = _optimize(cli, tmp_path, "--budget", "latency_p90_ms=20x", "--budget", "size_mb=0.5x", "--trials", "3",
                  "--study", "rel", "--no-screening")
    assert r.exit_code == 0, r.stderr
    outcome = r.json()
    baseline = outcome["trials"][0]
    assert baseline["baseline"] and outcome["relative_budgets"] == {"latency_p90_ms": 20.0, "size_mb": 0.5}
    assert outcome["baseline_figures"] == {k: baseline["figures"][k] for k in ("latency_p90_ms", "size_mb")}
    assert outcome["budgets"]["latency_p90_ms"] == pytest.approx(20 * baseline["figures"]["latency_p90_ms"])
    assert outcome["budgets"]["size_mb"] == pytest.approx(0.5 * baseline["figures"]["size_mb"])
    assert not baseline["feasible"] and outcome["trials"][1]["feasible"]   # float misses half its size; INT8 meets it
    trials = _trials(tmp_path, "rel")
    assert all(len(t.user_attrs["constraints"]) == len(outcome["budgets"]) for t in trials if "constraints" in t.user_attrs)
    carried = json.loads(bundle_member(outcome["best"]["bundle"], "manifest.json"))["budgets"]
    assert carried["size_mb"] == pytest.approx(outcome["budgets"]["size_mb"])   # what `check` judges the bundle by
    # the latency limit `check` applies: 20x the median of every baseline run in the study, not its first run's
    runs = [baseline["figures"]["latency_p90_ms"]] + [t.user_attrs["baseline_beside"]["latency_p90_ms"]
                                                     for t in trials if t.user_attrs.get("baseline_beside")]
    assert len(runs) == len(outcome["trials"])   # the first run, and one beside each other trial
    again = optuna.load_study(study_name="rel", storage=f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}") \
        .user_attrs["baseline_again"]   # and one beside each measurement again of the best (and its near ties)
    assert len(again) >= 1, again
    runs += [a["latency_p90_ms"] for a in again]
    median = statistics.median(runs)
    assert outcome["carried_limits"]["latency_p90_ms"] == {"limit": pytest.approx(20 * median),
                                                           "median": pytest.approx(median), "runs": len(runs)}
    assert carried["latency_p90_ms"] == pytest.approx(20 * median)
    bench = cli("bench", outcome["best"]["bundle"], "--results-dir", tmp_path / "again", "--json")
    assert bench.exit_code == 0, bench.stderr   # rewritten whole: the agent verified every member
    assert cli("check", bench.json()["_path"]).exit_code == 0
    # paired: every other trial judged against the baseline measured again right before it, on the same device
    for row in outcome["trials"][1:]:
        assert set(row["paired"]) == {"latency_p90_ms", "size_mb"} and row["seconds"]["reference"] > 0
        assert row["paired"]["size_mb"] == pytest.approx(row["figures"]["size_mb"] / baseline["figures"]["size_mb"])
        assert row["violations"]["size_mb"] == pytest.approx(row["paired"]["size_mb"] / 0.5 - 1)
        judged = statistics.median(row["rechecked"]) if row["rechecked"] else row["paired"]["latency_p90_ms"]
        assert row["violations"]["latency_p90_ms"] == pytest.approx(judged / 20 - 1)   # a re-measured one: by its runs
    # ranked by the ratio to the baseline measured beside each trial (re-measured ones by the median of their
    # ratios), not by figures taken minutes apart
    feasible = [row for row in outcome["trials"] if row["feasible"]]
    def rank(row):
        return statistics.median(row["rechecked"]) if row["rechecked"] else row["paired"]["latency_p90_ms"]
    assert outcome["best"]["trial"] == min(feasible, key=rank)["trial"]
    assert all(row["first_run"]["paired"]["latency_p90_ms"] == row["rechecked"][0] and row["paired"]["latency_p90_ms"]
               == pytest.approx(statistics.median(row["rechecked"])) for row in feasible if len(row["rechecked"]) > 1)
    kept = [p.name.split("@")[0] for p in (tmp_path / "results" / "history").glob("*.json")]
    # the best at least, measured again beside the baseline: two results more a run (three runs where its first
    # two were far apart: runner.RUNS_APART)
    again = sum(len(row["rechecked"]) - 1 for row in {row["config"]: row for row in outcome["trials"]
                                                      if row["rechecked"] and not row["baseline"]}.values())
    assert again >= 1
    # each result filed under its trial's name; the baseline once more where a run beside a trial read far off
    # its first (trial.Reference.measure)
    baseline_runs = kept.count("rel-t0")
    assert baseline_runs >= len(outcome["trials"]) + again
    assert len(kept) - baseline_runs == len(outcome["trials"]) - 1 + again
    shown = cli("report", "--study", "rel", "--format", "markdown", "--no-history",
                "--store", f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}")
    assert shown.exit_code == 0, shown.stderr
    # the baseline judged by the relative budget it sets, which its own bundle cannot carry
    assert re.search(r"\| rel-t0 \| local \|.*❌ FAIL: `size_mb`", shown.stdout), shown.stdout
    assert f"the chosen bundle carries latency\\_p90\\_ms ≤ {20 * median:.4g} ms, 20x the median of the baseline's " \
           f"{len(runs)} runs" in shown.stdout, shown.stdout
    # the baseline trial's own full run (accuracy included), not the latest file a paired run rewrote since
    first = json.loads(pathlib.Path(baseline["results"][0]).read_text())
    assert first["accuracy"].get("top1") is not None and "/history/" in baseline["results"][0]
    table = cli("optimize", MODEL, *DATA, "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "opt",
                "--budget", "latency_p90_ms=20x", "--budget", "size_mb=0.5x", "--trials", "3", "--study", "rel",
                "--resume")   # the finished study shown again, as a person reads it
    assert table.exit_code == 0, table.stderr
    text = " ".join(table.stdout.split())
    assert "measured again right before each candidate" in text
    assert f"({outcome['trials'][1]['paired']['size_mb']:.2f}x)" in text
    resumed = _optimize(cli, tmp_path, "--budget", "latency_p90_ms=10x", "--budget", "size_mb=0.5x", "--trials", "3",
                        "--study", "rel", "--resume")
    assert resumed.exit_code == 2 and ("was started with another --budget KEY=Nx (latency_p90_ms=20x, size_mb=0.5x; "
                                       "now latency_p90_ms=10x, size_mb=0.5x)") in resumed.stderr, resumed.stderr


def test_a_paired_study_screens_each_candidate_beside_the_baseline(cli, tmp_path):
    """With screening on, each candidate's short run is paired with a short run of the baseline, and what
    earns a full measurement is judged by that ratio (the rule itself, with chosen figures: test_screening.py)."""
    r = _optimize(cli, tmp_path, "--budget", "latency_p90_ms=20x", "--budget", "size_mb=0.5x", "--trials", "4",
                  "--study", "relscreen", "--sampler", "random")
    assert r.exit_code == 0, r.stderr
    rows = [row for row in r.json()["trials"] if not row["baseline"] and not row["cached"] and not row["twin_of"]]
    textbook, rows = rows[0], rows[1:]   # INT8 by hand: measured fully, never screened
    assert textbook["textbook"] and textbook["measurement"] == "full" and "screen" not in textbook["seconds"]
    assert rows and all("screen" in row["seconds"] and row["seconds"]["reference"] > 0 for row in rows)
    for row in [textbook] + rows:   # a screened-only trial keeps its screening's ratios; size is judged by them too
        assert set(row["paired"]) == {"latency_p90_ms", "size_mb"}
        assert row["violations"]["size_mb"] == pytest.approx(row["paired"]["size_mb"] / 0.5 - 1)


def test_baseline_once_judges_every_candidate_against_the_first_baseline_run(cli, tmp_path):
    r = _optimize(cli, tmp_path, "--budget", "size_mb=0.5x", "--trials", "2", "--study", "once", "--no-screening",
                  "--baseline-once")
    assert r.exit_code == 0, r.stderr
    outcome = r.json()
    assert outcome["paired_baseline"] is False and outcome["trials"][1]["paired"] is None
    assert "reference" not in outcome["trials"][1]["seconds"]
    assert outcome["trials"][1]["violations"]["size_mb"] == pytest.approx(
        outcome["trials"][1]["figures"]["size_mb"] / outcome["budgets"]["size_mb"] - 1)
    paired = _optimize(cli, tmp_path, "--budget", "size_mb=0.5x", "--trials", "2", "--study", "once", "--resume")
    assert paired.exit_code == 2 and "another --baseline-once (False; now True)" in paired.stderr   # how it judges
    alone = _optimize(cli, tmp_path, "--budget", "size_mb=1", "--baseline-once", "--study", "absolute")
    assert alone.exit_code == 2 and "--baseline-once applies to relative budgets" in alone.stderr


@pytest.mark.parametrize("budget, fragment", [
    ("accuracy_drop=0.5x", "a relative budget (…x) applies to latency_p50_ms"),
    ("latency_p90_ms=0x", "the ratio must be a finite number > 0"),
    ("latency_p90_ms=fastx", "is not a number followed by x"),
])
def test_bad_relative_budgets_exit_2(cli, tmp_path, budget, fragment):
    r = _optimize(cli, tmp_path, "--budget", budget)
    assert r.exit_code == 2 and fragment in r.stderr, r.stderr


@pytest.mark.parametrize("args, fragment", [
    # the relative limit silently dropped the absolute one; the shorthand replaced a stricter budget
    (["--budget", "latency_p50_ms=1", "--budget", "latency_p50_ms=0.5x"], "--budget 'latency_p50_ms' given twice ('1' and '0.5x')"),
    (["--budget", "accuracy_drop=0.01", "--max-accuracy-drop", "0.05"],
     "--max-accuracy-drop 0.05 and --budget accuracy_drop=0.01: give one"),
    (["--device", "local", "--device", "local"], "--device local given twice"),   # measured twice per trial
])
def test_a_budget_or_device_given_twice_exits_2(cli, tmp_path, args, fragment):
    r = _optimize(cli, tmp_path, *args)
    assert r.exit_code == 2 and fragment in r.stderr, r.stderr
    assert not (tmp_path / "opt").exists()


def test_unreachable_budget_exits_1_with_the_closest_miss(cli, tmp_path):
    r = _optimize(cli, tmp_path, "--budget", "latency_p90_ms=0.000001", "--budget", "size_mb=0.0001", "--trials",
                  "4", "--study", "miss")
    assert r.exit_code == 1, r.stderr
    outcome = r.json()
    assert outcome["best"] is None
    miss = outcome["closest"]["per_budget"]["latency_p90_ms"]
    assert miss["measured"] > miss["limit"] and miss["excess"] > 0
    assert miss["measured"] == min(t["figures"]["latency_p90_ms"] for t in outcome["trials"] if t["figures"])
    assert list(miss["others_missed"]) == ["size_mb"] and miss["others_missed"]["size_mb"] > 0   # the trade-off
    # the baseline or INT8 alone, whichever read faster: a screened-only trial never measured its accuracy, which
    # is said, not counted as missed by 100 %
    assert miss["others_unmeasured"] == ([] if miss["measurement"] == "full" else ["accuracy_drop"])
    # ruled out by a short screening run that leaves the eval data to a full measurement it never earned; INT8
    # by hand, what the answer is measured against, is measured fully whatever it reads
    textbook = next(t for t in outcome["trials"] if t["textbook"])
    assert textbook["measurement"] == "full" and "screen" not in textbook["seconds"]
    screened = [t for t in outcome["trials"] if not (t["baseline"] or t["textbook"] or t["cached"] or t["twin_of"])]
    assert screened and all(t["measurement"] == "screening" and "accuracy_drop" not in t["figures"]
                            and "screen" in t["seconds"] and "measure" not in t["seconds"] for t in screened)
    table = cli("optimize", MODEL, *DATA, "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "opt",
                "--budget", "latency_p90_ms=0.000001", "--budget", "size_mb=0.0001", "--trials", "4", "--study", "miss",
                "--resume")
    assert table.exit_code == 1 and "closest latency_p90_ms: trial" in table.stdout
    quiet = cli("optimize", MODEL, *DATA, "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "opt",
                "--budget", "latency_p90_ms=0.000001", "--budget", "size_mb=0.0001", "--trials", "4", "--study", "miss",
                "--resume", "-q")   # exit 1 said nothing under --quiet: why, on stderr, as `check -q` says it
    assert quiet.exit_code == 1 and quiet.stdout == "" and "edgeopt: study miss: no trial met every budget\n" in \
        quiet.stderr and "edgeopt: closest latency_p90_ms: trial" in quiet.stderr
    sheet = list(csv.DictReader(io.StringIO(cli("report", "--study", "miss", "--format", "csv", "--no-history",
                                                "--store", f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}").stdout)))
    assert [r["trial"] for r in sheet if r["chosen"] == "True"] == [] and all(
        set(r["budgets_missed"].split(";")) == {"latency_p90_ms", "size_mb"} for r in sheet if r["state"] == "complete")
    assert all(r["accuracy_drop"] == "" for r in sheet if r["measurement"] == "screening")   # not measured: no miss
    text = " ".join(table.stdout.split())
    assert "but missed size_mb (" in text and "accuracy_drop by 100%" not in text   # 0.09 against 0.0001: no "94500%"


def test_the_studys_end_removes_the_bundles_nothing_names_and_keep_bundles_keeps_them(cli, tmp_path):
    """Every candidate's bundle stayed in OUTPUT_DIR/STUDY/bundles (a 40-trial ResNet-50 study: some 4 GB) and
    the user was told to remove the folder by hand. Those the answer names or measures again stay; a --resume
    that needs another rebuilds it."""
    budgets = ("--budget", "latency_p90_ms=0.000001", "--budget", "size_mb=0.0001", "--no-screening")
    r = _optimize(cli, tmp_path, *budgets, "--trials", "6", "--study", "lean", "--sampler", "random")
    assert r.exit_code == 1, r.stderr
    outcome = r.json()
    folder = tmp_path / "opt" / "lean" / "bundles"
    kept = outcome["trial_bundles"]
    assert kept["removed"] >= 1 and kept["removed_bytes"] > 0, kept
    named = {outcome["closest"]["overall"]["trial"], *outcome["pareto"],
             *(c["trial"] for c in outcome["closest"]["per_budget"].values()),
             *(t["trial"] for t in outcome["trials"] if t["baseline"] or t["textbook"])}
    trials = {t.number: t for t in _trials(tmp_path, "lean")}
    left = {p.name for p in folder.glob("*.edgepkg")}
    assert left == {f"{trials[n].user_attrs['key'][:16]}.edgepkg" for n in named}
    assert kept["count"] == len(left)
    gone = [row for row in outcome["trials"] if row["state"] == "complete" and row["trial"] not in named
            and not row["cached"]]
    assert gone and all(row["bundle"] is None for row in gone)
    assert all(pathlib.Path(row["bundle"]).is_file() for row in outcome["trials"] if row["trial"] in named)
    table = cli("optimize", MODEL, *DATA, "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "opt",
                *budgets, "--trials", "7", "--study", "lean", "--resume")
    assert table.exit_code == 1, table.stderr
    assert re.search(r"\d+ others? removed, [\d.]+ MiB, which --resume rebuilds", " ".join(table.stdout.split()))
    every = _optimize(cli, tmp_path, *budgets, "--trials", "6", "--study", "every", "--sampler", "random",
                      "--keep-bundles")
    assert every.exit_code == 1, every.stderr
    built = {t.user_attrs["key"][:16] for t in _trials(tmp_path, "every") if t.user_attrs.get("bundle")}
    assert every.json()["trial_bundles"]["kept_all"] == "--keep-bundles"
    assert {p.stem for p in (tmp_path / "opt" / "every" / "bundles").glob("*.edgepkg")} == built


def test_identical_candidate_is_answered_from_the_study(cli, tmp_path):
    space = _float_or_int8(tmp_path)
    r = _optimize(cli, tmp_path, "--space", space, "--sampler", "random", "--trials", "6", "--study", "dup",
                  "--budget", "latency_p90_ms=50")
    assert r.exit_code == 0, r.stderr
    outcome = r.json()
    rows = outcome["trials"]
    assert sum(not row["cached"] for row in rows) == 2      # two distinct candidates, each built and measured once
    assert len(list((tmp_path / "opt" / "dup" / "bundles").glob("*.edgepkg"))) == 2
    for row in rows:
        first = next(r for r in rows if r["config"] == row["config"])
        assert row["figures"] == first["figures"]
    # cached answers do not count towards --trials; a sampler that proposes only measured candidates stops
    assert outcome["exhausted"].startswith("the last 10 candidates") and all(r["cached"] for r in rows[-10:])
    # a new study of that name in another store would overwrite this one's chosen bundle and trials without a word
    best = tmp_path / "opt" / "dup-best.edgepkg"
    before = best.read_bytes()
    other = _optimize(cli, tmp_path, "--space", space, "--sampler", "random", "--trials", "2", "--study", "dup",
                      "--budget", "latency_p90_ms=50", "--store", f"sqlite:///{tmp_path / 'other.db'}")
    assert other.exit_code == 2 and f"--study dup: {best} is another study's chosen bundle" in other.stderr, \
        other.stderr
    assert best.read_bytes() == before


def test_a_bundle_rebuilt_on_another_host_is_checked_against_the_one_measured(cli, tmp_path):
    """A worker that did not build the best trial's bundle rebuilds it from its configuration; the rebuilt files
    are compared with those measured, and a difference is said (training need not give the same bits on
    another CPU). Simulated here by a fresh output folder, then by a changed record of the measured files."""
    space = tmp_path / "space.toml"
    space.write_text('quantize = ["int8"]\nprecision = ["fp32"]\nkeep_float = [""]\nthreads = [1]\n')
    common = ["--space", space, "--sampler", "random", "--trials", "2", "--study", "far", "--budget",
              "latency_p90_ms=50"]
    assert _optimize(cli, tmp_path, *common).exit_code == 0
    same = cli("optimize", MODEL, *DATA, "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "other",
               *common, "--resume", "--json")
    assert same.exit_code == 0, same.stderr
    assert "rebuilt_differs" not in same.json() and (tmp_path / "other" / "far-best.edgepkg").is_file()
    best = same.json()["best"]["trial"]
    with sqlite3.connect(tmp_path / "results" / "edgeopt.db") as db:
        changed = db.execute("UPDATE trial_user_attributes SET value_json = ? WHERE key = 'artifact' AND trial_id = "
                             "(SELECT trial_id FROM trials WHERE number = ?)", (json.dumps("0" * 64), best)).rowcount
    assert changed == 1
    differs = cli("optimize", MODEL, *DATA, "--results-dir", tmp_path / "results", "--output-dir",
                  tmp_path / "third", *common, "--resume")
    assert differs.exit_code == 0, differs.stderr
    assert f"trial {best}'s bundle was rebuilt on this host" in " ".join(differs.stdout.split())
    again = cli("optimize", MODEL, *DATA, "--results-dir", tmp_path / "results", "--output-dir",
                tmp_path / "fourth", *common, "--resume", "--json")
    assert again.json()["rebuilt_differs"] == [best]
    no_eval = cli("optimize", MODEL, "--calib", CALIB, "--results-dir", tmp_path / "results", *common, "--resume")
    assert no_eval.exit_code == 2 and "was started with another --eval-data (a file of sha256 " in no_eval.stderr
    assert "; now not given): give the flags it was started with" in no_eval.stderr   # the flag, not a dict


def test_resuming_with_another_space_file_is_bad_input(cli, tmp_path):
    """Optuna refuses a categorical parameter whose choices changed: a traceback and a trial left running, where
    a changed budget gets one line and exit 2."""
    common = ["--sampler", "random", "--study", "spaced", "--budget", "latency_p90_ms=50"]
    assert _optimize(cli, tmp_path, "--space", _float_or_int8(tmp_path), "--trials", "2", *common).exit_code == 0
    other = tmp_path / "other.toml"
    other.write_text('quantize = ["none", "dynamic"]\nprecision = ["fp32"]\nkeep_float = [""]\nthreads = [1]\n')
    r = _optimize(cli, tmp_path, "--space", other, "--trials", "4", *common, "--resume")
    assert r.exit_code == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "edgeopt: error: --resume: study 'spaced' was started with another search space (quantize: none, int8; now "
        "none, dynamic): give the --space file it was started with (the devices' backends and cores shape the space "
        "too), or start a new --study"]
    assert not [t for t in _trials(tmp_path, "spaced") if t.state == optuna.trial.TrialState.RUNNING]
    with sqlite3.connect(tmp_path / "results" / "edgeopt.db") as db:   # a study from before the space was recorded
        assert db.execute("DELETE FROM study_user_attributes WHERE key = 'space'").rowcount == 1
    r = _optimize(cli, tmp_path, "--space", other, "--trials", "4", *common, "--resume")
    assert r.exit_code == 2 and "was started with another search space (CategoricalDistribution" in r.stderr, r.stderr
    assert not [t for t in _trials(tmp_path, "spaced") if t.state == optuna.trial.TrialState.RUNNING]


def test_resuming_with_another_pareto_or_seed_is_bad_input(cli, tmp_path):
    """Whether a study is a Pareto front, and its seed, are fixed when it begins: a --resume that differs is refused
    naming the flag, as a changed budget is."""
    common = ["--trials", "1", "--budget", "latency_p90_ms=50", "--no-screening"]
    assert _optimize(cli, tmp_path, *common, "--study", "one").exit_code == 0
    assert _optimize(cli, tmp_path, *common, "--study", "front", "--pareto").exit_code == 0
    for study, args, changed in [("one", ["--pareto"], "another --pareto (not given; now given)"),
                                 ("front", [], "another --pareto (given; now not given)"),
                                 ("one", ["--seed", "7"], "another --seed (0; now 7)")]:
        r = _optimize(cli, tmp_path, *common, "--study", study, "--resume", *args)
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"--resume: study {study!r} was started with {changed}: give the flags" in r.stderr, r.stderr


def _ctrl_c_at(args: list, trial: int) -> tuple:
    """(the process, the rest of its stderr): `edgeopt optimize` sent SIGINT once its log starts that trial."""
    with ctrl_c_works():
        p = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in p.stderr:
        if line.startswith(f"· trial {trial} ("):
            p.send_signal(signal.SIGINT)
            break
    return p, p.stderr.read()


def test_interrupted_study_resumes_without_repeating_finished_trials(tmp_path):
    args = [sys.executable, "-m", "edgeopt", "optimize", str(MODEL), *map(str, DATA), "--results-dir",
            str(tmp_path / "results"), "--output-dir", str(tmp_path / "opt"), "--study", "cut", "--trials", "4",
            "--budget", "latency_p90_ms=50", "--sampler", "random"]
    p, rest = _ctrl_c_at(args, 2)   # while trial 2, the sampler's first, runs: the baseline and INT8 are finished
    assert p.wait(timeout=120) == 130
    assert "the finished trials of study 'cut' are kept; the same command with --resume continues it" in rest
    before = {t.number: t for t in _trials(tmp_path, "cut")}
    finished = {n: t.user_attrs["figures"] for n, t in before.items() if t.state == optuna.trial.TrialState.COMPLETE}
    assert 0 in finished and 1 in finished
    # stopped by Ctrl-C, not by its configuration: not counted, and that configuration queued for the next run
    assert before[2].state == optuna.trial.TrialState.FAIL and before[2].user_attrs["unfinished"]
    assert "interrupted (Ctrl-C or SIGTERM): not counted" in before[2].user_attrs["error"]
    assert before[3].state == optuna.trial.TrialState.WAITING and before[3].user_attrs["retry_of"] == 2
    r = subprocess.run(args + ["--resume", "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    after = _trials(tmp_path, "cut")
    assert {t.number: t.user_attrs.get("figures") for t in after if t.number in finished} == finished
    assert after[3].state == optuna.trial.TrialState.COMPLETE and after[3].params == before[2].params
    # a screened trial measured fully again at the study's end (again_of) is beyond --trials, as the answer says:
    # whether one is depends on noise (the fresh-clone run counted it as a fifth trial)
    measured_again = {t.number: t.user_attrs["again_of"] for t in after if t.user_attrs.get("again_of") is not None}
    assert all(n > 3 and of < n for n, of in measured_again.items())
    counted = [t for t in after if t.state.is_finished() and not t.user_attrs.get("cached")
               and not t.user_attrs.get("unfinished") and t.number not in measured_again]
    assert len(counted) == 4
    assert len(json.loads(r.stdout)["trials"]) == len(after)
    assert not any(n.startswith("--resume: the study already has") for n in json.loads(r.stdout)["notes"])
    again = subprocess.run(args + ["--resume", "--json"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "--resume: the study already has 4 trials (--trials 4 counts every trial" in \
        " ".join(json.loads(again.stdout)["notes"]), again.stderr   # the table came back without a word why


def test_a_baseline_interrupted_by_ctrl_c_is_measured_on_resume(tmp_path):
    """Ctrl-C during the baseline: --resume measures it first. Failed, it was never measured again, and every
    candidate failed against a relative budget without a limit."""
    args = [sys.executable, "-m", "edgeopt", "optimize", str(MODEL), *map(str, DATA), "--results-dir",
            str(tmp_path / "results"), "--output-dir", str(tmp_path / "opt"), "--study", "cut0", "--trials", "3",
            "--budget", "size_mb=0.5x", "--sampler", "random", "--no-screening"]
    p, rest = _ctrl_c_at(args, 0)
    assert p.wait(timeout=120) == 130, rest
    assert not [t for t in _trials(tmp_path, "cut0") if t.state != optuna.trial.TrialState.WAITING]
    r = subprocess.run(args + ["--resume", "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["trials"]
    assert rows[0]["baseline"] and rows[0]["state"] == "complete" and rows[0]["trial"] == 0
    assert rows[1]["textbook"] and rows[1]["feasible"]   # INT8 by hand, judged against the baseline's size
    assert len([row for row in rows if not row["cached"]]) == 3 and not any(row["error"] for row in rows)


def _stopped_at_the_baseline(tmp_path, name: str, budget: str) -> tuple:
    """(the optimize command, its study) after a Ctrl-C while the baseline ran: every trial still waiting."""
    args = [sys.executable, "-m", "edgeopt", "optimize", str(MODEL), *map(str, DATA), "--results-dir",
            str(tmp_path / "results"), "--output-dir", str(tmp_path / "opt"), "--study", name, "--trials", "3",
            "--budget", budget, "--sampler", "random", "--no-screening"]
    p, rest = _ctrl_c_at(args, 0)
    assert p.wait(timeout=120) == 130, rest
    return args, optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}")


def test_int8_by_hand_queued_by_an_older_study_runs_at_todays_defaults(tmp_path):
    """An upgrade walkthrough: a study an earlier edgeopt began (no space recorded, no threads dimension) resumed
    with INT8 by hand still queued: the sampler drew its threads, so "the backend's defaults" ran at 1 thread
    where a new study's run at the device's cores."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: no threads dimension to fill")
    args, study = _stopped_at_the_baseline(tmp_path, "old", "latency_p90_ms=50")
    study.set_user_attr("space", None)   # as a study from before the space was recorded
    textbook = next(t for t in study.get_trials() if t.user_attrs.get("textbook"))
    fixed = textbook.system_attrs["fixed_params"]
    assert "threads" in fixed and textbook.state == optuna.trial.TrialState.WAITING
    study._storage.set_trial_system_attr(textbook._trial_id, "fixed_params",
                                         {k: v for k, v in fixed.items() if k != "threads"})
    r = subprocess.run(args + ["--resume", "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    row = next(row for row in json.loads(r.stdout)["trials"] if row["textbook"])
    assert row["config"] == f"quantize=int8 threads={fixed['threads']}", row


def test_a_study_whose_baseline_failed_for_good_is_refused_on_resume(tmp_path):
    """Versions before the baseline went back to the queue failed it for good. With a relative budget such a study
    has no limit to judge against: --resume is refused naming the reason, where every trial failed and it ended with
    exit 1."""
    args, study = _stopped_at_the_baseline(tmp_path, "lost", "size_mb=0.5x")
    baseline = study.get_trials()[0]
    assert baseline.user_attrs["baseline"] and baseline.state == optuna.trial.TrialState.WAITING
    optuna.trial.Trial(study, baseline._trial_id).set_user_attr("error", "device: gone")   # as older versions left it
    study._storage.set_trial_state_values(baseline._trial_id, state=optuna.trial.TrialState.FAIL)
    r = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "edgeopt: error: --resume: study 'lost' lost its baseline in an earlier run (device: gone), and its relative "
        "budgets have no limit without it: start a new --study"), r.stderr


def test_a_baseline_whose_worker_died_goes_back_to_the_queue(tmp_path):
    """A killed worker's baseline (or INT8 by hand) is measured again on --resume, first; its other trials fail
    with the reason, are not counted towards --trials, and their configurations are queued again."""
    import socket

    from edgeopt.search import rdb

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    s = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'o.db'}")
    for attrs in ({"baseline": True}, {"textbook": "INT8 alone"}, {}):
        s.enqueue_trial({}, user_attrs=dict(attrs, worker=f"{socket.gethostname()}:{dead.pid}"))
        s.ask()
    rdb._fail_orphans(s)
    assert [t.state.name for t in s.get_trials()] == ["WAITING", "WAITING", "FAIL", "WAITING"]
    orphan = s.get_trials()[2]
    assert orphan.user_attrs["unfinished"] and orphan.user_attrs["error"] == (
        f"its worker (process {dead.pid} on {socket.gethostname()}) stopped before it ended: not counted; measured "
        "again by the next run")
    assert s.get_trials()[3].user_attrs["retry_of"] == 2   # its configuration, after the two enqueued before it
    assert s.ask().user_attrs.get("baseline")


def test_two_workers_share_one_study_on_postgresql(tmp_path, pg_url):
    url = pg_url.render_as_string(hide_password=False)
    common = [sys.executable, "-m", "edgeopt", "optimize", str(MODEL), *map(str, DATA), "--store", url,
              "--study", "team", "--trials", "6", "--budget", "latency_p90_ms=50", "--sampler", "random", "--json"]
    env = dict(os.environ, HOME=str(tmp_path))
    first = subprocess.Popen(common + ["--results-dir", str(tmp_path / "a"), "--output-dir", str(tmp_path / "oa")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:              # the second worker joins once the first has made the study
        try:
            if optuna.load_study(study_name="team", storage=open_storage(url)).get_trials():
                break
        except KeyError:
            pass
        time.sleep(0.5)
    second = subprocess.run(common + ["--resume", "--results-dir", str(tmp_path / "b"), "--output-dir",
                                      str(tmp_path / "ob")], capture_output=True, text=True, env=env, timeout=600)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 0, second.stderr
    trials = optuna.load_study(study_name="team", storage=url).get_trials()
    numbers = [t.number for t in trials]
    # cached answers do not count, nor a configuration measured fully again at the end (a loaded machine's runs
    # can demote the best, and bring back a candidate ruled out against it)
    counted = [t for t in trials if not t.user_attrs.get("cached") and t.user_attrs.get("again_of") is None]
    assert sorted(numbers) == list(range(len(trials))) and 6 <= len(counted) <= 7
    keys = [t.user_attrs["key"] for t in counted]   # a configuration one worker was running, the other waited for
    assert len(keys) == len(set(keys)), [(t.number, t.user_attrs.get("worker"), t.user_attrs["key"][:8]) for t in counted]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    measured = list((tmp_path / "a").rglob("*.json")) + list((tmp_path / "b").rglob("*.json"))
    assert measured, "both workers measure on their own device"
    seen = [len(json.loads(text)["trials"]) for text in (out, second.stdout)]
    assert max(seen) == len(trials)   # the worker that finished last saw every trial; the other, those done by then


def test_a_store_lost_mid_study_is_exit_3_in_one_line_and_resume_continues(tmp_path, pg, pg_url):
    """The database going away during a study (a team's PostgreSQL stopped) ended in three chained tracebacks,
    the last blaming "invalid data in the commit", and exit 1, which says no configuration met the budgets (a user
    walkthrough). Here its connections are cut and new ones refused while the study runs."""
    url = pg_url.render_as_string(hide_password=False)
    args = [sys.executable, "-m", "edgeopt", "optimize", str(MODEL), *map(str, DATA), "--store", url, "--study", "cut",
            "--trials", "6", "--budget", "latency_p90_ms=50", "--sampler", "random", "--results-dir",
            str(tmp_path / "results"), "--output-dir", str(tmp_path / "opt")]
    env = dict(os.environ, HOME=str(tmp_path))
    run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    while time.time() < deadline:   # once the baseline is in the store
        try:
            if any(t.state.is_finished() for t in optuna.load_study(study_name="cut", storage=url).get_trials()):
                break
        except KeyError:
            pass
        time.sleep(0.3)
    admin, database = pg.admin(), pg_url.database
    with admin.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")
    try:
        _, err = run.communicate(timeout=300)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        admin.dispose()
    assert run.returncode == 3, err
    line = err.strip().splitlines()[-1]   # after the progress lines
    assert "Traceback" not in err and line.startswith(
        f"edgeopt: error: results store postgresql+psycopg://{pg_url.username}:***@"), err
    assert "study 'cut' stopped, its finished trials in the store: once the store works again (a server back, a " \
        "lock released, room on its disk), the same command with --resume continues it" in line
    assert "s3cr" not in err   # the password, masked
    again = subprocess.run(args + ["--resume", "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    rows = json.loads(again.stdout)["trials"]
    assert rows[0]["baseline"] and rows[0]["state"] == "complete"


OPEN_STORAGE = "import sys; from edgeopt.search.rdb import open_storage; open_storage(sys.argv[1])"


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_workers_started_at_once_on_a_new_database_make_the_study_tables_once(request, tmp_path, backend):
    """Optuna makes its tables on first use; without the store's lock two workers racing on a new database
    failed on a duplicate alembic_version (seen in CI)."""
    url = (request.getfixturevalue("pg_url").render_as_string(hide_password=False) if backend == "postgresql"
           else f"sqlite:///{tmp_path / 'edgeopt.db'}")
    workers = [subprocess.Popen([sys.executable, "-c", OPEN_STORAGE, url], stderr=subprocess.PIPE, text=True)
               for _ in range(6)]
    errors = [w.communicate(timeout=120)[1] for w in workers]
    assert [w.returncode for w in workers] == [0] * 6, "\n".join(errors)
    assert optuna.get_all_study_summaries(open_storage(url)) == []


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_two_workers_adding_runs_at_once_lose_none(request, tmp_path, backend):
    """A study's runs measured again are one attribute per study, read then written: two workers appending at
    one moment (both measure the best again at their end) kept only the last writer's. Under rdb.runs_locked
    every run of both is kept."""
    import threading

    from edgeopt.search import rdb, study as studies
    from edgeopt.search.runner import Runner

    url = (request.getfixturevalue("pg_url").render_as_string(hide_password=False) if backend == "postgresql"
           else f"sqlite:///{tmp_path / 'edgeopt.db'}")
    storage = rdb.open_storage(url)
    name = f"runs-{tmp_path.name}"
    made = optuna.create_study(study_name=name, storage=storage)
    made.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={"key": "k", "artifact": "X"}))
    job = studies.Job(model="m.onnx", profile="generic", devices=["local"], budgets={}, output_dir=tmp_path)
    each, start = 15, threading.Barrier(2)

    def worker(value):
        study = optuna.load_study(study_name=name, storage=storage)
        runner = Runner(job, study, [], {}, True, False, studies.SILENT, storage)
        t = study.get_trials()[0]
        values, figures = [], []
        start.wait()
        for _ in range(each):
            values, figures = runner._add_run(t, values, figures, (value, value * 10))

    threads = [threading.Thread(target=worker, args=(v,)) for v in (0.5, 0.7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    runs = made.user_attrs["rechecked"]["k"]
    assert sorted(runs) == [0.5] * each + [0.7] * each, runs
    assert made.user_attrs["rechecked_figures"]["k"] == [v * 10 for v in runs]


def test_trials_measured_on_ssh_devices_worst_device_decides(cli, lab, tmp_path):
    devices = [lab.devices.get(f"opt-{i}") or lab.add(f"opt-{i}", 40 + i) for i in range(2)]
    inv = write_inventory(tmp_path / "inv.yaml", lab, devices, groups={"pis": [d.name for d in devices]})
    r = _optimize(cli, tmp_path, "--inventory", inv, "--group", "pis", "--known-hosts", lab.known_hosts,
                  "--budget", "latency_p90_ms=50", "--trials", "2", "--study", "ssh")
    assert r.exit_code == 0, r.stderr
    outcome = r.json()
    for row in outcome["trials"]:
        docs = [json.loads(pathlib.Path(p).read_text()) for p in _result_paths(tmp_path, row)]
        assert {d["device"]["name"] for d in docs} >= {"opt-0", "opt-1"}
        assert sorted(row["devices"]) == ["opt-0", "opt-1"]
        own = [json.loads(pathlib.Path(p).read_text()) for p in row["results"]]   # the trial's run on each device
        worst = max(own, key=lambda d: d["latency"]["p90_ms"])
        if row["worst_devices"].get("latency_p90_ms"):   # the two read alike: nothing to name
            assert row["worst_devices"]["latency_p90_ms"] == worst["device"]["name"], (row, own)
    said = [n for n in outcome["notes"] if n.startswith("the trials' figures are each one's worst device's")]
    assert len(said) == 1 and "latency_p90_ms on opt-" in said[0], outcome["notes"]


def test_ctrl_c_of_a_trial_on_two_devices_lets_them_go_at_once(lab, tmp_path):
    """Ctrl-C while a trial is measured on two devices, one of them stalled (its sshd stopped after the study's
    probe, so that its connection waits out --connect-timeout): the study exits 130 within seconds, without
    waiting for that device."""
    devices = [lab.devices.get(f"opt-{i}") or lab.add(f"opt-{i}", 40 + i) for i in range(2)]
    inv = write_inventory(tmp_path / "inv.yaml", lab, devices, groups={"pis": [d.name for d in devices]})
    args = [sys.executable, "-m", "edgeopt", "optimize", str(MODEL), *map(str, DATA), "--results-dir",
            str(tmp_path / "results"), "--output-dir", str(tmp_path / "opt"), "--study", "stall", "--trials", "3",
            "--budget", "latency_p90_ms=50", "--inventory", str(inv), "--group", "pis", "--known-hosts",
            str(lab.known_hosts), "--connect-timeout", "90", "--dead-after", "90"]
    import psutil
    with ctrl_c_works():
        p = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    sshd = psutil.Process(devices[1].proc.pid)
    stopped = []
    try:
        for line in p.stderr:
            if line.startswith("· trial 0 ("):   # the devices probed: the second one stalls from now on
                stopped = [sshd, *sshd.children(recursive=True)]   # a connection made already stalls too
                for proc in stopped:
                    proc.suspend()   # the kernel still accepts its connections
                break
        deadline = time.monotonic() + 120
        while not list((tmp_path / "results").rglob("*@opt-0.json")):   # the other device has measured it
            assert time.monotonic() < deadline and p.poll() is None, p.communicate()
            time.sleep(0.2)
        time.sleep(1.0)
        started = time.monotonic()
        p.send_signal(signal.SIGINT)
        rest = p.communicate(timeout=120)[1]
        assert p.returncode == 130, rest
        assert time.monotonic() - started < 15, rest
    finally:
        for proc in stopped:
            proc.resume()
        p.kill()


def _result_paths(tmp_path, row):
    return [p for p in (tmp_path / "results").rglob("*.json")]


@pytest.mark.parametrize("args, fragment", [
    (["--objective", "min_top1"], "--objective min_top1: expected a figure to minimise"),
    (["--budget", "latency_p90_ms=-1"], "latency_p90_ms"),
    (["--space", "SPACE"], "nope: not a dimension of this search"),
    (["--device", "no such host!"], "is not in the inventory and is not an SSH address"),
    (["--group", "lab"], "--group lab names an inventory group: give the inventory with --inventory FILE"),
    (["--study", "team/a b"], "--study 'team/a b': a study's name names its directory and bundles"),
    (["--timeout", "0"], "--timeout 0: expected a number of seconds of at least 10"),
    (["--timeout", "0.01"], "--timeout 0.01: expected a number of seconds of at least 10"),
    # every trial was packaged and measured, then failed "energy_mj not measured" (a user review)
    (["--objective", "energy_mj"], "energy_mj (the study's objective or a budget, the profile's included) cannot be "
                                   "measured: local: no power sensor"),
    (["--budget", "power_w=5"], "power_w (the study's objective or a budget, the profile's included) cannot be "
                                "measured: local: no power sensor"),
])
def test_bad_input_exits_2_before_measuring(cli, tmp_path, monkeypatch, args, fragment):
    no_sensor(monkeypatch, tmp_path)   # a host whose RAPL is readable would measure energy
    space = tmp_path / "space.toml"
    space.write_text("nope = [1, 2]\n")
    args = [str(space) if a == "SPACE" else a for a in args]
    r = _optimize(cli, tmp_path, *args)
    assert r.exit_code == 2 and fragment in r.stderr, r.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "opt").exists()   # no empty folders either
    r = _optimize(cli, tmp_path, "--resume", "--study", "never")   # nor an empty store for a study never begun
    assert r.exit_code == 2 and "--resume: no study 'never': there is no store at " in r.stderr, r.stderr
    assert not (tmp_path / "results").exists()


def test_eval_data_without_labels_measures_no_accuracy_budget(cli, tmp_path):
    """Unlabelled eval data cannot measure accuracy: an accuracy budget asked for is refused before measuring
    (exit 2), and the profile's own one is left out, as without eval data, instead of failing every candidate."""
    import numpy as np
    with np.load(EVAL) as arrays:
        unlabelled = tmp_path / "unlabelled.npz"
        np.savez(unlabelled, **{k: arrays[k] for k in arrays.files if k != "labels"})
    common = [MODEL, "--calib", CALIB, "--eval-data", unlabelled, "--results-dir", tmp_path / "results",
              "--output-dir", tmp_path / "opt", "--json"]
    refused = cli("optimize", *common, "--max-accuracy-drop", "0.01")
    assert refused.exit_code == 2, refused.stderr
    assert f"--budget accuracy_drop: accuracy is measured on labelled eval data, and --eval-data {unlabelled} " \
           "has no 'labels' array" in refused.stderr
    assert not list((tmp_path / "results").rglob("*.json"))
    objective = cli("optimize", *common, "--objective", "accuracy_drop")   # minimised, so measured: refused alike
    assert objective.exit_code == 2 and f"--objective accuracy_drop: accuracy is measured on labelled eval data, " \
        f"and --eval-data {unlabelled} has no 'labels' array" in objective.stderr, objective.stderr
    without = cli("optimize", *[a for a in common if a not in ("--eval-data", unlabelled)], "--objective",
                  "accuracy_drop")
    assert without.exit_code == 2 and "--objective accuracy_drop: accuracy is measured on labelled eval data, and no " \
        "--eval-data was given" in without.stderr, without.stderr
    shorthand = cli("optimize", *[a for a in common if a not in ("--eval-data", unlabelled)], "--max-accuracy-drop",
                    "0.01")   # named as typed (it said "--budget accuracy_drop")
    assert shorthand.exit_code == 2 and "--max-accuracy-drop 0.01: accuracy is measured on labelled eval data, and " \
        "no --eval-data was given" in shorthand.stderr, shorthand.stderr
    assert not list((tmp_path / "results").rglob("*.json"))
    r = cli("optimize", *common, "--budget", "latency_p90_ms=50", "--trials", "2", "--study", "nolabels")
    assert r.exit_code == 0, r.stderr
    assert "accuracy_drop" not in r.json()["budgets"] and r.json()["best"] is not None
    # nor does the chosen bundle carry it: `check` and `report` would call it NOT MEASURED
    manifest = json.loads(bundle_member(r.json()["best"]["bundle"], "manifest.json"))
    assert manifest["budgets"] == r.json()["budgets"]
    assert not any("cannot be measured from this bundle" in note for note in manifest["notes"])


def test_a_baseline_that_cannot_be_packaged_is_bad_input(cli, tmp_path):
    broken = tmp_path / "calib.npz"
    broken.write_bytes(b"not an npz")
    r = cli("optimize", MODEL, "--calib", broken, "--results-dir", tmp_path / "results", "--output-dir",
            tmp_path / "opt", "--trials", "3", "--study", "bad")
    assert r.exit_code == 2 and str(broken) in r.stderr, r.stderr
    # nothing was measured: the study is removed, and the same command runs again once the data is fixed
    summaries = optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}")
    assert "bad" not in [s.study_name for s in summaries]


def test_a_device_failure_on_the_baseline_stops_the_study_with_exit_3(cli, tmp_path, monkeypatch):
    """Nothing can be judged without the baseline: exit 3 with the device's reason, no candidate tried, and the
    same command runs again once the device is back (it went on, failed every candidate, and exited 1)."""
    from edgeopt import api
    from edgeopt.errors import DeviceFailure

    calls = []
    monkeypatch.setattr(api, "bench", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(
        DeviceFailure("device local: agent did not finish within 900 s")))
    common = ["--budget", "size_mb=0.5x", "--trials", "4", "--study", "down"]
    r = _optimize(cli, tmp_path, *common)
    assert r.exit_code == 3 and len(calls) == 1, r.stderr
    assert r.stderr.strip().splitlines() == [
        "edgeopt: error: the baseline (the untouched model) could not be measured, and no candidate can be judged "
        "without it: device local: agent did not finish within 900 s"]
    monkeypatch.undo()
    again = _optimize(cli, tmp_path, *common[:3], "2", *common[4:])
    assert again.exit_code == 0, again.stderr
    assert again.json()["trials"][0]["baseline"] and again.json()["trials"][0]["state"] == "complete"


def no_sensor(monkeypatch, tmp_path):
    """The local agent reads an empty sysfs tree and no sensor command: no power sensor, whatever this host has."""
    (tmp_path / "no-sysfs").mkdir(exist_ok=True)
    monkeypatch.setenv("EDGEOPT_SYSFS_ROOT", str(tmp_path / "no-sysfs"))
    monkeypatch.setenv("EDGEOPT_TEGRASTATS", str(tmp_path / "no-tegrastats"))
    monkeypatch.setenv("EDGEOPT_VCGENCMD", str(tmp_path / "no-vcgencmd"))


def test_pareto_front_over_latency_accuracy_and_size(cli, tmp_path, monkeypatch):
    """Over the latency the user budgeted (p50 here: the front was over p90 whatever the objective)."""
    no_sensor(monkeypatch, tmp_path)
    r = _optimize(cli, tmp_path, "--pareto", "--trials", "3", "--study", "front", "--budget", "latency_p50_ms=50",
                  "--train-data", CALIB)
    assert r.exit_code == 0, r.stderr
    outcome = r.json()
    notes = " ".join(outcome["notes"])   # what a user would otherwise take for granted (a user review)
    assert "with --pareto nothing is measured again at the end" in notes
    assert "--train-data not used: no transform trains the onnx model given" in notes
    front = [t for t in outcome["trials"] if t["trial"] in outcome["pareto"]]
    assert front
    keys = ("latency_p50_ms", "accuracy_drop", "size_mb")
    assert outcome["pareto_figures"] == list(keys)
    from edgeopt.report.tables import optimize_table   # its title says what was searched (it read "minimise ...")
    assert optimize_table(outcome).title == ("Study front: the Pareto front over latency_p50_ms, accuracy_drop, "
                                             "size_mb (of every trial measured); the chosen one minimises "
                                             "latency_p50_ms within the budgets")
    # no power sensor on this host: energy left out of the front, and the study says why
    assert "energy_mj not in the Pareto front: local: no power sensor on this device (tried ina3221" in \
        " ".join(outcome["notes"])
    page = tmp_path / "front.html"
    assert cli("report", "--study", "front", "--store", f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}", "-o", page,
               "--no-history").exit_code == 0
    assert "a Pareto front over latency_p50_ms, accuracy_drop, size_mb of every trial measured; the chosen one " \
        "minimises latency_p50_ms within " in page.read_text()
    assert [len(t.values) for t in _trials(tmp_path, "front") if t.values] == [3] * len(outcome["trials"])
    from edgeopt.report.tables import optimize_lines   # each member's bundle, to take the trade-off wanted
    lines = optimize_lines(outcome)
    assert all(any(line.startswith(f"front trial {f['trial']}: bundle ") and pathlib.Path(f["bundle"]).name in line
                   for line in lines) for f in front if f["feasible"])
    # a member that misses a budget is no answer to take: named apart, without a bundle line
    missing = [str(f["trial"]) for f in front if not f["feasible"]]
    assert not any(line.startswith(f"front trial {n}:") for n in missing for line in lines)
    assert not missing or any(line.startswith("on the front but missing a budget") and all(n in line for n in missing)
                              for line in lines)
    for t in outcome["trials"]:   # nothing on the front is dominated by any measured trial
        for f in front:
            a, b = [t["figures"][k] for k in keys], [f["figures"][k] for k in keys]
            assert not (all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b)))


def test_the_pareto_front_takes_energy_where_every_device_measures_it(cli, tmp_path, monkeypatch):
    """Energy per inference joins the front, unbudgeted, where the agent's probe finds the power sensor the
    profile's bundles read (it did only with an energy_mj budget). The power rail is a recorded Jetson Orin Nano
    sysfs tree (tests/power/fixtures: a constant 7.5 W on VDD_IN), read by the real agent on `local`."""
    monkeypatch.setenv("EDGEOPT_SYSFS_ROOT", str(tree("jetson-orin-nano-jp5", tmp_path)))   # the agent inherits it
    probe = cli("agent", "probe", "--json")
    assert probe.exit_code == 0 and probe.json()["power"]["reader"] == "ina3221", probe.stdout
    from device_agent.probe import power_reader   # asked for the profile's sensor, it looks for that one
    assert power_reader("ina3221")["reader"] == "ina3221" and power_reader("rpi5-pmic")["reader"] is None
    assert power_reader("none") == {"reader": None, "reason": "power measurement turned off (power_sensor none, "
                                                              "or --no-power)"}
    r = _optimize(cli, tmp_path, "--pareto", "--trials", "3", "--study", "energy", "--budget", "latency_p50_ms=50")
    assert r.exit_code == 0, r.stderr
    outcome = r.json()
    keys = ["latency_p50_ms", "accuracy_drop", "size_mb", "energy_mj"]
    assert outcome["pareto_figures"] == keys and "energy_mj in the Pareto front" in " ".join(outcome["notes"])
    # every trial with values has the four (one screened out on a loaded host has none)
    assert [len(t.values) for t in _trials(tmp_path, "energy") if t.values] == [4] * sum(
        t["state"] == "complete" for t in outcome["trials"])
    for row in outcome["trials"]:   # 7.5 W over each inference's share of the timed loop
        assert row["figures"]["energy_mj"] > 0
    from edgeopt.report.tables import optimize_table   # and a column of its own in the table
    headers = [c.header for c in optimize_table(outcome).columns]
    assert headers[2] == "latency_p50_ms" and headers.index("energy_mj") == headers.index("size") - 1, headers
    # resumed: the front the study began with (its directions are fixed), on devices that still measure energy
    again = _optimize(cli, tmp_path, "--pareto", "--trials", "4", "--study", "energy", "--budget", "latency_p50_ms=50",
                      "--resume")
    assert again.exit_code == 0, again.stderr
    assert again.json()["pareto_figures"] == keys and sum(not t["cached"] for t in again.json()["trials"]) == 4
    assert not [t for t in again.json()["trials"] if t["state"] != "complete"]
    no_sensor(monkeypatch, tmp_path)   # and refused where they do not: every new trial would fail
    refused = _optimize(cli, tmp_path, "--pareto", "--trials", "5", "--study", "energy", "--budget",
                        "latency_p50_ms=50", "--resume")
    assert refused.exit_code == 2 and "searches a Pareto front with energy_mj, and local: no power sensor" in \
        refused.stderr, refused.stderr
    shown = cli("report", "--study", "energy", "--format", "markdown", "--no-history",
                "--store", f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}")
    assert "The Pareto front over latency_p50_ms, accuracy_drop, size_mb, energy_mj" in shown.stdout, shown.stdout
    page = tmp_path / "energy.html"
    cli("report", "--study", "energy", "-o", page, "--no-history", "--store",
        f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}")
    assert "<th>energy_mj</th><th>size_mb</th><th>seconds</th>" in page.read_text()   # every trial's, folded


def test_space_file_widens_within_the_options_bounds(tmp_path):
    from edgeopt.compress import base
    from edgeopt.convert import backend_for
    from edgeopt.errors import BadInput
    from edgeopt.profiles import load_profile
    from edgeopt.search import space

    backend = backend_for(load_profile("generic"))
    f = tmp_path / "space.toml"
    f.write_text('"prune.channels" = [0.05, 0.9]\n')
    dims = {d.name: d for d in space.build(backend, "pytorch-module", True, True, None, f)}
    assert (dims["prune.channels"].low, dims["prune.channels"].high) == (0.05, 0.9)
    assert "distill" in dims and dims["prune.channels"].parent == "prune" and "sparsity" not in dims
    f.write_text('"prune.channels" = [0.5, 0.99]\n')
    with pytest.raises(BadInput, match="not within the option's bounds"):
        space.build(backend, "pytorch-module", True, True, None, f)
    assert "distill" not in {d.name for d in space.build(backend, "pytorch-module", True, False, None)}
    assert base.names()  # the transforms registered themselves


def test_transforms_are_searched_on_a_pytorch_source(cli, tmp_path):
    source = str(pathlib.Path(__file__).parents[1] / "compress" / "pruning_nets.py") + ":resnetish"
    space = tmp_path / "space.toml"
    space.write_text('quantize = ["none"]\nprecision = ["fp32"]\nprune = true\nlowrank = [false]\n'
                     '"prune.channels" = [0.4, 0.6]\n')   # distill and qat unnamed: no accuracy budget, left out
    import numpy as np
    train = tmp_path / "train.npz"   # given, as users do: read only by the trials that train
    np.savez(train, input=np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32))
    r = cli("optimize", source, "--input-shape", "input=1,3,32,32", "--space", space, "--trials", "2",
            "--train-data", train,
            "--study", "torch", "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "opt", "--json")
    assert r.exit_code == 0, r.stderr
    trials = r.json()["trials"]
    assert trials[0]["baseline"] and "prune" not in trials[0]["config"]
    pruned = trials[1]
    assert pruned["config"].startswith("quantize=none precision=fp32 prune(channels=")
    stages = {s["stage"]: s for s in pruned["stages"]}
    assert stages["prune"]["parameters"] < stages["source"]["parameters"]
    assert pruned["figures"]["size_mb"] < trials[0]["figures"]["size_mb"]
    note = "distill, qat not searched: no accuracy budget would see what they cost"
    assert any(n.startswith(note) for n in r.json()["notes"]), r.json()["notes"]
    assert "--train-data not used: no candidate of this space trains" in " ".join(r.json()["notes"])
    md = cli("report", "--study", "torch", "--format", "markdown", "--no-history",
             "--store", f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}")   # the notes are kept with the study
    assert f"- note: {note}" in md.stdout, md.stdout


@pytest.mark.parametrize("given, said, prune", [
    ("tdata.py:bad", "--train-data {dir}/tdata.py:bad: {dir}/tdata.py has no attribute 'bad'", "true"),
    ("tdata.py:empty", "--train-data {dir}/tdata.py:empty: the DataLoader gave no batches", "true"),
    # batches that are no tensors: a traceback from np.concatenate (a user review)
    ("tdata.py:ints", "--train-data {dir}/tdata.py:ints: a batch's input holds int 1, not a tensor with a batch "
                      "axis", "true"),
    ("tdata.py:objects", "--train-data {dir}/tdata.py:objects: a batch's labels holds NoneType None, not a tensor",
     "true"),   # a list of objects beside a tensor: .item() of it was a traceback (a code review)
    ("wrong.npz", "training data file {dir}/wrong.npz: ", "true"),
    # no transform left to train: a corrupt file given is still refused (a user review: exit 0, and a note)
    ("trunc.npz", "training data file {dir}/trunc.npz: is not a readable .npz", "false"),
])
def test_bad_training_data_is_refused_before_any_trial(cli, tmp_path, given, said, prune):
    """Read once before anything is measured, as a trial reads it: a bad --train-data failed every trial that
    trains, one by one, while INT8 alone met the budget (exit 0)."""
    import numpy as np

    (tmp_path / "tdata.py").write_text("import torch\n\n\ndef empty():\n    return []\n\n\ndef ints():\n    "
                                       "return [1, 2, 3]\n\n\ndef objects():\n    return [(torch.zeros(2, 3, 32, 32), "
                                       "[None, None])]\n")
    np.savez(tmp_path / "wrong.npz", other=np.zeros((4, 3), np.float32))
    (tmp_path / "trunc.npz").write_bytes((MODEL.parent / "digits32_train.npz").read_bytes()[:3000])
    source = str(pathlib.Path(__file__).parents[1] / "compress" / "pruning_nets.py") + ":resnetish"
    space = tmp_path / "space.toml"
    space.write_text(f'quantize = ["none"]\nprecision = ["fp32"]\nprune = {prune}\nlowrank = [false]\n')
    r = cli("optimize", source, "--input-shape", "input=1,3,32,32", "--space", space, "--trials", "2",
            "--train-data", tmp_path / given, "--study", "bad", "--results-dir", tmp_path / "results",
            "--output-dir", tmp_path / "opt")
    errors = [line for line in r.stderr.splitlines() if not line.startswith("· ")]   # besides progress: one line
    assert r.exit_code == 2 and len(errors) == 1, r.stderr
    assert errors[0].startswith(f"edgeopt: error: {said.format(dir=tmp_path)}"), r.stderr
    assert not (tmp_path / "opt" / "bad").exists()   # refused before the study began


def test_a_candidate_that_only_trains_is_screened_before_its_training(cli, tmp_path, monkeypatch):
    """Distillation and QAT change weights, not the graph: a candidate's latency is that of the candidate without
    distillation, or with QAT's quantizers calibrated and no epoch run. So the screening run measures that first, and a candidate it rules out is never trained (a study of a
    trained EfficientNet spent 258 s distilling a candidate a 1-s screening then ruled out at 1.20x of 0.6x)."""
    samples = MODEL.parent
    source = str(samples / "digits_resnet.py") + ":build"
    space = tmp_path / "space.toml"
    space.write_text('quantize = ["none"]\nprecision = ["fp32"]\nprune = [false]\nlowrank = [false]\nqat = [false]\n'
                     'distill = true\n"distill.epochs" = 1\n')
    import numpy as np

    train = tmp_path / "train.npz"   # 128 of the shipped training samples: one short epoch
    np.savez(train, **{k: v[:128] for k, v in np.load(samples / "digits32_train.npz").items()})
    data = ["--eval-data", samples / "digits32_eval.npz", "--train-data", train]

    def study(name, *args):
        r = cli("optimize", source, "--input-shape", "input=1,1,32,32", "--space", space, "--trials", "2", *data,
                *args, "--max-accuracy-drop", "0.05", "--study", name,
                "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "opt", "--json")
        assert r.exit_code in (0, 1), r.stderr
        return r.json()["trials"][1]

    ruled_out = study("out", "--budget", "latency_p50_ms=0.01x")   # 1 % of the float model: nothing meets it
    assert "distill(epochs=1" in ruled_out["config"]
    assert ruled_out["untrained"] == ["distill"] and ruled_out["measurement"] == "screening", ruled_out
    assert "distill" not in [s["stage"] for s in ruled_out["stages"]]   # what was measured: no epoch ran
    assert ruled_out["paired"]["latency_p50_ms"] > 0.01 and "accuracy_drop" not in ruled_out["figures"]
    # it can still win (the smallest size, the objective here, is the untouched model's, which it equals whatever
    # the host's noise): trained, then measured fully, without a second screening
    kept = study("in", "--budget", "latency_p50_ms=100x", "--objective", "size_mb")
    assert kept.get("untrained") is None and kept["measurement"] == "full", kept
    assert "distill" in [s["stage"] for s in kept["stages"]] and "accuracy_drop" in kept["figures"]
    assert kept["seconds"]["screen"] > 0 and kept["seconds"]["measure"] > 0
    # where the untrained model cannot be packaged, the trained candidate is packaged and screened as before
    from edgeopt.errors import BadInput
    from edgeopt.search import trial as trials_

    real = trials_.package

    def refusing(candidate, job, bundle, progress, name=None):
        if bundle.stem.endswith("-untrained"):
            raise BadInput("packaged artifact disagrees with its source model (injected)")
        return real(candidate, job, bundle, progress, name)

    monkeypatch.setattr(trials_, "package", refusing)
    trained = study("refused", "--budget", "latency_p50_ms=0.01x")
    assert trained["state"] == "complete" and trained.get("untrained") is None, trained
    assert trained["measurement"] == "screening" and "distill" in [s["stage"] for s in trained["stages"]]
    monkeypatch.undo()
    # QAT: the probe is its QDQ graph with the quantizers calibrated and no epoch run
    space.write_text('quantize = ["none"]\nprecision = ["fp32"]\nprune = [false]\nlowrank = [false]\n'
                     'distill = [false]\nqat = true\n"qat.epochs" = 1\n')
    from edgeopt.compress import distill, qat as qat_
    epochs = []
    monkeypatch.setattr(qat_, "fit", lambda *a, **k: epochs.append(a) or distill.fit(*a, **k))
    qat = study("qat", "--budget", "latency_p50_ms=0.01x")
    assert "qat(epochs=1" in qat["config"] and qat["untrained"] == ["qat"], qat
    assert "qat" in [s["stage"] for s in qat["stages"]] and not epochs   # quantizers calibrated, never trained


def test_the_gaussian_process_sampler_sees_every_dimension_in_every_trial(cli, tmp_path):
    """--sampler gp: Optuna's GPSampler models only the dimensions every trial has, so the baseline and the
    trials whose transform is off suggest its options too (unused); what is built follows the toggle or axis."""
    source = str(pathlib.Path(__file__).parents[1] / "compress" / "pruning_nets.py") + ":resnetish"
    space = tmp_path / "space.toml"
    space.write_text('quantize = ["none"]\nprecision = ["fp32"]\nlowrank = [false]\n"prune.channels" = [0.3, 0.6]\n')
    r = cli("optimize", source, "--input-shape", "input=1,3,32,32", "--space", space, "--trials", "7",
            "--sampler", "gp", "--no-screening", "--study", "gp", "--results-dir", tmp_path / "results",
            "--output-dir", tmp_path / "opt", "--json")
    assert r.exit_code == 0, r.stderr
    stored = [t for t in _trials(tmp_path, "gp") if t.state == optuna.trial.TrialState.COMPLETE]
    assert len({t.number for t in stored if not t.user_attrs.get("cached")}) == 7
    assert all(set(t.params) == set(stored[0].params) and "prune.channels" in t.params for t in stored)
    # pruning's on/off is its channels axis (space.strength_axis): 0.2 (one step below 0.3..0.6) is off
    assert stored[0].user_attrs["baseline"] and stored[0].params["prune.channels"] == pytest.approx(0.2)
    assert "prune" not in stored[0].params
    for t in stored:   # a transform that is off is not applied, whatever its unused options read
        assert ("prune(channels=" in t.user_attrs["config"]) == (t.params["prune.channels"] >= 0.3)


def test_gp_without_torch_is_a_clear_error(monkeypatch):
    import builtins

    from edgeopt.errors import BadInput
    from edgeopt.search import samplers

    real = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("no torch here")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(BadInput, match=r"^--sampler gp needs PyTorch and SciPy: pip install 'edgeopt\[torch\]'$"):
        samplers.make("gp", [], 0, False)


def test_near_ties_are_measured_again_once_per_candidate(cli, tmp_path, monkeypatch):
    from edgeopt.search import runner
    monkeypatch.setattr(runner, "RECHECK_WITHIN", 100.0)   # every feasible candidate counts as a near tie
    space = _float_or_int8(tmp_path)
    # --no-screening: on a loaded host a screening run can find INT8 slower and leave it unmeasured (CI saw it)
    r = _optimize(cli, tmp_path, "--space", space, "--sampler", "random", "--trials", "5", "--study", "ties",
                  "--budget", "latency_p90_ms=50", "--no-screening")
    assert r.exit_code == 0, r.stderr
    outcome = r.json()
    again = {row["config"]: row["rechecked"] for row in outcome["trials"] if row["rechecked"]}
    # twice each, three times where the two runs were far apart (runner.RUNS_APART)
    assert len(again) == 2 and all(len(v) in (2, 3) and v[1] > 0 for v in again.values()), outcome["trials"]
    assert outcome["best"]["rechecked"] == again[outcome["best"]["config"]]
    median = statistics.median(outcome["best"]["rechecked"])
    others = [statistics.median(v) for c, v in again.items() if c != outcome["best"]["config"]]
    assert all(median <= o for o in others)      # chosen by the median of its measurements


def test_the_best_is_measured_in_turn_with_int8_by_hand_at_the_end(cli, tmp_path, monkeypatch):
    """Whichever trial is best, the study ends by measuring it and the textbook trial (INT8 alone) in turn, so
    that what the search gained over the first step by hand rests on readings made together."""
    from edgeopt.report.tables import optimize_lines
    from edgeopt.search import judging, runner
    ranked = judging.ranked_feasible   # the float baseline chosen over INT8 (which of them is faster varies)
    monkeypatch.setattr(judging, "ranked_feasible", lambda s, objective: sorted(
        ranked(s, objective), key=lambda t: bool(t.user_attrs.get("textbook"))))
    space = _float_or_int8(tmp_path)
    r = _optimize(cli, tmp_path, "--space", space, "--sampler", "random", "--trials", "2", "--study", "turns",
                  "--budget", "latency_p50_ms=50", "--no-screening")
    assert r.exit_code == 0, r.stderr
    outcome = r.json()
    assert outcome["objective"] == "latency_p50_ms"   # no --objective: the latency budgeted is the one minimised
    versus = outcome["versus_textbook"]
    textbook = next(row for row in outcome["trials"] if row["textbook"])
    assert versus["best"] == outcome["best"]["trial"] != textbook["trial"] == versus["textbook"]
    readings = versus["readings"]
    assert len(readings["best"]) == len(readings["textbook"]) == runner.VERSUS_TEXTBOOK_PAIRS
    assert versus["ratios"] == [round(a / b, 4) for a, b in zip(readings["textbook"], readings["best"])]
    assert versus["median"] == sorted(versus["ratios"])[len(versus["ratios"]) // 2]
    assert f"against INT8 by hand (trial {textbook['trial']}): the answer's latency_p50_ms is" in "\n".join(optimize_lines(outcome))
    resumed = _optimize(cli, tmp_path, "--space", space, "--sampler", "random", "--trials", "2", "--study", "turns",
                        "--budget", "latency_p50_ms=50", "--objective", "latency_p50_ms", "--resume")
    assert resumed.json()["versus_textbook"] == versus   # the same two are not compared again


def test_near_ties_of_a_paired_study_are_measured_again_beside_the_baseline(cli, tmp_path, monkeypatch):
    """With a relative budget on the objective, trials are ranked by their ratio to the baseline measured right
    before them; a near tie is measured again the same way, its ratio recorded (the baseline's own is 1)."""
    from edgeopt.search import runner
    monkeypatch.setattr(runner, "RECHECK_WITHIN", 100.0)
    space = _float_or_int8(tmp_path)
    r = _optimize(cli, tmp_path, "--space", space, "--sampler", "random", "--trials", "3", "--study", "pairties",
                  "--budget", "latency_p90_ms=20x", "--no-screening")
    assert r.exit_code == 0, r.stderr
    again = {row["trial"]: row for row in r.json()["trials"] if row["rechecked"] and not row["cached"]}
    assert len(again) == 2 and any(row["baseline"] for row in again.values()), r.json()["trials"]
    for row in again.values():
        assert len(row["rechecked"]) in (2, 3)   # a third where the two were far apart (runner.RUNS_APART)
        first, second = row["rechecked"][:2]
        if row["baseline"]:
            assert set(row["rechecked"]) == {1.0}
        else:
            # judged by the median of its runs; its first run's ratio kept under first_run
            assert first == row["first_run"]["paired"]["latency_p90_ms"] and 0 < second < 20 and second != first
            assert row["paired"]["latency_p90_ms"] == pytest.approx(statistics.median(row["rechecked"]))


def test_a_throughput_budget_is_measured_for_every_candidate(cli, tmp_path):
    space = _float_or_int8(tmp_path)
    r = _optimize(cli, tmp_path, "--space", space, "--trials", "2", "--study", "fps", "--budget", "throughput_fps=1")
    assert r.exit_code == 0, r.stderr
    assert all(t["figures"]["throughput_fps"] > 1 for t in r.json()["trials"])


@pytest.mark.parametrize("profile, space", [
    ("raspberry-pi-5", 'backend = ["tflite"]\nint8_ops = ["compute"]\n'),
    ("intel-cpu", 'backend = ["openvino"]\nactivation_range = ["minmax"]\n'),
])
def test_backend_options_sampled_by_the_search_reach_the_backend(cli, tmp_path, profile, space):
    """A sampled option of the backend's own (LiteRT's int8_ops, OpenVINO's activation_range) is packaged as a
    backend option; every INT8 trial on these profiles used to fail with package()'s TypeError."""
    spec = tmp_path / "space.toml"
    spec.write_text('quantize = ["int8"]\nprecision = ["fp32"]\nkeep_float = [""]\n' + space)
    r = _optimize(cli, tmp_path, "--profile", profile, "--space", spec, "--trials", "2", "--study", "opts",
                  "--budget", "latency_p90_ms=50")
    assert r.exit_code == 0, r.stderr
    option, value = space.splitlines()[1].split()[0], space.splitlines()[1].split('"')[1]
    sampled = [t for t in r.json()["trials"] if option in t["config"]]
    assert sampled and all(t["figures"] and not t.get("error") for t in sampled), r.json()["trials"]
    manifest = json.loads(bundle_member(sampled[0]["bundle"], "manifest.json"))
    recorded = manifest["compression"][option]
    assert (recorded["requested"] if option == "int8_ops" else recorded) == value


def test_a_top1_agreement_under_the_profiles_is_left_to_the_accuracy_budget(cli, tmp_path):
    """On noisy eval inputs the digits CNN's INT8 agrees with the float model on 98 % of them (inputs past the
    calibrated range clip), under this profile's 99 %, and is 0.6 points *more* accurate. package refuses it on
    parity; optimize, whose accuracy budget measures top-1 on the device within the user's tolerance, measured
    it and says what parity found (before: "failed input: packaged artifact disagrees", in a trained study)."""
    import numpy as np

    from edgeopt.search.trial import ACCURACY_JUDGES

    strict = tmp_path / "strict.toml"
    text = (MODEL.parent.parent.parent / "profiles" / "generic.toml").read_text()
    strict.write_text(text.replace("quantized_min_top1_agreement = 0.97", "quantized_min_top1_agreement = 0.99")
                      .replace('name = "generic"', 'name = "strict"'))   # a profile is named as its file
    clean = dict(np.load(EVAL))
    noisy = tmp_path / "noisy_eval.npz"
    noise = np.random.default_rng(0).normal(0, 0.5 * clean["image"].std(), clean["image"].shape)
    np.savez(noisy, image=(clean["image"] + noise).astype(np.float32), labels=clean["labels"])
    spec = tmp_path / "space.toml"
    spec.write_text('quantize = ["int8"]\nprecision = ["fp32"]\nkeep_float = [""]\n')
    by_hand = cli("package", MODEL, "--profile", strict, "--quantize", "int8", "--calib", CALIB, "--eval-data", noisy,
                  "-o", tmp_path / "q.edgepkg")
    assert by_hand.exit_code == 2 and "top1_agreement 0.98" in by_hand.stderr, by_hand.stderr
    r = cli("optimize", MODEL, "--profile", strict, "--calib", CALIB, "--eval-data", noisy, "--space", spec,
            "--max-accuracy-drop", "0.02", "--trials", "2", "--study", "agree", "--results-dir", tmp_path / "results",
            "--output-dir", tmp_path / "opt", "--json")
    assert r.exit_code == 0, r.stderr
    int8 = r.json()["trials"][1]
    assert int8["state"] == "complete" and int8["parity"].startswith("top1_agreement 0.98"), int8
    assert int8["figures"]["accuracy_drop"] <= 0.02 and int8["feasible"]
    parity = json.loads(bundle_member(int8["bundle"], "manifest.json"))["parity"]
    assert not parity["passed"] and parity["allowed_by"] == ACCURACY_JUDGES
    # without an accuracy budget (no labels) nothing else judges top-1: the profile's gate refuses as package does
    unlabelled = tmp_path / "unlabelled.npz"
    np.savez(unlabelled, image=np.load(noisy)["image"])
    r = cli("optimize", MODEL, "--profile", strict, "--calib", CALIB, "--eval-data", unlabelled, "--space", spec,
            "--trials", "2", "--study", "gate", "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "opt",
            "--json")
    failed = r.json()["trials"][1]
    assert failed["state"] == "fail" and "top1_agreement" in failed["error"], failed


def test_the_search_tries_every_backend_the_profile_and_device_run(cli, tmp_path):
    """intel-cpu hardware runs OpenVINO and ONNX Runtime, and `local` has both runtimes: each is a choice of
    the search, packaged and measured through its own runtime, and named in the trial's configuration."""
    spec = tmp_path / "space.toml"
    spec.write_text('quantize = ["none", "dynamic"]\nprecision = ["fp32"]\nthreads = [1]\n')
    r = _optimize(cli, tmp_path, "--profile", "intel-cpu", "--space", spec, "--sampler", "grid", "--trials", "4",
                  "--study", "backends", "--budget", "latency_p90_ms=50", "--no-screening")
    assert r.exit_code == 0, r.stderr
    baseline = r.json()["trials"][0]   # named like the others, on the profile's own backend
    assert baseline["baseline"] and baseline["config"] == "backend=openvino quantize=none precision=fp32 threads=1"
    # the untouched model on OpenVINO is the baseline itself: answered from it when sampled, not measured again
    measured = [t for t in r.json()["trials"] if not t["cached"]]
    runtimes = {}
    for t in measured:
        backend = t["config"].split("backend=")[1].split()[0]
        manifest = json.loads(bundle_member(t["bundle"], "manifest.json"))
        assert manifest["profile"]["backend"] == backend   # the recipe names a backend other than the profile's
        assert manifest["recipe"]["package"].get("backend", "openvino") == backend
        runtimes[t["config"]] = json.loads(pathlib.Path(t["results"][0]).read_text())["runtime"]["name"]
    assert runtimes == {"backend=openvino quantize=none precision=fp32 threads=1": "openvino",
                        "backend=onnxruntime quantize=none precision=fp32 threads=1": "onnxruntime",
                        "backend=onnxruntime quantize=dynamic threads=1": "onnxruntime"}, runtimes


def test_a_backend_whose_runtime_a_device_lacks_is_not_searched(tmp_path, monkeypatch):
    """The devices' probed runtimes decide: without ONNX Runtime on the device, intel-cpu searches OpenVINO only
    (the probe is replaced here: every runtime is installed on this host)."""
    from edgeopt.search import study

    probed = []
    monkeypatch.setattr(study, "_device_facts", lambda device, job, sensor="auto": probed.append(device) or {
        "runtimes": {"openvino": "2026.4.1", "onnxruntime": None}, "logical_cpus": 2})
    job = study.Job(str(MODEL), "intel-cpu", ["local"], {}, calib=CALIB, results_dir=str(tmp_path / "results"),
                    output_dir=tmp_path / "opt")   # not the working directory's
    dims, _ = study._prepare(job, None)
    assert probed == ["local"] and "backend" not in {d.name for d in dims} and "preset" in {d.name for d in dims}


def test_the_profiles_own_backend_is_not_searched_where_a_device_lacks_its_runtime(cli, tmp_path):
    """jetson-orin-nano on a host without TensorRT (this one: the probe says so): its TensorRT candidates all
    failed on the device; ONNX Runtime, which it also runs, is searched alone, the baseline included."""
    from edgeopt.search import study

    probed = study._device_facts("local", study.Job(str(MODEL), "jetson-orin-nano", ["local"], {}))["runtimes"]
    if probed.get("tensorrt") or not probed.get("onnxruntime"):
        pytest.skip(f"needs ONNX Runtime without TensorRT here (probed: {probed})")
    r = _optimize(cli, tmp_path, "--profile", "jetson-orin-nano", "--trials", "2", "--study", "orin",
                  "--budget", "latency_p90_ms=50", "--no-screening")
    assert r.exit_code == 0, r.stderr
    outcome = r.json()
    assert "backend tensorrt not searched: local has no runtime for it; the baseline and the candidates use " \
           "onnxruntime" in outcome["notes"]
    runtimes = {json.loads(pathlib.Path(t["results"][0]).read_text())["runtime"]["name"] for t in outcome["trials"]}
    assert runtimes == {"onnxruntime"} and not any(t["error"] for t in outcome["trials"])


def test_thread_counts_stop_at_the_fewest_cores_a_device_has(tmp_path, monkeypatch):
    """A Pi profile measured on a 2-core host searched threads=4 (81x its baseline: oversubscribed); a profile
    that leaves the cores to the device (generic, intel-cpu) searched no thread count at all."""
    from edgeopt.search import study

    def dims(profile, cpus, pinned=None):
        monkeypatch.setattr(study, "_device_facts", lambda device, job, sensor="auto": {
            "runtimes": {}, "logical_cpus": cpus[device], "usable_cpus": (pinned or cpus)[device]})
        job = study.Job(str(MODEL), profile, list(cpus), {}, calib=CALIB, results_dir=str(tmp_path / "results"),
                        output_dir=tmp_path / "opt")
        found = {d.name: d.choices for d in study._prepare(job, None)[0]}
        return found.get("threads"), job.notes

    threads, notes = dims("raspberry-pi-5", {"local": 2, "pi": 8})
    assert threads == (1, 2) and any(n.startswith("threads: up to 2, the cores of local (profile raspberry-pi-5 "
                                                  "has 4)") for n in notes), notes
    threads, notes = dims("raspberry-pi-5", {"pi": 4})
    assert threads == (1, 2, 4) and not any(n.startswith("threads") for n in notes)
    assert dims("generic", {"nuc": 8})[0] == (1, 2, 4, 8) and dims("generic", {"nuc": 6})[0] == (1, 2, 4, 6)
    # a device whose agent is pinned to fewer CPUs (taskset, a cpuset) than it has: those it may run on
    threads, notes = dims("raspberry-pi-5", {"pi": 4}, pinned={"pi": 1})
    assert threads is None and any(n.startswith("threads: up to 1, the cores of pi") for n in notes), (threads, notes)


@pytest.mark.parametrize("sampler", ["tpe", "grid"])
def test_a_configuration_that_packages_to_a_measured_bundle_is_not_measured_again(cli, tmp_path, sampler,
                                                                                   monkeypatch):
    """LiteRT's int8_ops auto and all make the same .tflite of a CNN: the second is packaged (its configuration
    differs) but answered by the first one's measurement. The grid of these two points ends after both (it used to
    end after the baseline, and Optuna's own end of a grid raised outside study.optimize)."""
    from edgeopt.search.runner import Runner
    again, measure_again = [], Runner._measure_again
    monkeypatch.setattr(Runner, "_measure_again",
                        lambda self, t, paired: again.append(t.user_attrs["artifact"]) or measure_again(self, t, paired))
    spec = tmp_path / "space.toml"
    spec.write_text('backend = ["tflite"]\nquantize = ["int8"]\nprecision = ["fp32"]\nkeep_float = [""]\n'
                    'int8_ops = ["auto", "all"]\nthreads = [1]\n')
    r = _optimize(cli, tmp_path, "--profile", "raspberry-pi-5", "--space", spec, "--trials", "3", "--study", "twins",
                  "--sampler", sampler, "--budget", "latency_p90_ms=50")
    assert r.exit_code == 0, r.stderr
    rows = {}
    for t in r.json()["trials"]:   # the first trial of each configuration (later ones come from the cache)
        if "int8_ops=" in t["config"]:
            rows.setdefault(t["config"].split("int8_ops=")[1].split()[0], t)
    assert set(rows) == {"auto", "all"}
    first, second = sorted(rows.values(), key=lambda t: t["trial"])
    assert second["twin_of"] == first["trial"] and not second["cached"] and first["twin_of"] is None
    assert second["figures"] == first["figures"] and second["results"] == first["results"]
    assert second["seconds"]["package"] > 0 and "measure" not in second["seconds"]   # packaged, not measured
    # and the bundle measured again once before it is chosen, for both (each twin was measured again on its own);
    # on a loaded host the float baseline can read faster than both and be the best, with neither measured again
    if r.json()["best"]["trial"] != 0:
        assert first["rechecked"] and second["rechecked"] == first["rechecked"]
    # each bundle measured again once (twice where its two runs were far apart: runner.RUNS_APART), never per twin
    counts = collections.Counter(again)
    assert all(n <= 2 for n in counts.values()), again
    assert not first["rechecked"] or len(first["rechecked"]) - 1 in counts.values(), again


def test_trials_with_the_same_transforms_train_once(cli, tmp_path):
    """Two grid points differ only in quantization: the second reuses the first's pruned module (and its stages)
    instead of pruning again; its bundle is still converted and measured on its own."""
    source = str(pathlib.Path(__file__).parents[1] / "compress" / "pruning_nets.py") + ":resnetish"
    space = tmp_path / "space.toml"
    space.write_text('quantize = ["none", "int8"]\nprecision = ["fp32"]\nkeep_float = [""]\nthreads = [1]\nprune = true\n'
                     'lowrank = false\n"prune.channels" = 0.5\n"prune.criterion" = ["l2"]\n"prune.scope" = ["layer"]\n'
                     '"prune.round_to" = [1]\n')
    import numpy as np
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32))
    r = cli("optimize", source, "--input-shape", "input=1,3,32,32", "--space", space, "--trials", "4",
            "--calib", calib, "--sampler", "grid", "--study", "reuse", "--results-dir", tmp_path / "results",
            "--output-dir", tmp_path / "opt", "--json")
    assert r.exit_code == 0, r.stderr
    # a trial measured fully again at the end (again_of: ruled out by a screening run against a best that a second
    # run then demoted, which a loaded machine makes likely) is the same configuration's, not a grid point's
    pruned = [t for t in r.json()["trials"] if "prune(" in t["config"] and not t["cached"] and t["again_of"] is None]
    assert sorted(t["config"].split()[0] for t in pruned) == ["quantize=int8", "quantize=none"], [
        {k: t[k] for k in ("trial", "config", "state", "error", "cached", "again_of", "ruled_out")}
        for t in r.json()["trials"]]
    first, second = sorted(pruned, key=lambda t: t["trial"])
    assert (first["transforms_reused"], second["transforms_reused"]) == (False, True)
    assert second["stages"] == first["stages"]
    size = {t["config"].split()[0]: t["figures"]["size_mb"] for t in pruned}   # each converted on its own
    assert size["quantize=int8"] < size["quantize=none"]
    for path in (tmp_path / "results").rglob("*.json"):   # the screening loop is short by design: not warned of
        assert "short of --min-seconds" not in path.read_text(), path


def test_the_transform_cache_keeps_the_most_recent_modules_within_its_bytes(tmp_path):
    import torch

    from edgeopt.transform import Stage, TransformCache

    onnx_file = tmp_path / "stage-1-prune.onnx"
    onnx_file.write_bytes(b"graph")
    cache = TransformCache(max_bytes=2 * 400)     # two Linear(10, 10) of 110 float32 parameters each, not three
    for key in "abc":
        cache.put(key * 64, torch.nn.Linear(10, 10), [Stage("prune", onnx_file, {"parameters": 110})])
    assert cache.get("a" * 64) is None
    module, stages = cache.get("c" * 64)
    assert isinstance(module, torch.nn.Linear) and stages[0].onnx_path.read_bytes() == b"graph"
    assert stages[0].onnx_path != onnx_file       # a copy: the packaging's folder is gone after it
    cache.close()
    assert not stages[0].onnx_path.exists()


def test_a_twin_that_finishes_after_its_bundle_was_measured_again_takes_those_readings():
    """On --resume, or from another worker, a twin can finish after its bundle's second run: it shares those
    readings (one bundle, one pair of runs), where it kept one run, could outrank the pair and had the bundle
    measured a third time."""
    import types

    from edgeopt.search.runner import Runner

    s = optuna.create_study()
    for key, artifact in (("a", "X"), ("b", "X"), ("c", "Y")):
        s.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=1.0,
                                              user_attrs={"key": key, "artifact": artifact}))
    s.set_user_attr("rechecked", {"a": [0.5, 0.6]})
    runner = types.SimpleNamespace(study=s, storage=None)
    runner._same_bundle = types.MethodType(Runner._same_bundle, runner)
    Runner._share_rechecks(runner)
    assert s.user_attrs["rechecked"] == {"a": [0.5, 0.6], "b": [0.5, 0.6]}   # not c: another bundle


def test_a_study_another_worker_has_joined_is_not_removed_on_bad_input():
    """Only a study this worker began and alone ran is removed when its baseline is bad input: a joined worker's
    trial would be lost (and its tell would fail) if the study went from under it."""
    from edgeopt.search import rdb

    storage = optuna.storages.InMemoryStorage()
    for other, kept in (("another-host:1", True), (rdb.WORKER, False)):
        s = optuna.create_study(study_name="s", storage=storage)
        s.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"worker": other}))
        rdb.remove_if_unmeasured(s, storage, resume=False)
        names = [x.study_name for x in optuna.get_all_study_summaries(storage)]
        assert ("s" in names) is kept
        if kept:
            optuna.delete_study(study_name="s", storage=storage)
    s = optuna.create_study(study_name="s", storage=storage)
    rdb.remove_if_unmeasured(s, storage, resume=True)   # a resumed study is never this worker's to remove
    assert [x.study_name for x in optuna.get_all_study_summaries(storage)] == ["s"]


def test_a_near_miss_is_measured_again_beside_the_baseline_and_judged_by_the_median_of_its_runs(cli, tmp_path,
                                                                                               monkeypatch):
    """Every miss counts as near here (NEAR_MISS patched): INT8 by hand, which missed only the latency budget, is
    measured twice more beside the baseline, and the study judges it by the median of its three ratios: in the
    answer's closest miss and in what `report --study` reads back."""
    from edgeopt.search import runner
    from edgeopt.search.outcome import load
    monkeypatch.setattr(runner, "NEAR_MISS", 1e9)
    space = _float_or_int8(tmp_path)
    r = _optimize(cli, tmp_path, "--space", space, "--sampler", "grid", "--trials", "2", "--study", "near",
                  "--budget", "latency_p90_ms=0.001x")
    assert r.exit_code == 1, r.stderr
    outcome = r.json()
    textbook = next(row for row in outcome["trials"] if row["textbook"])
    runs = textbook["rechecked"]
    # its row gives the ratio as judged, the median of its runs; its first run's under first_run
    assert len(runs) == 3 and all(0 < x < 20 for x in runs)
    assert runs[0] == textbook["first_run"]["paired"]["latency_p90_ms"]
    assert textbook["paired"]["latency_p90_ms"] == pytest.approx(statistics.median(runs))
    assert textbook["violations"]["latency_p90_ms"] == pytest.approx(statistics.median(runs) / 0.001 - 1)
    # the closest miss by the judged excess: INT8 by hand by its median, or the baseline (INT8 can read slower
    # than the float model on this host), whose ratio to itself is 1
    miss = outcome["closest"]["per_budget"]["latency_p90_ms"]
    rows = [row for row in outcome["trials"] if row["state"] == "complete"]
    closest = min(rows, key=lambda row: row["violations"]["latency_p90_ms"])
    assert miss["trial"] == closest["trial"] and miss["excess"] == closest["violations"]["latency_p90_ms"]
    assert miss["runs"] == (runs if closest["textbook"] else None)
    url = f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}"
    assert len(optuna.load_study(study_name="near", storage=url).user_attrs["baseline_again"]) == 2   # one a run
    loaded = load(url, "near")
    read_back = next(row for row in loaded["trials"] if row["textbook"])
    assert read_back["violations"] == textbook["violations"] and read_back["rechecked"] == runs
    assert loaded["closest"]["per_budget"]["latency_p90_ms"] == miss   # what report --study says came closest
    assert "judged by their median" in cli("report", "--study", "near", "--no-history", "--store", url,
                                           "-o", tmp_path / "near.html").stdout + (tmp_path / "near.html").read_text()


def test_ctrl_c_says_how_to_resume_in_json_too(cli, tmp_path, monkeypatch):
    """--json's error read only {"message": "interrupted"}: the --resume hint was on stderr alone (a user review)."""
    from edgeopt import api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(api, "optimize", interrupted)
    r = _optimize(cli, tmp_path, "--study", "cut")
    assert r.exit_code == 130, r.stderr
    said = "interrupted: the finished trials of study 'cut' are kept; the same command with --resume continues it"
    assert r.json()["error"]["message"] == said and r.stderr.strip() == f"edgeopt: {said}"


def test_a_baseline_no_better_than_the_commonest_label_is_said(cli, tmp_path):
    """Eval labels of another task: the source scored no better than answering one label, and a pruned model "met"
    the accuracy budget at 0 % against 0 % without a word (a user review)."""
    import numpy as np
    arrays = dict(np.load(EVAL))
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **dict(arrays, labels=(arrays["labels"] + 1) % 10))   # each label shifted by one
    r = cli("optimize", MODEL, "--calib", CALIB, "--eval-data", wrong, "--results-dir", tmp_path / "results",
            "--output-dir", tmp_path / "opt", "--trials", "2", "--study", "chance", "--space",
            _float_or_int8(tmp_path), "--json")
    assert r.exit_code in (0, 1), r.stderr
    said = [n for n in r.json()["notes"] if n.startswith("the baseline (trial 0) scores top-1 ")]
    assert len(said) == 1 and "no better than always answering its most common label (0.1" in said[0], \
        r.json()["notes"]


def test_a_trial_the_device_failed_is_said_in_the_answer(cli, tmp_path, monkeypatch):
    """A device that died near a study's end failed its last trials, fewer in a row than stop the study: exit 0
    and nothing said that the answer rests on fewer trials than asked (a user walkthrough)."""
    from edgeopt import api
    from edgeopt.errors import DeviceFailure

    real, calls = api.bench, []

    def bench(bundle, *a, **k):
        calls.append(bundle)
        if len(calls) == 3:   # the first candidate after the baseline and INT8 by hand
            raise DeviceFailure("device local: connection lost")
        return real(bundle, *a, **k)
    monkeypatch.setattr(api, "bench", bench)
    r = _optimize(cli, tmp_path, "--budget", "size_mb=0.9x", "--trials", "4", "--study", "lost", "--no-screening")
    assert r.exit_code in (0, 1), r.stderr
    failed = [t["trial"] for t in r.json()["trials"] if t["state"] == "fail"]
    assert failed and any(n.startswith(f"{len(failed)} trial(s) failed on the device (trial "
                                       f"{', '.join(map(str, failed))}; the last: device local: connection lost): "
                                       "they count towards --trials") for n in r.json()["notes"]), r.json()["notes"]


def test_trials_a_dead_device_stopped_the_study_with_are_measured_first_on_resume(cli, tmp_path, monkeypatch):
    """The trials that failed on a dead device until the study stopped used up --trials, and --resume proposed
    others (a fleet walkthrough); -q exited 3 without a word. Not counted; their configurations go first."""
    from edgeopt import api
    from edgeopt.errors import DeviceFailure

    real, calls = api.bench, []

    def bench(bundle, *a, **k):
        calls.append(bundle)
        if len(calls) > 2:   # the device dies after the baseline and INT8 by hand
            raise DeviceFailure("device local: connection lost")
        return real(bundle, *a, **k)
    monkeypatch.setattr(api, "bench", bench)
    args = ("--budget", "size_mb=0.9x", "--trials", "6", "--study", "dead", "--no-screening")
    r = cli("optimize", MODEL, *DATA, "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "opt",
            *args, "-q")
    assert r.exit_code in (1, 3) and "study dead stopped: 3 trials in a row failed on the device: device: device " \
        "local: connection lost (not counted towards --trials" in r.stderr, r.stderr
    lost = [t for t in _trials(tmp_path, "dead") if t.state.name == "FAIL"]
    assert len(lost) == 3
    monkeypatch.undo()
    again = _optimize(cli, tmp_path, *args, "--resume")
    assert again.exit_code in (0, 1), again.stderr
    trials = _trials(tmp_path, "dead")
    retried = [t for t in trials if t.user_attrs.get("retry_of") is not None]
    assert sorted(t.user_attrs["retry_of"] for t in retried) == [t.number for t in lost]
    assert all(t.state.name == "COMPLETE" for t in retried)
    # six counted: the baseline, INT8 by hand, the three retried and one more; the lost three not among them
    counted = [t for t in trials if t.state.name in ("COMPLETE", "FAIL") and t not in lost
               and not t.user_attrs.get("cached") and t.user_attrs.get("again_of") is None]
    assert len(counted) == 6, [(t.number, t.state.name, t.user_attrs.get("retry_of")) for t in trials]


def test_a_store_server_lost_while_a_trial_saves_stops_the_study_and_the_trial_runs_again(cli, tmp_path,
                                                                                              monkeypatch):
    """A results store's server that stopped answering while a trial saved its result (StoreUnreachable, a
    BadInput) was recorded as the candidate's bad input: the trial used up --trials, --resume never measured it
    again, and the study went on. It stops with exit 3 and one line; the trial runs again first on --resume."""
    from edgeopt import api
    from edgeopt.errors import StoreUnreachable

    real, calls = api.bench, []

    def bench(bundle, *a, **k):
        calls.append(bundle)
        if len(calls) == 3:   # after the baseline and INT8 by hand
            raise StoreUnreachable("results store postgresql://edgeopt@db/results: the server did not answer "
                                   "(connection refused)")
        return real(bundle, *a, **k)
    monkeypatch.setattr(api, "bench", bench)
    args = ("--budget", "latency_p90_ms=50", "--trials", "4", "--study", "gone", "--no-screening")
    r = cli("optimize", MODEL, *DATA, "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "opt",
            *args, "-q")
    assert r.exit_code == 3, r.stderr
    assert "the server did not answer (connection refused); study 'gone' stopped with every finished trial kept: " \
        "once the store answers again, the same command with --resume continues it (this trial first)" in r.stderr
    stopped = [t for t in _trials(tmp_path, "gone") if t.state.name == "FAIL"]
    assert len(stopped) == 1 and not (stopped[0].user_attrs.get("error") or "").startswith("input:")
    monkeypatch.undo()
    again = _optimize(cli, tmp_path, *args, "--resume")
    assert again.exit_code in (0, 1), again.stderr
    retried = [t for t in _trials(tmp_path, "gone") if t.user_attrs.get("retry_of") is not None]
    assert [t.user_attrs["retry_of"] for t in retried] == [stopped[0].number]
    assert retried[0].state.name == "COMPLETE"


def test_a_grid_measured_through_before_trials_says_so(cli, tmp_path):
    """A grid of fewer configurations than --trials ended at its last one without a word (a user walkthrough)."""
    r = _optimize(cli, tmp_path, "--space", _float_or_int8(tmp_path), "--sampler", "grid", "--trials", "6",
                  "--study", "short-grid", "--budget", "latency_p90_ms=50", "--no-screening")
    assert r.exit_code == 0, r.stderr
    assert r.json()["exhausted"] == "the grid's 2 distinct configurations were all measured, before --trials 6"


def test_ctrl_c_before_any_trial_finished_says_so(cli, tmp_path, monkeypatch):
    """It said "the finished trials of study 'e1' are kept" with none finished (a user walkthrough). The study is
    kept all the same: --resume after Ctrl-C is the documented way on, the trial that ran going first."""
    from edgeopt.search import trial as trials_

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(trials_, "run", interrupted)
    r = _optimize(cli, tmp_path, "--trials", "2", "--study", "e1", "--max-accuracy-drop", "0.01")
    assert r.exit_code == 130 and "study 'e1' has no finished trial yet; the same command with --resume continues " \
        "it" in r.stderr, r.stderr
    monkeypatch.undo()
    again = _optimize(cli, tmp_path, "--trials", "2", "--study", "e1", "--max-accuracy-drop", "0.01", "--resume")
    assert again.exit_code in (0, 1), again.stderr


def test_a_resumed_study_goes_on_with_the_sampler_it_began_with(cli, tmp_path):
    """A grid study resumed without --sampler went on with TPE (the default), proposing measured points again; one
    named on --resume is taken, and said."""
    from edgeopt.search.samplers import GRID_POINT
    space = tmp_path / "space.toml"
    space.write_text('quantize = ["none", "int8"]\nprecision = ["fp32"]\nkeep_float = [""]\nthreads = [1, 2]\n')
    same = ("--space", space, "--study", "own", "--budget", "latency_p90_ms=50", "--no-screening")
    r = _optimize(cli, tmp_path, *same, "--sampler", "grid", "--trials", "3")
    assert r.exit_code == 0, r.stderr
    r = _optimize(cli, tmp_path, *same, "--resume", "--trials", "4")
    assert r.exit_code == 0, r.stderr
    proposed = [t for t in _trials(tmp_path, "own") if "fixed_params" not in t.system_attrs]
    assert len(proposed) >= 2 and all(GRID_POINT in t.system_attrs for t in proposed)
    assert not any("--sampler" in note for note in r.json()["notes"])
    r = _optimize(cli, tmp_path, *same, "--resume", "--trials", "4", "--sampler", "random")
    assert r.exit_code == 0, r.stderr
    assert "--sampler random: study 'own' began with grid, and goes on with random from its" in \
        " ".join(r.json()["notes"])
    r = _optimize(cli, tmp_path, *same, "--resume", "--trials", "5")   # the switch stays in the study's notes
    assert r.exit_code == 0, r.stderr
    kept = optuna.load_study(study_name="own", storage=f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}")
    assert any("goes on with random" in n for n in kept.user_attrs["notes"]), kept.user_attrs["notes"]


def test_a_study_resumed_with_its_model_by_another_path_goes_on(cli, tmp_path):
    """A worker on another host gives the model by its own checkout's path: --resume was refused as "another
    MODEL" for the same bytes (a team walkthrough). The same contents go on, with the study's content keys."""
    import shutil
    here, there = tmp_path / "a" / "m.onnx", tmp_path / "b" / "model.onnx"
    for path in (here, there):
        path.parent.mkdir()
        shutil.copy(MODEL, path)
    args = (*DATA, "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "opt", "--study", "paths",
            "--space", _float_or_int8(tmp_path), "--json")
    first = cli("optimize", here, *args, "--trials", "2")
    assert first.exit_code == 0, first.stderr
    again = cli("optimize", there, *args, "--trials", "3", "--resume")
    assert again.exit_code == 0, again.stderr
    study = optuna.load_study(study_name="paths", storage=f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}")
    assert study.user_attrs["identity"]["model"] == str(here)   # the study's name for it
    import socket
    assert study.trials[0].user_attrs["devices"] == [f"local on {socket.gethostname()}"]
    assert not [n for n in again.json()["notes"] if "other devices" in n]   # the same devices: nothing to say
    # the space holds no candidate beyond the baseline and INT8 by hand: each proposal answered, none measured
    trials = again.json()["trials"]
    assert [t["trial"] for t in trials if not t["cached"]] == [0, 1] and len(trials) > 2, trials


def test_a_study_resumed_after_its_weights_changed_is_refused(cli, tmp_path):
    """The study's identity hashed the model file alone: an ONNX model's external data (or an IR's .bin, a
    file.py:callable's code) could change, and --resume answered every measured configuration with the old
    model's figures, against the old model's baseline (a code review)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    weights = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [weights])
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model),
              save_as_external_data=True, all_tensors_to_one_file=True, location="m.data", size_threshold=0)
    args = ("optimize", model, "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "opt", "--study",
            "w", "--budget", "latency_p90_ms=50", "--json")
    first = cli(*args, "--trials", "1")
    assert first.exit_code == 0, first.stderr
    data = tmp_path / "m.data"
    raw = bytearray(data.read_bytes())
    raw[0] ^= 0xFF   # other weights; the .onnx file itself unchanged
    data.write_bytes(bytes(raw))
    again = cli(*args, "--trials", "2", "--resume")
    assert again.exit_code == 2 and "--resume: study 'w' was started with another MODEL (its weights file or its " \
        "code)" in again.stderr, again.stderr
    # a study recorded before the model's content was (no source_sha256) is resumed as it was
    study = optuna.load_study(study_name="w", storage=f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}")
    identity = dict(study.user_attrs["identity"])
    del identity["source_sha256"]
    study.set_user_attr("identity", identity)
    old = cli(*args, "--trials", "2", "--resume")
    assert old.exit_code == 0, old.stderr


def test_a_bad_seed_and_a_front_without_labels_are_refused_before_any_trial(cli, tmp_path):
    """--seed -1 was a 50-line traceback, exit 1; --pareto without labelled eval data failed every trial on the
    accuracy drop its front ranks, exit 1 (a walkthrough)."""
    for seed in ("-1", str(2 ** 32)):
        r = cli("optimize", MODEL, "--seed", seed, "--output-dir", tmp_path / "opt", "--results-dir",
                tmp_path / "results", "--trials", "1")
        assert r.exit_code == 2 and f"--seed {seed}: expected a whole number from 0 to 4294967295" in r.stderr
    r = cli("optimize", MODEL, "--pareto", "--calib", CALIB, "--output-dir", tmp_path / "opt", "--results-dir",
            tmp_path / "results", "--trials", "1")
    assert r.exit_code == 2 and "--pareto (its front ranks the accuracy drop): accuracy is measured on labelled " \
        "eval data, and no --eval-data was given" in r.stderr, r.stderr
    assert not (tmp_path / "opt").exists()


def test_ctrl_c_before_the_study_exists_does_not_offer_resume(cli, tmp_path, monkeypatch):
    """A walkthrough: Ctrl-C while the model was still read said "the finished trials of study 'b1' are kept; the
    same command with --resume continues it", and --resume then said there is no such study."""
    from edgeopt.search import study

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(study, "_prepare", interrupted)
    r = cli("optimize", MODEL, *DATA, "--results-dir", tmp_path / "results", "--output-dir", tmp_path / "opt",
            "--study", "b1", "--trials", "2")
    assert r.exit_code == 130 and "stopped before study 'b1' began: nothing was measured; the same command starts " \
        "it" in r.stderr and "--resume continues" not in r.stderr, r.stderr
    monkeypatch.undo()
    assert "--resume: no study 'b1'" in cli("optimize", MODEL, *DATA, "--results-dir", tmp_path / "results",
                                            "--study", "b1", "--trials", "2", "--resume").stderr   # indeed none
    assert not (tmp_path / "opt").exists()


def test_the_untouched_model_on_the_profiles_backend_is_the_baseline_not_a_new_candidate(cli, tmp_path):
    """A walkthrough: on intel-cpu (OpenVINO or ONNX Runtime) the sampled OpenVINO float candidate was packaged
    and measured again beside the baseline, the same bundle under another content key, and counted."""
    space = tmp_path / "space.toml"
    space.write_text('backend = ["openvino", "onnxruntime"]\nquantize = ["none"]\nprecision = ["fp32"]\n'
                     'threads = [1]\n')
    r = _optimize(cli, tmp_path, "--profile", "intel-cpu", "--space", space, "--sampler", "grid", "--trials", "4",
                  "--study", "same", "--budget", "latency_p90_ms=5x")
    assert r.exit_code == 0, r.stderr
    rows = r.json()["trials"]
    assert rows[0]["baseline"] and rows[0]["config"] == "backend=openvino quantize=none precision=fp32 threads=1"
    again = [row for row in rows[1:] if row["config"] == rows[0]["config"]]
    assert again and all(row["cached"] for row in again), rows
    # answered by the baseline, its ratio to itself: 1 (the baseline records none; it ranked at inf, a review)
    assert all(row["paired"] == {"latency_p90_ms": 1.0} and row["feasible"] for row in again), again
