"""The API's read path at fleet size: GET /v1/trains with N trains in the Firestore emulator
(and again with --large_trains), the GTFS-Realtime feed, and the dashboard's first paint.

    python -m bench.serving [--trains 1000] [--large_trains 10000] [--requests 1000]
                            [--visible_trains 3000] [--output PATH]

Seeds `trains/` and `realtime/` for N trains (10 devices each, documents made
by occupancy.documents as the pipeline writes them), serves the real API
(`python -m api`, uvicorn) on a free port, and times `--requests` sequential
GET /v1/trains over one keep-alive connection, once with the fleet cache off
and once with its default TTL (fewer requests uncached: each reads the fleet), and once
with the fleet listeners (--fleet_listener: reads per changed document only; none change
here, so what is left per request is what the listener costs), then with --changes_per_s
realtime documents written meanwhile (what the listeners are billed: reads per changed
document), and the feed through the listeners. Firestore cost per request comes from the
API's own operation counter (adapters.store.count_ops): queries and
documents read (Firestore bills one read per document a query returns).
The feed is built from the same N trains (10 doors each, 5 carriages) with
api.gtfs_rt.build_feed, timed without Firestore. With --visible_trains, how long a change
takes to show on GET /v1/trains, through the cache and through the listeners
(bench/serving_visible.py). The dashboard's first paint
is read from headless Chromium's performance timings (the page marks
`trains-painted` when the first /v1/trains answer is drawn) with
--dashboard_trains trains. Needs FIRESTORE_EMULATOR_HOST (bench/run.py passes
its emulator's) and Chromium (`make install-browser`).
"""

import argparse
import collections
import datetime
import os
import tempfile
import time

import httpx

from adapters.store import make_client
from bench.measure import emit, peak_rss_mb, percentile, read_ops, rounded
from bench.serving_fleet import (
    DEVICES_PER_TRAIN,
    Changes,
    door,
    fresh,
    measure_listener_cost,
    quiet,
    seed,
    start_measured_api,
)
from bench.serving_visible import measure_visible
from local import stack
from local.emulators import free_port
from local.stack import PROJECT


def measure_feed(client, trains: int, rounds: int = 20) -> dict:
    """build_feed + serialisation for the seeded fleet, timed without the Firestore read."""
    from adapters.fleet_views import FleetReader
    from api.gtfs_rt import build_feed
    from occupancy import fleet

    views = FleetReader(client).read()
    doors = {v.train_id: {f"{v.train_id}-d{d}": door(d) for d in range(DEVICES_PER_TRAIN)} for v in views}
    timings, size = [], 0
    for _ in range(rounds):
        began = time.perf_counter()
        data = build_feed(
            views, datetime.datetime.now(datetime.timezone.utc), fleet.Thresholds(), doors
        ).SerializeToString()
        timings.append(time.perf_counter() - began)
        size = len(data)
    return {
        "trains": len(views),
        "rounds": rounds,
        "build_ms_p50": rounded(1000 * percentile(timings, 50), 1),
        "build_ms_max": rounded(1000 * max(timings), 1),
        "bytes": size,
        "bytes_per_train": rounded(size / max(1, len(views)), 1),
    }


def measure_dashboard(trains: int, work_dir: str) -> dict:
    """First paint of the dashboard with `trains` trains, from Chromium's performance timings."""
    from local import browser

    fresh(make_client(PROJECT), trains)
    port = free_port()
    process = stack.start_api(
        PROJECT, port, "--log_level=warning", log_path=os.path.join(work_dir, "api-dashboard.log")
    )
    base = f"http://127.0.0.1:{port}"
    driver = None
    try:
        stack.wait_until_serving(process, base)
        driver = browser.start()
        paints = []
        for _ in range(5):
            driver.get(base + "/")
            stack.wait_for(
                lambda: driver.execute_script("return performance.getEntriesByName('trains-painted').length"),
                30,
                what="the first paint",
            )
            rows = driver.execute_script("return document.querySelectorAll('#trains tbody tr').length")
            paints.append(driver.execute_script("return performance.getEntriesByName('trains-painted')[0].startTime"))
    finally:
        if driver is not None:
            driver.quit()
        stack.stop_process(process)
    return {
        "trains": trains,
        "rows": rows,
        "loads": len(paints),
        "first_paint_ms_p50": rounded(percentile(paints, 50), 1),
        "first_paint_ms_max": rounded(max(paints), 1),
    }


