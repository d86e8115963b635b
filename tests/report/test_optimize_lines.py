"""The lines under `optimize`'s table, from outcomes written out here: what they say of figures a study did not
measure, and of INT8 by hand when it read faster than the answer."""
from __future__ import annotations

import re

from edgeopt.report.tables import optimize_lines, versus_textbook_line

VERSUS = {"best": 4, "textbook": 1, "objective": "latency_p90_ms", "ratios": [0.9, 0.8, 1.1], "median": 0.9,
          "textbook_missed": ["latency_p90_ms"], "textbook_measurement": "screening"}


def test_int8_by_hand_read_faster_than_the_answer_says_why_it_was_ruled_out():
    line = versus_textbook_line(VERSUS)
    assert line.startswith("against INT8 by hand (trial 1): the answer's latency_p90_ms is 1.11x slower than INT8 by "
                           "hand's, by the median of 3 pairs measured in turn at the end (INT8 by hand's ÷ the "
                           "answer's: 0.90, 0.80, 1.10; above 1 the answer is faster)")
    assert "ruled out because its one screening run missed latency_p90_ms" in line and "edgeopt bench" in line
    # top-1 on fixed eval data is no device noise: "measure both bundles again" would tell the user nothing
    line = versus_textbook_line(dict(VERSUS, textbook_missed=["accuracy_drop"], textbook_measurement="full"))
    assert line.endswith("; INT8 by hand was ruled out because it missed accuracy_drop, which every run of its bundle "
                         "reads the same") and "noise" not in line, line


def test_int8_by_hand_slower_than_the_answer_needs_no_excuse():
    line = versus_textbook_line(dict(VERSUS, ratios=[1.4, 1.5, 1.6], median=1.5))
    assert "1.50x faster than INT8 by hand's" in line and "ruled out" not in line
    feasible = dict(VERSUS, textbook_missed=[])   # both met the budgets: nothing was ruled out
    assert "ruled out" not in versus_textbook_line(feasible)


def test_pairs_that_disagree_on_which_is_faster_are_said_beside_the_median():
    """"6.37x faster than INT8 by hand's" from pairs 0.62, 0.58, 6.76, 6.37, 6.75 (a walkthrough): two of five
    said the answer was slower, and the headline gave no hint."""
    line = versus_textbook_line(dict(VERSUS, ratios=[0.62, 0.58, 6.76, 6.37, 6.75], median=6.37, textbook_missed=[]))
    assert "6.37x faster than INT8 by hand's" in line
    assert "but the pairs disagree (3 of 5 read the answer faster, 2 slower)" in line and "not to be relied on" in line
    agree = versus_textbook_line(dict(VERSUS, ratios=[1.4, 1.02, 0.97, 1.6], median=1.2, textbook_missed=[]))
    assert "disagree" not in agree   # within 5 % of even: no side taken


def test_a_closest_miss_says_which_budgets_it_never_measured():
    miss = {"trial": 2, "config": "quantize=int8", "measured": 0.03, "limit": 1e-6, "excess": 29999.0,
            "paired": None, "measurement": "screening", "others_missed": {"size_mb": 3.2},
            "others_unmeasured": ["accuracy_drop"]}
    overall = {"trial": 2, "config": "quantize=int8", "violations": {"latency_p90_ms": 29999.0, "size_mb": 3.2,
                                                                     "accuracy_drop": 1.0},
               "figures": {"latency_p90_ms": 0.03, "size_mb": 0.04}, "measurement": "screening"}
    outcome = {"best": None, "trials": [], "objective": "latency_p90_ms", "budgets": {},
               "closest": {"per_budget": {"latency_p90_ms": miss}, "overall": overall}}
    text = " ".join(" ".join(optimize_lines(outcome)).split())
    assert "but missed size_mb by 320%; accuracy_drop not measured (a screening run ruled it out first)" in text
    assert "missed latency_p90_ms by 2999900%, size_mb by 320%; accuracy_drop not measured" in text
    assert "accuracy_drop by 100%" not in text
    # measured on several devices: the one whose figure it is (the worst) is named (a fleet walkthrough)
    fleet = dict(outcome, closest={"per_budget": {"latency_p90_ms": dict(miss, device="dev2")}, "overall": overall})
    assert "measured 0.03 ms against 1e-06 ms on dev2" in " ".join(" ".join(optimize_lines(fleet)).split())


def test_the_worst_device_of_a_trial_is_read_from_its_result_files(tmp_path, int8_result):
    import json

    import optuna
    from edgeopt.search.outcome import _worst, by_device_of

    paths = []
    for device, p90 in (("dev0", 0.5), ("dev2", 0.9), ("dev1", 0.4)):
        doc = {k: v for k, v in int8_result.items() if k != "_path"}
        doc.update(device=dict(doc["device"], name=device), latency={"p50_ms": p90 / 2, "p90_ms": p90})
        paths.append(tmp_path / f"{device}.json")
        paths[-1].write_text(json.dumps(doc))
    trial = optuna.trial.create_trial(value=0.9, user_attrs={"results": [str(p) for p in paths] + ["gone.json"]})
    devices = by_device_of(trial, "latency_p90_ms")
    assert devices == {"dev0": 0.5, "dev2": 0.9, "dev1": 0.4} and _worst(devices, "latency_p90_ms") == "dev2"


