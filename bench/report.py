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

from bench.common import RESULTS, machine_info, machine_line
from bench.e2e.markdown import (
    BUSY_VS_IDLE_GOAL,
    FUZZY_VS_NOOP_GOAL,
    HIT_VS_NOOP_GOAL,
    MISS_OVERHEAD_GOAL_PCT,
    ms,
)

BENCH = RESULTS.parent
OTHERS = {
    "engine": "Engine: model latency and precision",
    "cache": "Cache: look-up cost, recall and false hits",
    "redis": "Redis backend next to diskcache",
    "whitebox": "White-box model: miss latency",
    "store": "Store hardening: checksum cost, disk use vs budget, open files, expiry",
    "hostile": "Hostile uploads through the app: exact hits meanwhile, memory",
}


def _ok(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def e2e_headlines(r: dict) -> list[str]:
    rows = ["| what (all ratios from one run) | measured | goal | |", "|---|---|---|---|"]
    if "latency" in r:
        lat = r["latency"]
        rt, ratio = lat["round_trip_ms"], lat.get("ratios", {})
        exact, fuzzy = ratio.get("exact_vs_noop"), ratio.get("fuzzy_vs_noop_same_file")
        if exact is not None:
            rows.append(
                f"| exact hit vs no-op Gradio round trip | {exact:.2f}x ({ms(rt['exact']['median'])} vs "
                f"{ms(rt['noop']['median'])}) | ≤ {HIT_VS_NOOP_GOAL}x | {_ok(exact <= HIT_VS_NOOP_GOAL)} |"
            )
        if fuzzy is not None:
            rows.append(
                f"| near-duplicate hit (0.8x WebP of a 1200 px JPEG) vs no-op round trip of the same file | "
                f"{fuzzy:.2f}x ({ms(rt['fuzzy']['median'])} vs {ms(rt['noop_fuzzy']['median'])}) | "
                f"≤ {FUZZY_VS_NOOP_GOAL}x | {_ok(fuzzy <= FUZZY_VS_NOOP_GOAL)} |"
            )
        if rt.get("miss", {}).get("n"):
            rows.append(
                f"| miss (model, default size) | {ms(rt['miss']['median'])} "
                f"({ratio.get('miss_vs_noop', 0):.0f}x no-op) | – | |"
            )
        bursts = lat.get("bursts", [])
        if bursts:
            inferences = [b["inferences"] for b in bursts]
            ok = all(i == 1 and b["answers"] == b["clients"] for i, b in zip(inferences, bursts))
            rows.append(
                f"| {bursts[0]['clients']} identical uploads at once: inferences per burst | "
                f"{', '.join(map(str, inferences))} | 1 | {_ok(ok)} |"
            )
    if "load" in r and r["load"].get("p95_busy_vs_idle") is not None:
        load = r["load"]
        rows.append(
            f"| hit p95 with the model busy vs idle | {load['p95_busy_vs_idle']:.2f}x "
            f"({ms(load['busy']['all']['p95'])} vs {ms(load['idle']['all']['p95'])}) | "
            f"≤ {BUSY_VS_IDLE_GOAL}x | {_ok(load['p95_busy_vs_idle'] <= BUSY_VS_IDLE_GOAL)} |"
        )
        one = r.get("load_one_thread", {})
        if one.get("p95_busy_vs_idle") is not None:
            rows.append(
                f"| same, what-if `OMP_NUM_THREADS=1` for the app | {one['p95_busy_vs_idle']:.2f}x; misses done "
                f"{one['model_runs_finished_in_window'] / one['window_s']:.2f}/s vs "
                f"{load['model_runs_finished_in_window'] / load['window_s']:.2f}/s | – | |"
            )
    if "mixed" in r:
        m = r["mixed"]
        bad = (
            len(m["failed"])
            + m["lost"]
            + len(m["inconsistent"])
            + len(m["wrong_pictures"])
            + len(m["badge_mismatch"])
        )
        rows.append(
            f"| {m['clients']} clients x {m['per_client']} mixed requests | {m['answered']}/{m['sent']} answered, "
            f"{len(m['inconsistent'])} inconsistent kinds, {len(m['wrong_pictures'])} wrong pictures | "
            f"all answered, 0, 0 | {_ok(bad == 0)} |"
        )
    if "replay" in r:
        rp = r["replay"]
        by = {row["name"].split(" ")[0]: row for row in rp["rows"]}
        ours, seed = by.get("ours"), by.get("seed-style")
        if ours:
            rows.append(
                f"| replay hit rate, ours (ideal {100 * rp['ideal_hit_rate']:.0f} %) | "
                f"{100 * ours['hit_rate']:.0f} %, {ours['false_hits']} false | seed reported 82.6 % | |"
            )
            rows.append(f"| replay CPU seconds, ours vs no cache | {ours['cpu_vs_no_cache']:.2f}x | – | |")
            rows.append(
                f"| replay hit vs miss, ours | {ms(ours['hit_ms_median'])} vs "
                f"{ms(rp['no_cache_miss_ms_median'])} | seed: 45 ms vs 1.75 s | |"
            )
            rows.append(
                f"| miss overhead (hash + store), ours | {ours['miss_overhead_pct']:+.1f} % of a miss | "
                f"< {MISS_OVERHEAD_GOAL_PCT:.0f} % | {_ok(ours['miss_overhead_pct'] < MISS_OVERHEAD_GOAL_PCT)} |"
            )
            for name, row in (("ours", ours), ("seed-style", seed)):
                if row:
                    hits = sum(v[0] for v in row["adversarial"].values())
                    asked = sum(v[1] for v in row["adversarial"].values())
                    goal = "0" if name == "ours" else "(baseline)"
                    verdict = _ok(hits == 0) if name == "ours" else ""
                    rows.append(
                        f"| look-alike hits (mirrored, greyscale, +40 %), {name} | {hits}/{asked} | {goal} | {verdict} |"
                    )
    if "curves" in r:
        scan = r["curves"]["scan"]
        rows.append(
            f"| look-up at {scan['sizes'][-1]:,} entries, ours vs seed-style | {ms(scan['ours_ms'][-1])} vs "
            f"{ms(scan['seed_ms'][-1])} | – | |"
        )
    return rows


def excerpt(markdown: str) -> list[str]:
    """A "Summary"/"Headline" section if the file has one, else its first table."""
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"#+\s*(summary|headline)", line, re.IGNORECASE):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("#")), len(lines))
            return lines[i + 1 : end]
    table, started = [], False
    for line in lines:
        if line.startswith("|"):
            table.append(line)
            started = True
        elif started:
            break
    return table


