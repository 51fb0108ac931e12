"""Simulated door devices that speak MQTT: each connects to the broker as itself (its own
secret) and publishes its signed messages on its own topic, as a real device over MQTT does
(`make run` sends some of the fleet this way, the rest straight to Pub/Sub)."""

import logging
import threading
from typing import Callable, Dict, Optional

from occupancy import mqtt

_LOGGER = logging.getLogger(__name__)


class MqttRoute:
    """One MQTT 5 connection per device; `publish` calls `done(ok)` when the PUBACK comes."""

    def __init__(self, broker_host_port: str, secrets: Dict[str, str]):
        self._host, port = broker_host_port.rsplit(":", 1)
        self._port = int(port)
        self._secrets = secrets
        self._clients = {}
        self._pending: Dict[tuple, Callable] = {}
        self._lock = threading.Lock()

    def device_of(self, attributes: Dict[str, str]) -> Optional[str]:
        """The device a simulated message comes from, if it is one of this route's."""
        device = (attributes.get("event_id") or "").split(":", 1)[0]
        return device if device in self._secrets else None

    def _client(self, device: str):
        client = self._clients.get(device)
        if client is None:
            import paho.mqtt.client as paho
            from paho.mqtt.enums import CallbackAPIVersion

            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{device}", protocol=paho.MQTTv5)
            client.username_pw_set(device, self._secrets[device])
            client.on_publish = lambda c, u, mid, rc, p, device=device: self._on_publish(device, mid, rc)
            client.reconnect_delay_set(1, 10)
            client.connect_async(self._host, self._port)
            client.loop_start()
            self._clients[device] = client
        return client

    def publish(self, device: str, payload: bytes, done: Callable[[bool], None]) -> None:
        with self._lock:
            info = self._client(device).publish(mqtt.topic_for(device), payload, qos=1)
            self._pending[(device, info.mid)] = done

    def _on_publish(self, device, mid, reason_code) -> None:
        with self._lock:
            done = self._pending.pop((device, mid), None)
        # "No matching subscribers" (no bridge subscribed) is not a failure code, but the broker
        # dropped the count: not delivered.
        delivered = not reason_code.is_failure and reason_code.value != mqtt.NO_MATCHING_SUBSCRIBERS
        if not delivered:
            _LOGGER.warning("The broker did not take %s's count: %s", device, reason_code)
        if done is not None:
            done(delivered)

    def close(self) -> None:
        for client in self._clients.values():
            client.disconnect()
            client.loop_stop()
