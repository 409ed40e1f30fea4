"""``make bench``'s results as a picture: throughput and p99 latency per workload, the service
beside the bare ASGI app (the ceiling) and Stoplight Prism.

``bench/run.py`` writes ``bench/results/latest.json`` and calls :func:`plot`; to redraw from a
saved run (``docs/bench.png`` is drawn this way)::

    .venv/bin/python bench/plot.py bench/results/latest.json docs/bench.png

Bars are the median round; the whiskers span the slowest to the fastest round, so the noise of a
shared machine shows instead of hiding. Needs matplotlib (``pip install -e '.[bench]'``, which
``make bench`` does).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

#: Colours by kind of server: ours, the ceiling (same server stack, no work), Prism (a static mock).
COLOURS = {"ours": "#1f6feb", "ceiling": "#8b949e", "prism": "#f0883e"}
LABELS = {"ours": "papi-sandbox", "ceiling": "ceilings (bare apps)", "prism": "Stoplight Prism"}


def kind_of(key: str) -> str:
    """The kind of a workload of bench/run.py by its key (full, normal, balance, starlette,
    ceiling, prism): both ceilings are drawn as ceilings."""
    if key == "starlette":
        return "ceiling"
    return key if key in ("ceiling", "prism") else "ours"


def plot(results: dict[str, Any], path: Path) -> Path:
    """Draw ``results`` (the JSON bench/run.py writes) as a PNG at ``path``; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import StrMethodFormatter

    workloads = [w for w in results["workloads"] if w["rounds"]]
    if not workloads:
        raise ValueError("no measured workload to plot")
    names = [w["name"] for w in workloads]
    colours = [COLOURS[kind_of(w["key"])] for w in workloads]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 1.6 + 0.75 * len(workloads)), dpi=110)
    for axis, field, title, unit, log in (
        (left, "rps", "Throughput (req/s, higher is better)", "{:,.0f}", False),
        (right, "p99_ms", "p99 latency (ms, log scale, lower is better)", "{:,.1f}", True),
    ):
        medians = [w["median"][field] for w in workloads]
        spans = [[r[field] for r in w["rounds"]] for w in workloads]
        lows = [m - min(s) for m, s in zip(medians, spans, strict=True)]
        highs = [max(s) - m for m, s in zip(medians, spans, strict=True)]
        ys = range(len(workloads))
        axis.barh(ys, medians, color=colours, xerr=[lows, highs], capsize=3, ecolor="#444")
        axis.set_yticks(list(ys), names)
        axis.invert_yaxis()  # the first workload on top
        axis.set_title(title, fontsize=11)
        axis.grid(axis="x", alpha=0.3, which="both" if log else "major")
        axis.set_axisbelow(True)
        top = max(m + h for m, h in zip(medians, highs, strict=True))
        if log:  # latencies span milliseconds to seconds: a linear axis hides the small ones
            axis.set_xscale("log")
            axis.set_xlim(min(min(s) for s in spans) / 2, top * 4)
        else:
            axis.set_xlim(0, top * 1.22)
        axis.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        for y, (m, h) in enumerate(zip(medians, highs, strict=True)):
            x = (m + h) * 1.08 if log else m + h + top * 0.01
            axis.text(x, y, unit.format(m), va="center", fontsize=9)
    right.set_yticklabels([])
    kinds = dict.fromkeys(kind_of(w["key"]) for w in workloads)
    fig.legend(
        handles=[Patch(color=COLOURS[k], label=LABELS[k]) for k in kinds],
        loc="lower center",
        ncol=len(kinds),
        frameon=False,
    )
    load = "; ".join(h for h in results.get("header", []) if h.startswith("load average"))
    fig.suptitle(
        f"make bench, {results.get('generated', '')}: {results.get('note', '')}\n{load}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 0.93))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="the JSON bench/run.py wrote")
    parser.add_argument("png", type=Path, help="where to write the picture")
    args = parser.parse_args()
    print(plot(json.loads(args.results.read_text()), args.png))


if __name__ == "__main__":
    main()
