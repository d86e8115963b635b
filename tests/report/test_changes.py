"""Change points in a p90 history: binary segmentation on log p90 (edgeopt/report/changes.py)."""
import numpy as np
from hypothesis import given, settings, strategies as st

from edgeopt.report.changes import MIN_RELATIVE_NOISE, MIN_SEGMENT, change_points, segments

FAST = settings(max_examples=200, deadline=None, derandomize=True, database=None)   # a property of most inputs


def noisy(level, n, spread, seed):
    """n runs around `level` with multiplicative noise of at most +-spread."""
    rng = np.random.default_rng(seed)
    return level * (1 + rng.uniform(-spread, spread, n))


@FAST
@given(level=st.floats(1e-3, 1e3), n=st.integers(0, 60), seed=st.integers(0, 2**32 - 1))
def test_no_change_in_a_steady_series(level, n, seed):
    # noise within the noise floor: run-to-run wobble on a shared machine is not a change
    assert change_points(noisy(level, n, MIN_RELATIVE_NOISE / 2, seed)) == []


@FAST
@given(level=st.floats(1e-3, 1e3), before=st.integers(MIN_SEGMENT, 30), after=st.integers(MIN_SEGMENT, 30),
       ratio=st.sampled_from([0.5, 0.7, 1.4, 1.5, 3.0]), seed=st.integers(0, 2**32 - 1))
def test_one_step_is_found_where_it_is(level, before, after, ratio, seed):
    series = np.concatenate([noisy(level, before, 0.01, seed), noisy(level * ratio, after, 0.01, seed + 1)])
    assert change_points(series) == [before]
    (a, b, first), (c, d, second) = segments(series, [before])
    assert (a, b, c, d) == (0, before, before, before + after)
    assert abs(second / first - ratio) < 0.05 * ratio


@FAST
@given(level=st.floats(1e-2, 1e2), scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**32 - 1),
       sizes=st.lists(st.integers(MIN_SEGMENT, 12), min_size=1, max_size=4))
def test_scale_free_and_levels_found_in_order(level, scale, seed, sizes):
    # levels alternate x1, x2: every boundary is a 2x step, far above any noise
    parts = [noisy(level * (2 if i % 2 else 1), n, 0.01, seed + i) for i, n in enumerate(sizes)]
    series = np.concatenate(parts)
    expected = list(np.cumsum(sizes)[:-1])
    assert change_points(series) == expected
    assert change_points(series * scale) == expected   # log space: a ms series and a s series agree


def test_one_outlier_is_not_a_level():
    series = [10.0] * 10 + [30.0] + [10.0] * 10
    assert change_points(series) == []


def test_scattered_outliers_are_not_a_level_either():
    # a level needs MIN_SEGMENT (3) runs with their median there: two slow runs of three would be one
    series = [10.0, 10.2, 9.9] * 4 + [35.0, 10.1, 9.9, 31.0] + [10.1, 9.8, 10.0] * 4
    assert change_points(series) == []
    assert change_points(series[:12] + [35.0, 31.0, 33.0] + series[16:]) == [12, 15]


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(8, 120), gap=st.integers(3, 20))
def test_preempted_runs_give_no_change(seed, n, gap):
    # what a shared CI machine does: steady runs, and now and then one 2-4x slower (never two of three in a row)
    rng = np.random.default_rng(seed)
    series = noisy(1.0, n, MIN_RELATIVE_NOISE / 2, seed)
    spikes = np.arange(int(rng.integers(0, gap)), n, gap)
    series[spikes] *= rng.uniform(2, 4, spikes.size)
    assert change_points(series) == []


def test_false_changes_are_rare_in_gaussian_noise():
    """The penalty's calibration: log-normal run-to-run noise of 5 %, 200 series of 8 to 200 runs."""
    rng = np.random.default_rng(7)
    false = sum(bool(change_points(np.exp(rng.normal(0, 0.05, n)))) for n in [8, 20, 50, 100, 200] * 40)
    assert false <= 4
    found = sum(change_points(np.exp(np.r_[rng.normal(0, 0.05, 4), rng.normal(0.3, 0.05, 4)])) == [4]
                for _ in range(100))
    assert found >= 85   # a 30 % step between two levels of four runs
