"""The noise statistic: robust_cv (1.4826 x MAD / median) flags a spread-out run, not a quiet run with a
few stalls, which the cv (kept in the result) blows up."""
import time
import numpy as np

from device_agent.bench import NOISY_SPREAD, _warnings
from device_agent.measure.stats import summarize


def _latency(samples):
    return dict(summarize(samples), stopped_by="max_iterations", min_iterations=0)


def test_a_few_stalls_do_not_make_a_run_noisy():
    rng = np.random.default_rng(0)
    samples = 0.02 * np.exp(rng.normal(0, 0.02, 10000))
    samples[rng.choice(10000, 8, replace=False)] = 100.0   # eight 100 ms preemptions among 20 us inferences
    lat = _latency(samples)
    assert lat["cv"] > 5 and lat["robust_cv"] < 0.05
    assert not [w for w in _warnings(lat, {}) if w.startswith("noisy run")]


def test_a_spread_out_run_is_flagged_and_the_message_gives_both_figures():
    rng = np.random.default_rng(1)
    lat = _latency(0.02 * np.exp(rng.normal(0, 0.3, 2000)))
    assert lat["robust_cv"] > NOISY_SPREAD
    (warning,) = [w for w in _warnings(lat, {}) if w.startswith("noisy run")]
    assert "robust spread" in warning and "cv %.2f" % lat["cv"] in warning


def test_robust_cv_matches_cv_on_normal_data():
    samples = np.random.default_rng(2).normal(10.0, 0.5, 20000)
    lat = summarize(samples)
    assert abs(lat["robust_cv"] - lat["cv"]) < 0.003
    assert summarize([1.0] * 5)["robust_cv"] == 0.0


def test_a_slow_mode_is_flagged_where_the_robust_spread_ignores_it():
    """A fifth of the runs at 5x the median (threads waiting for cores): the robust spread stays low by design,
    p90 reads the slow mode, and the run says so. A few stalls stay unflagged."""
    rng = np.random.default_rng(3)
    samples = 0.03 * np.exp(rng.normal(0, 0.02, 5000))
    samples[rng.choice(5000, 1000, replace=False)] *= 5
    lat = _latency(samples)
    assert lat["robust_cv"] < NOISY_SPREAD and abs(lat["slow_share"] - 0.2) < 1e-9
    (warning,) = [w for w in _warnings(lat, {}) if w.startswith("slow mode")]
    assert warning.startswith("slow mode: 20% of runs took more than twice the median")
    quiet = 0.03 * np.exp(rng.normal(0, 0.02, 5000))
    quiet[:8] = 100.0
    assert not [w for w in _warnings(_latency(quiet), {}) if w.startswith("slow mode")]


def test_more_threads_than_cpus_is_said():
    from device_agent.bench import _thread_warnings
    (warning,) = _thread_warnings(4, "profile", {"logical_cpus": 2})
    assert warning.startswith("4 threads (profile) on a device with 2 logical CPUs") and "--threads 2" in warning
    assert _thread_warnings(2, "profile", {"logical_cpus": 2}) == [] and _thread_warnings(4, "x", {}) == []


def test_a_bundle_packaged_past_its_parity_check_says_so_where_measured():
    from device_agent.bench import _parity_warnings
    (warning,) = _parity_warnings({"parity": {"passed": False, "allowed_by": "--allow-mismatch"}})
    assert warning.startswith("the bundle failed its parity check when packaged (allowed by --allow-mismatch)")
    assert _parity_warnings({"parity": {"passed": True}}) == [] and _parity_warnings({}) == []


def test_one_sample_has_no_spread_figure():
    """A run of one sample read "± 0.0000 ms (cv 0.00)": a perfectly steady device, from nothing."""
    lat = summarize([0.1625])
    assert "std_ms" not in lat and "cv" not in lat
    assert lat["std_ms_absent"] == lat["cv_absent"] == "needs at least 2 samples, have 1"
    assert summarize([0.1, 0.3])["std_ms"] > 0



def test_max_iterations_bounds_the_timed_runs_not_the_warm_up():
    """`bench --max-iterations 50` ended a 0.2 s warm-up after 1 ms without a word (a user review)."""
    from device_agent.measure.latency import LoopSettings, warm_up
    count, seconds = warm_up(lambda: None, LoopSettings(max_iterations=50, warmup_min_seconds=0.05))
    assert count > 50 and seconds >= 0.05
    count, seconds = warm_up(lambda: time.sleep(0.001), LoopSettings(max_iterations=5, warmup_min_seconds=0))
    assert count == 10   # the warm-up's own count, past max_iterations
    count, seconds = warm_up(lambda: time.sleep(0.03), LoopSettings(max_seconds=0.05, warmup_min_seconds=0))
    assert count == 2   # but not past max_seconds: a slow model's warm-up would outlast the run
