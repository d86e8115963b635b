"""The regression gate: a rank test on block medians plus a block-bootstrap interval of the p50/p90 ratio,
judged against a minimum effect. Seeded, autocorrelated samples like a real run's; then the CLI."""
import copy
import csv
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.signal import lfilter
from scipy.stats import mannwhitneyu

from edgeopt.regression import FASTER, INCONCLUSIVE, SAME, SLOWER, UNTESTED, block_length, compare_samples


def run_samples(rng, n, scale=1.0, phi=0.9, sigma=0.03, median_ms=0.02):
    """A run's samples in measurement order: log-latency an AR(1) process (stationary sd `sigma`, so
    neighbours are correlated as on a real machine) plus rare 5-100x stalls (preemption)."""
    noise = rng.standard_normal(n) * sigma * np.sqrt(1 - phi ** 2)
    out = median_ms * scale * np.exp(lfilter([1.0], [1.0, -phi], noise))
    stalls = rng.random(n) < 0.002
    out[stalls] *= rng.uniform(5, 100, stalls.sum())
    return out


def _gate(seed, scale, n=600, effect=0.05):
    rng = np.random.default_rng(seed)
    return compare_samples(run_samples(rng, n), run_samples(rng, n, scale), effect, resamples=200)


def test_two_draws_of_one_distribution_rarely_alarm():
    verdicts = [_gate(seed, 1.0)["verdict"] for seed in range(100)]
    false_alarms = sum(v != SAME for v in verdicts) / len(verdicts)
    assert false_alarms <= 0.05, verdicts


def test_a_10_percent_slowdown_is_flagged_and_a_speedup_is_faster():
    slower = [_gate(1000 + seed, 1.10)["verdict"] for seed in range(30)]
    assert sum(v == SLOWER for v in slower) / len(slower) >= 0.95, slower
    faster = [_gate(2000 + seed, 1 / 1.10)["verdict"] for seed in range(10)]
    assert all(v == FASTER for v in faster), faster


def test_a_faster_median_beside_a_tail_that_may_have_grown_is_no_speed_up():
    """"faster" of a run whose p50 fell 9 % while its p90 rose 54 % (its interval +5 %…+59 %): a CI job's busy
    spell (a walkthrough). A gate must not call a run faster whose tail may have grown."""
    rng = np.random.default_rng(0)
    base, cand = run_samples(rng, 2000), run_samples(rng, 2000, 0.9)
    cand[1000:1260] *= 1.9   # a busy spell: 13 % of the run
    r = compare_samples(base, cand, resamples=300)
    assert r["p50"]["ratio"] < 0.95 and r["p90"]["ratio"] > 1.5
    assert r["verdict"] == INCONCLUSIVE and r["reason"].startswith("p50 faster, but p=") and "p90 +" in r["reason"]
    faster = compare_samples(base, run_samples(rng, 2000, 0.9), resamples=300)
    assert faster["verdict"] == FASTER   # without the spell: faster, as before


def test_a_tiny_drift_in_10k_samples_is_significant_to_a_naive_test_but_no_regression():
    rng = np.random.default_rng(7)
    base, cand = run_samples(rng, 10000), run_samples(rng, 10000, 1.005)
    naive = sum(mannwhitneyu(cand, base).pvalue < 0.05 for base, cand in
                ((run_samples(np.random.default_rng(s), 10000), run_samples(np.random.default_rng(s + 99), 10000, 1.005))
                 for s in range(5)))
    assert naive >= 3   # raw samples: autocorrelation and n=10 000 make a 0.5% drift "significant"
    result = compare_samples(base, cand, resamples=300)
    assert result["verdict"] == SAME
    assert result["samples"]["baseline"]["block_length"] > 5   # the correlation was seen


def test_block_length_follows_the_autocorrelation():
    rng = np.random.default_rng(3)
    assert block_length(rng.standard_normal(4000)) <= 2
    assert block_length(run_samples(rng, 4000, phi=0.98)) > 20
    assert block_length(run_samples(rng, 4000, phi=0.9999)) == 4000 // 20   # capped: at least 20 blocks
    assert block_length(np.ones(100)) == 1


def test_the_minimum_effect_is_what_counts():
    rng = np.random.default_rng(11)
    base, cand = run_samples(rng, 2000, sigma=0.01), run_samples(rng, 2000, 1.03, sigma=0.01)
    assert compare_samples(base, cand, effect=0.05, resamples=300)["verdict"] == SAME
    small = compare_samples(base, cand, effect=0.01, resamples=300)
    assert small["verdict"] == SLOWER and small["p50"]["ci95"][0] > 1.01


def test_rules_and_report():
    rng = np.random.default_rng(5)
    base, cand = run_samples(rng, 1000), run_samples(rng, 1000, 1.2)
    r = compare_samples(base, cand, resamples=300)
    assert r["verdict"] == SLOWER and r["p_value"] < 0.05 and r["rule"] == "interval"
    assert 1.15 < r["p50"]["ratio"] < 1.25 and r["p50"]["ci95"][0] < r["p50"]["ratio"] < r["p50"]["ci95"][1]
    assert r == compare_samples(base, cand, resamples=300)   # seeded: a gate's verdict is reproducible
    assert compare_samples(base[:10], cand)["verdict"] == UNTESTED


def _busy_spell(seed):
    """A candidate 3% slower whose run had a busy spell (a fifth of it 1.8x slower) on a drifting machine."""
    rng = np.random.default_rng(seed)
    base = run_samples(rng, 10000, phi=0.995, sigma=0.05)
    cand = run_samples(rng, 10000, 1.03, phi=0.995, sigma=0.05)
    cand[7500:9500] *= 1.8
    return base, cand