def test_a_budget_no_trial_missed_is_said_once_and_a_huge_miss_by_its_figures():
    """Lines for what bound the search only: peak RSS every trial met is one line, not a "met" per budget; an
    accuracy drop of 0.45 against 0.01 reads as those figures, not "by 4400%"."""
    latency = {"trial": 3, "config": "prune(channels=0.7)", "measured": 0.8, "limit": 1.0, "excess": -0.2,
               "paired": None, "measurement": "full", "others_missed": {"accuracy_drop": 44.0},
               "others_unmeasured": [], "others_figures": {"accuracy_drop": 0.45, "peak_rss_mb": 66.0}}
    rss = {"trial": 0, "config": "quantize=none", "measured": 66.0, "limit": 512.0, "excess": -0.87, "paired": None,
           "measurement": "full", "others_missed": {"latency_p90_ms": 0.5}, "others_unmeasured": [],
           "met_by_every_trial": True}
    outcome = {"best": None, "trials": [], "objective": "latency_p90_ms",
               "budgets": {"latency_p90_ms": 1.0, "accuracy_drop": 0.01, "peak_rss_mb": 512.0},
               "closest": {"per_budget": {"latency_p90_ms": latency, "peak_rss_mb": rss}}}
    from rich.text import Text
    text = " ".join(" ".join(Text.from_markup(line).plain for line in optimize_lines(outcome)).split())
    assert "met by every trial: peak_rss_mb" in text and "trial 0" not in text
    assert "but missed accuracy_drop (0.45 against 0.01)" in text and "4400%" not in text


def test_the_trials_table_wraps_a_configuration_between_options():
    import io

    from rich.console import Console

    from edgeopt.report.tables import optimize_table
    config = "quantize=int8-weights precision=fp32 prune(channels=0.655,criterion=l2,scope=layer,round_to=8)"
    row = {"trial": 1, "config": config, "figures": {"latency_p90_ms": 0.85, "peak_rss_mb": 129.0,
                                                     "latency_p50_ms": 0.45, "size_mb": 0.52},
           "paired": {"latency_p50_ms": 0.89}, "state": "complete", "baseline": False, "cached": False,
           "measurement": "full", "violations": {}, "feasible": True}
    outcome = {"study": "s", "objective": "latency_p90_ms", "budgets": {"peak_rss_mb": 400, "latency_p50_ms": 1.0},
               "trials": [row], "best": {"trial": 1}}
    console = Console(file=io.StringIO(), width=140)
    console.print(optimize_table(outcome))
    words = set(console.file.getvalue().replace("│", " ").split())
    for option in ("quantize=int8-weights", "precision=fp32", "prune(channels=0.655,", "criterion=l2,",
                   "scope=layer,", "round_to=8)"):
        assert option in words, console.file.getvalue()


def _best_outcome(rechecked, relative=True, **row):
    best = {**row, "trial": 4, "config": "quantize=int4-weights", "figures": {"latency_p50_ms": 0.356},
            "paired": {"latency_p50_ms": rechecked[0]}, "rechecked": rechecked, "bundle": "opt/s-best.edgepkg"}
    outcome = {"best": best, "trials": [], "objective": "latency_p50_ms", "budgets": {"latency_p50_ms": 0.553}}
    if relative:
        outcome.update(relative_budgets={"latency_p50_ms": 0.9}, paired_baseline=True,
                       baseline_figures={"latency_p50_ms": 0.614})
    return " ".join(" ".join(optimize_lines(outcome)).split())


def test_the_trials_table_shows_the_objective_as_judged_the_median_of_its_runs():
    """It showed the first run (a 2x outlier) beside a verdict judged by the median of three."""
    from edgeopt.report.tables import _trial_cells
    row = {"trial": 2, "config": "quantize=int8", "figures": {"latency_p90_ms": 2.0, "size_mb": 0.5},
           "paired": {"latency_p90_ms": 0.8}, "rechecked": [0.8, 0.41, 0.4], "rechecked_figures": [2.0, 1.03, 1.0],
           "state": "complete", "baseline": False, "cached": False, "measurement": "full", "violations": {},
           "feasible": True}
    outcome = {"study": "s", "objective": "latency_p90_ms", "budgets": {}, "trials": [row], "best": {"trial": 2},
               "relative_budgets": {"latency_p90_ms": 0.9}, "paired_baseline": True}
    (_, _, figures, verdict), = _trial_cells(outcome)
    assert figures[0] == "1.03 (0.41x)"
    assert "measured 3 times: 0.80x, 0.41x, 0.40x its paired baseline; judged by their median, 0.41x" in verdict


