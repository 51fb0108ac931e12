"""Scenario 10: doors over MQTT while the bridge is SIGKILLed 5 times (2 in the short form),
the broker restarted once, and Pub/Sub unreachable for the bridge for 20 s (8 s short).

Real publishers (`python -m device.publisher --transport mqtt`, one per door, each with its
outbox and its own broker secret from the registry) send through a real mosquitto and the
real bridge (`python -m bridge`, its Pub/Sub traffic through a cuttable proxy) into the
running pipeline. Three hostile payloads (200 kB of random bytes, binary, not UTF-8) come
over MQTT from a device's own credential (a device of its own: the broker gives each
username one connection). Expected: realtime = the sensors' counts, every
door's seqs continuous, 0 lost, 0 double counted, the three hostile payloads dead letters,
the bridge alive and healthy at the end.
"""

import os
import random
import subprocess
import time
import types

from adapters import registry
from bridge.health import probe
from faults.harness import Scenario
from faults.mqtt_client import MqttClient
from faults.proxy import Proxy
from faults.publisher_kills import Door, count_as_truth, kill_running, seqs_continuous
from local import stack
from local.broker import Broker
from local.emulators import free_port
from local.stack import PROJECT
from occupancy import mqtt
from registry import mqtt_commands

NAME = "bridge_kills"
# Within the broker's packet bound (a larger packet is refused by the broker itself: tests/test_mqtt_broker.py).
HOSTILE = (os.urandom(16_000), bytes(range(256)) * 4, "zähler".encode("latin-1") * 10)


class Bridge:
    """The bridge process, restartable; its Pub/Sub traffic through `proxy`."""

    def __init__(self, broker: Broker, proxy: Proxy, topic: str, secret_file: str, work_dir: str):
        self.health_port = free_port()
        self.command = stack.bridge_command(
            PROJECT,
            broker.host_port,
            secret_file,
            topic,
            proxy.host_port,
            self.health_port,
            "--max_backoff_s",
            "1",
            "--publish_timeout_s",
            "5",
            "--status_interval_s",
            "5",
        )
        self.log = os.path.join(work_dir, "bridge.log")
        self.process = None

    def start(self):
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=10)

    def health(self):
        """(HTTP status, body) of GET /healthz, or (None, {}) if it does not answer."""
        return probe(self.health_port)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


def setup_credentials(scenario, broker: Broker, devices, work_dir: str) -> str:
    """Broker secrets for `devices` and the bridge, in the registry; the broker's files synced.
    Returns the bridge's secret file."""
    for device in devices:
        path = os.path.join(work_dir, f"{device}.secret")
        if os.path.exists(path):
            os.unlink(path)
        mqtt_commands.set_secret(scenario.client, "devices", device, mqtt.write_secret_file(path))
    bridge_secret = os.path.join(work_dir, "bridge.secret")
    if not os.path.exists(bridge_secret):
        mqtt.write_secret_file(bridge_secret)
    mqtt_commands.register_bridge(scenario.client, "devices", mqtt.BRIDGE, mqtt.read_secret_file(bridge_secret))
    mqtt_commands.sync_once(
        scenario.client,
        types.SimpleNamespace(
            devices_collection="devices",
            timeout=30,
            password_file=broker.password_file,
            acl_file=broker.acl_file,
            pid_file=broker.pid_file,
        ),
    )
    return bridge_secret