def test_a_tail_that_grew_beyond_the_effect_unconfirmed_is_inconclusive_not_no_change():
    """The user review's case: p90 +57% at p=2.3e-07 read "no significant change" with its reason only in JSON."""
    r = compare_samples(*_busy_spell(0), resamples=300)
    assert r["verdict"] == INCONCLUSIVE and r["p_value"] < 0.05
    assert r["p90"]["ratio"] > 1.5 and r["p90"]["ci95"][0] < 1.05 < r["p90"]["ci95"][1]
    assert r["reason"].startswith("p=0.0") and "; p90 +" in r["reason"] and "reaches inside the 5% effect" in r["reason"]
    assert "the runs drift: blocks of" in r["reason"]
    rng = np.random.default_rng(0)   # a shorter spell in the candidate: only the tail moves, not the bulk
    base, cand = run_samples(rng, 10000), run_samples(rng, 10000)
    cand[4000:6000] *= 1.5
    tail = compare_samples(base, cand, resamples=300)
    assert tail["p_value"] >= 0.05 and tail["p90"]["ci95"][0] > 1.0 and tail["p90"]["ratio"] > 1.4
    assert tail["verdict"] == INCONCLUSIVE and "the rank test on block medians is not significant" in tail["reason"]
    assert tail["p90"]["direction"] == INCONCLUSIVE   # read "slower" beside the verdict "inconclusive"
    rng = np.random.default_rng(11)   # a change within the effect is still no change
    small = compare_samples(run_samples(rng, 2000, sigma=0.01), run_samples(rng, 2000, 1.02, sigma=0.01), resamples=300)
    assert small["verdict"] == SAME and "within the 5% effect" in small["reason"]


def test_an_inconclusive_gate_passes_with_its_reason_shown_and_junit_skipped(cli, int8_result, tmp_path):
    import xml.etree.ElementTree as ET
    base_samples, cand_samples = _busy_spell(0)
    paths = []
    for name, samples, created in (("base", base_samples, "2026-01-01"), ("cand", cand_samples, "2026-01-02")):
        doc = copy.deepcopy({k: v for k, v in int8_result.items() if not k.startswith("_")})
        doc["latency"]["samples_ms"], doc["created"] = samples.tolist(), created + "T00:00:00+00:00"
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc))
    junit = tmp_path / "gate.xml"
    r = cli("check", paths[1], "--baseline", paths[0], "--budget", "latency_p90_ms=1000", "--junit", junit)
    assert r.exit_code == 0, r.stdout + r.stderr
    text = " ".join(r.stdout.split())   # the table wraps its cells
    assert "inconclusive" in text and "; p90 +" in text and "back to back on a quiet device" in text, r.stdout
    skipped = [c for c in ET.parse(junit).getroot().iter("testcase") if c.find("skipped") is not None]
    assert [c.get("name") for c in skipped] == ["latency regression vs baseline"]
    assert skipped[0].find("skipped").get("message").startswith(f"inconclusive vs {paths[0]}: p=0.0")
    r = cli("-q", "check", paths[1], "--baseline", paths[0], "--budget", "latency_p90_ms=1000")   # a CI log too
    assert r.exit_code == 0 and r.stdout == "" and "regression gate inconclusive: p=0.0" in r.stderr, r.stderr


def test_a_speedup_or_a_change_the_runs_cannot_tell_is_no_inconclusive_but_says_why():
    """A walkthrough: a speed-up its interval did not confirm (p90 -5.8 %) was "inconclusive", a skipped JUnit case
    and "measure again"; +57 % with p=0.35 read "no significant change" with no word why."""
    from edgeopt.regression import _verdict
    from edgeopt.report.tables import regression_lines, regression_table
    faster = compare_samples(*reversed(_busy_spell(0)), resamples=300)   # the busy spell in the baseline
    assert faster["p90"]["ratio"] < 0.7 and faster["verdict"] == SAME, faster
    assert faster["reason"].endswith("faster beyond the 5% effect, not confirmed; no slowdown"), faster["reason"]
    quantile = {"baseline_ms": 0.0192, "candidate_ms": 0.0302, "ratio": 1.569, "ci95": [0.97, 1.8],
                "direction": INCONCLUSIVE}
    out = {"p50": quantile, "p90": dict(quantile, ratio=1.01, direction=SAME), "effect": 0.05, "alpha": 0.05,
           "p_value": 0.351}
    verdict, reason = _verdict(out, 0.351, 0.05, 0.05)
    assert verdict == SAME and "p50 +56.9%" in reason and "these runs cannot tell a change from noise" in reason
    entry = dict(out, verdict=verdict, reason=reason, bundle="m", device="pi", baseline={}, notes=[])
    assert regression_lines([entry]) == [f"[yellow]m@pi: regression gate not confirmed:[/] {reason}"]
    within = dict(entry, p50=dict(quantile, ratio=2.0, direction=SAME), p_value=6.8e-08, effect=5.0)
    from rich.console import Console
    console = Console(width=200, record=True)
    console.print(regression_table([within]))   # significant, inside --min-effect 5: not "no significant change"
    assert "no change beyond the 500% effect" in console.export_text() and regression_lines([within]) == []


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), scale=st.floats(0.01, 100))
def test_a_run_against_itself_is_no_change_at_any_scale(seed, scale):
    samples = run_samples(np.random.default_rng(seed), 300) * scale
    r = compare_samples(samples, samples, resamples=100)
    assert r["verdict"] == SAME and r["p50"]["ratio"] == 1.0


# --- the CLI -------------------------------------------------------------------------------------------

def _steady(doc: dict) -> dict:
    """The real result, its agent's warnings left out: these tests are about other notes, and a busy host flags the
    fixture's short run noisy (then said beside every verdict), with samples too spread to confirm a 15 % change.
    Its samples are a seeded 2 % spread around its own p50."""
    doc = copy.deepcopy({k: v for k, v in doc.items() if not k.startswith("_")})
    lat, p50 = doc["latency"], doc["latency"]["p50_ms"]
    lat["samples_ms"] = list(p50 * (1 + 0.02 * np.random.default_rng(0).standard_normal(len(lat["samples_ms"]))))
    for key, q in (("p50_ms", 50), ("p90_ms", 90), ("p95_ms", 95), ("p99_ms", 99)):
        lat[key] = float(np.percentile(lat["samples_ms"], q))
    lat["mean_ms"] = float(np.mean(lat["samples_ms"]))
    doc["warnings"] = []
    return doc


