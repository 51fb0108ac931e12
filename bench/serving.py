"""The API's read path at fleet size: GET /v1/trains with N trains in the Firestore emulator,
the GTFS-Realtime feed's build time and size, and the dashboard's first paint.

    python -m bench.serving [--trains 1000] [--requests 1000] [--output PATH]

Seeds `trains/` and `realtime/` for N trains (10 devices each, documents made
by occupancy.documents as the pipeline writes them), serves the real API
(`python -m api`, uvicorn) on a free port, and times `--requests` sequential
GET /v1/trains over one keep-alive connection, once with the fleet cache off
and once with its default TTL (fewer requests uncached: each reads the fleet), and once
with the fleet listeners (--fleet_listener: reads per changed document only; none change
here, so what is left per request is what the listener costs). Firestore cost per request comes from the
API's own operation counter (occupancy.store.count_ops): queries and
documents read (Firestore bills one read per document a query returns).
The feed is built from the same N trains (10 doors each, 5 carriages) with
api.gtfs_rt.build_feed, timed without Firestore. The dashboard's first paint
is read from headless Chromium's performance timings (the page marks
`trains-painted` when the first /v1/trains answer is drawn) with
--dashboard_trains trains. Needs FIRESTORE_EMULATOR_HOST (bench/run.py passes
its emulator's) and Chromium (`make install-browser`).
"""
import argparse
import datetime
import os
import tempfile
import time

import httpx

from bench.measure import emit, peak_rss_mb, percentile, read_ops, rounded
from local import stack
from local.emulators import free_port
from local.stack import PROJECT
from occupancy import documents, registry, wire
from occupancy.fold import DeviceMemory, TrainState
from occupancy.store import COUNT_OPS_ENV, RetryPolicy, commit_documents, make_client

DEVICES_PER_TRAIN = 10


def door(d: int) -> str:
    return f"car{d // 2 + 1}-door{d % 2 + 1}"  # 10 doors: 5 carriages of 2


def seed(client, trains: int) -> None:
    now = wire.now_us()
    writes = []
    for i in range(trains):
        train_id = f"t{i:05d}"
        state = TrainState(value=i % 300, capacity=300, last_applied_us=now)
        for d in range(DEVICES_PER_TRAIN):
            state.devices[f"{train_id}-d{d}"] = DeviceMemory(seq=100, applied=[[1, 100]], last_seen_us=now,
                                                             trip_boarded=(i + d) % 40, trip_alighted=d)
        write = documents.realtime_write(train_id, state)
        writes.append((write.collection, write.doc_id, write.data))
        writes.append(("trains", train_id, {"capacity": 300, "name": f"Train {i}"}))
    assert not commit_documents(client, writes, RetryPolicy())
    assert len(registry.list_trains(client, "trains")) == trains


def measure_feed(client, trains: int, rounds: int = 20) -> dict:
    """build_feed + serialisation for the seeded fleet, timed without the Firestore read."""
    from api.gtfs_rt import build_feed
    from occupancy import fleet
    views = fleet.read_fleet(client)
    doors = {v.train_id: {f"{v.train_id}-d{d}": door(d) for d in range(DEVICES_PER_TRAIN)} for v in views}
    timings, size = [], 0
    for _ in range(rounds):
        began = time.perf_counter()
        data = build_feed(views, datetime.datetime.now(datetime.timezone.utc), fleet.Thresholds(),
                          doors).SerializeToString()
        timings.append(time.perf_counter() - began)
        size = len(data)
    return {"trains": len(views), "rounds": rounds, "build_ms_p50": rounded(1000 * percentile(timings, 50), 1),
            "build_ms_max": rounded(1000 * max(timings), 1), "bytes": size,
            "bytes_per_train": rounded(size / max(1, len(views)), 1)}


