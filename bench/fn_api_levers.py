"""`make bench`'s `fn_api` step: the job as Dataflow runs it (FnApiRunner, multi_threading: state
over the Fn API, 4 bundle processors, no state cache) against a stateful pass-through of the
same messages, and the levers on its cost side by side, each a run of its own
(`python -m bench.scale_fleet`, on an emptied Firestore):

* `job`: the headline, Ed25519 signatures checked (--device_auth=require);
* `unverified`: the same job with --device_auth=off: what checking signatures costs;
* `flush_1s` and `flush_30s`: the job with --flush_interval_s 1 and 30 instead of its default
  (5): the price of flushing more or less often. The job's CPU is a cost per message plus a
  cost per flush; the two runs with the same messages and other flushes give both
  (`cost_model`);
* `bundles_of_20`: both the job and the pass-through handed 20 messages a bundle with the
  watermark following them (bench/fn_api.ReplayInBundles), as a streaming job gets them,
  instead of the batch runner's few large bundles, in which the pass-through reads each key
  about once in the whole run.

Levers measured once and written up in docs/sizing.md rather than run every time: ES256 keys
instead of Ed25519, one bundle processor, Beam's state cache (the commit each was measured at is
named there; `python -m bench.scale_fleet --alg=ES256`, `--workers=1`, `--state_cache_mb=100`
run them again).

Runs of one process differ by up to 10 % in CPU here (the runner's gRPC threads), as much as
the signature checks cost: each lever runs `repeats` times, the levers in turn, and the run
with the least CPU per message stands for it (`cpu_s_runs` keeps them all).

Every run's counts must equal the simulator's truth. What the figures mean: docs/sizing.md.
"""

import os
from typing import Callable, Dict, List

from bench.report_cells import cell, num
from bench.scale_fleet import Run

FLEET, MINUTES = 100, 2.0
SMOKE_FLEET, SMOKE_MINUTES = 3, 1.0


def levers(smoke: bool) -> Dict[str, Run]:
    trains, minutes = (SMOKE_FLEET, SMOKE_MINUTES) if smoke else (FLEET, MINUTES)
    job = Run(trains, minutes, mode="multi_threading", workers=4)
    return {
        "job": job,
        "unverified": job._replace(device_auth="off"),
        "flush_1s": job._replace(flush_interval_s=1.0),
        "flush_30s": job._replace(flush_interval_s=30.0),
        "bundles_of_20": job._replace(per_bundle=20),
    }


def run_all(
    reset: Callable[[], None], run_child: Callable, env: dict, work_dir: str, smoke: bool, timeout_s, repeats: int = 2
) -> dict:
    """Each lever's runs (reset() empties Firestore before each), then the ratios between them."""
    done: Dict[str, list] = {}
    for round_ in range(repeats):
        for name, run in levers(smoke).items():
            reset()
            out = os.path.join(work_dir, f"fn_api-{name}-{round_}.json")
            done.setdefault(name, []).append(run_child("bench.scale_fleet", run.args(), env, out, timeout_s))
    runs = {}
    for name, results in done.items():
        best = min(results, key=lambda r: r["cpu_s"] / r["messages"])
        runs[name] = {
            **best,
            "cpu_s_runs": [r["cpu_s"] for r in results],
            "counts_exact": all(r["counts_exact"] for r in results),
        }
    return {"runs": runs, "repeats": repeats, **summary(runs)}


def summary(runs: dict) -> dict:
    job, off = runs["job"], runs["unverified"]

    def overhead_pct(run):  # CPU per message over the job without signature checks
        return round(100 * (run["cpu_s"] / run["messages"]) / (off["cpu_s"] / off["messages"]) - 100, 1)

    return {
        "job_vs_passthrough": _ratio(job),
        "job_vs_passthrough_in_bundles_of_20": _ratio(runs.get("bundles_of_20")),
        "signature_cpu_overhead_pct": overhead_pct(job),
        "cost_model": cost_model(runs["flush_1s"], runs["flush_30s"]),
        "counts_exact": all(r["counts_exact"] for r in runs.values()),
    }


def _ratio(run) -> float:
    return round(run["msgs_per_s_per_core"] / run["passthrough_msgs_per_s_per_core"], 4) if run else None


def cost_model(a: dict, b: dict) -> dict:
    """CPU = messages x per message + flushes x per flush, solved from two runs of the same
    messages with different flush counts (ms)."""
    per_flush = (a["cpu_s"] - b["cpu_s"]) / (a["flushes"] - b["flushes"])
    per_message = (a["cpu_s"] - a["flushes"] * per_flush) / a["messages"]
    return {
        "cpu_ms_per_message": round(1000 * per_message, 3),
        "cpu_ms_per_flush": round(1000 * per_flush, 3),
        # The flushes a message may cost, at most, for 0.10 x the pass-through.
        "flushes_per_message_at_tenth_of_passthrough": round(
            (10 / a["passthrough_msgs_per_s_per_core"] - per_message) / per_flush, 3
        ),
    }


FN_API_HEADER = (
    "the job over the Fn API (multi_threading)",
    "trains",
    "messages",
    "msgs/s per core",
    "pass-through per core",
    "job / pass-through",
    "CPU vs signatures off",
    "state requests/message",
    "flushes/message",
    "counts exact",
)
FN_API_LABELS = {
    "job": "4 bundle processors, Ed25519 checked, --flush_interval_s=5 (the headline)",
    "unverified": "4, --device_auth=off",
    "flush_1s": "4, --flush_interval_s=1",
    "flush_30s": "4, --flush_interval_s=30",
    "bundles_of_20": "4, bundles of 20 messages (streaming-sized), both",
}


def fn_api_rows(results: dict) -> List[tuple]:
    fn_api = results.get("fn_api")
    if not fn_api:
        return []
    off = fn_api["runs"]["unverified"]
    off_per_message = off["cpu_s"] / off["messages"]
    out = []
    for name, label in FN_API_LABELS.items():
        r = fn_api["runs"].get(name)
        if r is None:
            continue
        out.append(
            (
                label,
                cell(r["trains"]),
                cell(r["messages"]),
                cell(r["msgs_per_s_per_core"]),
                cell(r["passthrough_msgs_per_s_per_core"]),
                num(r["msgs_per_s_per_core"] / r["passthrough_msgs_per_s_per_core"]),
                f"{100 * (r['cpu_s'] / r['messages']) / off_per_message - 100:+.0f} %",
                num(r["state_requests"]["requests_per_element_all_in"]),
                num(r["flushes"] / r["messages"]),
                cell(r["counts_exact"]),
            )
        )
    return out


def cost_model_line(results: dict) -> List[str]:
    """The cost model under the table, in words (nothing without the fn_api step)."""
    fn_api = results.get("fn_api")
    if not fn_api or "cost_model" not in fn_api:
        return []
    model, job = fn_api["cost_model"], fn_api["runs"]["job"]
    allowed = model["flushes_per_message_at_tenth_of_passthrough"]
    return [
        f"CPU over the Fn API: {model['cpu_ms_per_message']:.2f} ms a message + {model['cpu_ms_per_flush']:.2f} ms a "
        f"flush (fitted from --flush_interval_s 1 and 30); "
        + (
            f"0.10 x the pass-through allows {allowed:.3f} flushes a message"
            if allowed > 0
            else "0.10 x the pass-through is out of reach even without flushes"
        )
        + f", this workload makes {job['flushes'] / job['messages']:.2f} at the default."
    ]
