"""The benchmark's results: ratios, targets (pass/miss and by how much), one table, markdown.

Targets are reported, never asserted: a miss is a finding to profile, and the
same run must produce every ratio (numbers from different runs or machines do
not compare).
"""

from typing import List, Optional

from bench.flush_policy import FLUSH_POLICY_HEADER, default_and_before, flush_policy_rows
from bench.fn_api_levers import FN_API_HEADER, cost_model_line, fn_api_rows
from bench.report_cells import cell, num
from bench.serving_report import SERVING_HEADER, serving_rows
from bench.tides_replay import REPLAY_HEADER, replay_rows

ROWS = (
    ("pipeline", "pipeline, streaming (local runner)"),
    ("ceiling", "runner ceiling, streaming (local runner)"),
    ("naive", "naive baseline, sequential"),
    ("naive_concurrent", "naive baseline, 8 concurrent workers"),
)
RUN_KEYS = (
    "msgs_per_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "firestore_writes_per_1000",
    "firestore_reads_per_1000",
    "peak_rss_mb",
    "counts_exact",
    "count_error",
)


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or not b else round(a / b, 4)


def ratios(results: dict) -> dict:
    pipeline, ceiling, naive, harness = (results[k] for k in ("pipeline", "ceiling", "naive", "harness"))
    return {
        "pipeline_vs_ceiling": _ratio(pipeline["msgs_per_s"], ceiling["msgs_per_s"]),
        "writes_vs_naive": _ratio(pipeline["firestore_writes_per_1000"], naive["firestore_writes_per_1000"]),
        "reads_vs_naive": _ratio(pipeline["firestore_reads_per_1000"], naive["firestore_reads_per_1000"]),
        "harness_vs_passthrough": _ratio(
            harness["pipeline_msgs_per_s_per_core"], harness["passthrough_msgs_per_s_per_core"]
        ),
    }


def _at_most(name, value, limit, unit=""):
    ok = value is not None and value <= limit
    return {
        "target": name,
        "value": value,
        "limit": limit,
        "pass": ok,
        "miss_by": None if ok or value is None else round(value - limit, 4),
        "miss_factor": None if ok or not value or not limit else round(value / limit, 2),
        "unit": unit,
    }


def _at_least(name, value, limit, unit=""):
    ok = value is not None and value >= limit
    return {
        "target": name,
        "value": value,
        "limit": limit,
        "pass": ok,
        "miss_by": None if ok or value is None else round(limit - value, 4),
        "miss_factor": None if ok or not value else round(limit / value, 2),
        "unit": unit,
    }


def targets(results: dict) -> List[dict]:
    r, flush = results["ratios"], results["flush_interval_s"]
    ceiling_p95 = results["ceiling"]["latency_p95_s"]
    p95_limit = None if ceiling_p95 is None else round(ceiling_p95 + flush + 1.0, 3)
    concurrent = results["naive_concurrent"]
    return [
        _at_most("writes per 1,000 <= 1/10 of naive", r["writes_vs_naive"], 0.1, "x naive"),
        _at_most("reads per 1,000 <= 1/100 of naive", r["reads_vs_naive"], 0.01, "x naive"),
        {
            "target": "pipeline counts exact",
            "value": results["pipeline"]["count_error"],
            "limit": 0,
            "pass": bool(results["pipeline"]["counts_exact"]),
            "miss_by": None if results["pipeline"]["counts_exact"] else results["pipeline"]["count_error"],
            "miss_factor": None,
            "unit": "count error",
        },
        {
            "target": "naive concurrent error reported",
            "value": concurrent["count_error"],
            "limit": None,
            "pass": concurrent["count_error"] is not None,
            "miss_by": None,
            "miss_factor": None,
            "unit": "count error",
        },
        _at_least("streaming throughput >= 0.8 x ceiling", r["pipeline_vs_ceiling"], 0.8, "x ceiling"),
        _at_most("p95 <= ceiling p95 + flush interval + 1 s", results["pipeline"]["latency_p95_s"], p95_limit, "s")
        if p95_limit is not None
        else {
            "target": "p95 <= ceiling p95 + flush interval + 1 s",
            "value": None,
            "limit": None,
            "pass": False,
            "miss_by": None,
            "miss_factor": None,
            "unit": "s",
        },
        _at_least("harness >= 0.7 x pass-through", r["harness_vs_passthrough"], 0.7, "x pass-through"),
        _at_most(
            "signature checks <= 15 % more CPU per message",
            results["harness"].get("device_auth_cpu_overhead_pct"),
            15.0,
            "%",
        ),
        *_fn_api_targets(results.get("fn_api")),
        *_flush_policy_targets(results.get("flush_policy")),
        *(
            _at_most(
                f"a change visible on GET /v1/trains within 5 s at p95 ({v['mode']}, {v['trains']:,} trains, "
                f"{v['changes_per_s']:g} changes/s; never visible: {v['never_visible']})",
                v["visible_p95_s"] if not v["never_visible"] else None,
                5.0,
                "s",
            )
            for v in (results.get("serving") or {}).get("visible", ())
        ),
    ]


def _fn_api_targets(fn_api) -> List[dict]:
    if not fn_api:
        return []
    return [
        _at_least(
            "the job over the Fn API (4 bundle processors) >= 0.10 x pass-through",
            fn_api["job_vs_passthrough"],
            0.10,
            "x pass-through",
        ),
        _at_least(
            "the job over the Fn API in bundles of 20 messages >= 0.5 x pass-through",
            fn_api["job_vs_passthrough_in_bundles_of_20"],
            0.5,
            "x pass-through",
        ),
        _at_most(
            "signature checks over the Fn API <= 15 % more CPU per message",
            fn_api["signature_cpu_overhead_pct"],
            15.0,
            "%",
        ),
    ]


