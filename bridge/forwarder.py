"""MQTT in, Pub/Sub out: each device message forwarded unchanged, acknowledged to the broker
only once Pub/Sub has acknowledged it (docs/design.md, "Devices over MQTT").

The bridge holds a persistent MQTT session (MQTT 5, clean start off, a long session expiry)
subscribed at QoS 1 to every device's topic, with manual acks. For each PUBLISH it
publishes the payload, byte for byte, with the attributes the topic proves
(occupancy.mqtt.event_attributes), and sends the PUBACK when the Pub/Sub publish succeeded,
in the order the messages came. The broker sends at most `max_in_flight` unacknowledged
messages (MQTT 5's Receive Maximum) and keeps the rest queued on disk.

When a publish fails (Pub/Sub unreachable, a deadline), the bridge does not retry that
message itself: it drops the connection with the rest unacknowledged, waits (capped
exponential back-off), and connects again, and the broker delivers every unacknowledged
message again. Nothing is acknowledged that Pub/Sub did not take, so nothing is lost by a
crash of the bridge either; a message may be forwarded twice, and the pipeline drops the
copy (its `seq`).

No message can stop the bridge (docs/design.md, "No element stops the job"): whatever one
message does in the bridge's own code is caught and the message forwarded unchanged with
the `device_id` attribute alone; a message Pub/Sub refuses for good (InvalidArgument, too
large) is forwarded again in a form it takes (attributes `device_id` and `bridge_refused`,
the payload cut past the wire format's bound so that the pipeline dead-letters it
`oversized`), and only if that is refused too is it acknowledged unforwarded, logged and
counted (`unforwardable`). A message received and not acknowledged within the publish
timeout makes the bridge reconnect, and /healthz says so.
"""

import collections
import contextlib
import logging
import threading
import time
from typing import Callable, NamedTuple

from bridge import publishing
from bridge.health import Counters
from occupancy import mqtt

_LOGGER = logging.getLogger(__name__)

# A session the broker keeps while the bridge is away (seconds): a week of outage.
SESSION_EXPIRY_S = 7 * 24 * 3600


class _InFlight(NamedTuple):
    client: object  # the paho client (connection) it came on: acks go back there only
    mid: int
    qos: int
    future: object
    sent_at: float  # monotonic
    message: object = None  # what was received, kept to forward it again in a form Pub/Sub takes
    refused: str = ""  # the reason Pub/Sub refused it for good, once forwarded again


def backoff_s(failures: int, cap_s: float, base_s: float = 0.5) -> float:
    return min(cap_s, base_s * 2 ** min(failures - 1, 20))


