"""What `make run` publishes, recorded as a Pub/Sub Cloud Storage subscription records it.

In production the archive is a Cloud Storage subscription on the events topic, in its text
format: each message's data and a newline, in files it starts every few minutes. Here an
`Archiver` pulls a subscription of its own and writes the same to a local directory, so
that a replay (`python -m pipeline.main --archive=...`, docs/operations.md) can be run on
what a local run saw. A message is acknowledged only after its line is written and flushed:
a crash loses nothing, and a message written twice (redelivered before its ack) is counted
once by the job (per-device seq).
"""

import datetime
import logging
import os
import threading
import time

from google.api_core import exceptions as gexc

_LOGGER = logging.getLogger(__name__)
# How long a stop keeps pulling what the subscription still holds.
DRAIN_S = 5.0


class Archiver(threading.Thread):
    """Pulls `subscription` into `<directory>/<UTC start>.txt` files, a new one every `rotate_s`."""

    def __init__(self, subscription_path: str, directory: str, rotate_s: float = 60.0):
        super().__init__(daemon=True, name="archiver")
        self._subscription, self._directory, self._rotate_s = subscription_path, directory, rotate_s
        self._halt = threading.Event()
        self._file, self._opened_at = None, None
        self.archived = 0
        self.error = None

    def _current(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        if self._file is None or (now - self._opened_at).total_seconds() >= self._rotate_s:
            if self._file is not None:
                self._file.close()
            os.makedirs(self._directory, exist_ok=True)
            name = now.strftime("%Y%m%dT%H%M%S.%fZ") + ".txt"
            self._file, self._opened_at = open(os.path.join(self._directory, name), "ab"), now
        return self._file

    def _pull_once(self, subscriber, timeout_s: float) -> int:
        try:
            response = subscriber.pull(subscription=self._subscription, max_messages=500, timeout=timeout_s)
        except (gexc.DeadlineExceeded, gexc.ServiceUnavailable):
            return 0  # nothing in time, or the emulator busy: pull again
        received = response.received_messages
        if not received:
            return 0
        f = self._current()
        for message in received:
            f.write(message.message.data + b"\n")
        f.flush()
        subscriber.acknowledge(subscription=self._subscription, ack_ids=[m.ack_id for m in received])
        self.archived += len(received)
        return len(received)

    def run(self):
        from google.cloud import pubsub_v1

        try:
            with pubsub_v1.SubscriberClient() as subscriber:
                while not self._halt.is_set():
                    self._pull_once(subscriber, timeout_s=1)
                deadline = time.monotonic() + DRAIN_S
                while time.monotonic() < deadline and self._pull_once(subscriber, timeout_s=1):
                    pass  # what came before the stop, for at most DRAIN_S
        except Exception as e:  # noqa: BLE001 - reported by stop(), in the main thread
            self.error = e
            _LOGGER.exception("The archiver stopped")
        finally:
            if self._file is not None:
                self._file.close()

    def stop(self) -> int:
        """Stops after writing what the subscription still holds; the messages archived."""
        self._halt.set()
        self.join(timeout=60)
        if self.error is not None:
            raise self.error
        return self.archived
