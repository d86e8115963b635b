"""Format-neutral rows and the SVG they become, over generated latency samples: any sample set (one run, all
equal, a tail decades long) gives monotone ECDF points, bins that cover the run, and charts with finite
coordinates."""
import copy
import re

import pytest
from hypothesis import given, settings, strategies as st

from edgeopt.errors import BadInput
from edgeopt.report import html, rows
from edgeopt.report.svg import log_ticks, nice_ticks

FAST = settings(max_examples=150, deadline=None)
samples_ms = st.lists(st.floats(1e-4, 1e4, allow_nan=False), min_size=1, max_size=400)


def doc_with(base: dict, values: list) -> dict:
    doc = copy.deepcopy(base)
    doc["latency"]["samples_ms"] = values
    return doc


@FAST
@given(values=samples_ms)
def test_ecdf_and_timeline_describe_the_samples(int8_result, values):
    row = rows.latency_row(doc_with(int8_result, values))
    xs, ys = zip(*row["ecdf"])
    assert list(xs) == sorted(xs) and list(ys) == sorted(ys) and ys[-1] == 1.0 and 0 < ys[0]
    assert xs[0] == min(values) and xs[-1] == max(values) and len(xs) <= rows.ECDF_POINTS
    bins = row["timeline"]["bins"]
    assert bins[0]["start"] == 0 and bins[-1]["end"] == len(values)
    assert all(a["end"] == b["start"] for a, b in zip(bins, bins[1:]))
    assert all(b["p10"] <= b["median"] <= b["p90"] for b in bins)


@FAST
@given(values=samples_ms)
def test_charts_have_finite_coordinates(int8_result, values):
    doc = doc_with(int8_result, values)
    report = rows.build([doc], {"results": [{"status": "ok", "budgets": []}], "exit_code": 0}, None, "none")
    page = html.render(report)
    numbers = re.findall(r'(?:points|x|y|x1|x2|y1|y2|width|height|cx|cy)="([^"]*)"', page)
    assert numbers and not any(re.search(r"nan|inf", n, re.I) for n in numbers)


@FAST
@given(lo=st.floats(1e-6, 1e6), span=st.floats(1.001, 1e6))
def test_ticks_lie_in_the_range_in_order(lo, span):
    hi = lo * span
    for ticks in (nice_ticks(lo, hi), log_ticks(lo, hi)):
        assert ticks == sorted(ticks) and all(lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9) for t in ticks)
    assert 2 <= len(nice_ticks(lo, hi)) <= 12


@pytest.mark.parametrize("bad", [float("nan"), -1.0, True, "1.0", None])
def test_malformed_samples_are_refused_naming_the_field(int8_result, bad):
    values = list(int8_result["latency"]["samples_ms"][:10])
    values[4] = bad
    with pytest.raises(BadInput, match=r"latency\.samples_ms must hold finite numbers >= 0"):
        rows.latency_row(doc_with(int8_result, values))