class Forwarder:
    """The bridge's loop: connect, forward, and on any trouble start over from the broker."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        secret: str,
        client_id: str,
        topic: str,
        publisher_factory: Callable,
        counters: Counters,
        max_in_flight: int = 100,
        publish_timeout_s: float = 30.0,
        max_backoff_s: float = 30.0,
        keepalive_s: int = 30,
        tls: bool = False,
        tls_ca_file: str = None,
    ):
        self._host, self._port = host, port
        self._username, self._secret, self._client_id = username, secret, client_id
        self._topic = topic
        self._publisher_factory = publisher_factory
        self.counters = counters
        self._max_in_flight = max_in_flight
        self._publish_timeout_s = publish_timeout_s
        self._max_backoff_s = max_backoff_s
        self._keepalive_s = keepalive_s
        self._tls, self._tls_ca_file = tls, tls_ca_file
        self._retry = publishing.transient_retry(publish_timeout_s)
        self._lock = threading.Lock()
        self._window = collections.deque()
        self._held = collections.deque()  # received beyond max_in_flight, not yet published
        self._max_held = 10 * max_in_flight
        self._deferred = False  # messages past the hold were left for the next connection
        self._refetch = False
        self._reserved = 0  # window slots given to held messages on their way to Pub/Sub
        # Every message received on this connection and not yet acknowledged: mid -> monotonic time.
        self._pending = collections.OrderedDict()
        self._client = None
        self._publisher = None
        self._trouble = threading.Event()
        self._broker_trouble = False  # the last failure was the broker's, not Pub/Sub's
        self._stopping = threading.Event()

    # ---- the loop ---------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()
        self._trouble.set()

    def wait_stopped(self, timeout_s: float) -> bool:
        return self._stopping.wait(timeout_s)

    def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            forwarded_before = self.counters.forwarded
            try:
                self._connect()
                while not self._trouble.wait(1.0):
                    self._check_overdue()
            except OSError as e:  # the broker is not there (yet)
                self._failed(f"cannot connect to the broker at {self._host}:{self._port}: {e}", broker=True)
            except Exception as e:  # noqa: BLE001 - e.g. no credentials yet: said, waited out, tried again
                _LOGGER.exception("Starting the connection failed")
                self._failed(f"cannot start: {publishing.describe(e)}")
            self._teardown()
            if self._stopping.is_set():
                return
            if self._refetch:
                self._refetch = False
                continue
            # A connection that forwarded something and lasted a while resets the back-off.
            if self.counters.forwarded > forwarded_before and time.monotonic() - started > 10:
                failures = 0
            failures += 1
            delay = backoff_s(failures, self._max_backoff_s)
            _LOGGER.warning(
                "Reconnecting in %.1fs (%s); unacknowledged messages wait at the broker",
                delay,
                self.counters.last_error or "connection lost",
            )
            self.counters.add("reconnects")
            self._stopping.wait(delay)

    def _connect(self) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self._trouble.clear()
        self._publisher = self._publisher_factory()
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=paho.MQTTv5, manual_ack=True
        )
        client.username_pw_set(self._username, self._secret)
        if self._tls:
            mqtt.use_tls(client, self._tls_ca_file)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = self._max_in_flight
        with self._lock:
            self._client = client
        client.connect(self._host, self._port, keepalive=self._keepalive_s, clean_start=False, properties=properties)
        client.loop_start()

    def _check_overdue(self) -> None:
        """A publish the client never completes (seen while Pub/Sub is unreachable) counts as
        failed; so does a message received and neither published nor acknowledged in that time."""
        with self._lock:
            head = self._window[0] if self._window else None
            oldest = next(iter(self._pending.values()), None)
        now = time.monotonic()
        if head is not None and now - head.sent_at > self._publish_timeout_s + 5:
            self.counters.add("publish_errors")
            self._failed(f"no answer from Pub/Sub within {self._publish_timeout_s + 5:g}s")
        elif oldest is not None and now - oldest > self._publish_timeout_s + 5:
            self._failed(f"a message received {now - oldest:.0f}s ago is not forwarded yet")

    def _teardown(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            dropped = len(self._window)
            self._window.clear()
            dropped += len(self._held)
            self._held.clear()
            self._deferred = False
            self._reserved = 0
            self._pending.clear()
            self.counters.set_in_flight(0)
            self.counters.oldest_pending = None
            publisher, self._publisher = self._publisher, None
        self.counters.connected = False
        if client is not None:
            with contextlib.suppress(Exception):  # best effort: the connection is discarded anyway
                client.disconnect()
            client.loop_stop()
        if publisher is not None:
            # Stop in the background: stop() flushes, which can hang while Pub/Sub is away.
            threading.Thread(target=_stop_quietly, args=(publisher,), daemon=True).start()
        if dropped:
            _LOGGER.info("%d messages left unacknowledged: the broker delivers them again", dropped)

    def _failed(self, reason: str, broker: bool = False) -> None:
        self._broker_trouble = broker
        self.counters.failing(reason)
        self._trouble.set()

    # ---- paho's callbacks (its network thread) ------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._failed(f"the broker refused the bridge: {reason_code}", broker=True)
            return
        _LOGGER.info(
            "Connected to the broker at %s:%s (session %s)",
            self._host,
            self._port,
            "resumed" if flags.session_present else "new",
        )
        client.subscribe(mqtt.TOPIC_FILTER, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        # Healthy only once subscribed: until then, in a new session, the broker answers a
        # device's count "No matching subscribers" and holds it for no one (the device keeps it).
        if client is not self._client:
            return
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            self._failed(f"the broker refused the bridge's subscription: {refused[0]}", broker=True)
            return
        self.counters.connected = True
        if self._broker_trouble:
            self.counters.recovered()
        _LOGGER.info("Subscribed to %s", mqtt.TOPIC_FILTER)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if client is self._client and not self._stopping.is_set():
            self._failed(f"disconnected from the broker: {reason_code}", broker=True)

    def _on_message(self, client, userdata, message) -> None:
        self.counters.add("received")
        with self._lock:
            if client is not self._client:
                return
            self._pending.setdefault(message.mid, time.monotonic())
            self._set_oldest_pending()
            if self._held or len(self._window) + self._reserved >= self._max_in_flight:
                # The broker sent more than Receive Maximum (mosquitto 2.0.11 does after a session
                # resumes): held here, published as the window frees; past the cap left
                # unacknowledged, fetched again by a reconnect once all before it are done.
                if len(self._held) < self._max_held:
                    self._held.append(message)
                else:
                    self._pending.pop(message.mid, None)  # not this connection's to forward
                    self._set_oldest_pending()
                    self._deferred = True
                    self.counters.add("deferred")
                return
        self._forward(client, message)

    def _set_oldest_pending(self) -> None:
        self.counters.oldest_pending = next(iter(self._pending.values()), None)

    def _forward(self, client, message, reserved: bool = False, refused: str = "") -> None:
        """Publishes one message; `reserved`: its window slot was taken from the held queue;
        `refused`: why Pub/Sub refused it for good (it goes in the form Pub/Sub takes)."""
        try:
            data, attributes = publishing.publishable(message, refused)
        except Exception as e:  # noqa: BLE001 - no message may stop the bridge: forwarded as it came
            _LOGGER.exception("Reading message %s failed; forwarded unchanged", message.mid)
            self.counters.add("attribute_errors")
            data, attributes = bytes(message.payload or b""), {"bridge_error": publishing.describe(e)[:200]}
        device = attributes.get("device_id", "")
        try:
            future = self._publisher.publish(
                self._topic,
                data,
                ordering_key=device,
                retry=self._retry,
                timeout=self._publish_timeout_s,
                **attributes,
            )
        except Exception as e:  # noqa: BLE001 - not forwarded: decided by the kind of error
            future = publishing.Failed(e)
        with self._lock:
            if reserved and client is self._client:
                self._reserved -= 1
            if client is not self._client:
                return
            entry = _InFlight(client, message.mid, message.qos, future, time.monotonic(), message, refused)
            self._window.append(entry)
            self.counters.set_in_flight(len(self._window))
        future.add_done_callback(self._on_published)

    # ---- Pub/Sub's callbacks (its threads) ----------------------------------------------

    def _on_published(self, _future) -> None:
        """Acks the prefix of the window that Pub/Sub acknowledged, in arrival order; forwards
        held messages into the room that made. A message Pub/Sub refused for good is forwarded
        again in a form it takes (once), then acknowledged unforwarded; the client paused its
        device's ordering key for it, so the key is resumed and the messages of that device
        refused for the pause alone are forwarded again behind it, in their order."""
        acked, room, again, refused_keys = [], [], [], set()
        with self._lock:
            while self._window and self._window[0].future.done():
                entry = self._window[0]
                error = entry.future.exception()
                key = publishing.ordering_key(entry.message)
                if error is not None and key in refused_keys and publishing.paused(error):
                    self._window.popleft()
                    again.append(entry._replace(refused=""))
                    self._reserved += 1  # its slot, until it is in the window again
                    continue
                if error is not None and not publishing.permanent(error):
                    self.counters.add("publish_errors")
                    self._failed(f"publish failed: {publishing.describe(error)}")
                    break
                if error is not None and not entry.refused:
                    self.counters.add("refused_by_pubsub")
                    _LOGGER.warning(
                        "Pub/Sub refused message %s for good (%s); forwarded cut", entry.mid, publishing.describe(error)
                    )
                    self._window.popleft()
                    again.append(entry._replace(refused=publishing.describe(error)[:200]))
                    refused_keys.add(key)
                    self._reserved += 1
                    continue
                if error is not None:
                    self.counters.add("unforwardable")
                    _LOGGER.error(
                        "Message %s could not be forwarded in any form (%s); acknowledged: first bytes %r",
                        entry.mid,
                        publishing.describe(error),
                        bytes(entry.message.payload or b"")[:200],
                    )
                self._window.popleft()
                acked.append(entry)
            current = self._client
            while (
                self._held and len(self._window) + self._reserved < self._max_in_flight and not self._trouble.is_set()
            ):
                room.append(self._held.popleft())
                self._reserved += 1
            for entry in acked:
                self._pending.pop(entry.mid, None)
            self._set_oldest_pending()
            self.counters.set_in_flight(len(self._window))
            drained = self._deferred and not self._window and not self._held and not room and not again
            publisher = self._publisher
        for entry in acked:
            if entry.client is current and entry.qos > 0:
                entry.client.ack(entry.mid, entry.qos)
        if acked:
            self.counters.add("forwarded", len(acked))
            if not self._trouble.is_set():
                self.counters.recovered()
        for key in refused_keys:
            resume = getattr(publisher, "resume_publish", None)
            if resume is not None:
                resume(self._topic, key)
        # Ahead of the held ones (a new connection would bring them first too); acks keep order
        # only among what is in the window, and the broker redelivers all unacknowledged anyway.
        for entry in again:
            self._forward(current, entry.message, reserved=True, refused=entry.refused)
        for message in room:
            self._forward(current, message, reserved=True)
        if drained:  # what was deferred comes again on a new connection, no back-off needed
            self._refetch = True
            self._trouble.set()


def _stop_quietly(publisher) -> None:
    with contextlib.suppress(Exception):  # best effort: the client is discarded anyway
        publisher.stop()
