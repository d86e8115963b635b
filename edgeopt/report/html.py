"""The report as one self-contained HTML page: inline CSS and inline SVG, no script, nothing fetched.

Sections: summary with budget verdicts, latency distributions (ECDF per device, percentiles with their 95 %
intervals), latency over the run, memory, power and temperature, the fleet side by side, history trends with
change points. Every name and message from a result file is escaped.
"""
from __future__ import annotations

import datetime
import html
import math
import re

from rich.text import Text

from .. import __version__
from ..search.trial import PHASES
from . import changes
from .rows import quantile_change, undecided, utc_time, within_effect
from .tables import (best_warnings, carried_limit, closest_lines, figure_columns, in_brackets, judged_figures,
                     measured_again, median_of_runs, trial_marks, versus_textbook_line)
from .svg import Chart, color, nice_ticks, number, padded

COMPARISONS = {"<=": "≤", ">=": "≥"}
LOG_AXIS_SPREAD = 20   # max/min latency above which the ECDF's x axis is logarithmic
VERDICTS = {"pass": ("pass", "ok"), "fail": ("FAIL", "bad"), "unmeasured": ("NOT MEASURED", "warn"),
            "failed": ("DEVICE FAILED", "bad"), "unreadable": ("UNREADABLE", "bad"), "none": ("no budgets", "none")}

CSS = """
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eff1f3;padding:0 3px;border-radius:3px}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0;background:#f6f8fa}
main{max-width:1180px;margin:0 auto;padding:16px 24px 40px}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:15px;margin:14px 0 4px}.meta,.muted{color:#59636e}.small{font-size:12px}
table{border-collapse:collapse;background:#fff;margin:6px 0;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f6}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-weight:600;font-size:12px;white-space:nowrap}
.ok{background:#dafbe1;color:#116329}.bad{background:#ffebe9;color:#a40e26}.warn{background:#fff8c5;color:#7d4e00}
.none{background:#eaeef2;color:#59636e}.grid{stroke:#e6e9ed;stroke-width:1}
.charts{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:8px}
svg.chart{display:block;font:11px system-ui,sans-serif;fill:#1f2328;max-width:100%;height:auto}svg .plot{fill:#fff;stroke:#d0d7de}
svg .label{font-size:12px;fill:#59636e}svg .note{font-size:11px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:middle}
ul.budgets{margin:0;padding:0;list-style:none;font-size:12px;min-width:240px}ul.budgets li{margin-bottom:1px}
td.name{min-width:14ch;max-width:36ch;overflow-wrap:anywhere}.card{max-width:100%;box-sizing:border-box}.scroll{overflow-x:auto}.absent{color:#7d4e00}.card .legend,.card .note{max-width:370px}
"""


# what tells an edgeopt report from any other page: `report` without -o replaces only its own report.html
GENERATOR = '<meta name="generator" content="edgeopt">'

def esc(text) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def prose(text: str) -> str:
    """One of edgeopt's own sentences, escaped, its `code spans` as <code> (they showed their backticks)."""
    parts = re.split(r"`([^`]+)`", text)   # the spans' contents at the odd places
    return "".join(f"<code>{esc(part)}</code>" if i % 2 else esc(part) for i, part in enumerate(parts))


def _sentence(line: str) -> str:
    return line[:1].upper() + line[1:]


def num(value, digits: int = 4, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, int) and not isinstance(value, bool):   # a count: 91,854 beside 107,920, not 91854
        return f"{value:,} {unit}".rstrip()
    text = f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return f"{text} {unit}".rstrip()


def badge(state: str) -> str:
    words, cls = VERDICTS.get(state, (state, "none"))
    return f'<span class="badge {cls}">{esc(words)}</span>'


def who(row: dict) -> str:
    return f"{row['bundle']} @ {row['device']}"


def render(report: dict, title: str = "edgeopt report") -> str:
    body = [_header(report, title), _summary(report["summary"]), _regressions(report.get("regressions") or []),
            _study(report.get("study")), _latency(report["latency"]),
            _over_run(report["latency"]), _throughput(report.get("throughput") or []),
            _layers(report.get("layer_profile") or []), _memory(report["memory"]), _power(report["power"]),
            _thermal(report["thermal"]), _fleet(report["fleet"]), _history(report["history"], report["history_absent"]),
            _method()]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">{GENERATOR}<title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><main>{''.join(body)}</main></body></html>\n")


def _header(report: dict, title: str) -> str:
    code = report["exit_code"]
    state = ("pass" if report.get("checked", True) else "none") if code == 0 else "failed" if code == 3 else \
        "unreadable" if code == 2 else "fail"
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<h1>{esc(title)}</h1><p class=\"meta\">{len(report['summary'])} result(s) · generated {when} by edgeopt "
            f"{esc(__version__)} · overall {badge(state)} <span class=\"muted\">({esc(report['headline'])}; "
            f"edgeopt report exits {code})</span></p>")


GATE_BADGES = {"slower": "fail", "faster": "pass", "no significant change": "pass", "inconclusive": "unmeasured",
               "not tested": "unmeasured"}