def measure(
    trains: int,
    requests: int,
    cache_s: float,
    work_dir: str,
    listener: bool = False,
    path: str = "/v1/trains",
    changes_per_s: float = 0.0,
) -> dict:
    """`requests` sequential GETs of `path`, with the fleet cache at `cache_s` or the listeners;
    `changes_per_s` realtime documents written meanwhile (listeners: reads per change)."""
    name = (
        f"{trains}-{cache_s:g}"
        + ("-listener" if listener else "")
        + path.replace("/", "_")
        + (f"-{changes_per_s:g}" if changes_per_s else "")
    )
    process, base, ops_path = start_measured_api(name, work_dir, cache_s, listener)
    try:
        stack.wait_until_serving(process, base)
        latencies = []
        changes = Changes(trains, changes_per_s) if changes_per_s else None
        with httpx.Client(base_url=base, timeout=120) as http:
            served = len(_get(http, "/v1/trains").json()["trains"])
            size = len(_get(http, path).content)
            if listener:  # its first snapshot (the whole fleet once) is not a request's cost
                stack.wait_for(lambda: quiet(ops_path), 120, what="the listeners' first snapshot")
            if os.path.exists(ops_path):
                os.remove(ops_path)  # count the timed requests only
            timed = time.monotonic()
            if changes:
                changes.start()
            statuses = collections.Counter()
            for _ in range(requests):
                began = time.perf_counter()
                statuses[http.get(path).status_code] += 1  # a 503 (a view too old) is a result too
                latencies.append(time.perf_counter() - began)
            written = changes.stop() if changes else 0
            timed = time.monotonic() - timed
        reads, _ = read_ops(ops_path)
        queries = _queries(ops_path)
        rss = peak_rss_mb(process.pid)
    finally:
        stack.stop_process(process)
    out = {
        "trains": trains,
        "requests": requests,
        "fleet_cache_s": cache_s,
        "listener": listener,
        "path": path,
        "trains_served": served,
        "response_bytes": size,
        "p50_ms": rounded(1000 * percentile(latencies, 50), 1),
        "p95_ms": rounded(1000 * percentile(latencies, 95), 1),
        "p99_ms": rounded(1000 * percentile(latencies, 99), 1),
        "requests_per_s": rounded(requests / sum(latencies), 1),
        "firestore_queries_per_request": rounded(queries / requests, 3),
        "firestore_reads_per_request": rounded(reads / requests, 1),
        "api_peak_rss_mb": rss,
        "answers": {str(code): n for code, n in sorted(statuses.items())},
        "failed_requests": requests - statuses[200],
    }
    if changes:  # requests' cost only: the listeners' own reads are measure_listener_cost's
        out.update({"changes_per_s": changes_per_s, "documents_changed": written, "timed_s": round(timed, 1)})
    return out


def _get(http, path):
    response = http.get(path)
    response.raise_for_status()
    return response


