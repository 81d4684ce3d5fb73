"""Draws the scale benchmark's plots from the JSON `scale --plot-data` writes.

Usage: python plot.py SCALE_JSON OUT_DIR

Writes two PNG files into OUT_DIR:
- scale-throughput.png: `/v1/endpoints` requests/s and DNS answers/s against catalog size
  (log scale), with the 0.9x-of-the-smallest target line for each;
- scale-dns-latency.png: the DNS answer latency distribution at each catalog size
  (percentile on a log "nines" axis, as HdrHistogram plots draw it).

bench/run calls it with matplotlib from a virtual environment under target/.
"""

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def throughput(sizes, out):
    """Read rates against catalog size, each with its target line."""
    instances = [s["instances"] for s in sizes]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    series = [("endpoints_per_second", "GET /v1/endpoints (wrk, 64 connections)", "tab:blue")]
    if all(s.get("dns_per_second") for s in sizes):
        series.append(("dns_per_second", "DNS A queries (64 UDP clients)", "tab:orange"))
    for key, label, colour in series:
        rates = [s[key] for s in sizes]
        ax.plot(instances, rates, marker="o", label=label, color=colour)
        ax.axhline(0.9 * rates[0], linestyle=":", color=colour, linewidth=1,
                   label=f"target: 0.9x the {instances[0]:,}-instance rate")
    ax.set_xscale("log")
    ax.set_xlabel("instances in the catalog")
    ax.set_ylabel("answers per second")
    ax.set_ylim(bottom=0)
    ax.set_title("Read rate against catalog size, one agent, 2 cores")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "scale-throughput.png")
    plt.close(fig)


def dns_latency(sizes, out):
    """The DNS latency distribution at each size, against 1/(1-percentile)."""
    measured = [s for s in sizes if s.get("dns_quantiles_ms")]
    if not measured:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for size in measured:
        points = [(q, ms) for q, ms in size["dns_quantiles_ms"] if q < 1.0]
        xs = [1.0 / (1.0 - q) for q, _ in points]
        ax.plot(xs, [ms for _, ms in points], marker=".",
                label=f"{size['instances']:,} instances")
    ax.set_xscale("log")
    ticks = [2, 10, 100, 1000]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"p{100 * (1 - 1 / t):g}" for t in ticks])
    ax.set_xlabel("percentile")
    ax.set_ylabel("answer latency (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title("DNS answer latency by catalog size (64 closed-loop clients)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "scale-dns-latency.png")
    plt.close(fig)
    return True


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot.py SCALE_JSON OUT_DIR")
    data = json.loads(Path(sys.argv[1]).read_text())
    sizes = sorted(data["sizes"], key=lambda s: s["instances"])
    if len(sizes) < 2 or any(not math.isfinite(s["endpoints_per_second"]) for s in sizes):
        sys.exit(f"plot.py: {sys.argv[1]} needs at least two measured catalog sizes")
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    throughput(sizes, out)
    drawn = ["scale-throughput.png"]
    if dns_latency(sizes, out):
        drawn.append("scale-dns-latency.png")
    for name in drawn:
        print(out / name)


if __name__ == "__main__":
    main()