def _regressions(entries: list) -> str:
    """report --baseline: the regression gate as check shows it, each verdict's reason beside it where it needs one."""
    if not entries:
        return ""
    effect = next((e["effect"] for e in entries if "effect" in e), None)
    rows = []
    for e in entries:
        base = e.get("baseline") or {}
        # the baseline's bundle only where it is another: the same long name twice pushed the verdict off the page
        other = base.get("bundle") if base.get("bundle") != e["bundle"] else None
        against = (f"{esc(other) + '<br>' if other else ''}<span class=\"small muted\">"
                   f"{esc(utc_time(base.get('created'), True) or '')}</span>" if base else "—")
        verdict = (f'<span class="badge {VERDICTS[GATE_BADGES[e["verdict"]]][1]}">'
                   f'{esc(within_effect(e) or e["verdict"]) if "p50" in e else esc(e["verdict"])}</span>')
        reason = e["reason"] if "p50" not in e or undecided(e) or e["verdict"] == "slower" else ""
        said = "".join(f"<br><span class=\"small muted\">{esc(x)}</span>" for x in [reason, *(e.get("notes") or [])] if x)
        changes_ = ([esc(quantile_change(e[q])) for q in ("p50", "p90")] + [f"{e['p_value']:.2g}"] if "p50" in e
                    else ["—", "—", "—"])
        rows.append(f"<tr><td class=name>{esc(e['bundle'] or '—')}</td><td class=name>{esc(e['device'] or '—')}</td>"
                    f"<td>{verdict}{said}</td><td>{against}</td>"
                    + "".join(f"<td class=num>{c}</td>" for c in changes_) + "</tr>")
    # the verdict beside the names, and the table scrolls: with long names its last column was cut off the page
    head = "".join(f"<th>{h}</th>" for h in ("bundle", "device", "verdict", "baseline", "p50 ms", "p90 ms", "p"))
    title = "Regression gate" + (f" <span class=\"small muted\">(minimum effect {effect:.0%})</span>"
                                 if effect is not None else "")
    return (f"<h2>{title}</h2><div class=scroll><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
            "</table></div>")


def _budget_list(budgets: list) -> str:
    if not budgets:
        return '<span class="muted">—</span>'
    items = []
    for b in budgets:
        measured = num(b["measured"], 4, b["unit"]) if b["measured"] is not None else f"not measured: {b['reason']}"
        short = b["budget"].removeprefix("latency_").removesuffix("_ms").removesuffix("_mb")
        items.append(f"<li title=\"{esc(b['budget'])}\">{badge(b['status'])} {esc(short)} {COMPARISONS.get(b['comparison'], esc(b['comparison']))} "
                     f"{esc(num(b['limit'], 4, b['unit']))} <span class=muted>({esc(measured)})</span></li>")
    return f'<ul class="budgets">{"".join(items)}</ul>'


def _summary(rows: list) -> str:
    head = ("bundle", "device", "timed runs", "p50 ms", "p90 ms<br>95% CI", "p99 ms", "peak RSS MiB", "model MiB", "top-1",
            "power W", "verdict", "budgets")
    lines = []
    for r in rows:
        ci = f"<br><span class='small muted'>{num(r['p90_ci95'][0])}–{num(r['p90_ci95'][1])}</span>" \
            if r["p90_ci95"] else ""
        notes = ("<br>" + '<span class="badge bad">THROTTLED</span>' if r["throttled"] else "") + \
            (f'<br><span class="small absent">{esc(r["error"])}</span>' if r["error"] else "")
        run = f'<br><span class="small muted" title="{esc(r["run"])}">fleet run {esc(r["run"][:15])}</span>' \
            if r["run"] else ""
        if not r["run"] and r.get("created"):   # two results of one bundle on one device: told apart by when, and file
            run = (f'<br><span class="small muted" title="{esc(r["result"])}">'
                   f'{esc(utc_time(r["created"], seconds=True))}</span>')
        batch = f"<br><span class='small muted'>batch {r['batch']}: per call</span>" if r.get("batch") else ""
        batch += f"<br><span class='small muted'>{esc(r['runtime'])}</span>" if r.get("runtime") else ""
        # the time is on a line of its own: the device with the profile only where that tells results apart
        device = r["device_name"] + (f" ({r['profile_apart']})" if r.get("profile_apart") else "")
        lines.append(f"<tr><td class=name>{esc(r['bundle'])}{batch}</td><td class=name>{esc(device)}{run}</td><td class=num>{num(r['n'], 6)}</td>"
                     f"<td class=num>{num(r['p50_ms'])}</td><td class=num>{num(r['p90_ms'])}{ci}</td>"
                     f"<td class=num>{num(r['p99_ms'])}</td><td class=num>{num(r['peak_rss_mb'])}</td>"
                     f"<td class=num>{num(r['size_mb'])}</td><td class=num>{num(r['top1'])}</td>"
                     f"<td class=num>{num(r['power_w'])}</td><td>{badge(r['verdict'])}{notes}</td>"
                     f"<td>{_budget_list(r['budgets'])}</td></tr>")
    warnings = [f"<li><b>{esc(who(r))}</b>: {esc(w)}</li>" for r in rows for w in r["warnings"]]
    table = f"<div class=scroll><table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{''.join(lines)}</table>"
    return "<h2>Summary</h2>" + table + (f"<h3>Warnings</h3><ul class=small>{''.join(warnings)}</ul>" if warnings else "")


def _by_bundle(rows: list) -> dict:
    out = {}
    for r in rows:
        out.setdefault(r["bundle"], []).append(r)
    return out


def _legend(items) -> str:
    return " ".join(f'<span class="small"><span class="swatch" style="background:{c}"></span>{esc(t)}</span>'
                    for c, t in items)


def _absent_list(rows: list) -> str:
    return "".join(f'<p class="small absent">{esc(who(r))}: {esc(r["absent"])}</p>' for r in rows if "absent" in r)


def _latency(rows: list) -> str:
    out = ["<h2>Latency distributions</h2><p class=\"small muted\">Empirical CDF of every timed run's latency. "
           "Markers: ● p50, ◆ p90, ■ p99; the bar through each is its 95 % interval from order statistics.</p>"]
    for bundle, group in _by_bundle([r for r in rows if "ecdf" in r]).items():
        out.append(f"<div class=card><h3>{esc(bundle)}</h3>{_ecdf_chart(bundle, group)}"
                   f"{_legend((color(i), r['device']) for i, r in enumerate(group))}{_percentile_table(group)}</div>")
    return "".join(out) + _absent_list(rows)