def _queries(path: str) -> int:
    """Lines with reads are one query or one get each (count_ops is called once per call)."""
    try:
        with open(path) as f:
            return sum(1 for line in f if int(line.split()[0]) > 0)
    except FileNotFoundError:
        return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trains", type=int, default=1000, help="Trains in Firestore (default: 1000).")
    parser.add_argument("--requests", type=int, default=1000, help="Timed requests per run (default: 1000).")
    parser.add_argument(
        "--uncached_requests",
        type=int,
        default=100,
        help="Timed requests with the cache off (each reads the whole fleet: "
        "~0.6 s at 1,000 trains on the emulator; default: 100).",
    )
    parser.add_argument(
        "--cache_s", type=float, default=1.0, help="The API's --fleet_cache_s for the cached run (default: 1)."
    )
    parser.add_argument(
        "--dashboard_trains", type=int, default=100, help="Trains on the dashboard for its first paint (default: 100)."
    )
    parser.add_argument(
        "--changes_per_s",
        type=float,
        default=50.0,
        help="Realtime documents written a second during the listeners' changing run "
        "(default: 50): their reads per changed document.",
    )
    parser.add_argument(
        "--listener_cost_s",
        type=float,
        default=30.0,
        help="How long documents change while the listeners' own reads are counted (default: 30).",
    )
    parser.add_argument(
        "--large_trains",
        type=int,
        default=0,
        help="A second, larger fleet (e.g. 10000): cache, listeners and feed again (0: none).",
    )
    parser.add_argument(
        "--large_requests", type=int, default=200, help="Timed requests per run at the larger fleet (default: 200)."
    )
    parser.add_argument(
        "--visible_trains",
        type=int,
        default=3000,
        help="Trains for the change-to-visible runs (default: 3000; 0: none).",
    )
    parser.add_argument(
        "--visible_changes_per_s",
        type=float,
        default=20.0,
        help="Trains changing a second in the change-to-visible runs (default: 20).",
    )
    parser.add_argument(
        "--visible_s", type=float, default=30.0, help="How long documents change in each such run (default: 30)."
    )
    parser.add_argument("--output", default="-", help="JSON result file ('-': stdout).")
    args = parser.parse_args(argv)
    if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
        parser.error("needs FIRESTORE_EMULATOR_HOST (run it through `make bench`)")
    client = make_client(PROJECT)
    seed(client, args.trains)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as work_dir:
        out = fleet_runs(
            client,
            args.trains,
            args.requests,
            args.uncached_requests,
            args.cache_s,
            args.changes_per_s,
            args.listener_cost_s,
            work_dir,
        )
        if args.visible_trains:
            fresh(client, args.visible_trains)
            out["visible"] = [
                measure_visible(
                    args.visible_trains, args.visible_changes_per_s, args.visible_s, work_dir, listener, args.cache_s
                )
                for listener in (False, True)
            ]
        if args.large_trains:
            fresh(client, args.large_trains)
            # Uncached, a request reads 2 x 10,000 documents (~10 s on the emulator): a handful.
            out["large"] = fleet_runs(
                client,
                args.large_trains,
                args.large_requests,
                3,
                args.cache_s,
                args.changes_per_s,
                args.listener_cost_s,
                work_dir,
            )
        out["dashboard"] = measure_dashboard(args.dashboard_trains, work_dir)
    emit(out, args.output)
    return 0


def fleet_runs(
    client,
    trains: int,
    requests: int,
    uncached_requests: int,
    cache_s: float,
    changes_per_s: float,
    listener_cost_s: float,
    work_dir: str,
) -> dict:
    """One fleet: GET /v1/trains uncached, cached, through the listeners (still, then with
    documents changing), the feed through the listeners, and the feed's build alone."""
    return {
        "uncached": measure(trains, uncached_requests, 0.0, work_dir),
        "cached": measure(trains, requests, cache_s, work_dir),
        "listener": measure(trains, requests, cache_s, work_dir, listener=True),
        "listener_changing": measure(trains, requests, cache_s, work_dir, listener=True, changes_per_s=changes_per_s),
        "listener_feed": measure(
            trains, requests, cache_s, work_dir, listener=True, path="/gtfs-rt/vehicle-positions.pb"
        ),
        "listener_cost": measure_listener_cost(trains, changes_per_s, listener_cost_s, work_dir),
        "feed": measure_feed(client, trains),
    }


if __name__ == "__main__":
    raise SystemExit(main())
