"""bench/RESULTS.md: the headline numbers of every benchmark on one page, with the machine.

Each benchmark owns its detailed file in bench/results/; this page links them, lifts the
end-to-end headlines out of e2e.json, and quotes the first table (or a "Summary"/"Headline"
section) of the others, so it never goes stale against them.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from bench.common import RESULTS, machine_info, machine_line, table
from bench.e2e.markdown import (
    BUSY_VS_IDLE_GOAL,
    FUZZY_VS_NOOP_GOAL,
    HIT_VS_NOOP_GOAL,
    MISS_OVERHEAD_GOAL_PCT,
    SEED_REPORTED,
    ms,
)

BENCH = RESULTS.parent
#: The separate benchmarks' results files (bench_<name>.py writes results/<name>.md), in order.
OTHERS = {
    "engine": "Engine: model latency and precision",
    "cache": "Cache: look-up cost, recall and false hits",
    "redis": "Redis backend next to diskcache",
    "whitebox": "White-box model: miss latency",
    "store": "Store hardening: checksum cost, disk use vs budget, open files, expiry",
    "hostile": "Hostile uploads through the app: exact hits meanwhile, memory",
}
#: The end-to-end plots, as (file, alt text).
E2E_PLOTS = (
    ("e2e_latency.png", "latency per outcome"),
    ("e2e_load.png", "hits under load"),
    ("e2e_scan.png", "look-up time vs entries"),
    ("e2e_threshold.png", "recall and false hits vs threshold"),
)

#: A headline row: what, measured, goal, verdict.
Row = tuple[str, str, str, str]


def _ok(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def _within(ratio: float, goal: float) -> tuple[str, str]:
    """The goal and verdict cells of a ratio that must stay at or below `goal`."""
    return f"≤ {goal}x", _ok(ratio <= goal)


def _latency_rows(lat: dict) -> list[Row]:
    rt, ratio = lat["round_trip_ms"], lat.get("ratios", {})
    exact, fuzzy = ratio.get("exact_vs_noop"), ratio.get("fuzzy_vs_noop_same_file")
    rows: list[Row] = []
    if exact is not None:
        measured = f"{exact:.2f}x ({ms(rt['exact']['median'])} vs {ms(rt['noop']['median'])})"
        rows.append(("exact hit vs no-op Gradio round trip", measured, *_within(exact, HIT_VS_NOOP_GOAL)))
    if fuzzy is not None:
        what = "near-duplicate hit (0.8x WebP of a 1200 px JPEG) vs no-op round trip of the same file"
        measured = f"{fuzzy:.2f}x ({ms(rt['fuzzy']['median'])} vs {ms(rt['noop_fuzzy']['median'])})"
        rows.append((what, measured, *_within(fuzzy, FUZZY_VS_NOOP_GOAL)))
    if rt.get("miss", {}).get("n"):
        measured = f"{ms(rt['miss']['median'])} ({ratio.get('miss_vs_noop', 0):.0f}x no-op)"
        rows.append(("miss (model, default size)", measured, "–", ""))
    bursts = lat.get("bursts", [])
    if bursts:
        what = f"{bursts[0]['clients']} identical uploads at once: inferences per burst"
        ok = all(b["inferences"] == 1 and b["answers"] == b["clients"] for b in bursts)
        rows.append((what, ", ".join(str(b["inferences"]) for b in bursts), "1", _ok(ok)))
    return rows


def _load_rows(load: dict, one: dict) -> list[Row]:
    ratio = load.get("p95_busy_vs_idle")
    if ratio is None:
        return []
    measured = f"{ratio:.2f}x ({ms(load['busy']['all']['p95'])} vs {ms(load['idle']['all']['p95'])})"
    rows: list[Row] = [("hit p95 with the model busy vs idle", measured, *_within(ratio, BUSY_VS_IDLE_GOAL))]
    if one.get("p95_busy_vs_idle") is not None:
        rate = [v["model_runs_finished_in_window"] / v["window_s"] for v in (one, load)]
        measured = f"{one['p95_busy_vs_idle']:.2f}x; misses done {rate[0]:.2f}/s vs {rate[1]:.2f}/s"
        rows.append(("same, what-if `OMP_NUM_THREADS=1` for the app", measured, "–", ""))
    return rows


def _mixed_rows(m: dict) -> list[Row]:
    problems = (m["failed"], m["inconsistent"], m["wrong_pictures"], m["badge_mismatch"])
    bad = m["lost"] + sum(map(len, problems))
    return [
        (
            f"{m['clients']} clients x {m['per_client']} mixed requests",
            f"{m['answered']}/{m['sent']} answered, {len(m['inconsistent'])} inconsistent kinds, "
            f"{len(m['wrong_pictures'])} wrong pictures",
            "all answered, 0, 0",
            _ok(bad == 0),
        )
    ]


def _replay_rows(rp: dict) -> list[Row]:
    by = {row["name"].split(" ")[0]: row for row in rp["rows"]}
    ours, seed = by.get("ours"), by.get("seed-style")
    if not ours:
        return []
    overhead = ours["miss_overhead_pct"]
    rows: list[Row] = [
        (
            f"replay hit rate, ours (ideal {100 * rp['ideal_hit_rate']:.0f} %)",
            f"{100 * ours['hit_rate']:.0f} %, {ours['false_hits']} false",
            f"seed reported {100 * SEED_REPORTED['hit_rate']:.1f} %",
            "",
        ),
        ("replay CPU seconds, ours vs no cache", f"{ours['cpu_vs_no_cache']:.2f}x", "–", ""),
        (
            "replay hit vs miss, ours",
            f"{ms(ours['hit_ms_median'])} vs {ms(rp['no_cache_miss_ms_median'])}",
            f"seed: {SEED_REPORTED['repeat_s'] * 1000:.0f} ms vs {SEED_REPORTED['miss_s']:.2f} s",
            "",
        ),
        (
            "miss overhead (hash + store), ours",
            f"{overhead:+.1f} % of a miss",
            f"< {MISS_OVERHEAD_GOAL_PCT:.0f} %",
            _ok(overhead < MISS_OVERHEAD_GOAL_PCT),
        ),
    ]
    for name, row in (("ours", ours), ("seed-style", seed)):
        if row:
            hits = sum(hit for hit, _ in row["adversarial"].values())
            asked = sum(n for _, n in row["adversarial"].values())
            goal, verdict = ("0", _ok(hits == 0)) if name == "ours" else ("(baseline)", "")
            what = f"look-alike hits (mirrored, greyscale, +40 %), {name}"
            rows.append((what, f"{hits}/{asked}", goal, verdict))
    return rows


def _curves_rows(curves: dict) -> list[Row]:
    scan = curves["scan"]
    measured = f"{ms(scan['ours_ms'][-1])} vs {ms(scan['seed_ms'][-1])}"
    return [(f"look-up at {scan['sizes'][-1]:,} entries, ours vs seed-style", measured, "–", "")]


def e2e_headlines(r: dict) -> list[str]:
    rows = [
        *(_latency_rows(r["latency"]) if "latency" in r else []),
        *(_load_rows(r["load"], r.get("load_one_thread", {})) if "load" in r else []),
        *(_mixed_rows(r["mixed"]) if "mixed" in r else []),
        *(_replay_rows(r["replay"]) if "replay" in r else []),
        *(_curves_rows(r["curves"]) if "curves" in r else []),
    ]
    return table("what (all ratios from one run) | measured | goal | ", rows)


def excerpt(markdown: str) -> list[str]:
    """A "Summary"/"Headline" section if the file has one, else its first table."""
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"#+\s*(summary|headline)", line, re.IGNORECASE):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("#")), len(lines))
            return lines[i + 1 : end]
    rows, started = [], False
    for line in lines:
        if line.startswith("|"):
            rows.append(line)
            started = True
        elif started:
            break
    return rows


def _e2e_part(e2e: dict) -> list[str]:
    lines = ["## End to end (the app)", "", "Details: [results/e2e.md](results/e2e.md).", ""]
    if not e2e:
        return [*lines, "Not run yet.", ""]
    if any(run.get("quick") for run in e2e.get("runs", {}).values()):
        lines += [
            "**Some parts below come from a `--quick` smoke run: their numbers are not meaningful.**",
            "",
        ]
    lines += [*e2e_headlines(e2e), ""]
    for png, title in E2E_PLOTS:
        if (RESULTS / png).exists():
            lines += [f"![{title}](results/{png})", ""]
    return lines


def _other_part(name: str, title: str) -> list[str]:
    md = RESULTS / f"{name}.md"
    if not md.exists():
        return [f"## {title}", "", f"No results/{name}.md yet (bench/bench_{name}.py).", ""]
    plots = [f"![{png.stem}](results/{png.name})" for png in sorted(RESULTS.glob(f"{name}*.png"))]
    details = f"Details: [results/{name}.md](results/{name}.md)."
    return [f"## {title}", "", details, "", *excerpt(md.read_text()), "", *plots, ""]


def write_results(statuses: dict[str, tuple[str, float]]) -> Path:
    e2e_path = RESULTS / "e2e.json"
    e2e = json.loads(e2e_path.read_text()) if e2e_path.exists() else {}
    lines = [
        "# Benchmark results",
        "",
        f"Written {time.strftime('%Y-%m-%d %H:%M %Z')} by `make bench` (`python -m bench`; "
        "`python -m bench --only e2e` etc. for a part).",
        "",
        f"Machine: {machine_line(e2e.get('machine') or machine_info())}.",
        "",
        "Numbers are from this machine only: each goal is a ratio of two numbers measured in the same run.",
        "",
    ]
    if statuses:
        rows = [(name, status, f"{seconds:.0f}") for name, (status, seconds) in statuses.items()]
        lines += [*table("benchmark | this run | seconds", rows, "llr"), ""]
    lines += _e2e_part(e2e)
    extra = {
        md.stem: f"Other results: {md.stem}"
        for md in sorted(RESULTS.glob("*.md"))
        if md.stem != "e2e" and md.stem not in OTHERS
    }
    for name, title in {**OTHERS, **extra}.items():
        lines += _other_part(name, title)
    path = BENCH / "RESULTS.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
