"""The serving step's rows (bench/serving.py) in `make bench`'s tables."""

from typing import List

from bench.report_cells import cell, num

SERVING_HEADER = (
    "serving",
    "trains",
    "requests",
    "p50 ms",
    "p95 ms",
    "p99 ms (max)",
    "Firestore queries/request",
    "document reads/request",
    "response KB",
)


def serving_rows(results: dict) -> List[tuple]:
    serving = results.get("serving")
    if not serving:
        return []
    out = _fleet_rows(serving)
    if serving.get("large"):
        out += _fleet_rows(serving["large"])
    for v in serving.get("visible", ()):
        out.append(
            (
                f"change to visible on GET /v1/trains, {v['mode']} ({cell(v['documents_changed'])} changes at "
                f"{v['changes_per_s']:g}/s, exact; p50 / p95 / max s, {v['never_visible']} never visible)",
                cell(v["trains"]),
                cell(v["polls"]),
                cell(v["visible_p50_s"]),
                cell(v["visible_p95_s"]),
                cell(v["visible_max_s"]),
                "-",
                "-",
                "-",
            )
        )
    dashboard = serving.get("dashboard")
    if dashboard:
        out.append(
            (
                "dashboard first paint (Chromium, ms)",
                cell(dashboard["trains"]),
                cell(dashboard["loads"]),
                cell(dashboard["first_paint_ms_p50"]),
                "-",
                cell(dashboard["first_paint_ms_max"]),
                "-",
                "-",
                "-",
            )
        )
    return out


def _fleet_rows(serving: dict) -> List[tuple]:
    """One fleet's rows: GET /v1/trains each way, the feed through the listeners, its build alone."""
    out = []
    for key, label in (
        ("uncached", "GET /v1/trains, fleet cache off"),
        ("cached", "GET /v1/trains, fleet cache 1 s"),
        ("listener", "GET /v1/trains, fleet listeners"),
        ("listener_changing", "GET /v1/trains, fleet listeners, documents changing"),
        ("listener_feed", "GET /gtfs-rt/vehicle-positions.pb, fleet listeners"),
    ):
        r = serving.get(key)
        if r is None:  # results from before this row
            continue
        if key == "cached":
            label = f"GET /v1/trains, fleet cache {r['fleet_cache_s']:g} s"
        if r.get("failed_requests"):
            label += f" ({r['failed_requests']} of {r['requests']} not 200: {r['answers']})"
        if key == "listener_changing":
            label += f" ({cell(r['documents_changed'])} in {r['timed_s']:g} s; the listeners' reads counted too)"
        out.append(
            (
                label,
                cell(r["trains"]),
                cell(r["requests"]),
                cell(r["p50_ms"]),
                cell(r["p95_ms"]),
                cell(r["p99_ms"]),
                num(r["firestore_queries_per_request"]),
                cell(r["firestore_reads_per_request"]),
                cell(round(r["response_bytes"] / 1024, 1)),
            )
        )
    cost = serving.get("listener_cost")
    if cost:  # the view's own reads: per changed document, whatever the requests
        out.append(
            (
                f"fleet listeners' own reads ({cell(cost['documents_changed'])} changes at "
                f"{cost['changes_per_s']:g}/s: {cost['reads_per_changed_document']} a change, "
                f"{cell(cost['reads_per_minute_at_this_rate'])}/min; caught up {cost['caught_up_after_s']:g} s "
                "after the writes)",
                cell(cost["trains"]),
                "-",
                "-",
                "-",
                "-",
                "-",
                cell(cost["firestore_reads"]),
                "-",
            )
        )
    feed = serving.get("feed")
    if feed:
        out.append(
            (
                f"GTFS-RT feed build ({cell(feed['bytes'])} bytes, {cell(feed['bytes_per_train'])}/train)",
                cell(feed["trains"]),
                cell(feed["rounds"]),
                cell(feed["build_ms_p50"]),
                "-",
                cell(feed["build_ms_max"]),
                "0",
                "0",
                cell(round(feed["bytes"] / 1024, 1)),
            )
        )
    return out