def _ecdf_chart(bundle: str, group: list) -> str:
    lo, hi = min(r["min_ms"] for r in group), max(r["max_ms"] for r in group)
    # A tail decades above the median (a preempted run on a shared machine) would squeeze the body of a linear
    # axis into one pixel column: such a spread gets a log axis, which shows both.
    log = lo > 0 and hi / lo > LOG_AXIS_SPREAD
    x_range = (lo / 1.15, hi * 1.15) if log else padded(lo, hi, 0.03)
    chart = Chart(f"Latency ECDF of {bundle}", x_range, (0.0, 1.0), width=760, height=300, log_x=log,
                  x_label="latency (ms)" + (", log scale" if log else ""), y_label="fraction of runs ≤ x")
    chart.axes(y_ticks=[0, 0.25, 0.5, 0.75, 0.9, 0.99])
    for i, r in enumerate(group):
        chart.line(r["ecdf"], color(i), step=True, title=f"{r['device']}: {r['n']} runs")
        for key, q, shape in (("p50_ms", 0.5, "circle"), ("p90_ms", 0.9, "diamond"), ("p99_ms", 0.99, "square")):
            mark = r["percentiles"][key]
            if "value" not in mark:
                continue
            ci = mark.get("ci95")
            if ci:
                chart.segment(ci[0], q, ci[1], q, color(i), width=3,
                              title=f"{r['device']} {key[:-3]} 95% CI {number(ci[0])}–{number(ci[1])} ms")
            chart.dot(mark["value"], q, color(i), shape=shape, title=f"{r['device']} {key[:-3]} {number(mark['value'])} ms")
    return chart.render()


def _percentile_table(group: list) -> str:
    lines = []
    for i, r in enumerate(group):
        cells = []
        for key in ("p50_ms", "p90_ms", "p99_ms"):
            m = r["percentiles"][key]
            if "value" not in m:
                cells.append(f'<td class="small absent">absent: {esc(m["absent"])}</td>')
                continue
            ci = f" [{num(m['ci95'][0])}–{num(m['ci95'][1])}]" if m.get("ci95") else ""
            cells.append(f"<td class=num>{num(m['value'])}{esc(ci)}</td>")
        lines.append(f'<tr><td><span class="swatch" style="background:{color(i)}"></span>{esc(r["device"])}</td>'
                     f"<td class=num>{r['n']}</td>{''.join(cells)}<td class=num>{num(r['max_ms'])}</td>"
                     f"<td>{esc(r['stopped_by'] or '')}</td></tr>")
    # "[95% CI]" only over a column that has one (the agent gives p50 none)
    heads = "".join(f"<th>{key[:-3]} ms{' [95% CI]' if any(r['percentiles'][key].get('ci95') for r in group) else ''}"
                    "</th>" for key in ("p50_ms", "p90_ms", "p99_ms"))
    return (f"<table><tr><th>device</th><th>runs</th>{heads}<th>max ms</th><th>loop stopped by</th></tr>"
            f"{''.join(lines)}</table>")


def _run_chart(title: str, x_range: tuple, lo: float, hi: float, x_label: str, y_label: str) -> Chart:
    """The frame every "over the run" chart shares: latency by run number, power and heat by seconds."""
    chart = Chart(title, x_range, padded(lo, hi, 0.08), width=370, height=200, x_label=x_label, y_label=y_label)
    chart.axes()
    return chart


def _run_card(r: dict, body: str, note: str, cls: str = "muted") -> str:
    flag = ' <span class="badge bad">THROTTLED</span>' if r["throttled"] else ""
    return f'<div class=card><h3 class=small>{esc(who(r))}{flag}</h3>{body}<div class="small note {cls}">{note}</div></div>'


def _over_run(rows: list) -> str:
    cards = []
    for r in [r for r in rows if "timeline" in r]:
        t = r["timeline"]
        bins = t["bins"]
        chart = _run_chart(f"Latency over the run: {who(r)}", (0, t["n"]), min(b["p10"] for b in bins),
                           max(b["p90"] for b in bins), "run number", "ms")
        mid = [((b["start"] + b["end"]) / 2, b) for b in bins]
        chart.band([(x, b["p90"]) for x, b in mid], [(x, b["p10"]) for x, b in mid], "#0072B2", 0.22,
                   title="p10–p90 of each bin of consecutive runs")
        chart.line([(x, b["median"]) for x, b in mid], "#0072B2", title="median per bin")
        drift = t["drift_pct"]
        said = (f"drift not measured: {t['drift_absent']}" if "drift_absent" in t else
                f"last quarter median {num(t['last_quarter_median_ms'])} ms vs first "
                f"{num(t['first_quarter_median_ms'])} ms: {'—' if drift is None else f'{drift:+.1f} %'}")
        cards.append(_run_card(r, chart.render(), said, "bad" if drift is not None and drift > 10 else "muted"))
    return ("<h2>Latency over the run</h2><p class=\"small muted\">Median (line) and p10–p90 (band) of consecutive runs, "
            "in the order they ran: a rising line is drift (heat, throttling, other load).</p>"
            f"<div class=charts>{''.join(cards)}</div>")


def _memory(rows: list) -> str:
    rows = [r for r in rows if "steps" in r]
    if not rows:
        return "<h2>Memory</h2><p class=muted>No successful result.</p>"
    values = [v for r in rows for _, v in r["steps"] if v is not None]
    bar, gap = 9, 10
    height = 30 + len(rows) * (4 * bar + gap) + 40
    names = [who(r) for r in rows]
    shown, left = _row_labels(names)
    chart = Chart("Resident memory per result", (0, (max(values) if values else 1) * 1.08), (0, len(rows)),
                  width=760, height=height, x_label="resident memory (MiB)", margin=(12, 16, 42, left))
    chart.axes(y_ticks=[])
    for i, r in enumerate(rows):
        top = len(rows) - i
        chart.text(0, top - 0.5, shown[i], anchor="end", dx=-6, dy=4, title=names[i])
        for k, (name, value) in enumerate(r["steps"]):
            if value is not None:
                y = top - (k + 0.6) / 4.6
                chart.rect(0, value, y - 0.09, y + 0.09, color(k), title=f"{who(r)}: {name} {value:.1f} MiB")
    legend = _legend((color(k), name) for k, (name, _) in enumerate(rows[0]["steps"]))
    scope = rows[0]["peak_scope"]
    peak = ("Peak is the high-water mark, reset just before the timed loop." if scope in (None, "timed loop") else
            f"Peak is the high-water mark of the {esc(scope)}.")
    steps = [name for name, _ in rows[0]["steps"]]   # the figures, which were in hover titles alone
    lines = "".join(f"<tr><td>{esc(name)}</td>" + "".join(
        f"<td class=num>{'—' if v is None else f'{v:.1f}'}</td>" for _, v in r["steps"]) + "</tr>"
                    for r, name in zip(rows, names))
    figures = (f"<details><summary class=small>The figures (MiB)</summary><table><tr><th>result</th>"
               f"{''.join(f'<th>{esc(s)}</th>' for s in steps)}</tr>{lines}</table></details>")
    return (f"<h2>Memory</h2><div class=card>{chart.render()}{legend}<p class=\"small muted\">{peak}</p>"
            f"{figures}</div>")