def run(context, short: bool) -> dict:
    kills, cut_s, steps = (2, 8, 200) if short else (5, 20, 500)
    scenario = Scenario(context, NAME, trains=2, doors=1, seed=7)
    rng = random.Random(7)
    broker = Broker(directory=os.path.join(context.work_dir, "broker"), autosave_s=1)
    proxy = Proxy(os.environ["PUBSUB_EMULATOR_HOST"]).start()
    doors, bridge = [], None
    try:
        broker.start()
        devices = [f"{train}-mqtt{i}" for train in scenario.devices.trains for i in range(2)]
        hostile_device = f"{sorted(scenario.devices.trains)[0]}-hostile"
        for device in devices + [hostile_device]:
            train = device.split("-")[0]
            registry.register_device(scenario.client, "devices", device, train)
            scenario.devices.keys.register(scenario.client, "devices", [device])
        bridge_secret = setup_credentials(scenario, broker, devices + [hostile_device], context.work_dir)
        bridge = Bridge(broker, proxy, scenario.topic_name, bridge_secret, context.work_dir)
        bridge.start()
        pipeline = scenario.start_pipeline()
        scenario.warm_up(pipeline)
        for device in devices:
            door = Door(
                scenario,
                device,
                device.split("-")[0],
                context.work_dir,
                transport_args=[
                    "--transport",
                    "mqtt",
                    "--broker",
                    broker.host_port,
                    "--mqtt_secret_file",
                    os.path.join(context.work_dir, f"{device}.secret"),
                ],
            )
            doors.append(door)
            door.start()
            door.count(100)  # a margin: no arrival order reaches the clamp at 0
        totals = {train: 200 for train in scenario.devices.trains}
        events = {int(steps * f): "kill" for f in (0.1, 0.25, 0.4, 0.55, 0.7)[:kills]}
        events[int(steps * 0.5)] = "broker_restart"
        events[int(steps * 0.8)] = "pubsub_cut"
        events[int(steps * 0.3)] = "hostile"
        cut_until, done = None, {"kill": 0, "broker_restart": 0, "pubsub_cut": 0, "hostile": 0}
        for step in range(steps):
            door = rng.choice(doors)
            delta = rng.choice([1, 2, 3]) if rng.random() < 0.5 or totals[door.train] < 60 else -rng.choice([1, 2, 3])
            door.count(delta)
            totals[door.train] += delta
            event = events.get(step)
            if event == "kill":
                bridge.kill()
                bridge.start()
            elif event == "broker_restart":
                broker.restart()
            elif event == "pubsub_cut":
                proxy.cut()
                cut_until = time.monotonic() + cut_s
            elif event == "hostile":
                sender = MqttClient(
                    broker,
                    hostile_device,
                    mqtt.read_secret_file(os.path.join(context.work_dir, f"{hostile_device}.secret")),
                )
                for payload in HOSTILE:
                    sender.publish(mqtt.topic_for(hostile_device), payload)
                sender.close()
            if event:
                done[event] += 1
            if cut_until is not None and time.monotonic() >= cut_until:
                proxy.restore()
                cut_until = None
            time.sleep(0.05)
        if cut_until is not None:
            time.sleep(max(0.0, cut_until - time.monotonic()))
            proxy.restore()
        codes = [door.finish() for door in doors]  # each drains its outbox to the broker, exits 0
        count_as_truth(scenario, doors)
        scenario.devices.published += len(HOSTILE)
        recovery = scenario.wait_exact(pipeline, timeout_s=180)
        deadline = time.monotonic() + 60
        while sum(scenario.dead_letters().values()) < len(HOSTILE) and time.monotonic() < deadline:
            time.sleep(0.5)
        dead = sum(scenario.dead_letters().values())
        continuous = seqs_continuous(scenario, doors)
        status, health = bridge.health()
        alive = bridge.process.poll() is None and status == 200
        return scenario.result(
            recovery,
            bridge_kills=done["kill"],
            broker_restarts=done["broker_restart"],
            pubsub_cut_s=cut_s,
            hostile_dead_letters=dead,
            bridge_alive=alive,
            bridge_counters=health,
            seqs_continuous=continuous,
            passed=continuous
            and alive
            and dead == len(HOSTILE)
            and codes == [0] * len(doors)
            and done["kill"] == kills,
            notes=f"{done['kill']} bridge SIGKILLs, 1 broker restart, Pub/Sub cut {cut_s} s; "
            f"{len(HOSTILE)} hostile MQTT payloads -> {dead} dead letters; bridge healthy: {alive}",
        )
    finally:
        kill_running(doors)
        if bridge is not None:
            bridge.stop()
        broker.stop()
        proxy.stop()
        scenario.close()