def _scaled(doc, scale, created, name="r.json", tmp_path=None):
    doc = copy.deepcopy({k: v for k, v in doc.items() if not k.startswith("_")})
    lat = doc["latency"]
    lat["samples_ms"] = [x * scale for x in lat["samples_ms"]]
    for key in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms"):
        if key in lat:
            lat[key] *= scale
    doc["created"] = created
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path, doc


@pytest.fixture
def pair(int8_result, tmp_path):
    """A real result as the baseline, and the same samples twice as slow (the
    machine under test is busy: a smaller factor can drown in the run's own drift) as the candidate."""
    base, base_doc = _scaled(int8_result, 1.0, "2026-01-01T00:00:00+00:00", "base.json", tmp_path)
    slow, slow_doc = _scaled(int8_result, 2.0, "2026-01-02T00:00:00+00:00", "slow.json", tmp_path)
    return base, slow, base_doc, slow_doc


def test_check_with_a_baseline_exits_1_on_a_regression(cli, pair, tmp_path):
    base, slow, _, _ = pair
    r = cli("check", slow, "--baseline", base, "--budget", "latency_p90_ms=1000", "--json")
    assert r.exit_code == 1, r.stdout + r.stderr
    gate = r.json()["regressions"][0]
    assert gate["verdict"] == SLOWER and gate["baseline"]["result"] == str(base)
    assert abs(gate["p50"]["ratio"] - 2.0) < 1e-6
    r = cli("check", slow, "--baseline", base, "--budget", "latency_p90_ms=0.000001", "-q")   # a CI log says why
    assert r.exit_code == 1 and r.stdout == "" and "misses <= 1e-06 ms" in r.stderr, r.stderr
    assert f"significantly slower than {base} (p50 +100.0%, p90 +100.0%)" in r.stderr
    # a result given as its own baseline (or found again in its folder's history/) would always pass
    r = cli("check", base, "--baseline", base, "--budget", "latency_p90_ms=1000")
    assert r.exit_code == 2 and "is this measurement itself" in r.stderr, r.stdout + r.stderr
    history = tmp_path / "history"
    history.mkdir()
    for result in (base, slow):
        (history / f"copy-{result.name}").write_text(result.read_text())
    r = cli("check", slow, "--baseline", history, "--budget", "latency_p90_ms=1000", "--json")
    assert r.exit_code == 1 and r.json()["regressions"][0]["baseline"]["created"].startswith("2026-01-01")
    r = cli("check", slow, "--baseline", tmp_path, "--budget", "latency_p90_ms=1000", "--json")
    assert r.exit_code == 1 and r.json()["regressions"][0]["verdict"] == SLOWER
    r = cli("check", base, "--baseline", slow, "--budget", "latency_p90_ms=1000", "--min-effect", "0.1", "--json")
    assert r.exit_code == 0 and r.json()["regressions"][0]["verdict"] == FASTER


def test_a_results_folder_as_the_baseline_takes_the_bundles_earlier_run_from_its_history(cli, pair, tmp_path):
    """`--baseline results/` read only each bundle's latest file, which is the candidate itself, and took another
    bundle measured after it (a user walkthrough): the README says the newest other run created before it."""
    base, slow, base_doc, slow_doc = pair
    folder = tmp_path / "results"
    (folder / "history").mkdir(parents=True)
    stem = f"{slow_doc['bundle']['name']}@{slow_doc['device']['name']}"
    (folder / f"{stem}.json").write_text(slow.read_text())
    (folder / "history" / f"{stem}-20260101T000000000000Z.json").write_text(base.read_text())
    (folder / "history" / f"{stem}-20260102T000000000000Z.json").write_text(slow.read_text())
    later = dict(slow_doc, created="2026-01-03T00:00:00+00:00", bundle=dict(slow_doc["bundle"], name="other"))
    (folder / f"other@{slow_doc['device']['name']}.json").write_text(json.dumps(later))
    (folder / "history" / f"{stem}-20250101T000000000000Z.json").write_text("{ truncated")   # one unreadable: skipped
    r = cli("check", folder / f"{stem}.json", "--baseline", folder, "--budget", "latency_p90_ms=1000", "--json")
    gate = r.json()["regressions"][0]
    assert r.exit_code == 1 and gate["verdict"] == SLOWER and gate["baseline"]["created"].startswith("2026-01-01"), gate


def test_a_baseline_without_samples_tests_nothing_and_is_refused(cli, pair, tmp_path):
    """It read "not tested: a result without latency.samples_ms" and passed: a gate that tests nothing."""
    _, slow, base_doc, _ = pair
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(dict(base_doc, latency={k: v for k, v in base_doc["latency"].items()
                                                       if k != "samples_ms"})))
    r = cli("check", slow, "--baseline", bare, "--budget", "latency_p90_ms=1000")
    assert r.exit_code == 2 and f"no result could be tested (no latency.samples_ms in {bare})" in r.stderr, r.stderr
    # a short run is the measurement's own limit, said as "not tested" with the budgets' verdict kept (a review)
    short = tmp_path / "short.json"
    short.write_text(json.dumps(dict(base_doc, latency=dict(base_doc["latency"], samples_ms=base_doc["latency"][
        "samples_ms"][:5]))))
    r = cli("check", slow, "--baseline", short, "--budget", "latency_p90_ms=1000")
    assert r.exit_code == 0 and "not tested: fewer than 20 samples on a" in r.stdout, r.stdout   # the cell wraps
    quiet = cli("check", slow, "--baseline", short, "--budget", "latency_p90_ms=1000", "-q")   # said under -q too
    assert quiet.exit_code == 0 and "regression gate not tested: fewer than 20 samples" in quiet.stderr, quiet.stderr


