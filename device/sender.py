"""The publisher's sender thread: drains the outbox to Pub/Sub in order and deletes a row only
once Pub/Sub acknowledged it; capped exponential back-off with jitter while it cannot.
"""

import contextlib
import logging
import random
import threading
import time
from typing import Callable, Optional

from device.outbox import Outbox

_LOGGER = logging.getLogger(__name__)


# ---- status -------------------------------------------------------------------------


class Stats:
    """Counters the status line shows; updated by both threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self.published = self.read = self.malformed = self.heartbeats = 0
        self.last_error = ""
        self.last_append = time.monotonic()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)
            if name in ("read", "heartbeats"):
                self.last_append = time.monotonic()

    def error(self, text: str) -> None:
        with self._lock:
            self.last_error = f"{time.strftime('%H:%M:%S')} {text}"

    def line(self, outbox: Outbox) -> str:
        pending, age = outbox.pending(), outbox.oldest_age_s()
        with self._lock:
            return (
                f"published {self.published}, pending {pending}"
                + (f" (oldest {age:.0f}s)" if age is not None and pending else "")
                + f", read {self.read}, malformed {self.malformed}, heartbeats {self.heartbeats}, "
                f"last error: {self.last_error or 'none'}"
            )


# ---- sending ------------------------------------------------------------------------


def describe_error(error: BaseException) -> str:
    """One line: the exception's class and message (gRPC messages can be multi-line)."""
    text = " ".join(str(error).split()) or repr(error)
    return f"{type(error).__name__}: {text}"[:300]


def backoff_s(failures: int, cap_s: float, base_s: float = 0.5, rng=random) -> float:
    """Capped exponential back-off with jitter: in [d/2, d] for d = min(cap, base * 2^(n-1))."""
    delay = min(cap_s, base_s * 2 ** min(failures - 1, 30))
    return delay * rng.uniform(0.5, 1.0)