def test_the_best_line_gives_both_runs_and_warns_when_the_second_missed():
    text = _best_outcome([0.58, 1.21])
    assert "latency_p50_ms 0.356 (measured twice: 0.58x, 1.21x its paired baseline; judged by their median" in text
    assert "the best met latency_p50_ms ≤ 0.9x by the median of its 2 runs, not on each of them" in text
    assert "warning" not in _best_outcome([0.58, 0.62])
    absolute = _best_outcome([0.5, 0.54], relative=False)   # figures against the absolute budget, no "x"
    assert "(measured twice: 0.5, 0.54; judged by their median, 0.52)" in absolute and "warning" not in absolute
    assert "≤ 0.553 by the median of its 2 runs" in _best_outcome([0.5, 0.6], relative=False)
    # a near miss rescued by its runs: three of them, and the median that judged it
    text = _best_outcome([0.57, 0.42, 0.41], relative=True)
    assert "(measured 3 times: 0.57x, 0.42x, 0.41x its paired baseline; judged by their median, 0.42x)" in text
    # the baseline as the best of a paired study: its ratio to itself says nothing ("1.00x, 1.00x" before)
    assert "measured twice" not in _best_outcome([1.0, 1.0], baseline=True)
    assert "(measured twice: 0.5, 0.54; judged by their median, 0.52)" in _best_outcome([0.5, 0.54], relative=False,
                                                                                     baseline=True)


def test_a_paired_study_in_markdown_gives_each_trial_its_ratio_to_the_baseline_beside_it():
    from edgeopt.report.markdown import _study
    trial = {"trial": 1, "config": "quantize=int8", "figures": {"latency_p50_ms": 1.177, "size_mb": 0.52},
             "paired": {"latency_p50_ms": 0.705}, "feasible": True, "cached": False}
    study = {"study": "s", "objective": "latency_p50_ms", "pareto_figures": ["latency_p50_ms", "size_mb"],
             "pareto": [1], "trials": [trial], "best": trial}
    text = "\n".join(_study(study))
    assert "chosen trial 1 (`quantize=int8`), latency_p50_ms 1.177 (0.70x)." in text
    assert "| 1 | `quantize=int8` | 1.177 (0.70x) | 0.52 | yes |" in text and "In brackets: the ratio" in text
    assert "In brackets" not in "\n".join(_study(dict(study, trials=[dict(trial, paired=None)])))
    # a configuration is a code span, where a backslash escape shows as itself (a DeiT study read keep\_float)
    config = "backend=tflite keep_float=auto prune(channels=0.158,round_to=8) odd|name`"
    text = "\n".join(_study(dict(study, trials=[dict(trial, config=config)], best=dict(trial, config=config))))
    assert "(`backend=tflite keep_float=auto prune(channels=0.158,round_to=8) odd\\|name'`)" in text
    assert "| 1 | `backend=tflite keep_float=auto prune(channels=0.158,round_to=8) odd\\|name'` |" in text


def test_reports_give_the_best_runs_and_the_warning_too():
    from edgeopt.report.html import _study as html_study
    from edgeopt.report.markdown import _study as markdown_study
    best = {"trial": 4, "config": "quantize=int8", "figures": {"latency_p50_ms": 0.995}, "paired": {},
            "rechecked": [0.58, 1.21], "feasible": True, "cached": False, "state": "complete", "baseline": False,
            "measurement": "full", "violations": {}}
    study = {"study": "s", "objective": "latency_p50_ms", "budgets": {"latency_p50_ms": 0.553},
             "relative_budgets": {"latency_p50_ms": 0.9}, "paired_baseline": True, "pareto_figures": ["size_mb"],
             "pareto": [], "trials": [best], "best": best}
    markdown = " ".join(markdown_study(study))
    assert "measured twice: 0.58x, 1.21x its paired baseline" in markdown.replace("\\", "")
    assert "⚠️ the best met latency\\_p50\\_ms ≤ 0.9x by the median of its 2 runs" in markdown
    page = html_study(study)
    assert "measured twice: 0.58x, 1.21x its paired baseline" in page and "<b>Warning:</b> the best met" in page
    noted = dict(study, notes=["prune not searched: Torch-Pruning cannot trace <it>"])
    assert "Note: prune not searched: Torch-Pruning cannot trace &lt;it&gt;" in html_study(noted)
    assert "- note: prune not searched: Torch-Pruning cannot trace \\<it\\>" in "\n".join(markdown_study(noted))


