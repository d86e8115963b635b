"""Progress on a pipe is a log: one line per status, as written."""
from __future__ import annotations

import io

from rich.console import Console

import pytest

from edgeopt.report.progress import RichProgress


@pytest.fixture(autouse=True)
def a_terminal_that_draws(monkeypatch):
    """The developer's or CI's TERM and EDGEOPT_PROGRESS decide nothing here."""
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("EDGEOPT_PROGRESS", raising=False)


def test_a_status_line_on_a_pipe_is_one_line_and_its_brackets_are_text():
    """A trial's configuration is longer than a pipe's width: the line was folded, its continuation without the
    "·" that marks progress, and "[...]" in a message was read as markup (dropped, or an error)."""
    out = io.StringIO()
    progress = RichProgress(Console(file=out, width=60, force_terminal=False, color_system=None))
    message = ("trial 2: backend=onnxruntime quantize=none precision=fp16 prune(channels=0.417,criterion=l2,"
               "scope=layer,round_to=16) distill(epochs=3,lr=0.0019) [red]x[/] [/unbalanced]")
    progress.status(message)
    progress.status("next")
    assert out.getvalue().splitlines() == [f"· {message}", "· next"]


def test_a_devices_outcome_on_a_pipe_is_one_line():
    """A fleet's per-device outcome in a CI log was folded at 80 columns, mid-fingerprint (a user walkthrough)."""
    out = io.StringIO()
    progress = RichProgress(Console(file=out, width=60, force_terminal=False, color_system=None))
    detail = ("device pi-a: HOST KEY CHANGED for [127.0.0.21]:2301: got SHA256:pWkdOpqfFkhbo0Cule1BlDYkU3dxMAfLGwpz"
              "UMkyToc, known_hosts has SHA256:LwpzUMkyTocpWkdOpqfFkhbo0Cule1BlDYkU3dxMAfLG; refused")
    progress.device_state("pi-b", "queued")
    progress.device_state("pi-a", "failed", detail)
    progress.device_state("pi-b", "ok")   # how many of the fleet have reported: a log had no count (a walkthrough)
    assert out.getvalue().splitlines() == [f"pi-a: failed — {detail} [1/2]", "pi-b: ok [2/2]"]


def test_a_fleet_too_long_for_the_terminal_shows_the_devices_at_work_first():
    """40 devices in 40 lines: the table was cut below 29 queued and ok rows, and three measuring devices never
    appeared (a scale walkthrough)."""
    from edgeopt.report.progress import _fitting
    rows = [(f"d{i}", ("ok" if i < 20 else "queued" if i < 36 else "measuring", "")) for i in range(40)]
    rows[5] = ("d5", ("failed", "no route"))
    shown, left = _fitting(rows, 10)
    assert [name for name, _ in shown[:5]] == ["d36", "d37", "d38", "d39", "d5"] and len(shown) == 9
    assert left == {"ok": 15, "queued": 16}
    assert _fitting(rows[:8], 10) == (rows[:8], {})   # all fit: inventory order
    out = io.StringIO()   # and the live view itself, on a terminal of 12 lines
    progress = RichProgress(Console(file=out, width=100, height=12, force_terminal=True))
    for name, (state, detail) in rows:
        progress.device_state(name, state, detail)
    progress.close()
    assert "fleet: 20/40 done" in out.getvalue() and "not shown: 17 ok, 16 queued" in out.getvalue(), out.getvalue()


def test_counted_work_nests_in_a_terminal():
    """A study's trials bar stays while a trial calibrates or uploads, and the next trial advances the trials, not
    the calibration (one bar replaced the other: the count was lost at the first calibration)."""
    progress = RichProgress(Console(file=io.StringIO(), width=100, force_terminal=True))
    progress.start("optimize: trials", total=4)
    progress.status("trial 0 (1 of 4): quantize=int8")
    progress.start("calibrating INT8", total=200, unit="samples")
    progress.advance(200)
    progress.start("uploading the bundle", total=1000, unit="bytes")   # nested twice: below the calibration
    assert [t.description for t in progress.bar.tasks] == ["trial 0 (1 of 4): quantize=int8", "calibrating INT8",
                                                           "uploading the bundle"]
    progress.finish()
    progress.finish()
    progress.advance()
    (trials,) = progress.bar.tasks
    assert (trials.description, trials.completed, trials.total) == ("trial 0 (1 of 4): quantize=int8", 1, 4)
    progress.finish()
    assert progress.bar is None
    progress.start("a second study", total=2)
    progress.close()
    assert progress.bar is None and progress.tasks == []


@pytest.mark.parametrize("env", [{"TERM": "dumb"}, {"EDGEOPT_PROGRESS": "plain"}])
def test_a_dumb_terminal_or_plain_progress_gets_lines(monkeypatch, env):
    """rich counts a dumb terminal a terminal but draws no bar there: package's calibration and a fleet's devices
    showed nothing; a screen reader read a bar redrawn ten times a second (an accessibility walkthrough)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    progress = RichProgress(Console(file=out, width=100, force_terminal=True, color_system=None))
    progress.start("calibrating INT8", total=200, unit="samples")
    progress.advance(200)
    progress.finish()
    progress.device_state("cam[lab]", "ok", "p90 1.0 ms")
    progress.close()
    assert out.getvalue().splitlines() == ["· calibrating INT8 (200 samples)", "cam[lab]: ok — p90 1.0 ms [1/1]"]


def test_a_device_name_with_brackets_is_text_in_the_live_view():
    """A device named cam[lab] read as markup: "cam" (an accessibility walkthrough)."""
    out = io.StringIO()
    progress = RichProgress(Console(file=out, width=100, height=20, force_terminal=True, color_system=None))
    progress.device_state("cam[lab]", "measuring", "[bold]x")
    progress.close()
    assert "cam[lab]" in out.getvalue() and "[bold]x" in out.getvalue(), out.getvalue()
