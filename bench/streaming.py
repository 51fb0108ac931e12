"""Streaming throughput and latency of a job on the local runner (the pipeline or the ceiling).

One run, the same for both jobs:

1. a fresh topic and subscription; the job starts as a subprocess
   (`python -m pipeline.main` or `python -m bench.ceiling`) with the operation
   counting hook on (`OCCUPANCY_COUNT_OPS`, see adapters/store.py);
2. warm-up: a heartbeat device (its own train) publishes every 0.5 s until the
   job has written its realtime document, so start-up is not measured; it
   keeps publishing to the end, because the local runner moves its watermark
   only when a pull returns messages (docs/design.md, "Facts about the local runner and emulators");
3. a poller reads every `realtime` document at ~20 Hz and records, per train,
   when `current_value` / `last_updated` changed;
4. the workload is published as fast as the publisher takes it, each message
   stamped with its publish time as event time;
5. done when the poller sees every train at its expected value with
   `last_updated` at its last count event. Throughput = workload messages /
   (done - first publish). Latency of a count event = first poll that saw its
   train's `last_updated` at or past the event's time - its publish time.
"""

import bisect
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Dict, List, Optional

from adapters.store import COUNT_OPS_ENV, make_client
from bench import workload
from bench.measure import cpu_seconds, peak_rss_mb, percentile, read_ops, rounded
from local import stack
from occupancy import wire

_LOGGER = logging.getLogger(__name__)
PROJECT = stack.PROJECT
POLL_INTERVAL_S = 0.05
HEARTBEAT_INTERVAL_S = 0.5


class Poller(threading.Thread):
    """Reads realtime/* at ~20 Hz; keeps per train the (seen_at, value, last_us) changes."""

    def __init__(self, collection: str = "realtime"):
        super().__init__(daemon=True, name="realtime-poller")
        self._client = make_client(PROJECT)
        self._collection = collection
        self.changes: Dict[str, List[tuple]] = {}
        self.latest: Dict[str, tuple] = {}
        self.expected: Optional[Dict[str, tuple]] = None  # train -> (value, last_us), set after publish
        self.done_at: Optional[float] = None
        self.done = threading.Event()
        self.halt = threading.Event()
        self.polls = 0

    def run(self):
        query = self._client.collection(self._collection).select(["current_value", "last_updated"])
        while not self.halt.is_set():
            began = time.time()
            try:
                docs = list(query.stream())
            except Exception as e:  # noqa: BLE001 - a slow emulator must not end the measurement
                _LOGGER.warning("Poll failed: %s", e)
                docs = []
            seen_at = time.time()
            self.polls += 1
            for doc in docs:
                data = doc.to_dict() or {}
                last = data.get("last_updated")
                state = (data.get("current_value"), wire.to_micros(last) if last else 0)
                if self.latest.get(doc.id) != state:
                    self.latest[doc.id] = state
                    self.changes.setdefault(doc.id, []).append((seen_at, *state))
            expected = self.expected
            if (
                expected is not None
                and self.done_at is None
                and all(self.latest.get(train) == want for train, want in expected.items())
            ):
                self.done_at = seen_at
                self.done.set()
            self.halt.wait(max(0.0, POLL_INTERVAL_S - (time.time() - began)))

    def stop(self):
        self.halt.set()
        self.join(10)

    def first_seen(self, train: str, t_us: int) -> Optional[float]:
        """When the train's realtime first showed `last_updated` >= t_us."""
        changes = self.changes.get(train, [])
        lasts, running = [], 0
        for _, _, last in changes:
            running = max(running, last)
            lasts.append(running)
        i = bisect.bisect_left(lasts, t_us)
        return changes[i][0] if i < len(changes) else None


class Heartbeats(threading.Thread):
    """The warm-up device's heartbeats (delta 0) every HEARTBEAT_INTERVAL_S, until stopped."""

    def __init__(self, publisher, topic: str, keys=None):
        super().__init__(daemon=True, name="heartbeats")
        self.publisher, self.topic, self.keys = publisher, topic, keys
        self.halt = threading.Event()
        self.sent = 0

    def run(self):
        seq = 0
        while not self.halt.is_set():
            seq += 1
            payload, attributes = workload.encode(
                workload.WARMUP_TRAIN, workload.WARMUP_DEVICE, seq, 0, int(time.time() * 1000) * 1000, self.keys
            )
            self.publisher.publish(self.topic, payload, **attributes)
            self.sent += 1
            self.halt.wait(HEARTBEAT_INTERVAL_S)

    def stop(self):
        self.halt.set()
        self.join(10)