def _power(rows: list) -> str:
    out = ["<h2>Power</h2>"]
    measured = [r for r in rows if r["available"]]
    if measured:
        lines = "".join(f"<tr><td>{esc(who(r))}</td><td>{esc(r['sensor'])}</td><td class=num>{num(r['idle_w'])}</td>"
                        f"<td class=num>{num(r['mean_w'])}</td><td class=num>{num(r['peak_w'])}</td>"
                        f"<td class=num>{num(r['energy_mj'])}</td><td class=num>{num(r['dynamic_energy_mj'])}</td></tr>"
                        for r in measured)
        out.append("<table><tr><th>result</th><th>sensor</th><th>idle W</th><th>mean W</th><th>peak W</th>"
                   f"<th>mJ / inference</th><th>mJ above idle</th></tr>{lines}</table>")
    out.append(_not_measured([r for r in rows if not r["available"]]))
    cards = [_run_card(r, _timeline_chart(r, "Power", r["timeline"]), _power_note(r["timeline"]))
             for r in measured if "timeline" in r]
    if cards:
        out.append(f"<h3>Power over the run</h3><p class=\"small muted\">Total and each rail as read during the timed "
                   f"loop (a counter: mean watts between readings); a long run is shown as the mean of equal time bins. "
                   f"A level that climbs or sags over the run is the device warming or throttling.</p>"
                   f"<div class=charts>{''.join(cards)}</div>")
    out.append(_no_timeline("power", [r for r in measured if "timeline_absent" in r], "timeline_absent"))
    return "".join(out)


def _no_timeline(what: str, rows: list, key: str) -> str:
    """One line per distinct reason a timeline is missing, naming its results."""
    reasons = {}
    for r in rows:
        reasons.setdefault(r[key], []).append(who(r))
    return "".join(f'<p class="small muted">No {esc(what)} timeline for {esc(", ".join(names))}: {esc(why)}.</p>'
                   for why, names in reasons.items())


TRIP_NEAR_C = 10.0   # a trip point further above the hottest reading than this is named, not drawn


def _pieces(t: list, values: list, gap_s) -> list:
    """The series as runs of consecutive readings: broken where a value is missing or readings are far apart."""
    out, piece, prev = [], [], None
    for a, v in zip(t, values):
        if v is None or (piece and gap_s and a - prev > gap_s):
            out, piece = (out + [piece] if piece else out), []
        if v is not None:
            piece.append((a, v))
            prev = a
    return out + ([piece] if piece else [])


def _timeline_chart(r: dict, what: str, line: dict) -> str:
    """One power, temperature or frequency timeline: a line per series, its near trip points dashed, the spans where
    the device throttled shaded red."""
    series = line["series"]
    read = [v for s in series for v in s["values"] if v is not None]
    trips = [s for s in series if "trip_c" in s and s["trip_c"] <= max(read) + TRIP_NEAR_C]
    chart = _run_chart(f"{what} over the run: {who(r)}", (0, line["end_s"]), min(read),
                       max(read + [s["trip_c"] for s in trips]), "seconds into the timed loop", line["unit"])
    for a, b in line["spans"]:
        chart.rect(a, b, chart.y0, chart.y1, "#cf222e", 0.15, title=f"throttling {number(a)}–{number(b)} s")
    for i, s in enumerate(series):
        words = f"{s['name']}: {number(s['summary']['min'])}–{number(s['summary']['max'])} {line['unit']}"
        for piece in _pieces(line["t"], s["values"], line["gap_s"]):
            if len(piece) == 1:
                chart.dot(*piece[0], color(i), r=2, title=words)
            else:
                chart.line(piece, color(i), width=s["width"], title=words)
        if s in trips:
            chart.segment(0, s["trip_c"], line["end_s"], s["trip_c"], color(i), dash="4 3",
                          title=f"{s['name']}: trip point {number(s['trip_c'])} °C")
    legend = _legend((color(i), s["name"]) for i, s in enumerate(series))
    return f'{chart.render()}<div class="legend">{legend}</div>'


def _change(s: dict, unit: str) -> str:
    m = s["summary"]
    return (f"{esc(s['name'])}: mean {num(m['mean'])} {unit} ({num(m['min'])}–{num(m['max'])}); last quarter vs first "
            f"{m['change']:+.3g} {unit}")


def _power_note(line: dict) -> str:
    binned = f"; {esc(line['downsampling'])}" if line["downsampling"] else ""
    return _change(line["series"][0], "W") + binned


def _heat_note(line: dict, unit: str) -> str:
    """The series that moved most over the run, and whether the chart marks throttling."""
    s = max(line["series"], key=lambda s: abs(s["summary"]["change"]) if s["summary"] else -1)
    marked = f"; throttling marked in {len(line['spans'])} span(s)" if line["spans"] else ""
    return (_change(s, unit) if s["summary"] else "no reading") + marked