def test_on_a_narrow_console_each_trial_is_a_block_with_its_configuration_whole():
    """At 120 columns, a pipe's width, the nine-column table left the configuration 12 characters wide."""
    import io

    from rich.console import Console

    from edgeopt.report.tables import optimize_trials
    config = "backend=onnxruntime quantize=int8 precision=fp32 prune(channels=0.584,criterion=lamp,scope=global)"
    rows = [{"trial": 0, "config": "quantize=none", "figures": {"latency_p50_ms": 0.141, "accuracy_drop": 0.0},
             "state": "complete", "baseline": True, "cached": False, "measurement": "full",
             "violations": {"latency_p50_ms": 0.67}, "feasible": False},
            {"trial": 7, "config": config, "figures": {}, "state": "fail", "error": "input: cannot prune",
             "baseline": False, "cached": False, "measurement": "full", "violations": {}, "feasible": False}]
    outcome = {"study": "s", "objective": "latency_p50_ms", "budgets": {"accuracy_drop": 0.02}, "trials": rows,
               "best": None}
    for width in (80, 120):
        console = Console(file=io.StringIO(), width=width)
        console.print(optimize_trials(outcome))
        text = console.file.getvalue()
        assert "┃" not in text, text   # not the table
        words = set(text.split())
        for word in ("prune(channels=0.584,", "criterion=lamp,", "scope=global)", "latency_p50_ms=0.141",
                     "accuracy_drop=0", "trial", "7", "prune"):
            assert word in words, text
        assert "misses latency_p50_ms (baseline)" in " ".join(text.split())
    console = Console(file=io.StringIO(), width=160)
    console.print(optimize_trials(outcome))
    assert "┃ configuration" in console.file.getvalue()
    # no figure split from its ratio or unit: "time=12.1" ended a line and "s" began the next at 120 columns
    rows[0]["figures"].update(latency_p90_ms=2.13, peak_rss_mb=53.4, size_mb=0.67)
    rows[0].update(paired={"latency_p50_ms": 0.83}, seconds={"package": 12.1})
    outcome["budgets"].update(latency_p90_ms=5, peak_rss_mb=100)
    for width in range(60, 140, 3):
        console = Console(file=io.StringIO(), width=width)
        console.print(optimize_trials(outcome))
        lines = console.file.getvalue().splitlines()
        for line in lines:
            assert not re.match(r"\s*(s|MiB|\(0\.83x\))\s*$", line) and "time=12.1 s" in "\n".join(lines), \
                (width, lines)
        assert "latency_p50_ms=0.141 (0.83x)" in "\n".join(lines), (width, lines)


def test_a_best_that_misses_the_absolute_limit_its_bundle_carries_is_warned_of():
    """A paired study judges by the ratio to the baseline beside each candidate; the bundle carries the ratio times
    the baseline's first run, and check applies that."""
    def lines(figure, rechecked=None, figures=None):
        best = {"trial": 4, "config": "quantize=int8", "figures": {"latency_p50_ms": figure},
                "paired": {"latency_p50_ms": 0.55}, "bundle": "opt/s-best.edgepkg", "rechecked": rechecked,
                "rechecked_figures": figures}
        outcome = {"best": best, "trials": [], "objective": "latency_p50_ms", "budgets": {"latency_p50_ms": 0.3},
                   "relative_budgets": {"latency_p50_ms": 0.6}, "paired_baseline": True,
                   "baseline_figures": {"latency_p50_ms": 0.5}}
        return " ".join(" ".join(optimize_lines(outcome)).split())
    text = lines(0.33)
    assert "the bundle carries latency_p50_ms ≤ 0.3 (0.6x the baseline's first run), which `edgeopt check` " \
           "applies, and the best read 0.33: 0.55x of the baseline measured beside it" in text
    assert "the bundle carries" not in lines(0.29)
    # since the chosen bundle carries the ratio times the median of the baseline's runs: that limit, and said so
    def carried(figure):
        outcome = {"best": {"trial": 4, "config": "quantize=int8", "figures": {"latency_p50_ms": figure},
                            "paired": {"latency_p50_ms": 0.55}, "bundle": "opt/s-best.edgepkg"},
                   "trials": [], "objective": "latency_p50_ms", "budgets": {"latency_p50_ms": 0.3},
                   "relative_budgets": {"latency_p50_ms": 0.6}, "paired_baseline": True,
                   "baseline_figures": {"latency_p50_ms": 0.5},
                   "carried_limits": {"latency_p50_ms": {"limit": 0.33, "median": 0.55, "runs": 9}}}
        return " ".join(" ".join(optimize_lines(outcome)).split())
    assert "the chosen bundle carries latency_p50_ms ≤ 0.33 ms, 0.6x the median of the baseline's 9 runs (0.55 ms), " \
           "which `edgeopt check` applies" in carried(0.32)
    assert "Warning" not in carried(0.32) and "the bundle carries" not in carried(0.32)
    assert "the bundle carries latency_p50_ms ≤ 0.33 (0.6x the median of the baseline's 9 runs)" in carried(0.34)
    # a best the study measured again is judged by its runs, not by its first run's figure (a near miss chosen by
    # the median of three would be warned of by the run that missed)
    assert "the bundle carries" not in lines(0.33, rechecked=[0.62, 0.55, 0.56])   # a study before the figures
    assert "the bundle carries" not in lines(0.33, rechecked=[0.62, 0.55, 0.56], figures=[0.36, 0.29, 0.28])
    assert "and the best read 0.31 (the median of its 3 runs): 0.56x of the baseline" in lines(
        0.33, rechecked=[0.62, 0.55, 0.56], figures=[0.36, 0.30, 0.31])