def write_results(statuses: dict[str, tuple[str, float]]) -> Path:
    e2e_path = RESULTS / "e2e.json"
    e2e = json.loads(e2e_path.read_text()) if e2e_path.exists() else {}
    machine = e2e.get("machine") or machine_info()
    lines = [
        "# Benchmark results",
        "",
        f"Written {time.strftime('%Y-%m-%d %H:%M %Z')} by `make bench` (`python -m bench`; "
        "`python -m bench --only e2e` etc. for a part).",
        "",
        f"Machine: {machine_line(machine)}.",
        "",
        "Numbers are from this machine only: each goal is a ratio of two numbers measured in the same run.",
        "",
    ]
    if statuses:
        lines += ["| benchmark | this run | seconds |", "|---|---|---:|"]
        lines += [f"| {name} | {status} | {seconds:.0f} |" for name, (status, seconds) in statuses.items()]
        lines.append("")
    lines += ["## End to end (the app, issue #5)", "", "Details: [results/e2e.md](results/e2e.md).", ""]
    if e2e:
        if any(run.get("quick") for run in e2e.get("runs", {}).values()):
            lines += [
                "**Some parts below come from a `--quick` smoke run: their numbers are not meaningful.**",
                "",
            ]
        lines += e2e_headlines(e2e) + [""]
        for png, title in (
            ("e2e_latency.png", "latency per outcome"),
            ("e2e_load.png", "hits under load"),
            ("e2e_scan.png", "look-up time vs entries"),
            ("e2e_threshold.png", "recall and false hits vs threshold"),
        ):
            if (RESULTS / png).exists():
                lines += [f"![{title}](results/{png})", ""]
    else:
        lines += ["Not run yet.", ""]
    extra = {
        md.stem: f"Other results: {md.stem}"
        for md in sorted(RESULTS.glob("*.md"))
        if md.stem != "e2e" and md.stem not in OTHERS
    }
    for name, title in {**OTHERS, **extra}.items():
        md = RESULTS / f"{name}.md"
        lines += [f"## {title}", ""]
        if not md.exists():
            lines += [f"No results/{name}.md yet (bench/bench_{name}.py).", ""]
            continue
        lines += [f"Details: [results/{name}.md](results/{name}.md).", "", *excerpt(md.read_text()), ""]
        lines += [f"![{png.stem}](results/{png.name})" for png in sorted(RESULTS.glob(f"{name}*.png"))]
        lines.append("")
    path = BENCH / "RESULTS.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