def test_the_store_answers_the_last_good_result(cli, pair, tmp_path):
    from edgeopt.store import Store
    base, slow, base_doc, slow_doc = pair
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    store.add(dict(base_doc, created="2025-12-01T00:00:00+00:00", latency=dict(base_doc["latency"],
              samples_ms=[x * 2 for x in base_doc["latency"]["samples_ms"]])))   # older: not the last good
    store.add(base_doc)
    store.add(dict(base_doc, status="failed", created="2026-01-01T12:00:00+00:00"))   # newer, but failed
    store.add(slow_doc)                                                              # the candidate itself
    store.close()
    r = cli("check", slow, "--baseline", "store", "--store", url, "--budget", "latency_p90_ms=1000", "--json")
    assert r.exit_code == 1, r.stdout + r.stderr
    gate = r.json()["regressions"][0]
    assert gate["verdict"] == SLOWER and gate["baseline"]["created"] == base_doc["created"]
    r = cli("check", base, "--baseline", "store", "--store", url, "--budget", "latency_p90_ms=1000", "--json")
    assert r.exit_code == 0 and r.json()["regressions"][0]["verdict"] == FASTER   # against the 2x older one
    # without --store, the store beside the result files (as `report` finds it), wherever check runs from: it
    # looked for ./results/edgeopt.db and failed; in a folder whose name a URL would read as a query, a fragment
    # and an escape
    folder = tmp_path / "else?where#50%" / "results"
    (folder / "history").mkdir(parents=True)
    (tmp_path / "store.db").rename(folder / "edgeopt.db")
    moved = folder / "history" / "slow.json"
    moved.write_text(slow.read_text())
    r = cli("check", moved, "--baseline", "store", "--budget", "latency_p90_ms=1000", "--json")
    assert r.exit_code == 1 and r.json()["regressions"][0]["verdict"] == SLOWER, r.stdout + r.stderr
    r = cli("report", moved, "--format", "markdown", "-o", tmp_path / "r.md")   # and report reads its history
    assert r.exit_code == 0 and "no history" not in (tmp_path / "r.md").read_text(), r.stderr


def test_a_store_baseline_is_named_by_its_time_and_file_and_a_gate_without_one_checked_nothing(cli, pair, tmp_path):
    """A CI review: the JUnit failure named the baseline "results store row 5" (an id only history --json shows)
    and left out the gate's notes; and with every budget dropped and no baseline in the store, check said
    "checked": true and passed in silence."""
    import xml.etree.ElementTree as ET

    from edgeopt.store import Store
    base, slow, base_doc, slow_doc = pair
    url = f"sqlite:///{tmp_path / 'store.db'}"
    dropped = ("--budget", "latency_p90_ms=none", "--budget", "accuracy_drop=none", "--budget", "peak_rss_mb=none")
    Store(url).close()   # a store with no result yet: a pipeline's first run
    first = cli("check", slow, "--baseline", "store", "--store", url, *dropped, "--json")
    assert first.exit_code == 0 and first.json()["checked"] is False and first.json()["headline"].endswith(
        "and the regression gate found no baseline to compare with"), first.stdout
    quiet = cli("check", slow, "--baseline", "store", "--store", url, *dropped, "-q")
    assert quiet.exit_code == 0 and quiet.stderr.startswith("edgeopt: warning: nothing checked: "), quiet.stderr
    few = tmp_path / "few.json"   # a baseline found, but too short to test: not "found no baseline"
    few.write_text(json.dumps(dict(base_doc, latency=dict(base_doc["latency"], samples_ms=[0.1, 0.1, 0.1]))))
    short = cli("check", slow, "--baseline", few, *dropped, "--json").json()
    assert short["checked"] is False and "the regression gate tested nothing: " in short["headline"] and \
        "found no baseline" not in short["headline"], short["headline"]
    with Store(url) as store:
        threads = (slow_doc.get("settings") or {}).get("threads", 1) + 1   # a note for the gate to pass on
        store.add(dict(base_doc, _path="/ci/results/base.json", settings=dict(base_doc.get("settings") or {},
                                                                              threads=threads)))
    r = cli("check", slow, "--baseline", "store", "--store", url, *dropped, "--junit", tmp_path / "j.xml")
    assert r.exit_code == 1, r.stdout + r.stderr
    failure = ET.parse(tmp_path / "j.xml").find(".//testcase[@name='latency regression vs baseline']/failure")
    created = base_doc["created"][:19].replace("T", " ")
    assert f"vs the store's result of {created} UTC (/ci/results/base.json)" in failure.get("message") and \
        f"; note: threads {threads} -> " in failure.get("message"), failure.get("message")


def test_compare_labels_rows_and_shows_the_gate(cli, pair, tmp_path):
    base, slow, _, _ = pair
    r = cli("compare", base, slow, "--baseline", base)
    assert r.exit_code == 1   # the regression fails compare as it fails check
    assert "local" in r.stdout and "2026-01-02 00:00" in r.stdout and "SLOWER" in r.stdout, r.stdout
    rows = cli("compare", base, slow, "--json").json()["rows"]
    assert [r["created"][:10] for r in rows] == ["2026-01-01", "2026-01-02"]
    assert rows[0]["device"] == "local" and rows[0]["runtime"].startswith("onnxruntime ") and rows[0]["threads"]
    assert "Regression gate (minimum effect 5%)" in r.stdout and "+100.0%" in r.stdout
    quiet = cli("compare", base, slow, "--baseline", base, "-q")   # both tables as plain lines, a blank between
    assert quiet.exit_code == 1
    rows, verdicts = quiet.stdout.split("\n\n")
    assert rows.splitlines()[0].startswith("bundle\t") and len(rows.splitlines()) == 3
    assert verdicts.splitlines()[0] == "device\tbundle\tbaseline\tp50 ms\tp90 ms\tp\tverdict"
    assert "\tSLOWER" in verdicts and "+100.0%" in verdicts and "[" not in quiet.stdout
    # a store that does not exist is a mistyped path (bench always writes one): it made an empty store and passed
    typo = tmp_path / "typo" / "edgeopt.db"
    r = cli("check", slow, "--baseline", "store", "--store", f"sqlite:///{typo}", "--budget", "latency_p90_ms=1000")
    assert r.exit_code == 2 and f"no results store at {typo}" in r.stderr and not typo.parent.exists()
    from edgeopt.store import Store
    Store(f"sqlite:///{tmp_path / 'empty.db'}").close()   # one that holds nothing yet: the first run of a pipeline
    r = cli("compare", slow, "--baseline", "store", "--store", f"sqlite:///{tmp_path / 'empty.db'}", "--json")
    assert r.json()["regressions"][0]["verdict"] == UNTESTED and "holds no ok result" in r.json()["regressions"][0]["reason"]


