"""The naive baseline: the prototype's Cloud Function logic, per message, against Firestore.

Per message: read `devices/{id}` for the train, read `realtime/{train}`, write
it back with the new value, add a `history` document. Two ways to run it:

* `sequential`: one worker over the workload's messages in order (its cost,
  and how far it is off without any concurrency: it applies duplicates too);
* `concurrent`: what Cloud Functions do under load, WORKERS threads (each with
  its own Firestore and Pub/Sub clients) pulling from one subscription while
  the workload is published as fast as possible; the read-modify-write of
  concurrent invocations loses updates.

Operations are counted here, where they are made (the emulator does not count).
The prototype had no heartbeats: a delta-0 message is handled like any other.

    python -m bench.naive --mode concurrent --output naive.json   # emulators from the environment
"""

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
import uuid
from typing import Dict, List, Optional

from adapters.store import make_client
from bench import measure, workload
from bench.measure import peak_rss_mb, percentile, rounded
from occupancy import wire

_LOGGER = logging.getLogger(__name__)
PROJECT = "demo-occupancy"
WORKERS = 8


class Prototype:
    """One Cloud Function instance: its own client and operation counts (one thread each)."""

    def __init__(self, project: str = PROJECT):
        self.client = make_client(project)
        self.reads = 0
        self.writes = 0
        self.latencies: List[float] = []

    def handle(self, data: bytes) -> bool:
        """Applies one message; False if it was not an event of a registered device."""
        try:
            event = wire.parse_message(
                data, None, now_us=int(time.time() * 1e6), max_abs_delta=100, max_future_skew_s=300
            )
        except wire.Rejected:
            return False
        device = self.client.collection("devices").document(event.device_id).get()
        self.reads += 1
        if not device.exists:
            return False
        train_id = device.get("train_id")
        ref = self.client.collection("realtime").document(train_id)
        current = ref.get()
        self.reads += 1
        value = max(0, ((current.get("current_value") if current.exists else 0) or 0) + event.delta)
        when = wire.from_micros(event.event_time_us)
        ref.set({"current_value": value, "last_updated": when})
        if event.delta:
            self.latencies.append(time.time() - event.event_time_us / 1e6)
        self.client.collection("history").add({"timestamp": when, "train": train_id, "value": value})
        self.writes += 2
        return True


def final_values(client, trains) -> Dict[str, int]:
    return {
        train: (client.collection("realtime").document(train).get().to_dict() or {}).get("current_value", 0)
        for train in trains
    }


def run_sequential(spec: workload.WorkloadSpec) -> dict:
    items = workload.build(spec)
    prototype = Prototype()
    sent = []
    start = time.perf_counter()
    for payload, _, event, _ in workload.stamp(items):
        sent.append(event)
        prototype.handle(payload)
    elapsed = time.perf_counter() - start
    return _result(spec, len(items), elapsed, sent, [prototype], None)


class _Worker(threading.Thread):
    """A pull loop: pull up to 10, handle each, acknowledge them (as a function acks on return)."""

    def __init__(self, subscription: str, seen: set, lock: threading.Lock, halt: threading.Event):
        super().__init__(daemon=True)
        self.subscription, self.seen, self.lock, self.halt = subscription, seen, lock, halt
        self.prototype = Prototype()
        self.last_done = 0.0
        self.error: Optional[BaseException] = None

    def run(self):
        from google.api_core import exceptions as gexc
        from google.cloud import pubsub_v1

        subscriber = pubsub_v1.SubscriberClient()
        try:
            while not self.halt.is_set():
                try:
                    response = subscriber.pull(subscription=self.subscription, max_messages=10, timeout=5)
                except gexc.DeadlineExceeded:
                    continue
                for received in response.received_messages:
                    self.prototype.handle(received.message.data)
                if response.received_messages:
                    subscriber.acknowledge(
                        subscription=self.subscription, ack_ids=[r.ack_id for r in response.received_messages]
                    )
                    self.last_done = time.time()
                    with self.lock:
                        self.seen.update(r.message.message_id for r in response.received_messages)
        except BaseException as e:  # noqa: BLE001 - reported by the caller, which then fails the run
            self.error = e
        finally:
            subscriber.close()


def run_concurrent(spec: workload.WorkloadSpec, workers: int = WORKERS, timeout_s: float = 600) -> dict:
    from google.cloud import pubsub_v1

    from local import stack

    name = uuid.uuid4().hex[:8]
    stack.ensure_topic(PROJECT, f"naive-{name}", [f"naive-{name}"])
    subscription = stack.subscription_path(PROJECT, f"naive-{name}")
    items = workload.build(spec)
    seen, lock, halt = set(), threading.Lock(), threading.Event()
    pool = [_Worker(subscription, seen, lock, halt) for _ in range(workers)]
    for worker in pool:
        worker.start()
    publisher = pubsub_v1.PublisherClient()
    topic = stack.topic_path(PROJECT, f"naive-{name}")
    sent, first = workload.publish_all(publisher, topic, items)
    try:
        deadline = time.monotonic() + timeout_s
        while len(seen) < len(items):
            errors = [w.error for w in pool if w.error]
            if errors:
                raise RuntimeError(f"naive worker failed: {errors[0]!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"naive workers handled {len(seen)} of {len(items)} messages")
            time.sleep(0.05)
    finally:
        halt.set()
        for worker in pool:
            worker.join(15)
        with contextlib.suppress(Exception):
            publisher.stop()
    elapsed = max(w.last_done for w in pool) - first
    return _result(spec, len(items), elapsed, sent, [w.prototype for w in pool], workers)


def _result(spec, messages: int, elapsed_s: float, sent, prototypes, workers) -> dict:
    truth = workload.truth(sent)
    finals = final_values(prototypes[0].client, sorted(truth))
    latencies = [x for p in prototypes for x in p.latencies] if workers else []
    error = sum(abs(finals.get(t, 0) - v) for t, v in truth.items())
    return {
        "workers": workers or 1,
        "messages": messages,
        "elapsed_s": round(elapsed_s, 3),
        "msgs_per_s": round(messages / elapsed_s, 1),
        # Concurrent only: from the event time (= publish time) until its realtime write returned.
        "latency_p50_s": rounded(percentile(latencies, 50)),
        "latency_p95_s": rounded(percentile(latencies, 95)),
        "latency_p99_s": rounded(percentile(latencies, 99)),
        "firestore_reads_per_1000": round(1000 * sum(p.reads for p in prototypes) / messages, 1),
        "firestore_writes_per_1000": round(1000 * sum(p.writes for p in prototypes) / messages, 1),
        "peak_rss_mb": peak_rss_mb(os.getpid()),
        "counts_exact": error == 0,
        "count_error": error,
        "final": finals,
        "truth": truth,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--mode",
        choices=("sequential", "concurrent"),
        default="sequential",
        help="One worker over the messages, or WORKERS pulling from Pub/Sub.",
    )
    parser.add_argument("--workers", type=int, default=WORKERS, help="Concurrent workers.")
    parser.add_argument("--smoke", action="store_true", help="The smoke workload's defaults.")
    parser.add_argument("--output", type=str, default="-", help="Where to write the JSON result.")
    workload.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    spec = workload.spec_from_args(args, args.smoke)
    result = run_sequential(spec) if args.mode == "sequential" else run_concurrent(spec, args.workers)
    measure.emit(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