def _throughput(rows: list) -> str:
    out = ["<h2>Throughput</h2>"]
    measured = [r for r in rows if r["available"]]
    if measured:
        lines = "".join(f"<tr><td>{esc(who(r))}</td><td class=num>{num(r['fps'], 6)}</td>"
                        f"<td class=num>{num(r['completed'], 9)} in {num(r['duration_s'])} s</td>"
                        f"<td class=num>{num(r['concurrency'])}</td><td class=num>{num(r['request_latency_median_ms'])}</td>"
                        f"<td>{esc(r['method'])}{_absent_note(r['reason'])}</td></tr>" for r in measured)
        out.append("<table><tr><th>result</th><th>FPS</th><th>completed</th><th>in flight</th>"
                   f"<th>request median ms</th><th>how</th></tr>{lines}</table>")
    out.append(_not_measured([r for r in rows if not r["available"]]))
    return "".join(out)


def _absent_note(reason) -> str:
    return f'<br><span class="small absent">{esc(reason)}</span>' if reason else ""


def _layers(rows: list) -> str:
    measured = [r for r in rows if r["available"]]
    out = ["<h2>Time per layer</h2>"]
    out += [f"<div class=card><h3>{esc(who(r))}</h3>{_layer_chart(r)}{_layer_table(r)}</div>" for r in measured]
    out.append(_not_measured([r for r in rows if not r["available"]]))
    return "".join(out)


def _layer_chart(r: dict) -> str:
    """Each listed layer's share of the time in all layers, one bar per layer, slowest first."""
    layers, bar = r["layers"], 18
    # the axis to the largest share, in tens: at 0-100 % a model whose slowest layer takes 13 % was a row of stubs
    top_pct = min(100, max(10, math.ceil(max((x["share_pct"] for x in layers), default=0) * 1.15 / 10) * 10))
    chart = Chart(f"{who(r)}: share of time per layer", (0, top_pct), (0, len(layers)), width=760,
                  height=60 + len(layers) * bar, x_label="% of the time in all layers", margin=(12, 16, 42, 260))
    chart.axes(x_ticks=nice_ticks(0, top_pct), y_ticks=[])
    for i, x in enumerate(layers):
        top = len(layers) - i
        # the end of a long name is what tells layers apart (/features/features.3/Conv); the whole on hover
        shown = x["name"] if len(x["name"]) <= 40 else "…" + x["name"][-39:]
        chart.text(0, top - 0.5, shown, anchor="end", dx=-6, dy=4, title=x["name"])
        chart.rect(0, x["share_pct"], top - 0.85, top - 0.15, color(0),
                   title=f"{x['name']} ({x['op_type']}): {x['mean_ms']:.4g} ms, {x['share_pct']:.1f} %")
    return chart.render()


def _layer_table(r: dict) -> str:
    lines = "".join(f"<tr><td>{esc(x['name'])}</td><td>{esc(x['op_type'])}</td><td class=num>{num(x['mean_ms'])}</td>"
                    f"<td class=num>{x['share_pct']:.1f} %</td></tr>" for x in r["layers"])
    if r["others_count"]:
        lines += (f"<tr><td class=muted>{r['others_count']} more layer(s)</td><td></td><td></td>"
                  f"<td class=num>{num(r['others_share_pct'], 3)} %</td></tr>")
    return (f"<table><tr><th>layer</th><th>op type</th><th>mean ms</th><th>share</th></tr>{lines}</table>"
            f"<p class=\"small muted\">{esc(r['method'])}; {num(r['runs'], 6)} profiled runs after the timed loop, "
            f"{num(r['total_ms'])} ms per inference in all layers: the profiler's own cost inflates the times, so "
            "read the shares; the timed runs give the latency.</p>")


def _not_measured(rows: list) -> str:
    """One line per distinct reason, naming the results it applies to (a fleet without sensors is one line)."""
    reasons = {}
    for r in rows:
        reasons.setdefault(r["reason"], []).append(who(r))
    return "".join(f'<p class="small absent">Not measured for {esc(", ".join(names))}: {esc(reason)}</p>'
                   for reason, names in reasons.items())


def _thermal(rows: list) -> str:
    out = ["<h2>Temperature and clocks</h2>"]
    lines = []
    for r in [r for r in rows if r["available"]]:
        for zone, (start, end) in r["zones"].items():
            lines.append(f"<tr><td>{esc(who(r))}</td><td>{esc(zone)}</td><td class=num>{num(start)} → {num(end)} °C</td></tr>")
        for name, f in r["cpufreq"].items():
            lines.append(f"<tr><td>{esc(who(r))}</td><td>cpufreq {esc(name)}</td><td class=num>{num(f['before_mhz'])} / "
                         f"{num(f['min'])}–{num(f['max'])} / {num(f['after_mhz'])} MHz (max {num(f['hw_max_mhz'])})</td></tr>")
    if lines:
        out.append(f"<table><tr><th>result</th><th>sensor</th><th>start → end · before / during / after</th></tr>"
                   f"{''.join(lines)}</table>")
    out.append(_not_measured([r for r in rows if not r["available"]]))
    measured = [r for r in rows if r["available"]]
    cards = []
    for r in measured:
        charts = [(_timeline_chart(r, what, r[key]), _heat_note(r[key], unit)) for key, what, unit in
                  (("temperature", "Temperature", "°C"), ("frequency", "CPU frequency", "MHz")) if key in r]
        if charts:
            cards.append(_run_card(r, "".join(c for c, _ in charts), "<br>".join(n for _, n in charts),
                                   "bad" if any(r[k]["spans"] for k in ("temperature", "frequency") if k in r) else "muted"))
    if cards:
        out.append("<h3>Temperature and clocks over the run</h3><p class=\"small muted\">Each thermal zone and cpufreq "
                   "policy read during the timed loop. Dashed: a zone's passive/hot/critical trip point (where the kernel "
                   "throttles). Red: throttling, a zone at its trip point or a clock below 90 % of its peak after "
                   "reaching 95 % of its maximum.</p>" + f"<div class=charts>{''.join(cards)}</div>")
    out.append(_no_timeline("temperature", [r for r in measured if "temperature_absent" in r], "temperature_absent"))
    out.append(_no_timeline("CPU frequency", [r for r in measured if "frequency_absent" in r and r["cpufreq"]],
                            "frequency_absent"))
    return "".join(out)


