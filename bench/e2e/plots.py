"""The end-to-end plots (matplotlib, Agg): one PNG per question, from the results dict."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency_plot(latency: dict, path: Path) -> None:
    rt = latency["round_trip_ms"]
    bars = [
        ("no-op\n(8x8 PNG)", "noop"),
        ("no-op\n(result PNG)", "noop_sized"),
        ("exact hit", "exact"),
        ("near-duplicate\nhit", "fuzzy"),
        ("miss\n(model)", "miss"),
    ]
    bars = [(label, rt[key]) for label, key in bars if rt.get(key, {}).get("n")]
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = ["#9ca3af", "#6b7280", "#047857", "#10b981", "#b91c1c"][: len(bars)]
    medians = [s["median"] for _, s in bars]
    ax.bar([label for label, _ in bars], medians, color=colors)
    ax.scatter(range(len(bars)), [s["p95"] for _, s in bars], marker="_", s=400, color="black", label="p95")
    for i, m in enumerate(medians):
        ax.annotate(f"{m:.0f} ms", (i, m), ha="center", va="bottom", fontsize=9)
    ax.set_yscale("log")
    ax.set_ylim(bottom=10)  # bars on a log axis need a fixed floor to compare by eye
    ax.set_ylabel("round trip through gradio_client, ms (log)")
    ax.set_title("Latency per outcome, real app vs no-op app (median, p95)")
    ax.legend()
    _save(fig, path)


def load_plot(results: dict, path: Path) -> None:
    variants = [("defaults", results["load"])]
    if "load_one_thread" in results:
        variants.append(("OMP_NUM_THREADS=1", results["load_one_thread"]))
    load = results["load"]
    labels = [f"{name}\n{phase}" for name, _ in variants for phase in ("idle", "model busy")]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for offset, stat, color in ((-0.18, "median", "#10b981"), (0.18, "p95", "#047857")):
        values = [v[phase]["all"][stat] for _, v in variants for phase in ("idle", "busy")]
        ax.bar([i + offset for i in range(len(values))], values, width=0.36, color=color, label=stat)
        for i, value in enumerate(values):
            ax.annotate(f"{value:.0f}", (i + offset, value), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("hit round trip, ms")
    ax.set_title(f"Cache hits while {load['load_clients']} clients queue misses")
    ax.legend()
    _save(fig, path)


def scan_plot(scan: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(
        scan["sizes"], scan["seed_ms"], "o-", color="#b91c1c", label="seed-style (SQLite rows, Python scan)"
    )
    ax.plot(scan["sizes"], scan["ours_ms"], "o-", color="#047857", label="ours (numpy Hamming index)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("cached entries")
    ax.set_ylabel("look-up that matches nothing, ms")
    ax.set_title("Look-up time vs cache size")
    ax.legend()
    _save(fig, path)


def threshold_plot(sweep: dict, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    t = sweep["thresholds"]
    for name, color, label in (
        ("seed", "#b91c1c", "seed-style (pHash only)"),
        ("ours", "#047857", "ours (pHash + verify)"),
    ):
        left.plot(t, [100 * r for r in sweep[name]["recall"]], "o-", color=color, label=label)
        right.plot(t, sweep[name]["false_hits"], "o-", color=color, label=label)
    seed_t, ours_t = sweep["seed_threshold"], sweep["ours_threshold"]
    for ax in (left, right):
        ax.axvline(seed_t, color="#b91c1c", ls=":", lw=1)
        ax.axvline(ours_t, color="#047857", ls=":", lw=1)
        ax.set_xlabel(f"threshold, pHash bits (dotted: seed {seed_t}, ours {ours_t})")
    left.set_ylim(0, 105)
    left.set_ylabel(f"recall of {sweep['must_hit']} re-encodings, %")
    right.set_ylabel(f"false hits (of {sweep['must_hit'] + sweep['must_miss']} queries)")
    left.set_title("Re-encodings that hit their own photo")
    right.set_title("Look-alikes hit / other photo served")
    right.legend()
    _save(fig, path)


#: (part of the results, file, how to draw it from the whole results dict).
PLOTS: tuple[tuple[str, str, Callable[[dict, Path], None]], ...] = (
    ("latency", "e2e_latency.png", lambda results, path: latency_plot(results["latency"], path)),
    ("load", "e2e_load.png", load_plot),
    ("curves", "e2e_scan.png", lambda results, path: scan_plot(results["curves"]["scan"], path)),
    ("curves", "e2e_threshold.png", lambda results, path: threshold_plot(results["curves"]["sweep"], path)),
)


def write_plots(results: dict, folder: Path) -> list[Path]:
    """One PNG per plot whose part is in `results`; returns their paths."""
    written = []
    for key, name, draw in PLOTS:
        if key in results:
            draw(results, folder / name)
            written.append(folder / name)
    return written
