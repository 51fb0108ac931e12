"""Change to visible: how long after a realtime document is written GET /v1/trains shows it,
through the fleet cache and through the fleet listeners (the goal: within 5 s at p95, 3,000
trains, 20 trains changing a second, exact precision).

Request latency alone says nothing about this: a cache answers in a millisecond with numbers
seconds old. Here `Changes` writes realtime documents as the pipeline's sink does, each with
a new `last_updated` (the time the change was made, just before its commit), while one
client polls GET /v1/trains as fast as it answers and another requests it too (the API
is not idle). A change is visible at the first answer whose `last_updated` for that train
is at least the write's; its latency is that answer's arrival minus the write's
`last_updated`. Writes never seen within `settle_s` after the last one are counted, not
dropped from the figures.
"""

import datetime
import threading
import time

import httpx

from bench.measure import percentile, rounded
from bench.serving_fleet import Changes, quiet, start_measured_api
from local import stack
from occupancy import wire


def measure_visible(
    trains: int, per_s: float, seconds: float, work_dir: str, listener: bool, cache_s: float = 1.0, settle_s=30.0
) -> dict:
    """Change-to-visible latency with the fleet cache at `cache_s` or (listener) the listeners."""
    name = f"visible-{trains}-{'listener' if listener else f'cache{cache_s:g}'}"
    # last_updated as written (coarse precision serves a sample's)
    process, base, ops_path = start_measured_api(name, work_dir, cache_s, listener, "--public_precision=exact")
    latencies, waiting, polls = [], {}, [0]
    halt = threading.Event()
    try:
        stack.wait_until_serving(process, base)
        with httpx.Client(base_url=base, timeout=120) as http:
            stack.wait_for(lambda: len(http.get("/v1/trains").json()["trains"]) == trains, 300, what="every train")
            # Until the listeners hold their first snapshot the fleet is read as without them.
            stack.wait_for(lambda: quiet(ops_path), 300, what="the listeners' first snapshot")
            other = threading.Thread(target=_requests, args=(base, halt), daemon=True)
            other.start()
            changes = Changes(trains, per_s)
            changes.start()
            began = time.monotonic()
            while time.monotonic() - began < seconds:
                _poll(http, changes, waiting, latencies, polls)
            written = changes.stop()
            settled = time.monotonic()
            while time.monotonic() - settled < settle_s:
                _poll(http, changes, waiting, latencies, polls)
                if not any(waiting.values()):
                    break
    finally:
        halt.set()
        stack.stop_process(process)
    never = sum(len(v) for v in waiting.values())
    return {
        "trains": trains,
        "mode": "listener" if listener else f"fleet cache {cache_s:g} s",
        "changes_per_s": per_s,
        "seconds": seconds,
        "documents_changed": written,
        "polls": polls[0],
        "visible": len(latencies),
        "never_visible": never,
        "visible_p50_s": rounded(percentile(latencies, 50), 2),
        "visible_p95_s": rounded(percentile(latencies, 95), 2),
        "visible_max_s": rounded(max(latencies), 2) if latencies else None,
    }


def _poll(http, changes, waiting, latencies, polls) -> None:
    for train_id, issued_us in changes.take_issued():
        waiting.setdefault(train_id, []).append(issued_us)
    body = http.get("/v1/trains").json()
    arrived_us = wire.now_us()
    polls[0] += 1
    for train in body["trains"]:
        pending = waiting.get(train["train_id"])
        if not pending or not train.get("last_updated"):
            continue
        shown_us = wire.to_micros(datetime.datetime.fromisoformat(train["last_updated"]))
        still = [us for us in pending if us > shown_us]
        latencies.extend((arrived_us - us) / 1e6 for us in pending if us <= shown_us)
        waiting[train["train_id"]] = still


def _requests(base: str, halt: threading.Event) -> None:
    """Another reader of GET /v1/trains meanwhile (an app, the dashboard)."""
    with httpx.Client(base_url=base, timeout=120) as http:
        while not halt.is_set():
            try:
                http.get("/v1/trains")
            except httpx.HTTPError:
                return  # the API was stopped: the run is over
