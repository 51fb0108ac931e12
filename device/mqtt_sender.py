"""The publisher's MQTT sender: drains the outbox to the broker, as IoT Core's devices did.

Each signed count goes out at QoS 1 on `/devices/{device_id}/events` (occupancy/mqtt.py),
the device connected as itself (username = device id, password = its broker secret). A row
leaves the outbox only once the broker's PUBACK says Success; a PUBACK that refuses (MQTT 5
reason codes: not authorized, packet too large) keeps it, and so does "No matching
subscribers": the broker took the count but holds it for nobody (no bridge has ever
subscribed, or its session expired), so it would be dropped there. Like device/sender.py:
in order, capped exponential back-off with jitter, and a refusal before the first success
is a configuration error that stops the publisher (exit 2) with every count kept.

To a broker off the device's machine the connection is TLS, the broker's certificate verified
(host name included) against `tls_ca_file` or the system's CAs (occupancy.mqtt.use_tls); a
certificate that does not verify before the first count got through is a configuration error
too. Plaintext is for a broker on loopback, or said on purpose (`--mqtt_insecure`).
"""

import logging
import ssl
import threading
import time
from typing import Callable, Optional

from device.outbox import Outbox
from device.sender import OutboxDrain, Stats, backoff_s, describe_error
from occupancy import mqtt

_LOGGER = logging.getLogger(__name__)


class BrokerRefused(Exception):
    """The broker refused the connection or a publish (wrong secret, disabled, not its topic)."""


class NoSubscriber(Exception):
    """The broker took a count but no bridge is subscribed to hold it for: it is kept and retried."""


class _Connection:
    """One MQTT 5 connection; records each PUBACK's reason code by message id."""

    def __init__(self, host: str, port: int, device_id: str, secret: str, keepalive_s: int, tls, tls_ca_file):
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self._acks = {}
        self._changed = threading.Condition()
        self._connack = None
        self.lost = False
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=paho.MQTTv5)
        self.client.username_pw_set(device_id, secret)
        if tls:
            mqtt.use_tls(self.client, tls_ca_file)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect
        self.client.connect(host, port, keepalive=keepalive_s, clean_start=True)
        self.client.loop_start()

    def wait_connected(self, timeout_s: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._connack is not None or self.lost, timeout_s)
            reason = self._connack
        if reason is None:
            raise TimeoutError(f"no CONNACK from the broker within {timeout_s:g}s")
        if reason.is_failure:
            raise BrokerRefused(f"the broker refused the connection: {reason}")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self._changed:
            self._connack = reason_code
            self._changed.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self._changed:
            self._acks[mid] = reason_code
            self._changed.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._changed:
            self.lost = True
            self._changed.notify_all()

    def wait_ack(self, mid: int, deadline: float):
        """The PUBACK's reason code, or None if none came before `deadline` or the link broke."""
        with self._changed:
            self._changed.wait_for(lambda: mid in self._acks or self.lost, max(0.0, deadline - time.monotonic()))
            return self._acks.pop(mid, None)

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


class MqttSender(OutboxDrain):
    """Drains the outbox to the broker in order; deletes rows only after a successful PUBACK."""

    def __init__(
        self,
        outbox: Outbox,
        device_id: str,
        broker: str,
        secret: str,
        stats: Stats,
        *,
        window: int,
        publish_timeout_s: float,
        max_backoff_s: float,
        sign: Optional[Callable[[bytes], bytes]] = None,
        keepalive_s: int = 30,
        tls: bool = False,
        tls_ca_file: Optional[str] = None,
    ):
        super().__init__(outbox, name="outbox-mqtt-sender", window=window)
        host, port = broker.rsplit(":", 1)
        self._host, self._port = host, int(port)
        self._device_id, self._secret = device_id, secret
        self.topic = mqtt.topic_for(device_id)
        self._stats, self._sign = stats, sign
        self._timeout_s, self._max_backoff_s = publish_timeout_s, max_backoff_s
        self._keepalive_s = keepalive_s
        self._tls, self._tls_ca_file = tls, tls_ca_file
        self._connection: Optional[_Connection] = None
        self._published_once = False
        self._failures = 0

    def _recovered(self) -> None:
        if self._failures:
            _LOGGER.info("The broker takes counts again after %d failed attempts", self._failures)
        self._failures = 0

    def _finish(self) -> None:
        self._disconnect()

    def _send(self, rows) -> Optional[BaseException]:
        """Publishes `rows` in order; deletes the acknowledged prefix; returns the first error."""
        acked, error = [], None
        try:
            connection = self._connect()
            sent = []
            for row in rows:
                payload, _ = row.encode()
                if self._sign is not None:
                    payload = self._sign(payload)
                sent.append((row, connection.client.publish(self.topic, payload, qos=1)))
            deadline = time.monotonic() + self._timeout_s
            for row, info in sent:
                reason = connection.wait_ack(info.mid, deadline)
                if reason is None:
                    raise TimeoutError(
                        f"no PUBACK within {self._timeout_s:g}s" + (" (connection lost)" if connection.lost else "")
                    )
                if reason.is_failure:
                    raise BrokerRefused(f"the broker refused a count on {self.topic}: {reason}")
                if reason.value == mqtt.NO_MATCHING_SUBSCRIBERS:
                    raise NoSubscriber(
                        f"the broker has no subscriber for {self.topic} (is the bridge running, "
                        "with its session kept?): counts kept"
                    )
                acked.append(row.id)
        except (OSError, TimeoutError, BrokerRefused, NoSubscriber) as e:
            error = e
        if acked:
            self._outbox.delete(acked)
            self._stats.add("published", len(acked))
            self._published_once = True
        return error

    def _connect(self) -> _Connection:
        if self._connection is not None and self._connection.lost:
            self._disconnect()
        if self._connection is None:
            connection = _Connection(
                self._host, self._port, self._device_id, self._secret, self._keepalive_s, self._tls, self._tls_ca_file
            )
            try:
                connection.wait_connected(self._timeout_s)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - best effort: the connection is discarded anyway
                pass

    def _failed(self, error: BaseException) -> bool:
        """Records a failed attempt and waits out the back-off; False when the error is fatal."""
        self._disconnect()
        self._stats.error(describe_error(error))
        if isinstance(error, BrokerRefused) and not self._published_once:
            self.fatal = f"{error} (device id, broker secret, or not registered with 'mqtt secret'?)"
            return False
        if isinstance(error, ssl.SSLCertVerificationError) and not self._published_once:
            self.fatal = (
                f"the broker's certificate does not verify: {error.verify_message or error} (--mqtt_ca_file, "
                "and a --broker host name the certificate names)"
            )
            return False
        self._failures += 1
        if self._failures == 1:
            _LOGGER.warning(
                "Sending to the broker at %s:%s failed (%s); counts stay in the outbox and "
                "are retried with back-off up to %.0fs",
                self._host,
                self._port,
                describe_error(error),
                self._max_backoff_s,
            )
        self._wait(backoff_s(self._failures, self._max_backoff_s))
        return True
