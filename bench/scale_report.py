"""`make bench-scale`'s run of every step: a child per fleet (bench/scale_fleet.py), state and document
sizes, the profile, and the table."""

import datetime
import json
import logging
import os
import platform
import time
from importlib.metadata import version

from bench import measure, state_size
from bench import scale_fleet as scale
from bench.run import run_child
from local.emulators import Emulator
from local.progress import Steps, last_durations

_LOGGER = logging.getLogger(__name__)
DEVICE_COUNTS = (10, 50, 200)


def run_all(args, fleets, profiled) -> dict:
    from pipeline.build import fold_config

    began = time.monotonic()
    results = {
        "smoke": args.smoke,
        "started_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": dict(measure.machine(), python=platform.python_version(), beam=version("apache-beam")),
        "workload": {
            "doors": scale.DOORS,
            "seed": scale.SEED,
            "sim": {
                "stop_interval_s": scale.SCALE_SIM.stop_interval_s,
                "dwell_s": scale.SCALE_SIM.dwell_s,
                "heartbeat_s": scale.SCALE_SIM.heartbeat_s,
                "duplicate": scale.SCALE_SIM.faults.duplicate,
                "out_of_order": scale.SCALE_SIM.faults.out_of_order,
            },
        },
        "fleets": [],
    }
    last = last_durations(args.output, "fleets", name_key="label")
    labels = [f"{run.trains} trains, {_how(run._asdict())}, cache {run.state_cache_mb} MB" for run in fleets]
    progress = Steps(
        "bench-scale",
        [(label, last.get(label, 120.0)) for label in labels] + [("profile", 60.0), ("state sizes", 60.0)],
    )
    emulator = Emulator("firestore", project=scale.PROJECT).start()
    env = emulator.env()
    work = os.path.dirname(os.path.abspath(args.output))
    try:
        for run, label in zip(fleets, labels):
            emulator.reset()
            progress.step(label)
            started = time.monotonic()
            row = run_child(
                "bench.scale_fleet", run.args(), env, os.path.join(work, f".scale-{run.trains}.json"), timeout_s=1800
            )
            results["fleets"].append(dict(row, label=label, duration_s=round(time.monotonic() - started, 1)))
        emulator.reset()
        progress.step("profile")
        profile = run_child(
            "bench.scale_fleet",
            profiled.args() + ["--profile"],
            env,
            os.path.join(work, ".scale-profile.json"),
            timeout_s=1800,
        )
        results["profile"] = {
            "trains": profiled.trains,
            "simulated_minutes": profiled.minutes,
            "mode": profiled.mode,
            "workers": profiled.workers,
            "cpu_s": profile["cpu_s"],
            "top": profile["profile"],
        }
    finally:
        emulator.stop()
        for name in os.listdir(work):
            if name.startswith(".scale-"):
                os.remove(os.path.join(work, name))
    progress.step("state sizes")
    config = fold_config(scale.options())
    minutes = 10.0 if args.smoke else 60.0
    results["state"] = {str(d): state_size.simulate_train(d, minutes, config, scale.SCALE_SIM) for d in DEVICE_COUNTS}
    results["state_minutes"] = minutes
    results["document"] = scale.document_limits(results["state"])
    results["duration_s"] = round(time.monotonic() - began, 1)
    progress.finished()
    return results


def _how(f: dict) -> str:
    """How FnApiRunner ran a fleet: in-memory, or state over the Fn API with N bundle processors."""
    mode = f.get("mode", "in_memory")
    how = "in memory" if mode == "in_memory" else f"Fn API x{f.get('workers', 1)}"
    return how + (f", {f['per_bundle']}/bundle" if f.get("per_bundle") else "")


def _requests(f: dict, key: str = "state_requests") -> str:
    s = f.get(key)
    if not s:
        return "-"
    return (
        f"{s['requests_per_element']}/el {s['requests_per_flush']}/flush "
        f"+{s['commit_requests_per_element_or_flush']} commit"
    )