def job_command(job: str, subscription: str, flush_interval_s: float, reorder_delay_s: float) -> list:
    module = "pipeline.main" if job == "pipeline" else "bench.ceiling"
    return [
        sys.executable,
        "-m",
        module,
        "--runner=BundleBasedDirectRunner",
        "--streaming",
        f"--project={PROJECT}",
        f"--input_subscription={subscription}",
        f"--flush_interval_s={flush_interval_s:g}",
        f"--reorder_delay_s={reorder_delay_s:g}",
    ]


def _tail(path: str, lines: int = 30) -> str:
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def run_streaming(
    job: str,
    spec: workload.WorkloadSpec,
    env: dict,
    work_dir: str,
    flush_interval_s: float,
    reorder_delay_s: float,
    timeout_s: float,
) -> dict:
    """Runs `job` ("pipeline" or "ceiling") over the workload; returns its result row."""
    from google.cloud import pubsub_v1

    name = f"{job}-{uuid.uuid4().hex[:6]}"
    stack.ensure_topic(PROJECT, name, [name])
    topic, subscription = stack.topic_path(PROJECT, name), stack.subscription_path(PROJECT, name)
    ops_path = os.path.join(work_dir, f"{name}.ops")
    log_path = os.path.join(work_dir, f"{name}.log")
    items = workload.build(spec)
    command = job_command(job, subscription, flush_interval_s, reorder_delay_s)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            env=dict(os.environ, **env, **{COUNT_OPS_ENV: ops_path}, PYTHONUNBUFFERED="1"),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    publisher = pubsub_v1.PublisherClient()
    keys = workload.KEYS if job == "pipeline" else None
    heartbeats, poller = Heartbeats(publisher, topic, keys), Poller()
    try:
        started = time.monotonic()
        heartbeats.start()
        poller.start()
        _wait(
            lambda: workload.WARMUP_TRAIN in poller.latest,
            process,
            log_path,
            timeout_s,
            f"{job}: the warm-up train's first realtime write",
        )
        startup_s = time.monotonic() - started
        _LOGGER.info("%s: up after %.1fs; publishing %s messages", job, startup_s, len(items))

        cpu_before = cpu_seconds(process.pid)
        # The pipeline verifies each device's signature (--device_auth=require); the runner
        # ceiling reads the bare JSON.
        sent, first = workload.publish_all(publisher, topic, items, keys)
        publish_s = time.time() - first
        last_times = workload.last_count_times(sent)
        values = workload.truth(sent) if job == "pipeline" else workload.plain_sums(sent)
        poller.expected = {t: (values.get(t, 0), last_times[t]) for t in last_times}
        _wait(poller.done.is_set, process, log_path, timeout_s, f"{job}: realtime == expected")
        elapsed = poller.done_at - first
        reads, writes = read_ops(ops_path)  # now, before the idle tail adds anything
        cpu = cpu_seconds(process.pid)
        rss = peak_rss_mb(process.pid)
    finally:
        heartbeats.stop()
        poller.stop()
        stack.stop_process(process)
        publisher.stop()

    truth = workload.truth(sent)
    finals = {t: (poller.latest.get(t) or (0, 0))[0] for t in truth}
    error = sum(abs(finals[t] - v) for t, v in truth.items())
    latencies, unseen = [], 0
    for event in set(sent):
        if event.delta:
            seen = poller.first_seen(event.train_id, event.t_us)
            if seen is None:
                unseen += 1
            else:
                latencies.append(seen - event.sent_s)
    n = len(items)
    return {
        "messages": n,
        "startup_s": round(startup_s, 1),
        "publish_s": round(publish_s, 2),
        "elapsed_s": round(elapsed, 2),
        "msgs_per_s": round(n / elapsed, 1),
        "latency_p50_s": rounded(percentile(latencies, 50)),
        "latency_p95_s": rounded(percentile(latencies, 95)),
        "latency_p99_s": rounded(percentile(latencies, 99)),
        "latency_samples": len(latencies),
        "latency_unseen": unseen,
        "polls_per_s": round(poller.polls / max(1e-9, time.monotonic() - started), 1),
        "firestore_reads_per_1000": round(1000 * reads / n, 1),
        "firestore_writes_per_1000": round(1000 * writes / n, 1),
        "firestore_reads": reads,
        "firestore_writes": writes,
        "cpu_s": rounded(None if cpu is None or cpu_before is None else cpu - cpu_before, 2),
        "peak_rss_mb": rss,
        "counts_exact": error == 0,
        "count_error": error,
        "final": finals,
        "truth": truth,
        "warmup_heartbeats": heartbeats.sent,
    }


def _wait(predicate, process, log_path: str, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if process.poll() is not None:
            raise RuntimeError(f"{what}: the job exited ({process.returncode}):\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out after {timeout_s:.0f}s waiting for {what}; log {log_path}:\n{_tail(log_path)}"
            )
        time.sleep(0.05)


def work_dir() -> str:
    return tempfile.mkdtemp(prefix="bench-")
