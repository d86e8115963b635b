"""Progress on a pipe is a log: one line per status, as written."""
from __future__ import annotations

import io

from rich.console import Console

from edgeopt.report.progress import RichProgress


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