def measure_dashboard(trains: int, work_dir: str) -> dict:
    """First paint of the dashboard with `trains` trains, from Chromium's performance timings."""
    from local import browser
    from local.emulators import Emulator
    firestore = Emulator("firestore", project=PROJECT)
    firestore.host_port = os.environ["FIRESTORE_EMULATOR_HOST"]
    firestore.reset()
    seed(make_client(PROJECT), trains)
    port = free_port()
    process = stack.start_api(PROJECT, port, "--log_level=warning",
                              log_path=os.path.join(work_dir, "api-dashboard.log"))
    base = f"http://127.0.0.1:{port}"
    driver = None
    try:
        stack.wait_until_serving(process, base)
        driver = browser.start()
        paints = []
        for _ in range(5):
            driver.get(base + "/")
            stack.wait_for(lambda: driver.execute_script(
                "return performance.getEntriesByName('trains-painted').length"), 30, what="the first paint")
            rows = driver.execute_script("return document.querySelectorAll('#trains tbody tr').length")
            paints.append(driver.execute_script(
                "return performance.getEntriesByName('trains-painted')[0].startTime"))
    finally:
        if driver is not None:
            driver.quit()
        stack.stop_process(process)
    return {"trains": trains, "rows": rows, "loads": len(paints),
            "first_paint_ms_p50": rounded(percentile(paints, 50), 1), "first_paint_ms_max": rounded(max(paints), 1)}


def measure(trains: int, requests: int, cache_s: float, work_dir: str, listener: bool = False) -> dict:
    name = f"{cache_s:g}" + ("-listener" if listener else "")
    ops_path = os.path.join(work_dir, f"ops-{name}.txt")
    port = free_port()
    process = stack.start_api(PROJECT, port, f"--fleet_cache_s={cache_s}", "--log_level=warning",
                              *(("--fleet_listener",) if listener else ()),
                              env={COUNT_OPS_ENV: ops_path},
                              log_path=os.path.join(work_dir, f"api-{name}.log"))
    base = f"http://127.0.0.1:{port}"
    try:
        stack.wait_until_serving(process, base)
        latencies = []
        with httpx.Client(base_url=base, timeout=60) as http:
            first = http.get("/v1/trains")
            first.raise_for_status()
            size = len(first.content)
            served = len(first.json()["trains"])
            if listener:  # its first snapshot (the whole fleet once) is not a request's cost
                time.sleep(5)
            if os.path.exists(ops_path):
                os.remove(ops_path)  # count the timed requests only
            for _ in range(requests):
                began = time.perf_counter()
                response = http.get("/v1/trains")
                latencies.append(time.perf_counter() - began)
                response.raise_for_status()
        reads, _ = read_ops(ops_path)
        queries = _queries(ops_path)
        rss = peak_rss_mb(process.pid)
    finally:
        stack.stop_process(process)
    return {"trains": trains, "requests": requests, "fleet_cache_s": cache_s, "listener": listener,
            "trains_served": served,
            "response_bytes": size, "p50_ms": rounded(1000 * percentile(latencies, 50), 1),
            "p95_ms": rounded(1000 * percentile(latencies, 95), 1),
            "p99_ms": rounded(1000 * percentile(latencies, 99), 1),
            "requests_per_s": rounded(requests / sum(latencies), 1),
            "firestore_queries_per_request": rounded(queries / requests, 3),
            "firestore_reads_per_request": rounded(reads / requests, 1), "api_peak_rss_mb": rss}


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
    parser.add_argument("--uncached_requests", type=int, default=100,
                        help="Timed requests with the cache off (each reads the whole fleet: "
                             "~0.6 s at 1,000 trains on the emulator; default: 100).")
    parser.add_argument("--cache_s", type=float, default=1.0,
                        help="The API's --fleet_cache_s for the cached run (default: 1).")
    parser.add_argument("--dashboard_trains", type=int, default=100,
                        help="Trains on the dashboard for its first paint (default: 100).")
    parser.add_argument("--output", default="-", help="JSON result file ('-': stdout).")
    args = parser.parse_args(argv)
    if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
        parser.error("needs FIRESTORE_EMULATOR_HOST (run it through `make bench`)")
    client = make_client(PROJECT)
    seed(client, args.trains)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as work_dir:
        runs = [measure(args.trains, args.uncached_requests, 0.0, work_dir),
                measure(args.trains, args.requests, args.cache_s, work_dir),
                measure(args.trains, args.requests, args.cache_s, work_dir, listener=True)]
        feed = measure_feed(client, args.trains)
        dashboard = measure_dashboard(args.dashboard_trains, work_dir)
    emit({"uncached": runs[0], "cached": runs[1], "listener": runs[2], "feed": feed, "dashboard": dashboard},
         args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