def test_the_comparison_keeps_figures_whole_on_a_pipe_and_leaves_out_empty_columns():
    """`make demo` on a pipe (120 columns): 13 columns folded p50 0.0330 into "0.033" over "0"."""
    import io

    from rich.console import Console

    from edgeopt.report.tables import compare_table
    row = {"bundle": "digits_cnn-int8", "device": "local", "created": "2026-12-03T18:08:00Z",
           "runtime": "onnxruntime 1.32.0", "threads": 2, "size_mb": 0.035, "p50_ms": 0.0330, "p90_ms": 0.0532,
           "p99_ms": 0.0901, "throughput_fps": None, "peak_rss_mb": 80.3, "top1": 0.9944, "slowest_layer": None,
           "verdict": "all pass"}

    def shown(rows):
        console = Console(file=io.StringIO(), width=120)
        console.print(compare_table(rows))
        return console.file.getvalue()
    text = shown([row, dict(row, bundle="digits_cnn-fp32", p50_ms=0.0351)])
    assert "FPS" not in text and "slowest" not in text   # neither pass ran: no column of dashes
    words = set(text.replace("│", " ").split())
    assert {"0.0330", "0.0351", "0.0532", "0.9944", "80.3"} <= words, text
    # rows of one day: the day in the title, so names keep whole words ("onnxruntim" + "e" before)
    assert {"2026-12-03", "18:08", "onnxruntime", "digits_cnn-int8", "digits_cnn-fp32"} <= words, text
    text = shown([row, dict(row, created="2026-12-04T09:00:00Z")])
    assert {"2026-12-03", "2026-12-04"} <= set(text.replace("│", " ").split()) and "(UTC)" in text, text
    text = shown([row, dict(row, throughput_fps=1234.5)])
    assert "FPS" in text and "1234.5" in text.replace("│", " ").split()


def test_markdown_keeps_the_code_spans_of_edgeopts_own_sentences_and_escapes_the_rest():
    """The chosen bundle's carried limit read \\`edgeopt check\\` in a rendered report: literal backticks."""
    from edgeopt.report.markdown import prose
    assert prose("the limit `edgeopt check` applies") == "the limit `edgeopt check` applies"
    assert prose("a *star* and a lone ` tick") == r"a \*star\* and a lone \` tick"


def test_the_study_chart_draws_a_candidate_more_accurate_than_the_model_and_no_line_for_a_paired_budget():
    """A distilled DeiT lost -0.028 accuracy (it gained): the chart's y axis began at 0 and the chosen trial was
    not drawn; and its red line at 0.6x the baseline's first run was no limit any trial was judged by."""
    from edgeopt.report.html import _study_chart

    def trial(n, latency, drop, feasible):
        return {"trial": n, "config": f"c{n}", "figures": {"latency_p50_ms": latency, "accuracy_drop": drop},
                "feasible": feasible, "cached": False, "baseline": n == 0}
    done = [trial(0, 0.476, 0.0, False), trial(4, 0.2045, -0.0278, True), trial(8, 0.279, -0.0056, False)]
    study = {"objective": "latency_p50_ms", "budgets": {"latency_p50_ms": 0.2858, "accuracy_drop": 0.01},
             "relative_budgets": {"latency_p50_ms": 0.6}, "paired_baseline": True, "pareto": [4],
             "pareto_figures": ["latency_p50_ms", "accuracy_drop"], "best": done[1]}
    svg = _study_chart(study, done)
    chosen = re.search(r'<polygon fill="#0969da"[^>]*points="([^"]+)"', svg)
    assert chosen, svg
    plot = re.search(r'<rect class="plot" x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"', svg)
    top, bottom = float(plot[1]), float(plot[1]) + float(plot[2])
    assert all(top <= float(p.split(",")[1]) <= bottom for p in chosen[1].split()), svg   # inside the plot
    assert "#cf222e" not in svg and "No latency_p50_ms budget line" in svg   # no red line
    assert "#cf222e" in _study_chart(dict(study, paired_baseline=False), done)


def test_the_line_against_int8_by_hand_says_why_it_was_not_chosen_when_it_read_faster_in_turn():
    from edgeopt.report.tables import versus_textbook_line
    versus = {"textbook": 1, "objective": "latency_p50_ms", "ratios": [0.64, 0.7, 1.15], "median": 0.7,
              "textbook_missed": ["latency_p50_ms"], "textbook_measurement": "full"}
    line = versus_textbook_line(versus)
    assert "1.43x slower" in line and "ruled out because its one full run missed latency_p50_ms" in line
    line = versus_textbook_line(dict(versus, textbook_runs=[0.57, 0.56, 0.6]))
    assert "ruled out because the median of its 3 runs missed latency_p50_ms" in line
    line = versus_textbook_line(dict(versus, textbook_missed=[], textbook_runs=[0.57, 0.45, 0.46]))
    assert "ranked INT8 by hand behind the answer on the median of its 3 runs" in line
    assert "ranked" not in versus_textbook_line({k: v for k, v in versus.items() if k != "textbook_missed"})   # old
    assert "ruled out" not in versus_textbook_line(dict(versus, median=1.2))