def test_bad_baseline_input_is_one_line(cli, pair, tmp_path):
    base, slow, base_doc, _ = pair
    bad = tmp_path / "bad.json"
    doc = dict(base_doc, latency=dict(base_doc["latency"], samples_ms=["1", 2]))
    bad.write_text(json.dumps(doc))
    r = cli("check", slow, "--baseline", bad)
    assert r.exit_code == 2 and r.stderr.startswith(f"edgeopt: error: --baseline: {bad}: latency.samples_ms must be "
                                                    "a non-empty list")
    r = cli("check", slow, "--baseline", "store", "--baseline", base)
    assert r.exit_code == 2 and "cannot be combined" in r.stderr
    r = cli("check", slow, "--baseline", tmp_path / "missing.json")
    assert r.exit_code == 2 and "--baseline: result file not found" in r.stderr   # which of the files it was


def test_a_change_in_the_device_s_state_is_noted():
    from edgeopt.regression import environment_notes
    base = {"device": {"logical_cpus": 4}, "environment": {"load_1m": 0.2, "cpufreq": {"policy0": {"governor": "performance"}}}}
    busy = {"device": {"logical_cpus": 4}, "environment": {"load_1m": 3.9, "cpufreq": {"policy0": {"governor": "powersave"}}}}
    notes = environment_notes(base, busy)
    assert notes[0].startswith("load average 0.2 -> 3.9 on 4 CPUs") and notes[1] == "CPU governor performance -> powersave"
    assert environment_notes(base, base) == [] and environment_notes({}, busy) == []


def _gate_on_host(cli, doc: dict, host: str, tmp_path, url: str, baseline: str = "store") -> tuple:
    """(the file of `doc` measured on `host`, its regression gate's entry against the store at `url`)."""
    moved = copy.deepcopy(doc)
    moved["device"]["hostname"] = host
    path = tmp_path / f"{host}.json"
    path.write_text(json.dumps(moved))
    return path, cli("check", path, "--baseline", baseline, "--store", url, "--budget", "latency_p90_ms=1000",
                     "--json").json()["regressions"][0]


def test_a_team_store_gives_only_this_machines_result_as_the_baseline(cli, pair, tmp_path):
    """Every teammate's laptop and CI runner is `local`: another machine's result of that name is no baseline,
    however new. A result that records no host (an older file) still counts."""
    from edgeopt.store import Store
    base, slow, base_doc, slow_doc = pair
    mine = slow_doc["device"]["hostname"]
    url = f"sqlite:///{tmp_path / 'team.db'}"
    store = Store(url)
    store.add(base_doc)   # this machine's, on 2026-01-01
    laptop = copy.deepcopy(base_doc)
    laptop["device"]["hostname"], laptop["created"] = "teammates-laptop", "2026-01-01T18:00:00+00:00"
    laptop["latency"]["samples_ms"] = [x * 8 for x in laptop["latency"]["samples_ms"]]   # newer, 8x slower
    store.add(laptop)
    store.close()
    gate = cli("check", slow, "--baseline", "store", "--store", url, "--budget", "latency_p90_ms=1000",
               "--json").json()["regressions"][0]
    assert gate["verdict"] == SLOWER and gate["baseline"]["created"] == base_doc["created"]   # not the laptop's
    path, gate = _gate_on_host(cli, slow_doc, "ci-runner-7", tmp_path, url)
    assert gate["verdict"] == UNTESTED and "on local (host ci-runner-7; " in gate["reason"]
    files = cli("check", path, "--baseline", base, "--budget", "latency_p90_ms=1000", "--json")
    # a file baseline of another host is no baseline either: given by hand and matching no result, it is bad input
    # (the gate would test nothing and pass), saying why the file given was not used
    assert files.exit_code == 2 and files.json()["error"]["message"] == (
        f"--baseline {base}: no baseline for any result given (no baseline result for device local on host "
        f"ci-runner-7; {base} ran on host {mine}: another machine's speed is no baseline)")
    mixed = cli("check", path, slow, "--baseline", base, "--budget", "latency_p90_ms=1000", "--json").json()
    assert [g["verdict"] for g in mixed["regressions"]] == [UNTESTED, SLOWER]   # one tested: the other said apart
    assert mine != "ci-runner-7"