def _flush_policy_targets(policy) -> List[dict]:
    if not policy:
        return []
    now, before = default_and_before({"rows": policy["rows"]})
    return [
        _at_most(
            f"{what} at p95 no later than before ({now['flush_interval_s']:g} s against 1 s, event time)",
            now[key]["p95"],
            before[key]["p95"],
            "s",
        )
        for key, what in (
            ("first_count_s", "a stop's first count applied"),
            ("departure_s", "a stop's departure load applied"),
        )
    ]


HEADER = (
    "run",
    "msgs/s",
    "p50 s",
    "p95 s",
    "p99 s",
    "writes/1k msgs",
    "reads/1k msgs",
    "peak RSS MB",
    "counts exact",
    "count error",
)


def rows(results: dict) -> List[tuple]:
    out = [(label, *(cell(results[key].get(k)) for k in RUN_KEYS)) for key, label in ROWS]
    h = results["harness"]
    blank = ("-",) * 8
    out.append(
        (
            "harness: pipeline composites, per core",
            cell(h["pipeline_msgs_per_s_per_core"]),
            *blank[:5],
            cell(h.get("peak_rss_mb")),
            cell(h.get("pipeline_counts_exact")),
            "-",
        )
    )
    out.append(
        (
            "harness: pipeline with --device_auth=off, per core",
            cell(h.get("pipeline_unverified_msgs_per_s_per_core")),
            *blank,
        )
    )
    out.append(("harness: pass-through, per core", cell(h["passthrough_msgs_per_s_per_core"]), *blank))
    out.append(("parse + fold (pure Python), per core", cell(h["parse_fold_msgs_per_s_per_core"]), *blank))
    return out


def _target_detail(t: dict) -> str:
    detail = f"{num(t['value'])} {t['unit']}".strip()
    if t["limit"] is not None:
        detail += f" (limit {num(t['limit'])})"
    if not t["pass"] and t["miss_by"] is not None:
        detail += f", missed by {num(t['miss_by'])}"
        if t["miss_factor"]:
            detail += f" ({t['miss_factor']}x)"
    return detail


def _status(t: dict) -> str:
    return "pass" if t["pass"] else "MISS"


def _aligned(header: tuple, body: List[tuple]) -> List[str]:
    data = [header] + body
    widths = [max(len(str(row[i])) for row in data) for i in range(len(header))]
    line = lambda row: "  ".join(
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))
    )
    rule = "-" * len(line(header))
    return [rule, line(header), rule, *(line(r) for r in body), rule]


def table(results: dict) -> str:
    """The one table printed at the end, then the targets, one line each."""
    data = [HEADER] + rows(results)
    widths = [max(len(str(row[i])) for row in data) for i in range(len(HEADER))]
    line = lambda row: "  ".join(
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))
    )
    rule = "-" * len(line(HEADER))
    w, m = results["workload"], results["machine"]
    text = [
        f"Workload: {w['trains']} trains x {w['doors']} doors, {w['messages']:,} messages, seed "
        f"{w['seed']}; {m['cores']} cores, {m['memory_mb']:,} MB; flush "
        f"{results['flush_interval_s']:g} s, reorder delay {results['reorder_delay_s']:g} s",
        rule,
        line(HEADER),
        rule,
        *(line(r) for r in data[1:]),
        rule,
    ]
    text += [f"{_status(t)}: {t['target']}: {_target_detail(t)}" for t in results["targets"]]
    if flush_policy_rows(results):
        text += ["", *_aligned(FLUSH_POLICY_HEADER, flush_policy_rows(results))]
    if fn_api_rows(results):
        text += ["", *_aligned(FN_API_HEADER, fn_api_rows(results)), *cost_model_line(results)]
    if replay_rows(results):
        text += ["", *_aligned(REPLAY_HEADER, replay_rows(results))]
    if serving_rows(results):
        text += ["", *_aligned(SERVING_HEADER, serving_rows(results))]
    return "\n".join(text)


def markdown(results: dict) -> str:
    """The short table for the README."""
    w, m = results["workload"], results["machine"]
    out = [
        f"{w['trains']} trains x {w['doors']} doors, {w['messages']:,} messages (seed {w['seed']}), "
        f"{m['cores']} cores, {m['memory_mb']:,} MB, load average {m['loadavg_1m_at_start']} at "
        f"start; {results['started_at']}.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows(results)]
    out += ["", "| target | result | measured |", "|---|---|---|"]
    out += [f"| {t['target']} | {_status(t)} | {_target_detail(t)} |" for t in results["targets"]]
    if flush_policy_rows(results):
        out += ["", "| " + " | ".join(FLUSH_POLICY_HEADER) + " |", "|" + "---|" * len(FLUSH_POLICY_HEADER)]
        out += ["| " + " | ".join(r) + " |" for r in flush_policy_rows(results)]
    if fn_api_rows(results):
        out += ["", "| " + " | ".join(FN_API_HEADER) + " |", "|" + "---|" * len(FN_API_HEADER)]
        out += ["| " + " | ".join(r) + " |" for r in fn_api_rows(results)]
        out += ["", *cost_model_line(results)]
    if replay_rows(results):
        out += ["", "| " + " | ".join(REPLAY_HEADER) + " |", "|" + "---|" * len(REPLAY_HEADER)]
        out += ["| " + " | ".join(r) + " |" for r in replay_rows(results)]
    if serving_rows(results):
        out += ["", "| " + " | ".join(SERVING_HEADER) + " |", "|" + "---|" * len(SERVING_HEADER)]
        out += ["| " + " | ".join(r) + " |" for r in serving_rows(results)]
    return "\n".join(out) + "\n"