def table(results: dict) -> str:
    rows = [
        (
            "trains",
            "runner",
            "cache MB",
            "sim min",
            "messages",
            "msgs/s/core",
            "pass-through/core",
            "ratio",
            "peak RSS MB",
            "flushes/train/min",
            "conflicts",
            "reads/rt write",
            "state requests",
            "exact",
        )
    ]
    for f in results["fleets"]:
        per_min = f["trains"] * f["simulated_minutes"]
        rows.append(
            (
                f"{f['trains']:,}",
                _how(f),
                str(f["state_cache_mb"]),
                f"{f['simulated_minutes']:g}",
                f"{f['messages']:,}",
                f"{f['msgs_per_s_per_core']:,.0f}",
                f"{f['passthrough_msgs_per_s_per_core']:,.0f}",
                f"{f['msgs_per_s_per_core'] / f['passthrough_msgs_per_s_per_core']:.3f}",
                f"{f['peak_rss_mb']:,.0f}",
                f"{f['flushes'] / per_min:.1f}",
                str(f.get("realtime_write_conflicts", "-")),
                str(f.get("firestore_reads_per_realtime_write", "-")),
                _requests(f),
                "yes" if f["counts_exact"] else f"NO ({f['count_errors']})",
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines.append("")
    lines.append(f"state per train, simulated {results['state_minutes']:g} min of streaming:")
    for doors, sizes in results["state"].items():
        five, end = sizes.get("5 min", {}), sizes["end"]
        lines.append(
            f"  {doors:>3} doors: TrainState {five.get('train_state_bytes', '-')} -> "
            f"{end['train_state_bytes']} B, queued {end['queued_events']} events "
            f"({end['queued_bytes']} B), realtime doc {end['realtime_doc_bytes']:,} B; "
            f"writes/min realtime {end['realtime_writes_per_min']}, "
            f"history {end['history_writes_per_min']}; messages/min {end['messages_per_min']}"
        )
    d = results["document"]
    lines.append(
        f"realtime document: {d['typical_bytes_per_device']} B/device typical "
        f"(1 MiB at {d['devices_at_1_mib_typical']:,} devices), {d['worst_bytes_per_device']} B "
        f"worst (1 MiB at {d['devices_at_1_mib_worst']:,}); registry cap "
        f"{d['max_devices_per_train']} devices -> worst {d['worst_doc_bytes_at_max_devices']:,} B"
    )
    lines.append(f"profile ({results['profile']['trains']:,} trains), top functions by own time:")
    for row in results["profile"]["top"]:
        lines.append(f"  {row['share']:6.1%}  {row['owner']:<28} {row['function']}")
    return "\n".join(lines)


def markdown_rows(results: dict) -> str:
    """The curve as a markdown table (docs/sizing.md)."""
    out = [
        "| trains | runner | state cache MB | simulated min | messages | msgs/s per core | "
        "pass-through per core | job / pass-through | peak RSS MB | flushes / train / min | "
        "precondition conflicts | Firestore reads / realtime write | counts exact |",
        "|" + "---|" * 13,
    ]
    for f in results["fleets"]:
        per = f["trains"] * f["simulated_minutes"]
        out.append(
            f"| {f['trains']:,} | {_how(f)} | {f['state_cache_mb']} | {f['simulated_minutes']:g} | "
            f"{f['messages']:,} | {f['msgs_per_s_per_core']:,.0f} | "
            f"{f['passthrough_msgs_per_s_per_core']:,.0f} | "
            f"{100 * f['msgs_per_s_per_core'] / f['passthrough_msgs_per_s_per_core']:.1f} % | "
            f"{f['peak_rss_mb']:,.0f} | {f['flushes'] / per:.1f} | {f.get('realtime_write_conflicts', '-')} | "
            f"{f.get('firestore_reads_per_realtime_write', '-')} | {'yes' if f['counts_exact'] else 'no'} |"
        )
    out += [
        "",
        "| trains | runner | job: requests / element | / flush | commit requests / (element or flush) | "
        "gets / element | gets / flush | pass-through: requests / element | commit |",
        "|" + "---|" * 9,
    ]
    for f in results["fleets"]:
        s, t = f.get("state_requests"), f.get("passthrough_state_requests")
        if s and t:
            out.append(
                f"| {f['trains']:,} | {_how(f)} | {s['requests_per_element']} | {s['requests_per_flush']} | "
                f"{s['commit_requests_per_element_or_flush']} | {s['gets_per_element']} | "
                f"{s['gets_per_flush']} | "
                f"{t['requests_per_element']} | {t['commit_requests_per_element_or_flush']} |"
            )
    return "\n".join(out)


if __name__ == "__main__":  # prints the markdown of a results file
    import sys

    with open(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "scale.json")) as f:
        print(markdown_rows(json.load(f)))
