"""`make run`'s MQTT side: a mosquitto broker, broker secrets for some of the simulated doors,
the registry synced to the broker every few seconds, and the bridge (python -m bridge)
forwarding to the Pub/Sub topic the pipeline reads."""

import logging
import os
import threading
import types
from typing import Dict, List, Optional

from bridge.health import probe
from local import stack
from local.broker import Broker, BrokerError
from local.emulators import start_on_a_port
from occupancy import mqtt
from registry import mqtt_commands

_LOGGER = logging.getLogger(__name__)
SYNC_EVERY_S = 5.0
BRIDGE_START_S = 60.0


class MqttSide:
    def __init__(self, directory: str):
        self.broker = Broker(directory=directory)
        self.directory = directory
        self.bridge = None
        self.health_port: Optional[int] = None  # picked as the bridge starts
        self.secrets: Dict[str, str] = {}
        self._stop_sync = threading.Event()
        self._sync: Optional[threading.Thread] = None

    def start(self, client, devices: List[str], project: str, topic: str, log_path: str) -> "MqttSide":
        """Starts the broker, gives `devices` their broker secrets, the bridge its own, and starts
        the sync loop and the bridge."""
        self.broker.start()
        for device in devices:
            path = os.path.join(self.directory, f"{device}.secret")
            if os.path.exists(path):
                os.unlink(path)
            self.secrets[device] = mqtt.write_secret_file(path)
            mqtt_commands.set_secret(client, "devices", device, self.secrets[device], timeout=30)
        bridge_secret = os.path.join(self.directory, "bridge.secret")
        if not os.path.exists(bridge_secret):
            mqtt.write_secret_file(bridge_secret)
        mqtt_commands.register_bridge(client, "devices", mqtt.BRIDGE, mqtt.read_secret_file(bridge_secret), timeout=30)
        sync_args = types.SimpleNamespace(
            devices_collection="devices",
            timeout=10,
            password_file=self.broker.password_file,
            acl_file=self.broker.acl_file,
            pid_file=self.broker.pid_file,
        )
        mqtt_commands.sync_once(client, sync_args)  # before any device connects
        self._sync = threading.Thread(
            target=mqtt_commands.sync_forever,
            args=(client, sync_args, self._stop_sync, SYNC_EVERY_S),
            name="mqtt-sync",
            daemon=True,
        )
        self._sync.start()

        def start(port: int) -> bool:
            self._start_bridge(project, bridge_secret, topic, log_path, port)
            return self.bridge.poll() is None

        # A free port picked may be taken before the bridge binds it: then another is tried.
        self.health_port, up = start_on_a_port(start)
        if not up:
            raise BrokerError(f"the bridge exited with code {self.bridge.returncode} (log: {log_path})")
        return self

    def _start_bridge(self, project: str, secret: str, topic: str, log_path: str, health_port: int) -> None:
        """Starts the bridge; returns once it is healthy or has exited."""
        command = stack.bridge_command(
            project,
            self.broker.host_port,
            secret,
            topic,
            os.environ["PUBSUB_EMULATOR_HOST"],
            health_port,
            "--status_interval_s",
            "30",
        )
        self.bridge = stack.start_command(command, log_path, env={"PYTHONUNBUFFERED": "1"})
        # Until the bridge's subscription is granted, mosquitto takes a door's count and holds
        # it for no one ("No matching subscribers"): the doors start once the bridge is healthy.
        try:
            stack.wait_for(
                lambda: self.bridge.poll() is not None or probe(health_port, timeout_s=1)[0] == 200,
                BRIDGE_START_S,
                what="the bridge subscribed at the broker",
            )
        except TimeoutError as e:
            raise BrokerError(f"{e} (bridge log: {log_path})") from None

    def counters(self) -> Optional[dict]:
        """The bridge's counters, or None while it does not answer."""
        if self.health_port is None:
            return None
        status, body = probe(self.health_port, timeout_s=1)
        return body if status is not None else None

    def stop(self) -> None:
        self._stop_sync.set()
        if self.bridge is not None:
            stack.stop_process(self.bridge)
            self.bridge = None
        self.broker.stop()