def _fatal_at_first_publish(error: BaseException, topic: str) -> Optional[str]:
    """The one-line reason to stop, for errors that mean the configuration is wrong."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(error, gexc.NotFound):
        return f"topic {topic} does not exist"
    if isinstance(error, gexc.PermissionDenied):
        return (
            f"permission denied publishing to {topic}: the device's account needs "
            f"roles/pubsub.publisher on that topic ({describe_error(error)})"
        )
    # Not auth_exc.TransportError: a device that boots offline cannot reach the token
    # endpoint either, and that is an outage to wait out, not a configuration error.
    if isinstance(error, (gexc.Unauthenticated, auth_exc.DefaultCredentialsError)) or (
        isinstance(error, auth_exc.RefreshError) and not getattr(error, "retryable", False)
    ):
        return f"Pub/Sub rejected the credentials: {describe_error(error)}"
    if isinstance(error, gexc.InvalidArgument):
        return f"Pub/Sub refused to publish to {topic}: {describe_error(error)}"
    return None


class OutboxDrain(threading.Thread):
    """The loop both senders share: take the outbox's oldest rows, send them in order, and on a
    failure back off (the subclass says how long and whether it is fatal). Subclasses give
    `_send(rows) -> error or None`, `_failed(error) -> keep going?`, `_recovered()` and
    optionally `_finish()` (run when the loop ends)."""

    def __init__(self, outbox: Outbox, *, name: str, window: int):
        super().__init__(name=name, daemon=True)
        self._outbox = outbox
        self._window = window
        self._halt = threading.Event()
        self._wake = threading.Event()
        self.fatal: Optional[str] = None

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()

    def retry_now(self) -> None:
        """Cuts a back-off wait short (used when draining before exit)."""
        self._wake.set()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                if not self._outbox.wait_for_rows(0.5):
                    continue
                error = self._send(self._outbox.oldest(self._window))
                if error is None:
                    self._recovered()
                elif not self._failed(error):
                    return
        except Exception:  # a bug, or the outbox disk failing: say so, the main loop exits
            if not self._halt.is_set():
                _LOGGER.exception("%s stopped by an error", self.name)
                self.fatal = "the sender stopped by an internal error (see the log above)"
        finally:
            self._finish()

    def _finish(self) -> None:
        pass

    def _wait(self, delay_s: float) -> None:
        """A back-off wait that stop() or retry_now() cut short."""
        self._wake.wait(delay_s)
        self._wake.clear()


class Sender(OutboxDrain):
    """Drains the outbox to Pub/Sub in order; deletes rows only after their publish is acknowledged."""

    def __init__(
        self,
        outbox: Outbox,
        topic: str,
        client_factory: Callable,
        stats: Stats,
        *,
        window: int,
        publish_timeout_s: float,
        max_backoff_s: float,
        sign: Optional[Callable[[bytes], bytes]] = None,
    ):
        super().__init__(outbox, name="outbox-sender", window=window)
        # The device's signature over each payload (occupancy.identity.Signer.sign); None: unsigned.
        self._sign = sign
        self._topic = topic
        self._client_factory = client_factory
        self._client = None
        self._stats = stats
        self._publish_timeout_s = publish_timeout_s
        self._max_backoff_s = max_backoff_s
        self._published_once = False
        self._failures = 0
        self._failing_since = None
        self._last_error_type = None

    def _send(self, rows) -> Optional[BaseException]:
        """Publishes `rows` in order; deletes the acknowledged prefix; returns the first error."""
        futures, error = [], None
        try:
            client = self._get_client()
            for row in rows:
                payload, attributes = row.encode()
                if self._sign is not None:
                    payload = self._sign(payload)
                # retry=None: one attempt per call; this class does the retrying, with back-off.
                futures.append(
                    client.publish(
                        self._topic,
                        payload,
                        ordering_key=row.device_id,
                        retry=None,
                        timeout=self._publish_timeout_s,
                        **attributes,
                    )
                )
        except Exception as e:  # noqa: BLE001 - e.g. the client could not be created: retried like a failed publish
            error = e
        acked = []
        for row, future in zip(rows, futures):
            try:
                future.result(timeout=self._publish_timeout_s + 5)
            # Any failure means "not acknowledged": the row stays and is retried. With an
            # ordering key, the rows after a failed one fail too, so the acked ones are a prefix.
            except Exception as e:  # noqa: BLE001 - not acknowledged: kept and retried, never lost
                error = error or e
                break
            acked.append(row.id)
        if acked:
            self._outbox.delete(acked)
            self._stats.add("published", len(acked))
            self._published_once = True
        return error

    def _get_client(self):
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _drop_client(self) -> None:
        """Forgets the client: a new one gets a new channel, and no paused ordering key.

        gRPC backs off reconnecting (up to two minutes) after a refused connection, and a
        call fails at once meanwhile: a fresh channel notices at once that Pub/Sub is back.
        """
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # best effort: the client is discarded anyway
                client.stop()

    def _failed(self, error: BaseException) -> bool:
        """Records a failed attempt and waits out the back-off; False when the error is fatal."""
        self._drop_client()
        reason = None if self._published_once else _fatal_at_first_publish(error, self._topic)
        if reason:
            self.fatal = reason
            self._stats.error(describe_error(error))
            return False
        self._failures += 1
        self._stats.error(describe_error(error))
        if self._failures == 1:
            self._failing_since = time.monotonic()
            _LOGGER.warning(
                "Publishing to %s failed (%s); counts stay in the outbox and are retried with back-off up to %.0fs",
                self._topic,
                describe_error(error),
                self._max_backoff_s,
            )
        elif type(error) is not self._last_error_type:
            # A new kind of failure is news (e.g. reachable again, but the topic is gone).
            _LOGGER.warning("Publishing to %s still fails, now with %s", self._topic, describe_error(error))
        else:
            _LOGGER.debug("Publish attempt %d failed: %s", self._failures, describe_error(error))
        self._last_error_type = type(error)
        self._wait(backoff_s(self._failures, self._max_backoff_s))
        return True

    def _recovered(self) -> None:
        if self._failures:
            _LOGGER.info(
                "Publishing to %s works again after %.0fs and %d failed attempts; %d counts still pending",
                self._topic,
                time.monotonic() - self._failing_since,
                self._failures,
                self._outbox.pending(),
            )
        self._failures = 0
        self._last_error_type = None


def make_client_factory(credentials, batch_max_messages: int, batch_max_latency_s: float) -> Callable:
    """A function that creates a PublisherClient with ordering and the batching settings."""
    from google.cloud import pubsub_v1

    def create():
        kwargs = {"credentials": credentials} if credentials is not None else {}
        return pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(
                max_messages=batch_max_messages, max_latency=batch_max_latency_s
            ),
            # Ordering: a failed batch fails every later one of the device, so what Pub/Sub
            # has acknowledged is always a prefix of the outbox, in seq order.
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
            **kwargs,
        )

    return create