def test_a_runner_of_one_host_name_on_other_hardware_is_no_baseline_and_store_hardware_spans_host_names(
        cli, pair, tmp_path):
    """CI runners: a fixed host name on another VM type (an 8-CPU Xeon's results, then a 2-CPU EPYC) was called
    20 % slower without a word, and a host name that changes every job never found a baseline, so the gate tested
    nothing and passed, unsaid (a CI walkthrough). The hardware is part of the machine; `store:hardware` takes any
    host's result of the same hardware."""
    from edgeopt.store import Store
    base, slow, base_doc, slow_doc = pair
    url = f"sqlite:///{tmp_path / 'ci.db'}"
    with Store(url) as store:
        xeon = copy.deepcopy(base_doc)
        xeon["device"].update(cpu_model="Intel Xeon 8370C", logical_cpus=8, usable_cpus=8)
        store.add(xeon)
    gate = cli("check", slow, "--baseline", "store", "--store", url, "--budget", "latency_p90_ms=1000",
               "--json").json()["regressions"][0]
    assert gate["verdict"] == UNTESTED and "(its results of local on host" in gate["reason"] and \
        "ran on Intel Xeon 8370C, " in gate["reason"] and "8 logical CPUs" in gate["reason"], gate["reason"]
    files = cli("check", slow, "--baseline", tmp_path / "xeon.json", "--budget", "latency_p90_ms=1000", "--json") \
        if (tmp_path / "xeon.json").write_text(json.dumps(xeon)) else None
    assert files.exit_code == 2 and "on Intel Xeon 8370C" in files.json()["error"]["message"]
    with Store(url) as store:   # another runner's name, this run's hardware
        runner = copy.deepcopy(base_doc)
        runner["device"]["hostname"], runner["created"] = "fv-az123-456", "2026-01-01T12:00:00+00:00"
        store.add(runner)
    path, gate = _gate_on_host(cli, slow_doc, "fv-az987-654", tmp_path, url)
    assert gate["verdict"] == UNTESTED and "it holds 1 of other hosts of the same hardware (fv-az123-456): " \
        "`--baseline store:hardware` compares with those" in gate["reason"], gate["reason"]
    gate = cli("check", path, "--baseline", "store:hardware", "--store", url, "--budget", "latency_p90_ms=1000",
               "--json").json()["regressions"][0]
    assert gate["verdict"] == SLOWER and gate["baseline"]["created"] == runner["created"]   # not the Xeon's
    with Store(url) as store:   # 61 newer runs of another VM type hid it behind the store's 60-row window (a review)
        for second in range(61):
            other = copy.deepcopy(xeon)
            other["device"]["hostname"] = "fv-xeon"
            other["created"] = f"2026-01-01T13:{second // 60:02d}:{second % 60:02d}+00:00"
            store.add(other)
    gate = cli("check", path, "--baseline", "store:hardware", "--store", url, "--budget", "latency_p90_ms=1000",
               "--json").json()["regressions"][0]
    assert gate["verdict"] == SLOWER and gate["baseline"]["created"] == runner["created"]


def test_a_change_of_threads_or_runtime_is_noted():
    from edgeopt.regression import environment_notes
    base = {"settings": {"threads": 2}, "runtime": {"name": "onnxruntime", "version": "1.32.0"}}
    cand = {"settings": {"threads": 1}, "runtime": {"name": "onnxruntime", "version": "1.33.0"}}
    notes = environment_notes(base, cand)
    assert notes == ["threads 2 -> 1: part of the change may be the setting's, not the model's",
                     "runtime onnxruntime 1.32.0 -> onnxruntime 1.33.0: part of the change may be the setting's, "
                     "not the model's"]
    assert environment_notes(base, base) == [] and environment_notes({"settings": "junk"}, cand) == []


def test_a_bundle_of_the_same_name_for_another_profile_is_no_baseline_and_its_replacement_is_said(cli, tmp_path):
    """d1/a.edgepkg (generic) and d2/a.edgepkg (raspberry-pi-5) both saved as results/a@local.json: the second
    replaced the first without a word, and `--baseline store` judged LiteRT against ONNX Runtime (a user review)."""
    from conftest import FAST_BENCH_ARGS, MODEL
    results_dir = tmp_path / "results"
    for folder, profile in (("d1", "generic"), ("d2", "raspberry-pi-5")):
        bundle = tmp_path / folder / "a.edgepkg"
        assert cli("package", MODEL, "-p", profile, "-o", bundle, "--allow-mismatch", "-q").exit_code == 0
        r = cli("bench", bundle, "--results-dir", results_dir, "--threads", "1", *FAST_BENCH_ARGS, "--json")
        assert r.exit_code in (0, 1), r.stderr
    assert "held a result of another bundle of that name (profile generic; this one raspberry-pi-5)" in \
        r.json()["_replaced"]
    gate = cli("check", results_dir / "a@local.json", "--baseline", "store", "--budget", "latency_p90_ms=1000",
               "--results-dir", results_dir, "--json").json()["regressions"][0]   # the store holds the generic one
    assert gate["verdict"] == UNTESTED and "no ok result of a for profile raspberry-pi-5 on local" in gate["reason"]


def test_a_bundle_of_the_same_name_made_another_way_is_said_when_replaced_and_in_the_gate(int8_result, tmp_path):
    """a/model.edgepkg (fp32) and b/model.edgepkg (INT8) both saved as results/model@local.json: the INT8 result
    replaced the fp32 one without a word, and the gate called INT8 against fp32 plain "faster" (a user review)."""
    from edgeopt import results
    from edgeopt.regression import environment_notes
    int8 = _steady(int8_result)
    fp32 = copy.deepcopy(int8)
    fp32["bundle"]["compression"] = {"quantize": "none", "precision": "fp32"}
    fp32["bundle"]["transforms"] = ["source", "prune"]   # as the agent copies them: the stages' names
    fp32["created"] = "2020-01-01T00:00:00+00:00"
    assert results.bundle_variant(int8) == "int8" and results.bundle_variant(fp32) == "fp32 + prune"
    assert results.bundle_variant(dict(fp32, bundle=dict(fp32["bundle"], transforms=[{"stage": "prune"}]))) == \
        "fp32 + prune"   # a manifest's shape of the same
    results.save(fp32, tmp_path)
    results.save(int8, tmp_path)
    assert "held a result of another bundle of that name (fp32 + prune; this one int8)" in int8["_replaced"]
    again = {k: v for k, v in copy.deepcopy(int8).items() if not k.startswith("_")}   # a new build of the same
    again["created"] = "2030-01-01T00:00:00+00:00"                                   # kind: replaced silently
    results.save(again, tmp_path)
    assert "_replaced" not in again
    assert environment_notes(fp32, int8) == ["bundle fp32 + prune -> int8: the baseline is another kind of bundle of "
                                             "that name, so the change is mostly the compression's"]
    assert results.bundle_variant({"bundle": "junk"}) is None and environment_notes({}, int8) == []
    # the oldest run of a report of history/ was gated against a later one unsaid (a clock walkthrough)
    assert environment_notes(again, int8)[0] == "the baseline was measured after the candidate: the verdict reads " \
        "the change backwards in time"
    other = copy.deepcopy(fp32)
    other["bundle"]["name"] = "model-fp32"   # a baseline given by hand under another name: not "of that name"
    assert environment_notes(other, int8)[0].startswith("bundle fp32 + prune -> int8: the baseline is another kind "
                                                        "of bundle (model-fp32), so")


