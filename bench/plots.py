"""The figures the docs show, drawn from the results files (matplotlib, no display needed).

    python -m bench.plots [--scale bench/scale.json] [--accuracy bench/accuracy.json]

`make bench-scale` and `make accuracy` draw theirs after each run (bench/scale.png,
bench/accuracy.png); this redraws them from the JSON without running anything.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    from matplotlib import pyplot

    return pyplot


def png_beside(json_path: str) -> str:
    return os.path.splitext(json_path)[0] + ".png"


def scale_plot(results: dict, path: str) -> str:
    """Messages a second per core against fleet size (the curve without a state cache, in-memory
    mode), the pass-through beside it, and the job as Dataflow runs it (Fn API rows) as points."""
    plt = _pyplot()
    curve = sorted(
        (f for f in results["fleets"] if f.get("mode", "in_memory") == "in_memory" and not f["state_cache_mb"]),
        key=lambda f: f["trains"],
    )
    fn_api = [f for f in results["fleets"] if f.get("mode") == "multi_threading"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if curve:
        trains = [f["trains"] for f in curve]
        ax.plot(trains, [f["msgs_per_s_per_core"] for f in curve], "o-", label="job, in-memory runner")
        ax.plot(
            trains,
            [f["passthrough_msgs_per_s_per_core"] for f in curve],
            "s--",
            label="stateful pass-through, in-memory runner",
        )
    for f in fn_api:
        how = f"{f['workers']} thread{'s' if f['workers'] > 1 else ''}" + (
            f", {f['per_bundle']}/bundle" if f.get("per_bundle") else ""
        )
        ax.plot([f["trains"]], [f["msgs_per_s_per_core"]], "^", markersize=9, label=f"job, Fn API, {how}")
        ax.plot(
            [f["trains"]],
            [f["passthrough_msgs_per_s_per_core"]],
            "v",
            markersize=9,
            label=f"pass-through, Fn API, {how}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("trains (10 doors each)")
    ax.set_ylabel("messages / s per core")
    ax.set_title(f"bench-scale, {results.get('started_at', '')}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def accuracy_plot(results: dict, path: str) -> str:
    """Mean absolute error (% of capacity) per counting-error level, with and without terminus
    balancing."""
    plt = _pyplot()
    levels = []
    for row in results["levels"]:
        if row["level"] not in levels:
            levels.append(row["level"])
    mae = {(r["level"], r["balancing"]): r["mae_pct_capacity"] for r in results["levels"]}
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    width = 0.38
    for k, (balancing, label) in enumerate(((True, "terminus balancing on"), (False, "off"))):
        xs = [i + (k - 0.5) * width for i in range(len(levels))]
        ax.bar(xs, [mae.get((level, balancing), 0) for level in levels], width, label=label)
    ax.set_xticks(range(len(levels)))
    ax.set_xticklabels(levels, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("mean absolute error, % of capacity")
    ax.set_title(f"make accuracy, {results.get('started_at', '')}")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default=os.path.join(HERE, "scale.json"), help="bench-scale's results.")
    parser.add_argument("--accuracy", default=os.path.join(HERE, "accuracy.json"), help="make accuracy's results.")
    args = parser.parse_args(argv)
    for path, draw in ((args.scale, scale_plot), (args.accuracy, accuracy_plot)):
        with open(path) as f:
            print(draw(json.load(f), png_beside(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