def test_a_study_where_no_trial_fit_gives_its_closest_misses_in_every_report():
    """`report --study` of a study where nothing fit said "no trial met every budget" and no more; the terminal
    said which trial came closest to each budget and by how much."""
    from edgeopt.report.html import _study as html_study
    from edgeopt.report.markdown import _study as markdown_study
    miss = {"trial": 1, "config": "quantize=int8", "measured": 0.5, "limit": 0.34, "excess": 0.03,
            "paired": 0.348, "runs": [0.348, 0.22, 0.38], "measurement": "full", "others_missed": {},
            "others_unmeasured": []}
    overall = {"trial": 1, "config": "quantize=int8", "violations": {"latency_p50_ms": 0.03},
               "figures": {"latency_p50_ms": 0.5}, "measurement": "full"}
    study = {"study": "s", "objective": "latency_p50_ms", "budgets": {"latency_p50_ms": 0.5},
             "relative_budgets": {"latency_p50_ms": 0.34}, "paired_baseline": True, "pareto_figures": ["size_mb"],
             "pareto": [], "trials": [], "best": None,
             "closest": {"per_budget": {"latency_p50_ms": miss}, "overall": overall}}
    words = ("closest latency_p50_ms: trial 1 (quantize=int8) measured 0.348x its paired baseline against 0.34x "
             "(measured 3 times: 0.35x, 0.22x, 0.38x its paired baseline; judged by their median, 0.35x), meeting "
             "every other budget")
    from rich.text import Text
    assert words in " ".join(Text.from_markup(line).plain for line in optimize_lines(study))
    page = html_study(study)
    assert "No trial met every budget.</b> " + words[:1].upper() + words[1:] in page, page
    markdown = "\n".join(markdown_study(study)).replace("\\", "")
    assert "no trial met every budget; " + words in markdown


def test_the_study_chart_draws_a_trial_measured_again_at_the_median_of_its_runs():
    from edgeopt.report.html import _study_chart
    trials = [{"trial": n, "config": f"c{n}", "figures": {"latency_p50_ms": ms, "size_mb": 1.0 + n},
               "feasible": True, "cached": False, "baseline": n == 0, "rechecked_figures": runs}
              for n, ms, runs in ((0, 2.0, None), (1, 1.2, [1.2, 0.9, 0.95]), (2, 1.5, [1.5, None]))]
    study = {"objective": "latency_p50_ms", "budgets": {"latency_p50_ms": 1.0}, "pareto": [], "best": None,
             "pareto_figures": ["size_mb"]}
    page = _study_chart(study, trials)
    assert "trial 1: c1 (latency_p50_ms 0.95," in page and "trial 2: c2 (latency_p50_ms 1.5," in page


def test_reports_show_a_trial_measured_again_by_its_median_and_a_screened_one_as_unmeasured():
    """`report --study` showed the first run (0.95x) where the verdict beside it said "judged by their median,
    0.96x", and called a screened-only trial's accuracy a miss."""
    from edgeopt.report.html import _study_table
    from edgeopt.report.markdown import _study
    again = {"trial": 1, "config": "quantize=int8", "figures": {"latency_p90_ms": 2.0, "size_mb": 0.5},
             "paired": {"latency_p90_ms": 0.95}, "rechecked": [0.95, 0.97, 0.96], "rechecked_figures": [2.0, 2.2, 2.1],
             "state": "complete", "baseline": False, "cached": False, "measurement": "full", "violations": {},
             "feasible": True}
    screened = {"trial": 2, "config": "quantize=dynamic", "figures": {"latency_p90_ms": 3.0, "size_mb": 0.9},
                "paired": {"latency_p90_ms": 1.2}, "rechecked": None, "state": "complete", "baseline": False,
                "cached": False, "measurement": "screening", "feasible": False,
                "violations": {"latency_p90_ms": 0.3, "accuracy_drop": 1.0}}
    study = {"study": "s", "objective": "latency_p90_ms", "budgets": {"accuracy_drop": 0.01},
             "relative_budgets": {"latency_p90_ms": 0.9}, "paired_baseline": True,
             "pareto_figures": ["latency_p90_ms", "size_mb"], "pareto": [1], "trials": [again, screened],
             "best": again}
    assert "| 1 | `quantize=int8` | 2.1 (0.96x) |" in "\n".join(_study(study))
    page = _study_table(study)
    assert "2.1 (0.96x)" in page and "2 (0.95x)" not in page
    assert "misses latency_p90_ms; not measured: accuracy_drop" in page


