"""The report as GitHub-flavoured Markdown (a pull-request comment) and as CSV (a spreadsheet).

Markdown carries the summary with verdicts, one line per result on what moved over the run (latency drift,
power, the hottest zone, the lowest clock), the fleet side by side and the history's change points: what a
reviewer acts on; the charts are the HTML report's. CSV is one row per result with every summary figure.
"""
from __future__ import annotations

import csv
import io
import math
import re

from rich.text import Text

from .rows import machine_rows, quantile_change, undecided, utc_time, within_effect
from .tables import best_warnings, carried_limit, closest_lines, in_brackets, judged_figures, measured_again

COMPARISONS = {"<=": "≤", ">=": "≥"}
VERDICT_MD = {"pass": "✅ pass", "fail": "❌ FAIL", "unmeasured": "⚠️ NOT MEASURED", "failed": "❌ DEVICE FAILED",
              "unreadable": "❌ UNREADABLE", "none": "no budgets"}
CSV_COLUMNS = ("bundle", "device", "profile", "run", "created", "status", "verdict", "batch", "n", "p50_ms", "p90_ms",
               "p90_ci95_low", "p90_ci95_high",
               "p99_ms", "mean_ms", "cv", "first_inference_ms", "peak_rss_mb", "size_mb", "top1", "power_w", "energy_mj",
               "throughput_fps", "throttled", "budgets_failed", "error", "result", "runtime",
               "regression")   # added last: fields keep their places


def cell(text) -> str:
    """Text from a result file inside a Markdown table cell: no table breaks, no markup, no HTML."""
    text = re.sub(r"[\r\n\t]+", " ", "" if text is None else str(text))
    return re.sub(r"([\\`*_{}\[\]<>()#+!|~&])", r"\\\1", text)


def code(text) -> str:
    """Text as a code span inside a Markdown table cell. A backslash escape shows as itself inside a code span
    (a study's configuration read `keep\\_float`): only what would end the span or the cell is replaced, a
    backtick by a quote, a table's pipe by GFM's escape (which its table parser reads inside spans too)."""
    text = re.sub(r"[\r\n\t]+", " ", "" if text is None else str(text))
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def prose(text: str) -> str:
    """One of edgeopt's own sentences, whose `code spans` are markup: the spans kept, the rest escaped as a cell."""
    parts = re.split(r"(`[^`]+`)", text)   # the spans at the odd places
    return "".join(part if i % 2 else cell(part) for i, part in enumerate(parts))