def test_the_newest_baseline_before_the_candidate_is_chosen_by_time_not_text():
    """A code review: "…00:00Z" sorted after "…00:00.5+00:00" as text, and "+02:00" by its wall clock."""
    from edgeopt.regression import _newest_before
    candidate = {"created": "2026-01-01T00:00:00.5+00:00"}
    utc = {"created": "2026-01-01T00:00:00Z"}
    east = {"created": "2026-01-01T01:30:00+02:00"}   # 23:30 UTC the day before: older than `utc`
    assert _newest_before([east, utc], candidate) is utc
    assert _newest_before([{"created": None}, utc], candidate) is utc


def test_a_baseline_packaged_from_another_model_under_the_same_name_is_said(int8_result):
    """nets.py:lstm and nets.py:two_io both packaged as nets-fp32: the gate called the second 80 % faster than the
    first, another model, without a word (a user walkthrough). A checkout that moved (a CI runner's) is no change."""
    from edgeopt.regression import environment_notes
    base = _steady(int8_result)
    base["bundle"]["source"] = dict(base["bundle"].get("source") or {}, reference="/tmp/ci-1/nets.py:lstm")
    moved, other = copy.deepcopy(base), copy.deepcopy(base)
    moved["bundle"]["source"]["reference"] = "/tmp/ci-2/nets.py:lstm"
    other["bundle"]["source"]["reference"] = "/tmp/ci-2/nets.py:two_io"
    assert environment_notes(base, moved) == []
    assert environment_notes(base, other) == ["source nets.py:lstm -> nets.py:two_io: the baseline was packaged from "
                                              "another model under that bundle name"]
    onnx = copy.deepcopy(base)
    onnx["bundle"]["source"]["reference"] = "models/other.onnx"
    assert environment_notes(base, onnx)[0].startswith("source nets.py:lstm -> other.onnx:")


def test_the_ci_line_quotes_the_quantiles_that_grew():
    """A p90 that grew 48 % with its p50 at +2 % was said as "(p50 +2.0%)" (a code review)."""
    from edgeopt.cli import _slower_lines
    gate = {"bundle": "b", "device": "d", "verdict": SLOWER, "baseline": {"result": "base.json"},
            "p50": {"ratio": 1.02, "direction": "same"}, "p90": {"ratio": 1.48, "direction": SLOWER}}
    assert _slower_lines([gate]) == ["b@d: significantly slower than base.json (p90 +48.0%)"]


def _runs_of_one_model(scales, model="a" * 64, threads=1, seed=40):
    """Result documents of one model on one device, a day apart, each run's level `scale` (the host's state moved
    between runs): the history a results store or folder keeps."""
    rng = np.random.default_rng(seed)
    return [{"status": "ok", "created": f"2026-01-{day:02d}T00:00:00+00:00",
             "device": {"name": "pi", "hostname": "pi-1"}, "settings": {"threads": threads},
             "runtime": {"name": "onnxruntime", "version": "1.22.0"},
             "bundle": {"name": "m", "model_sha256": model, "manifest_sha256": f"{day:064x}"},
             "latency": {"samples_ms": list(run_samples(rng, 600, scale))}}
            for day, scale in enumerate(scales, start=1)]


def test_a_change_within_the_models_own_spread_between_runs_is_not_called_slower():
    """Identical runs minutes apart differed by more than one run's bootstrap allows (4 "slower" of 10 pairs of
    unchanged runs here): a change must clear the spread of the baseline model's own runs too, where it has five."""
    from edgeopt.regression import FLOOR_RUNS, between_run_floor
    runs = _runs_of_one_model([1.0, 1.12, 0.92, 1.08, 0.95, 1.0])
    baseline = runs[-1]
    rng = np.random.default_rng(41)
    candidate = dict(runs[0], created="2026-02-01T00:00:00+00:00", bundle=dict(baseline["bundle"], model_sha256="b" * 64),
                     latency={"samples_ms": list(run_samples(rng, 600, 1.15))})
    floor = between_run_floor(baseline, runs + [candidate], "the runs", candidate)
    assert floor["runs"] == 6 and 0.15 < floor["p50"] < 0.7, floor
    base, cand = (np.asarray(d["latency"]["samples_ms"]) for d in (baseline, candidate))
    plain = compare_samples(base, cand, resamples=300)
    assert plain["verdict"] == SLOWER   # without the runs' spread, +15% is a regression
    held = compare_samples(base, cand, resamples=300, floor=floor)
    assert held["verdict"] == INCONCLUSIVE and held["between_runs"] == floor, held
    assert "the model's own spread between runs (p50 ±" in held["reason"] and "from its 6 runs" in held["reason"]
    twice = compare_samples(base, cand * 2 / 1.15, resamples=300, floor=floor)
    assert twice["verdict"] == SLOWER and "and the model's own spread between runs" in twice["reason"], twice
    # only runs of that model, as measured: another model, another thread count, a later run, fewer than five
    others = _runs_of_one_model([1.3, 0.8, 1.3, 0.8], model="c" * 64) + _runs_of_one_model([0.7, 1.4], threads=4)
    assert between_run_floor(baseline, runs + others, "the runs", candidate) == floor
    assert between_run_floor(runs[FLOOR_RUNS - 2], runs, "x", candidate) is None
    assert between_run_floor(runs[FLOOR_RUNS - 1], runs, "x", candidate)["runs"] == FLOOR_RUNS
    assert between_run_floor(baseline, runs, "x", runs[0])["runs"] == 5   # never the candidate itself
    # runs of that model on another provider are other runs: four of them, far apart, change nothing
    cuda = [dict(d, created=f"2026-01-0{i}T12:00:00+00:00", runtime=dict(d["runtime"], providers=["CUDA"]),
                 latency={"samples_ms": [x * (5 if i % 2 else 0.2) for x in d["latency"]["samples_ms"]]})
            for i, d in enumerate(runs[:4], start=1)]
    assert between_run_floor(baseline, runs + cuda, "the runs", candidate) == floor
    # and a run's own figures in its runtime section (OpenVINO's read and compile times) do not make it another run
    timed = [dict(d, runtime=dict(d["runtime"], read_ms=10 + i, compile_ms=50 + i, model_cache={"hit": i > 0}))
             for i, d in enumerate(runs)]
    assert between_run_floor(timed[-1], timed, "the runs", candidate) == floor
    undated = dict(baseline, created=None)   # no time: no run can be told as before it
    assert between_run_floor(undated, runs, "x", candidate) is None
    assert between_run_floor(baseline, runs, "x", dict(candidate, created=None)) is None
    steady = _runs_of_one_model([1.0] * 6)   # a quiet device: its floor is below the effect, nothing changes
    steady_floor = between_run_floor(steady[-1], steady, "x", candidate)
    assert steady_floor["p50"] < 0.05 and "spread" not in compare_samples(
        base, cand, resamples=300, floor=steady_floor)["reason"]