def test_the_best_line_says_how_to_verify_the_chosen_bundle():
    """A successful study said only where its bundle was; CI checks it by bench, then check (a user review)."""
    best = {"trial": 4, "config": "quantize=int8", "figures": {"latency_p50_ms": 0.3}, "bundle": "opt/s-best.edgepkg"}
    outcome = {"best": best, "trials": [], "objective": "latency_p50_ms", "budgets": {}, "devices": ["Pi 1"]}
    text = " ".join(" ".join(optimize_lines(outcome)).split())
    assert "to verify it: edgeopt bench opt/s-best.edgepkg --device 'Pi 1' && edgeopt check " \
           "'results/s-best@Pi_1~" in text, text   # the file bench saves a name with a space under
    assert "to verify" not in " ".join(optimize_lines(dict(outcome, devices=[])))
    fleet = " ".join(optimize_lines(dict(outcome, devices=["pi-1", "pi-2"], inventory="lab.yaml")))
    assert "edgeopt bench opt/s-best.edgepkg --device pi-1 -i lab.yaml && edgeopt check results/s-best@pi-1.json " \
           "(and on each of its other 1 devices)" in " ".join(fleet.split())   # an inventory's name needs the file
    ssh = " ".join(optimize_lines(dict(outcome, devices=["pi-1"], inventory="lab.yaml",
                                       ssh_flags=["--known-hosts", "lab/known hosts"])))
    assert "--device pi-1 -i lab.yaml --known-hosts 'lab/known hosts' && edgeopt check" in " ".join(ssh.split())


def test_the_trial_table_shows_size_once_and_keeps_the_numbers_in_a_column():
    """A size_mb budget showed every trial's size twice (size_mb=2.64 and size=2.64 MiB), and "2*" stood one
    character off the other trial numbers (a user review)."""
    from edgeopt.report.tables import _trial_cells, figure_columns
    outcome = {"objective": "latency_p90_ms", "budgets": {"latency_p90_ms": 1.0, "size_mb": 3.0}, "pareto": [],
               "best": {"trial": 1}, "trials": [
                   {"trial": n, "config": "quantize=int8", "figures": {"latency_p90_ms": 0.5, "size_mb": 2.64},
                    "paired": None, "violations": {}, "feasible": True, "state": "complete", "seconds": {},
                    "baseline": False, "cached": False, "twin_of": None, "measurement": "full", "error": None}
                   for n in (0, 1, 2)]}
    assert figure_columns(outcome) == ["latency_p90_ms"]
    assert figure_columns(dict(outcome, relative_budgets={"size_mb": 0.5})) == ["latency_p90_ms", "size_mb"]
    labels = [label for _, label, _, _ in _trial_cells(outcome)]
    assert labels == ["0 ", "1*", "2 "]


def test_a_screened_only_trial_says_what_ruled_it_out():
    """"not measured: accuracy_drop (screened only)" of a trial within every budget did not say it was left out
    as slower than the best of its time (a user walkthrough)."""
    from edgeopt.report.tables import screened_only
    assert screened_only({"ruled_out": {"by": "best", "trial": 0, "margin": 0.25}}) == \
        "screened only: over 25% slower than trial 0, the best then"
    assert screened_only({"ruled_out": {"by": "budgets", "budgets": ["latency_p90_ms"], "margin": 0.25}}) == \
        "screened only: missed latency_p90_ms by over 25%"
    assert screened_only({"ruled_out": None}) == "screened only"


def test_a_baseline_closest_to_a_relative_budget_says_nothing_came_closer():
    """With every candidate slower than the float model, "closest latency_p50_ms: trial 0 (quantize=none) measured
    0.02 against 0.01" pointed at the model as given, in figures without units, beside a budget given as a ratio."""
    miss = {"trial": 0, "config": "quantize=none", "measured": 0.0203, "limit": 0.0101, "excess": 1.0, "paired": 1.0,
            "baseline": True, "measurement": "full", "others_missed": {}, "others_unmeasured": []}
    outcome = {"best": None, "trials": [], "objective": "latency_p50_ms", "budgets": {"latency_p50_ms": 0.0101},
               "relative_budgets": {"latency_p50_ms": 0.5}, "closest": {"per_budget": {"latency_p50_ms": miss}}}
    from rich.text import Text
    text = " ".join(Text.from_markup(line).plain for line in optimize_lines(outcome))
    assert ("trial 0 (quantize=none) measured 1x its paired baseline against 0.5x: no candidate came closer than "
            "the model as given (the baseline)") in text, text
    absolute = dict(outcome, relative_budgets={}, closest={"per_budget": {"latency_p50_ms": dict(miss, paired=None)}})
    text = " ".join(Text.from_markup(line).plain for line in optimize_lines(absolute))
    assert "measured 0.0203 ms against 0.0101 ms" in text, text