def fmt(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


# GitHub refuses a comment over 65,536 characters: 445 results made a 175 KB report (a scale walkthrough). Each
# long list is cut to its first rows, those that need a look first, so the gate's table is never what is cut
COMMENT_LIMIT = 60_000
OVER_RUN_LINES = 20
TABLE_ROWS = 100
WARNING_LINES = 40
NEEDS_A_LOOK = {"fail": 0, "failed": 0, "unreadable": 0, "unmeasured": 1, "slower": 0, "inconclusive": 1}


def _first(rows: list, key) -> tuple:
    """(the rows a long list shows: those that need a look first, else in order; how many it leaves out)."""
    if len(rows) <= TABLE_ROWS:
        return rows, 0
    return sorted(rows, key=lambda r: NEEDS_A_LOOK.get(key(r), 2))[:TABLE_ROWS], len(rows) - TABLE_ROWS


def _left_out(n: int, what: str) -> list:
    return ["", f"… and {n} more {what}: `edgeopt report --format html` (or csv) lists each", ""] if n else []


def markdown(report: dict, title: str = "edgeopt report") -> str:
    code = report["exit_code"]
    overall = ("❌ " if code else "✅ " if report.get("checked", True) else "") + report["headline"]
    lines = [f"### {cell(title)}", "", f"{len(report['summary'])} result(s): {overall}.", ""]
    lines += (_summary(report["summary"]) + _regressions(report.get("regressions") or []) + _over_run(report)
              + _layers(report.get("layer_profile") or [])
              + _fleet(report["fleet"]) + _history(report["history"], report["history_absent"])
              + _study(report.get("study")))
    return _within_a_comment("\n".join(lines).rstrip() + "\n")


def _within_a_comment(text: str) -> str:
    """The report cut at a line before COMMENT_LIMIT characters, saying so, where it is longer: the verdict and the
    tables come first, so what is cut is the detail the HTML report holds."""
    if len(text) <= COMMENT_LIMIT:
        return text
    cut = text.rfind("\n", 0, COMMENT_LIMIT)
    kept = text[:cut]
    opened = kept.count("<details>") - kept.count("</details>")   # the note was cut inside a folded block
    return (kept + "\n\n</details>" * max(opened, 0) + f"\n\n… cut here at {cut:,} of {len(text):,} characters: a "
            "pull-request comment holds at most 65,536 (GitHub); `edgeopt report --format html` shows it all.\n")


def _summary(rows: list) -> list:
    # power columns where any result measured it: an energy_mj budget's report showed no energy figure at all
    power = any(r.get("power_w") is not None or r.get("energy_mj") is not None for r in rows)
    # FPS where some result measured it: "FPS absent … not asked" in every pull-request comment (a CI walkthrough)
    fps = any(r.get("throughput_fps") is not None for r in rows)
    out = ["| bundle | device | p50 ms | p90 ms [95% CI] | p99 ms | " + ("FPS | " if fps else "")
           + "peak RSS MiB | top-1 | " + ("W | mJ / inference | " if power else "") + "verdict |",
           "|---|---|--:|--:|--:|" + ("--:|" if fps else "") + "--:|--:|" + ("--:|--:|" if power else "") + "---|"]
    shown, more = _first(rows, lambda r: r["verdict"])
    for r in shown:
        ci = f" [{fmt(r['p90_ci95'][0])}–{fmt(r['p90_ci95'][1])}]" if r["p90_ci95"] else ""
        # budget keys are known names (validated) and the figures are numbers: nothing from the file to escape
        missed = [f"`{b['budget']}` {COMPARISONS[b['comparison']]} {b['limit']:g}{_unit(b)}, measured "
                  f"{fmt(b['measured'])}{_unit(b)}"
                  if b["measured"] is not None else f"`{b['budget']}` not measured"
                  for b in r["budgets"] if b["status"] != "pass"]
        verdict = VERDICT_MD[r["verdict"]] + (": " + "; ".join(missed) if missed else "") + \
            (" · **THROTTLED**" if r["throttled"] else "")
        batch = f" (batch {r['batch']}: per call)" if r.get("batch") else ""
        out.append(f"| {cell(r['bundle'])}{batch} | {cell(r['device'])} | {fmt(r['p50_ms'])} | {fmt(r['p90_ms'])}{ci} | "
                   f"{fmt(r['p99_ms'])} | " + (f"{fmt(r.get('throughput_fps'), 6)} | " if fps else "")
                   + f"{fmt(r['peak_rss_mb'])} | {fmt(r['top1'])} | "
                   + (f"{fmt(r.get('power_w'))} | {fmt(r.get('energy_mj'))} | " if power else "") + f"{verdict} |")
    out += _left_out(more, "results")
    out += _absent_lines(shown, (() if power else POWER_COLUMNS) + (() if fps else ("FPS",)))
    errors = [f"- **{cell(r['bundle'])} @ {cell(r['device'])}**: {cell(r['error'])}" for r in shown if r["error"]]
    warnings = [f"- {cell(r['bundle'])} @ {cell(r['device'])}: {cell(w)}" for r in shown for w in r["warnings"]]
    out += [""] + errors + ([""] if errors else [])
    if warnings:
        cut = warnings[WARNING_LINES:]
        out += (["<details><summary>Warnings</summary>", ""] + warnings[:WARNING_LINES]
                + ([f"- … and {len(cut)} more"] if cut else []) + ["", "</details>", ""])
    return out


REGRESSION_MD = {"slower": "❌ SLOWER", "faster": "faster", "no significant change": "no significant change",
                 "inconclusive": "⚠️ inconclusive", "not tested": "⚠️ not tested"}


def _regressions(entries: list) -> list:
    """The regression gate (report --baseline), as check shows it: a pull-request comment carried no verdict."""
    if not entries:
        return []
    effect = next((e["effect"] for e in entries if "effect" in e), None)
    out = ["#### Regression gate" + (f" (minimum effect {effect:.0%})" if effect is not None else ""), "",
           "| bundle | device | baseline | p50 ms | p90 ms | p | verdict |", "|---|---|---|---|---|--:|---|"]
    said = []
    entries, more = _first(entries, lambda e: e["verdict"])
    for e in entries:
        base = e.get("baseline") or {}
        against = f"{cell(base.get('bundle') or '—')} {cell(utc_time(base.get('created'), True) or '')}" if base else "—"
        if "p50" not in e:
            out.append(f"| {cell(e['bundle'] or '—')} | {cell(e['device'] or '—')} | {against} | — | — | — | "
                       f"{REGRESSION_MD[e['verdict']]}: {cell(e['reason'])} |")
            continue
        verdict = within_effect(e) or REGRESSION_MD[e["verdict"]]
        out.append(f"| {cell(e['bundle'] or '—')} | {cell(e['device'] or '—')} | {against} | {quantile_change(e['p50'])} | "
                   f"{quantile_change(e['p90'])} | {e['p_value']:.2g} | {verdict} |")
        said += [f"- {cell(e['bundle'])} @ {cell(e['device'])}: {cell(n)}" for n in e.get("notes") or []]
        if undecided(e) or e["verdict"] == "slower":
            said.append(f"- {cell(e['bundle'])} @ {cell(e['device'])}: {undecided(e) or 'slower'}: {cell(e['reason'])}")
    return out + _left_out(more, "results the gate judged") + [""] + said + ([""] if said else [])


def _unit(budget: dict) -> str:
    return f" {budget['unit']}" if budget["unit"] else ""


POWER_COLUMNS = ("W", "mJ / inference")   # shown only where some result measured power


def _absent_lines(rows: list, hidden=()) -> list:
    """Why a column reads "—": one line per figure and reason, naming the results it holds for (not for a column
    the table leaves out)."""
    by_reason = {}
    for r in rows:
        for column, why in (r.get("absent") or {}).items():
            if column not in hidden:
                by_reason.setdefault((column, why), []).append(f"{r['bundle']} @ {r['device']}")
    return [""] + [f"{column} absent for {cell(', '.join(who))}: {cell(why)}"
                   for (column, why), who in by_reason.items()] if by_reason else []


def _moved(s: dict, unit: str) -> str:
    m = s["summary"]
    return (f"{cell(s['name'])} {fmt(m['min'])}–{fmt(m['max'])} {unit}, mean {fmt(m['mean'])}, last quarter vs "
            f"first {m['change']:+.4g} {unit}")


def _over_run(report: dict) -> list:
    """Per result: latency drift, then power, the zone that warmed most and the clock that fell most, where kept."""
    parts, moved = {}, {}
    for r in report["latency"]:
        drift = r.get("timeline", {}).get("drift_pct")
        if drift is not None:
            parts.setdefault(r["result"], [f"{cell(r['bundle'])} @ {cell(r['device'])}"]).append(f"latency drift {drift:+.1f} %")
            moved[r["result"]] = abs(drift) if math.isfinite(drift) else math.inf
    for r in report["power"]:
        if "timeline" in r and r["result"] in parts:
            parts[r["result"]].append("power " + _moved(r["timeline"]["series"][0], "W"))
    for r in report["thermal"]:
        for key, unit, pick in (("temperature", "°C", max), ("frequency", "MHz", min)):
            if key in r and r["result"] in parts:
                end = "max" if pick is max else "min"   # on a tie, the hottest zone or the slowest clock
                s = pick(r[key]["series"], key=lambda s: (s["summary"]["change"], s["summary"][end]))
                marked = " (throttling)" if r[key]["spans"] else ""
                parts[r["result"]].append(_moved(s, unit) + marked)
    if not parts:
        return []
    largest = sorted(parts, key=lambda result: moved[result], reverse=True)   # 67 lines for 67 results (a walkthrough)
    said = [f"- {parts[result][0]}: " + "; ".join(parts[result][1:]) for result in largest[:OVER_RUN_LINES]]
    more = len(largest) - OVER_RUN_LINES
    if more <= 0:   # in the results' order where all are said
        said = [f"- {words[0]}: " + "; ".join(words[1:]) for words in parts.values()]
    else:
        said.append(f"- and {more} more results (the HTML report draws each)")
    return (["**Over the run**", "", "Latency drift: the last quarter of the timed runs' median against the first "
             "quarter's; a rise means the device's state changed during the run (heat, throttling, other load).", ""]
            + said + [""])



def _study(study) -> list:
    """An optimize study: the chosen trial, then its Pareto front as a table."""
    if not study:
        return []
    chosen = _chosen(study)
    keys = list(dict.fromkeys([study["objective"], *study["pareto_figures"]]))
    front = [t for t in study["trials"] if t["trial"] in study["pareto"] and not t["cached"]]
    trials = study["trials"]   # told apart, as the HTML page tells them: "10 trials" counted cached and failed ones
    measured, failed = (sum(t.get("state") == state and not t["cached"] for t in trials)
                        for state in ("complete", "fail"))
    counts = f"{measured} measured, {sum(t['cached'] for t in trials)} answered from the cache, {failed} failed"
    out = [f"**Optimization study {cell(study['study'])}**: {len(trials)} trials ({counts}); {chosen}.", "",
           *[f"- note: {cell(n)}" for n in study.get("notes", [])], *([""] if study.get("notes") else []),
           f"The Pareto front over {', '.join(study['pareto_figures'])} (lower is better), {len(front)} of the "
           "trials:", "",
           "| trial | configuration | " + " | ".join(keys) + " | meets budgets |", "|--:|---|" + "--:|" * len(keys) + "---|"]
    for t in front:
        out.append(f"| {t['trial']} | {code(t['config'])} | " + " | ".join(_figure(study, t, k) for k in keys)
                   + f" | {'yes' if t['feasible'] else 'no'} |")
    if any((t.get("paired") or {}) for t in study["trials"]):
        out += ["", "In brackets: the ratio to the baseline measured right before the trial, by which a relative "
                    "budget judges it (the figures alone were taken minutes apart)."]
    return out + [""]


def _chosen(study: dict) -> str:
    """The chosen trial and its figure: its runs where it was measured again, with the warning when one of them
    missed the budget."""
    best, objective = study["best"], study["objective"]
    if not best:   # and what came closest, as the terminal says it
        return "no trial met every budget" + "".join(f"; {prose(Text.from_markup(line).plain)}"
                                                      for line in closest_lines(study))
    figure = (fmt(best["figures"].get(objective)) + cell(in_brackets(measured_again(study, best)))
              if best.get("rechecked") else _figure(study, best, objective))
    carried = [carried_limit(study, key) for key in study.get("relative_budgets") or {}]
    return (f"chosen trial {best['trial']} ({code(best['config'])}), {objective} {figure}"
            + "".join(f"; {prose(c)}" for c in carried if c)
            + "".join(f". ⚠️ {prose(w)}" for w in best_warnings(study, best)))


def _figure(study: dict, trial: dict, key: str) -> str:
    """A trial's figure as the study judged it (the median of its runs where it measured it again), with its ratio
    to the baseline measured beside it where the study paired that budget."""
    figures, paired = judged_figures(study, trial)
    ratio = paired.get(key)
    return fmt(figures.get(key)) + (f" ({ratio:.2f}x)" if ratio is not None else "")


def _layers(rows: list, top: int = 5) -> list:
    """Each profiled result's slowest layers, folded away: a reviewer opens it when a layer is the question."""
    out = []
    for r in [r for r in rows if r["available"]]:
        out += [f"<details><summary>Slowest layers: {cell(r['bundle'])} @ {cell(r['device'])} "
                f"({fmt(r['total_ms'])} ms per inference in all layers; the profiler's own cost inflates the times: "
                "read the shares)</summary>", "",
                "| layer | op type | mean ms | share |", "|---|---|--:|--:|"]
        out += [f"| {cell(x['name'])} | {cell(x['op_type'])} | {fmt(x['mean_ms'])} | {x['share_pct']:.1f} % |"
                for x in r["layers"][:top]]
        rest = len(r["layers"]) - top + r["others_count"]
        if rest > 0:
            share = sum(x["share_pct"] for x in r["layers"][top:]) + (r["others_share_pct"] or 0.0)
            out.append(f"| {rest} more layer(s) | | | {share:.1f} % |")
        out += ["", "</details>", ""]
    return out


def _fleet(groups: list) -> list:
    out = []
    for g in groups:
        fastest = next((r["p90_ms"] for r in g["devices"] if r["p90_ms"]), None)
        made_for = f", profile {cell(g['profile'])}" if g["profile"] else ""
        out += [f"**Fleet: {cell(g['bundle'])}**" + (f" (run {cell(', '.join(g['runs']))}{made_for})" if g["runs"] else
                                                     f" ({made_for[2:]})" if made_for else ""), "",
                "| device | p90 ms | vs fastest | verdict |", "|---|--:|--:|---|"]
        for r in g["devices"]:
            ratio = f"{r['p90_ms'] / fastest:.2f}×" if r["p90_ms"] and fastest else "—"
            out.append(f"| {cell(r['device'])} | {fmt(r['p90_ms'])} | {ratio} | {VERDICT_MD[r['verdict']]} |")
        out.append("")
    return out


def _history(series: list, absent) -> list:
    if absent:
        return [f"History: {cell(absent)}", ""]
    changed = [(s, c) for s in series for c in s.get("change_points", [])]
    if not series:
        return []
    if not changed:
        trends = [s for s in series if not s.get("absent")]
        few = f"; {len(series) - len(trends)} with too few runs for a trend" if len(trends) < len(series) else ""
        if not trends:
            return [f"History: too few runs in the store for a trend ({len(series)} bundle × device series, "
                    f"at most {max(len(s['points']) for s in series)} usable run(s) each).", ""]
        return [f"History: no p90 change point in {len(trends)} bundle × device series{few}.", ""]
    out = ["**p90 change points in the history**", "", "| bundle | device | at run | when | p90 ms | change |",
           "|---|---|--:|---|--:|--:|"]
    for s, c in changed:
        out.append(f"| {cell(s['bundle'])} | {cell(s['device'])} | {c['index'] + 1} of {len(s['points'])} | "
                   f"{cell(c['created'][:19])} | {fmt(c['from_ms'])} → {fmt(c['to_ms'])} | {c['change_pct']:+.1f} % |")
    return out + [""]


def _spreadsheet_safe(value):
    """A text cell a spreadsheet would run as a formula (=, +, -, @ first) is prefixed with ' (OWASP's advice); a
    float is written to 12 significant digits (0.0775287, not the arithmetic's 0.07752870000000008)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    if isinstance(value, float):
        return format(value, ".12g")
    return value


def _throttled_cell(row: dict) -> str:
    """true / false, or empty where the run could not read its throttling state: `false` would claim a check
    that never happened (the JSON and tables say "not measured")."""
    if row["throttled"]:
        return "true"
    return "false" if row.get("thermal_measured") else ""


def csv_text(report: dict) -> str:
    """One row per result; with --study, one row per trial of the study instead (what a spreadsheet of a study
    is for: its results are the baseline's and the chosen trial's rows of the other formats)."""
    if report.get("study"):
        return _study_csv(report["study"])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    # report --baseline's verdict per result (slower, faster, same, inconclusive, ...): empty without --baseline
    gate = {str(e.get("result")): e.get("verdict") for e in report.get("regressions") or []}
    for r in machine_rows(report["summary"]):
        ci = r["p90_ci95"] or [None, None]
        # batch: 1 for one sample a call (the other formats say only a batch above 1), empty where not recorded
        row = dict(r, batch=r.get("call_samples"), regression=gate.get(r["result"]), p90_ci95_low=ci[0], p90_ci95_high=ci[1], throttled=_throttled_cell(r),
                   budgets_failed=";".join(b["budget"] for b in r["budgets"] if b["status"] != "pass"))
        writer.writerow(["" if row.get(c) is None else _spreadsheet_safe(row[c]) for c in CSV_COLUMNS])
    return buf.getvalue()


STUDY_CSV_COLUMNS = ("study", "trial", "state", "config", "chosen", "pareto", "feasible", "baseline", "textbook",
                     "cached", "twin_of", "runs", "measurement")


def _study_csv(study: dict) -> str:
    """The study's trials: the figures the study judged (the objective's the median of a trial's runs), each
    budget's and the front's figure a column, a relative budget's ratio to the paired baseline, the budgets missed
    and the error last."""
    keys = list(dict.fromkeys([study["objective"], *study["budgets"], *study["pareto_figures"]]))
    relative = list(study.get("relative_budgets") or {})   # judged by the ratio to the baseline beside the trial
    best = (study.get("best") or {}).get("trial")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*STUDY_CSV_COLUMNS, *keys, *(f"{k}_vs_baseline" for k in relative), "budgets_missed", "error"])
    for row in study["trials"]:
        figures, paired = judged_figures(study, row)
        cells = {**row, "study": study["study"], "chosen": row["trial"] == best,
                 "pareto": row["trial"] in study["pareto"], "textbook": bool(row.get("textbook")),
                 # a trial measured once ran once (the cell was empty); a cached or failed one measured nothing
                 "runs": len(row.get("rechecked") or []) or (1 if row["state"] == "complete" and not row["cached"]
                                                             else None)}
        missed = ";".join(key for key, excess in (row.get("violations") or {}).items()   # unmeasured: an empty cell
                          if excess and excess > 0 and figures.get(key) is not None)
        writer.writerow(["" if cells.get(c) is None else _spreadsheet_safe(cells[c]) for c in STUDY_CSV_COLUMNS]
                        + ["" if figures.get(k) is None else _spreadsheet_safe(figures[k]) for k in keys]
                        + ["" if paired.get(k) is None else _spreadsheet_safe(paired[k]) for k in relative]
                        + [missed, _spreadsheet_safe(row.get("error") or "")])
    return buf.getvalue()