def _fleet(groups: list) -> str:
    if not groups:
        return ("<h2>Fleet</h2><p class=muted>No bundle was measured on more than one device in these results.</p>")
    out = ["<h2>Fleet</h2><p class=\"small muted\">Each device's p50–p99 range (line), p90 (◆) and its 95 % interval "
           "(thick bar), coloured and labelled by budget verdict; fastest p90 first.</p>"]
    for g in groups:
        out.append(f"<div class=card><h3>{esc(g['bundle'])}{' · profile ' + esc(g['profile']) if g['profile'] else ''}"
                   f"{' · fleet run ' + esc(', '.join(g['runs'])) if g['runs'] else ''}</h3>{_fleet_chart(g)}</div>")
    return "".join(out)


FLEET_LABEL_CHARS = 44   # "nobody@127.0.0.1:1 (2026-12-06 17:27:12)" whole; the plot keeps over half the width
VERDICT_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "unmeasured": "#9a6700", "failed": "#8c959f",
                   "unreadable": "#8c959f", "none": "#0072B2"}
VERDICT_WORDS = {"pass": "pass", "fail": "FAIL", "unmeasured": "not measured"}


def _row_labels(names: list) -> tuple:
    """(each row's label, cut to FLEET_LABEL_CHARS with "…", the whole name its hover title; the left margin that
    fits the longest). Cut at 22 or 36 characters, two runs of `local` read alike ("local (2026-12-06 21:3"), and
    a longer name ran off the chart's left edge."""
    shown = [n if len(n) <= FLEET_LABEL_CHARS else _cut_keeping_time(n) for n in names]
    return shown, 16 + round(6.2 * max((len(n) for n in shown), default=10))


def _cut_keeping_time(name: str) -> str:
    """A label cut to FLEET_LABEL_CHARS, its "(2026-12-06 21:36:12)" kept whole where it has one: two runs of
    `mobilenet_v2-int8-pruned @ pi-kitchen` both read "… (2026…" (a review)."""
    head, paren, tail = name.rpartition(" (")
    suffix = paren + tail if paren and tail.endswith(")") and len(tail) < FLEET_LABEL_CHARS // 2 else ""
    keep = FLEET_LABEL_CHARS - 1 - len(suffix)
    return (head if suffix else name)[:keep] + "…" + suffix