def test_a_repeat_the_study_answered_is_one_line_naming_whose_figures_it_has():
    """16 of a study's 27 blocks repeated a few trials' figures and verdicts word for word (a user walkthrough)."""
    import io

    from rich.console import Console

    from edgeopt.report.tables import optimize_trials

    def row(n, cached):
        return {"trial": n, "state": "complete", "config": "quantize=dynamic threads=2", "cached": cached,
                "baseline": False, "textbook": False, "twin_of": None, "figures": {"latency_p90_ms": 0.0213},
                "violations": {}, "feasible": True, "measurement": "full", "seconds": {}, "rechecked": None,
                "rechecked_figures": None, "paired": None, "noisy": [], "bundle": None, "error": None,
                "transforms_reused": False, "stages": [], "results": [], "parity": None, "untrained": None,
                "ruled_out": None, "again_of": None}
    outcome = {"study": "s", "objective": "latency_p90_ms", "budgets": {"latency_p90_ms": 50.0},
               "trials": [row(3, False), row(4, True)], "best": None, "pareto": [], "multi_objective": False}
    console = Console(file=io.StringIO(), width=100)
    console.print(optimize_trials(outcome))
    text = " ".join(console.file.getvalue().split())
    assert "trial 4 quantize=dynamic threads=2 the figures and verdict of trial 3 (answered from the study, not " \
           "counted)" in text, text
    assert text.count("latency_p90_ms=0.0213") == 1
    # a failed trial of that configuration (its device died) measured nothing: the answer's figures are trial 5's
    failed = dict(row(2, False), state="fail", figures={}, error="device: connection lost")
    console = Console(file=io.StringIO(), width=100)
    console.print(optimize_trials(dict(outcome, trials=[failed, row(5, False), row(8, True)])))
    text = " ".join(console.file.getvalue().split())
    assert "the figures and verdict of trial 5" in text and "of trial 2" not in text, text


def test_the_html_trial_table_marks_int8_by_hand_as_the_terminal_does():
    """The HTML "All N trials" table lost trial 1's "INT8 by hand", which the terminal's shows (a user
    walkthrough): both take one list of marks."""
    from edgeopt.report.html import _study_table
    from edgeopt.report.tables import _verdict
    outcome = {"objective": "latency_p90_ms", "budgets": {"latency_p90_ms": 1.0}, "pareto": [], "best": None,
               "trials": [{"trial": n, "config": "quantize=int8", "figures": {"latency_p90_ms": 0.5, "size_mb": 2.6},
                           "paired": None, "violations": {}, "feasible": True, "state": "complete", "seconds": {},
                           "baseline": n == 0, "textbook": n == 1, "cached": False, "twin_of": None,
                           "measurement": "full", "error": None} for n in (0, 1)]}
    html = _study_table(outcome)
    assert "meets every budget (baseline)" in html and "meets every budget (INT8 by hand)" in html
    assert _verdict(outcome, outcome["trials"][1], False).endswith("(INT8 by hand)")


def test_a_cached_screening_answer_is_counted_once():
    """"4 screened only, 3 answered from the study's cache" counted a cached copy of a screened trial in both
    (a user walkthrough): it is a cached answer, not a screening."""
    from edgeopt.report.tables import _time_spent
    trials = [{"measurement": "screening", "cached": False}, {"measurement": "screening", "cached": True},
              {"measurement": "full", "cached": False}]
    assert "; 1 screened only, 1 answered from the study's cache" in _time_spent(trials)


def test_the_verify_line_keeps_the_studys_results_folder_and_store():
    """The printed command saved its result to ./results and another store, which the team's `--baseline store`
    never read (a team walkthrough); a password stays masked."""
    from edgeopt.search.outcome import _store_flags
    from edgeopt.search.study import Job

    job = Job(model="m.onnx", profile="generic", devices=["pi-1"], budgets={}, results_dir="team results",
              store_url="postgresql://alice:s3cret@db.lab/shared")
    flags = _store_flags(job)
    assert flags == ["--results-dir", "team results", "--store", "postgresql+psycopg://alice@db.lab/shared"]
    best = {"trial": 4, "config": "quantize=int8", "figures": {"latency_p50_ms": 0.3}, "bundle": "opt/s-best.edgepkg"}
    outcome = {"best": best, "trials": [], "objective": "latency_p50_ms", "budgets": {}, "devices": ["pi-1"],
               "store_flags": flags}
    text = " ".join(" ".join(optimize_lines(outcome)).split())
    assert "--device pi-1 --results-dir 'team results' --store postgresql+psycopg://alice@db.lab/shared && " \
           "edgeopt check 'team results/s-best@pi-1.json'" in text, text
    assert "s3cret" not in text
    assert _store_flags(Job(model="m.onnx", profile="generic", devices=["local"], budgets={})) == []


def test_a_carried_limit_set_by_the_slowest_device_says_where_it_is_looser():
    """A study over three devices carried 0.7x the slowest one's baseline, and check passed the untouched model on
    the two faster ones (a fleet walkthrough): the line names the device that set it and where it is looser."""
    from edgeopt.report.tables import carried_limit
    carried = {"latency_p90_ms": {"limit": 16.38, "median": 23.4, "runs": 8,
                                  "devices": {"dev0": 14.16, "dev1": 14.09, "dev2": 23.4}}}
    line = carried_limit({"carried_limits": carried, "relative_budgets": {"latency_p90_ms": 0.7}}, "latency_p90_ms")
    assert "the baseline's worst device, dev2 (23.4 ms first run), set it: on dev0 it is 1.16x that device's own " \
           "baseline, dev1 it is 1.16x" in line, line
    even = dict(carried["latency_p90_ms"], devices={"dev0": 23.0, "dev2": 23.4})
    line = carried_limit({"carried_limits": {"latency_p90_ms": even}, "relative_budgets": {"latency_p90_ms": 0.7}},
                         "latency_p90_ms")
    assert "worst device" not in line and line.endswith("which `edgeopt check` applies")