def test_check_holds_a_change_to_the_baseline_models_spread_between_runs(cli, int8_result, tmp_path):
    """End to end: --baseline results/ (its history/) and --baseline store give the spread, said in the reason."""
    from edgeopt.store import Store
    folder = tmp_path / "results"
    (folder / "history").mkdir(parents=True)
    store = Store(f"sqlite:///{folder / 'edgeopt.db'}")
    steady = _steady(int8_result)
    model = dict(steady["bundle"], model_sha256="a" * 64)
    stem = f"{model['name']}@{steady['device']['name']}"
    for day, scale in enumerate([1.0, 1.12, 0.92, 1.08, 0.95, 1.0], start=1):
        path, doc = _scaled(dict(steady, bundle=model), scale, f"2026-01-{day:02d}T00:00:00+00:00",
                            f"{stem}-202601{day:02d}T000000000000Z.json", folder / "history")
        store.add(doc)
    (folder / f"{stem}.json").write_text(path.read_text())   # as results.save keeps them: the latest and history/
    store.close()
    for scale, code, verdict in ((1.15, 0, INCONCLUSIVE), (2.0, 1, SLOWER)):
        path, _ = _scaled(dict(steady, bundle=dict(model, model_sha256="b" * 64)), scale,
                          "2026-02-01T00:00:00+00:00", f"cand-{scale}.json", tmp_path)
        for baseline in (folder, "store"):
            r = cli("check", path, "--baseline", baseline, "--store", f"sqlite:///{folder / 'edgeopt.db'}", "--json")
            assert "regressions" in r.json(), r.stdout + r.stderr
            gate = r.json()["regressions"][0]
            assert r.exit_code == code and gate["verdict"] == verdict, r.stdout + r.stderr
            assert gate["between_runs"]["runs"] == 6 and "spread between runs" in gate["reason"], gate


_json = st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=8)


_FIELDS = st.sampled_from(["status", "created", "device", "bundle", "settings", "runtime", "latency"])


@settings(max_examples=80, deadline=None)
@given(changes=st.lists(st.dictionaries(_FIELDS, _json, min_size=1, max_size=3), max_size=4))
def test_the_between_run_floor_reads_any_store_row(changes):
    """A team store's older rows are not validated before the floor reads them: a run with any field replaced by
    any JSON is left out or read, never a crash of the gate."""
    from edgeopt.regression import between_run_floor
    runs = _runs_of_one_model([1.0] * 6)
    changed = [dict(run, **change) for run, change in zip(runs, changes)] + runs[len(changes):]
    floor = between_run_floor(runs[-1], changed, "x", {"created": "2030-01-01T00:00:00+00:00"})
    assert floor is None or 5 <= floor["runs"] <= 6
    intact = 6 - len(changes)
    if intact >= 5:   # the untouched runs alone make a floor
        assert floor is not None


def test_report_carries_the_regression_gate(cli, pair, tmp_path):
    """A pull-request comment (report --format markdown) carried no verdict of the gate: `report --baseline` shows
    its table, exits 1 on a slowdown as check does, and the HTML page shows it too."""
    base, slow, _, _ = pair
    r = cli("report", slow, "--baseline", base, "--budget", "latency_p90_ms=1000", "--format", "markdown")
    assert r.exit_code == 1, r.stdout + r.stderr
    assert "#### Regression gate (minimum effect 5%)" in r.stdout and "(+100.0%, CI" in r.stdout
    assert "| ❌ SLOWER |" in r.stdout and f"significantly slower than {base}" in r.stderr, r.stdout + r.stderr
    assert "❌ every budget holds, but the regression gate found a result significantly slower" in r.stdout
    quiet = cli("report", slow, "--baseline", base, "--budget", "latency_p90_ms=1000", "--format", "markdown", "-q")
    assert quiet.exit_code == 1 and f"significantly slower than {base}" in quiet.stderr   # a CI log says why
    data = cli("report", slow, "--baseline", base, "--budget", "latency_p90_ms=1000", "--format", "markdown", "--json")
    assert data.exit_code == 1 and data.json()["regressions"][0]["verdict"] == SLOWER
    page = tmp_path / "r.html"
    r = cli("report", base, "--baseline", slow, "--budget", "latency_p90_ms=1000", "-o", page, "--min-effect", "0.1")
    text = page.read_text()
    assert r.exit_code == 0 and "<h2>Regression gate" in text and "(minimum effect 10%)" in text, r.stderr
    assert '<span class="badge ok">faster</span>' in text
    r = cli("report", base, "--budget", "latency_p90_ms=1000", "--format", "markdown")   # without: no such section
    assert r.exit_code == 0 and "Regression gate" not in r.stdout
    # the CSV had no column for the gate: its verdict per result, empty without --baseline
    sheet = tmp_path / "r.csv"
    r = cli("report", slow, "--baseline", base, "--budget", "latency_p90_ms=1000", "-o", sheet)
    assert r.exit_code == 1 and next(csv.DictReader(io.StringIO(sheet.read_text())))["regression"] == SLOWER
    assert cli("report", slow, "--budget", "latency_p90_ms=1000", "-o", sheet).exit_code == 0
    assert next(csv.DictReader(io.StringIO(sheet.read_text())))["regression"] == ""