def _fleet_chart(group: dict) -> str:
    rows = group["devices"]
    values = [v for r in rows for v in (r["p50_ms"], r["p99_ms"], r["p90_ms"]) if v is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    log = lo > 0 and hi / lo > LOG_AXIS_SPREAD
    # the verdict in words too: pass and FAIL were red and green alone, 1.05:1 apart in brightness and one olive to
    # a deuteranope (an accessibility walkthrough)
    names = [(f"{VERDICT_WORDS[r['verdict']]} · " if r["status"] == "ok" and r["verdict"] in VERDICT_WORDS else "")
             + r["device"] + ("" if r["status"] == "ok" else " (failed)") for r in rows]   # first: a long name is cut
    shown, left = _row_labels(names)
    chart = Chart(f"Fleet: {group['bundle']}", (lo / 1.15, hi * 1.15) if log else padded(lo, hi, 0.05), (0, len(rows)),
                  width=760, height=40 + 26 * len(rows) + 20, x_label="latency (ms)" + (", log scale" if log else ""),
                  margin=(10, 24, 42, left), log_x=log)
    chart.axes(y_ticks=[])
    for i, r in enumerate(rows):
        y = len(rows) - i - 0.5
        c = VERDICT_COLOURS.get(r["verdict"], "#0072B2")
        chart.text(chart.x0, y, shown[i], anchor="end", dx=-6, dy=4, title=names[i])
        if r["p50_ms"] is not None and r["p99_ms"] is not None:
            chart.segment(r["p50_ms"], y, r["p99_ms"], y, c, width=1.5,
                          title=f"{r['device']}: p50 {number(r['p50_ms'])} – p99 {number(r['p99_ms'])} ms")
        if r["p90_ci95"]:
            chart.segment(r["p90_ci95"][0], y, r["p90_ci95"][1], y, c, width=5)
        if r["p90_ms"] is not None:
            chart.dot(r["p90_ms"], y, c, r=4.5, shape="diamond", title=f"{r['device']}: p90 {number(r['p90_ms'])} ms")
    return chart.render() + _fleet_figures(rows, names)


def _fleet_figures(rows: list, names: list) -> str:
    """The chart's figures as a table: they were in hover titles alone, which a screen reader, a keyboard and a
    touch screen do not reach (an accessibility walkthrough)."""
    def ms(value):
        return number(value) if value is not None else "—"
    lines = "".join(f"<tr><td>{esc(name)}</td><td>{ms(r['p50_ms'])}</td><td>{ms(r['p90_ms'])}</td>"
                    f"<td>{' – '.join(ms(v) for v in r['p90_ci95']) if r['p90_ci95'] else '—'}</td>"
                    f"<td>{ms(r['p99_ms'])}</td></tr>" for r, name in zip(rows, names))
    return (f"<details><summary class=small>The figures</summary><table><tr><th>device</th><th>p50 ms</th>"
            f"<th>p90 ms</th><th>p90 95 % interval</th><th>p99 ms</th></tr>{lines}</table></details>")


def _history(series: list, absent: str | None) -> str:
    out = ["<h2>History</h2>"]
    if absent:
        return out[0] + f'<p class="small absent">{esc(absent)}</p>'
    out.append(f"<p class=\"small muted\">p90 of every stored run of each bundle on each device, oldest first. Dashed red "
               f"lines: change points, the exact least-cost partition of log p90 into levels (cost: absolute deviation "
               f"from each level's median; penalty {changes.PENALTY_FACTOR:g}·σ·ln n per change, σ the run-to-run noise "
               f"from the median absolute difference, at least {changes.MIN_RELATIVE_NOISE:.0%}; a level needs "
               f"{changes.MIN_SEGMENT} runs, so a lone slow run is no change). Grey lines: each level's median.</p>")
    cards = [f"<div class=card><h3 class=small>{esc(who(s))}</h3>{_history_chart(s)}{_change_text(s)}</div>"
             for s in series if "absent" not in s]
    short = {}
    for s in series:
        if "absent" in s:
            short.setdefault(s["absent"], []).append(who(s))
    notes = "".join(f'<p class="small absent">{esc(", ".join(names))}: {esc(why)}</p>' for why, names in short.items())
    return "".join(out) + f"<div class=charts>{''.join(cards)}</div>" + notes


def _history_chart(s: dict) -> str:
    pts = s["points"]
    values = [p["p90_ms"] for p in pts]
    chart = Chart(f"History of {who(s)}", (-0.5, len(pts) - 0.5), padded(min(values), max(values), 0.1), width=370,
                  height=200, x_label="stored run (oldest → newest)", y_label="p90 ms")
    ticks = [t for t in nice_ticks(0, len(pts) - 1, 5) if float(t).is_integer()]
    chart.axes(x_ticks=ticks, x_fmt=lambda t: str(int(t) + 1))
    for level in s["levels"]:
        chart.segment(level["start"] - 0.4, level["median_p90_ms"], level["end"] - 0.6, level["median_p90_ms"], "#8c959f",
                      width=2, title=f"level median {number(level['median_p90_ms'])} ms")
    for c in s["change_points"]:
        chart.segment(c["index"] - 0.5, chart.y0, c["index"] - 0.5, chart.y1, "#cf222e", dash="4 3",
                      title=f"change at run {c['index'] + 1} ({c['created'][:19]}): {c['change_pct']:+.1f} %")
    chart.line(list(enumerate(values)), "#0072B2", width=1)
    for i, p in enumerate(pts):
        chart.dot(i, p["p90_ms"], "#0072B2", r=3, title=f"{p['created'][:19]}: p90 {number(p['p90_ms'])} ms")
    return chart.render()


def _change_text(s: dict) -> str:
    floor = math.expm1(changes.MIN_RELATIVE_NOISE) * 100   # the noise is a sigma of log p90, as noise_pct is
    if len(s["points"]) < changes.MIN_RUNS_FOR_NOISE:
        noise = f"too few runs to estimate the run-to-run noise; {floor:.0f} % assumed"
    elif s["noise_pct"] <= floor * 1.0001:   # the estimate is the floor: say so, not "≈ 2 %" beside a 27 % jump
        noise = f"run-to-run noise at most {floor:.0f} %, the floor"
    else:
        noise = f"run-to-run noise ≈ {s['noise_pct']:.1f} %"
    failed = f"; {s['failed_runs']} failed run(s) left out" if s["failed_runs"] else ""
    if not s["change_points"]:
        return (f'<p class="small muted">{len(s["points"])} runs, no change point ({noise}; a change needs '
                f'{changes.MIN_SEGMENT} runs at its new level{failed}).</p>')
    items = "".join(f"<li>run {c['index'] + 1} ({esc(c['created'][:19])}): {num(c['from_ms'])} → {num(c['to_ms'])} ms "
                    f"(<b>{c['change_pct']:+.1f} %</b>)</li>" for c in s["change_points"])
    return f'<ul class=small>{items}</ul><p class="small muted">{len(s["points"])} runs; {noise}{failed}.</p>'


def _study(study) -> str:
    """An optimize study: what it searched for, the chosen trial, every trial's figures against its budgets, and
    the trade-off as a scatter of the objective against accuracy drop (or size) with the Pareto front marked."""
    if not study:
        return ""
    done = [t for t in study["trials"] if t["state"] == "complete"]
    ratios = study.get("relative_budgets") or {}
    paired = study.get("paired_baseline")
    budgets = ", ".join((f"{k} ≤ {ratios[k]:g}x the baseline measured beside each candidate" if paired else
                         f"{k} ≤ {number(v)} ({ratios[k]:g}x the baseline)") if k in ratios else
                        f"{k} ≤ {number(v)}" for k, v in study["budgets"].items()) or "none"
    best = study["best"]
    chosen = (f"Chosen: trial {best['trial']} ({esc(best['config'])}), {esc(study['objective'])} "
              f"{num(best['figures'].get(study['objective']))}{esc(in_brackets(measured_again(study, best)))}."
              if best else
              "<b>No trial met every budget.</b>" + "".join(
                  f" {prose(_sentence(Text.from_markup(line).plain))}." for line in closest_lines(study)))
    for key in ratios if best else ():
        carried = carried_limit(study, key)
        chosen += f" {prose(_sentence(carried))}." if carried else ""
    for warning in best_warnings(study, best) if best else []:
        chosen += f" <b>Warning:</b> {prose(warning)}."
    if study.get("versus_textbook"):
        versus = versus_textbook_line(study["versus_textbook"])
        chosen += f" {prose(_sentence(versus))}."   # a sentence here, a line in the terminal
    searched = (f"a Pareto front over {', '.join(study['pareto_figures'])} of every trial measured; the chosen one "
                f"minimises {study['objective']}" if study.get("multi_objective") else f"minimise {study['objective']}")
    head = (f"<h2>Optimization study {esc(study['study'])}</h2><p>{esc(study.get('model') or '')} on profile "
            f"{esc(study.get('profile') or '?')}: {esc(searched)} within {esc(budgets)}; "
            f"{len(study['trials'])} trials ({len(done)} complete, "
            f"{sum(t['cached'] for t in study['trials'])} answered from the cache, "
            f"{sum(t['state'] == 'fail' for t in study['trials'])} failed). {chosen}</p>"
            + "".join(f'<p class="small absent">Note: {esc(n)}</p>' for n in study.get("notes", [])))
    return head + _study_chart(study, done) + _study_table(study)


def _judged_figure(trial: dict, objective: str) -> float:
    """The objective's figure as the study judged the trial: the median of its runs' where it was measured
    again (a near miss chosen by its runs was drawn at its first run's, beyond the budget line, in green)."""
    judged = median_of_runs(trial)
    return trial["figures"][objective] if judged is None else judged


def _study_chart(study: dict, done: list) -> str:
    x_key = study["objective"]
    y_key = "accuracy_drop" if any("accuracy_drop" in t["figures"] for t in done) else "size_mb"
    points = [t for t in done if x_key in t["figures"] and y_key in t["figures"] and not t["cached"]]
    if not points:
        return '<p class="small muted">No trial measured both figures the chart needs.</p>'
    xs, ys = [_judged_figure(t, x_key) for t in points], [t["figures"][y_key] for t in points]
    y_limit = study["budgets"].get(y_key)
    low, high = padded(min(ys), max(ys), 0.1)
    if max(ys) <= min(ys):   # every trial at one drop (0 on a small eval set): up to its budget, not 0-1
        low, high = min(ys) - 0.1 * (y_limit or 0.01), max(ys) + 1.2 * (y_limit or 0.01)
    # an accuracy drop below 0 is a candidate more accurate than the model (a DeiT distilled: -0.028), drawn
    x_range = padded(min(xs), max(xs), 0.08)
    chart = Chart(f"Trials: {x_key} against {y_key}", x_range, (max(low, 0.0) if min(ys) >= 0 else low, high),
                  width=760, height=300, x_label=x_key, y_label=y_key)
    chart.axes()
    if y_limit is not None and low <= y_limit <= high:
        chart.segment(x_range[0], y_limit, x_range[1], y_limit, "#cf222e", dash="4 3",
                      title=f"{y_key} budget {number(y_limit)}")
    limit = study["budgets"].get(x_key)
    paired = study.get("paired_baseline") and x_key in (study.get("relative_budgets") or {})
    if limit is not None and min(xs) <= limit <= max(xs) and not paired:
        chart.segment(limit, chart.y0, limit, chart.y1, "#cf222e", dash="4 3", title=f"{x_key} budget {number(limit)}")
    front, best = set(study["pareto"]), (study["best"] or {}).get("trial")
    for t, xv, yv in zip(points, xs, ys):
        fill = VERDICT_COLOURS["pass"] if t["feasible"] else VERDICT_COLOURS["failed"]
        words = f"trial {t['trial']}: {t['config']} ({x_key} {number(xv)}, {y_key} {number(yv)})"
        big = t["trial"] == best or t["baseline"]
        chart.dot(xv, yv, "#0969da" if t["trial"] == best else fill, r=6 if big else 4,
                  shape="diamond" if t["trial"] in front else "circle", title=words)
        if big:
            chart.text(xv, yv, "best" if t["trial"] == best else "baseline", dx=8, dy=-6)
    legend = _legend([(VERDICT_COLOURS["pass"], "meets every budget"), (VERDICT_COLOURS["failed"], "misses one"),
                      ("#0969da", "chosen")])
    return (f'{chart.render()}<div class="legend">{legend}</div><p class="small muted">Diamonds: the Pareto front '
            f'over {esc(", ".join(study["pareto_figures"]))} (lower is better; a projection, so a front point may sit '
            'above another here). A trial measured again is drawn at the median of its runs. Screened-only '
            'trials have no accuracy figure and are not drawn.'
            + (f' No {esc(x_key)} budget line: each trial is judged by its ratio to the baseline measured beside it, '
               'and the figures were taken minutes apart.' if paired else '') + '</p>')


def _misses(trial: dict) -> str:
    """What a trial missed, apart from what it did not measure (accuracy, on a screening run), as the terminal
    says it: "misses accuracy_drop" of a screened-only trial read as if its accuracy had been measured."""
    over = [k for k, v in trial["violations"].items() if v > 0]
    missed = [k for k in over if k in trial["figures"]]
    unmeasured = [k for k in over if k not in trial["figures"]]
    return "; ".join((["misses " + ", ".join(missed)] if missed else []) +
                     (["not measured: " + ", ".join(unmeasured)] if unmeasured else []))


def _study_table(study: dict) -> str:
    keys = list(dict.fromkeys([*figure_columns(study), "size_mb"]))   # the front is over size too
    head = "".join(f"<th>{esc(k)}</th>" for k in keys)
    lines = []
    for t in study["trials"]:
        figures, paired = judged_figures(study, t)   # a trial measured again: the median it was judged by
        cells = "".join(f"<td class=num>{num(figures.get(k))}"
                        + (f" ({paired[k]:.2f}x)" if paired.get(k) is not None else "") + "</td>" for k in keys)
        spent = sum(t.get("seconds", {}).get(p, 0.0) for p in PHASES)
        state = ("failed: " + (t.get("error") or "")) if t["state"] == "fail" else \
            ("meets every budget" if t["feasible"] else _misses(t))
        marks = trial_marks(study, t, t["trial"] in study["pareto"])
        lines.append(f"<tr><td class=num>{t['trial']}</td><td>{esc(t['config'])}</td>{cells}"
                     f"<td class=num>{num(spent or None, 3)}</td><td>{esc(state)}"
                     f"{' (' + esc(', '.join(marks)) + ')' if marks else ''}</td></tr>")
    return (f"<details><summary>All {len(study['trials'])} trials</summary><table><tr><th>trial</th>"
            f"<th>configuration</th>{head}<th>seconds</th><th>verdict</th></tr>{''.join(lines)}</table></details>")


def _method() -> str:
    return ("<h2>How to read this</h2><ul class=small><li>Percentiles come from the raw samples; a percentile is shown "
            "only when there are enough runs for it (p99 needs 100), and its 95 % interval is distribution-free "
            "(order statistics).</li><li>Throughput (FPS) is completed inferences per second with several in flight, "
            "measured in a pass of its own after the timed loop; it is not 1000 / mean latency.</li><li>A budget whose figure was not measured is NOT MEASURED and fails the check.</li>"
            "<li>THROTTLED: the device reported throttling or a frequency cap during the run; its figures hold for that "
            "state only.</li><li>This page needs no network: charts are inline SVG, with no script and no web font.</li></ul>")
