"""`python -m device.publisher` as a subprocess, and what it published read back from the
Pub/Sub emulator (de-duplicated by the `event_id` attribute, as the pipeline does): the helpers
of tests/test_publisher.py and tests/test_publisher_delivery.py."""

import json
import os
import subprocess
import sys
import time

from google.api_core import exceptions as gexc

from device import sources
from device.outbox import Outbox
from local import stack
from local.stack import PROJECT

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_publisher(argv, timeout):
    return subprocess.run(
        [sys.executable, "-m", "device.publisher", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_publisher(
    tmp_path, emulator_host, topic, outbox, *extra, log_name="publisher.log", stdin=subprocess.PIPE, device="door-t"
):
    """`python -m device.publisher` with a stdin pipe the test writes to; log in tmp_path."""
    log = open(tmp_path / log_name, "ab")
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "device.publisher",
                "--device_id",
                device,
                "--topic",
                topic,
                "--emulator",
                emulator_host,
                "--outbox",
                str(outbox),
                "--status_interval_s",
                "0.5",
                "--max_backoff_s",
                "1",
                # Unsigned unless the test gives a key: these read what was published back from
                # Pub/Sub, no pipeline checks it.
                *(() if "--private_key" in extra else ("--unsigned",)),
                *extra,
            ],
            cwd=REPO,
            stdin=stdin,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    finally:
        log.close()


def kill(process):
    """Ends a publisher the test started, if it still runs (it is no group leader: no killpg)."""
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    if process.stdin and not process.stdin.closed:
        process.stdin.close()


def feed(process, lines, pause_s=0.0):
    for line in lines:
        process.stdin.write(line.encode("utf-8") if isinstance(line, str) else line)
        process.stdin.write(b"\n")
        process.stdin.flush()
        if pause_s:
            time.sleep(pause_s)


def log_of(tmp_path, name="publisher.log"):
    return (tmp_path / name).read_text(errors="replace")


def outbox_state(path):
    """(rows pending, last seq handed out) as another process sees the outbox file."""
    return Outbox.peek(str(path))


def create_topic(topic, subscription):
    """The topic and an ordered subscription on it (on the emulator the fixture names)."""
    from google.cloud import pubsub_v1

    pubsub_v1.PublisherClient().create_topic(name=stack.topic_path(PROJECT, topic))
    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.create_subscription(
            request={
                "name": stack.subscription_path(PROJECT, subscription),
                "topic": stack.topic_path(PROJECT, topic),
                "enable_message_ordering": True,
            }
        )
    return Collector(subscription)


class Collector:
    """Pulls (and acknowledges) one subscription; keeps every arrival in order."""

    def __init__(self, subscription):
        from google.cloud import pubsub_v1

        self.client = pubsub_v1.SubscriberClient()
        self.path = stack.subscription_path(PROJECT, subscription)
        self.arrivals = []  # (event_id, payload dict)

    def pull(self):
        try:
            response = self.client.pull(subscription=self.path, max_messages=100, timeout=2)
        except (gexc.DeadlineExceeded, gexc.ServiceUnavailable):
            return
        messages = response.received_messages
        if messages:
            self.client.acknowledge(subscription=self.path, ack_ids=[m.ack_id for m in messages])
        self.arrivals += [(m.message.attributes["event_id"], json.loads(m.message.data)) for m in messages]

    def wait_for(self, count, timeout_s=30):
        def enough():
            self.pull()
            return len({event_id for event_id, _ in self.arrivals}) >= count

        stack.wait_for(enough, timeout_s, interval_s=0.05, what=f"{count} distinct events")


def first_arrivals(*collectors):
    """Payloads de-duplicated by event_id, in order of first arrival; and the duplicate count."""
    seen, out, duplicates = set(), [], 0
    for collector in collectors:
        for event_id, payload in collector.arrivals:
            if event_id in seen:
                duplicates += 1
                continue
            seen.add(event_id)
            out.append(payload)
    return out, duplicates


def deltas_of(lines):
    return [sources.parse_count_line(line) for line in lines]
