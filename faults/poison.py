"""Scenario 11: poison. Single messages that once stopped counting for the whole fleet, or
rewrote a train's count, sent mid-stream while honest doors count, over Pub/Sub and over MQTT
(a real mosquitto and the real bridge); dead letters go to a Pub/Sub topic, as the Makefile's
deployment sends them.

* 7.8 MB of junk: its dead letter once exceeded Pub/Sub's 10 MB and the job stopped.
* A validly signed count with seq 2**63: once an OverflowError in the fold's coder.
* A reset whose `kid` names a reserved Firestore id (`__evil__/k1`): once a failed registry read.
* A JWS whose payload is `"[" * 5000`, over Pub/Sub and over MQTT: the bridge once stalled on it.
* A signed count over MQTT with a 2,000-character event time: the bridge once copied it into an
  attribute real Pub/Sub refuses.
* A control-signed reset and terminus re-published seconds later, byte for byte: once applied
  again (the train zeroed, the trip record emptied).
* A device moved to another train, and its old signed count re-published: once counted again
  on the new train.

Passes when the pipeline and the bridge are alive (the bridge healthy), every honest train is
exact, each poison message is a dead letter with its reason, and the replays changed nothing.
"""

import base64
import collections
import json
import os
import threading
import time

from adapters import registry
from faults.bridge_kills import Bridge, setup_credentials
from faults.harness import Scenario
from faults.mqtt_client import MqttClient
from faults.proxy import Proxy
from local import stack
from local.broker import Broker
from local.stack import PROJECT
from occupancy import mqtt, wire

NAME = "poison"
S = 1_000_000


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _envelope(kid: str, payload: bytes) -> bytes:
    return b".".join([_b64(json.dumps({"alg": "EdDSA", "kid": kid}).encode()), _b64(payload), _b64(b"s" * 64)])


class DeadLetterTopic:
    """The pipeline's --dead_letter_topic and a subscription that reads it back."""

    def __init__(self, scenario: Scenario):
        from google.cloud import pubsub_v1

        name = f"dead-{scenario.topic_name}"
        stack.ensure_topic(PROJECT, name, [f"{name}-read"])
        self.topic = stack.topic_path(PROJECT, name)
        self.subscription = f"projects/{PROJECT}/subscriptions/{name}-read"
        self.subscriber = pubsub_v1.SubscriberClient()
        self.records = []

    def pull(self) -> collections.Counter:
        """Reasons of every dead letter published so far."""
        response = self.subscriber.pull(subscription=self.subscription, max_messages=100, timeout=10)
        if response.received_messages:
            self.subscriber.acknowledge(
                subscription=self.subscription, ack_ids=[m.ack_id for m in response.received_messages]
            )
        self.records += [json.loads(m.message.data) for m in response.received_messages]
        return collections.Counter(r["reason"] for r in self.records)


class HonestTraffic(threading.Thread):
    """Every door counts, one message every `interval_s`; `mqtt_door` sends over MQTT."""

    def __init__(self, scenario: Scenario, mqtt_door: str, mqtt_client: MqttClient, interval_s: float = 0.05):
        super().__init__(daemon=True)
        self.scenario, self.mqtt_door, self.mqtt_client, self.interval_s = scenario, mqtt_door, mqtt_client, interval_s
        self.halt = threading.Event()
        self.over_mqtt = 0

    def run(self):
        devices = self.scenario.devices
        while not self.halt.is_set():
            message = devices.make()
            if message.device == self.mqtt_door:
                self.mqtt_client.publish(mqtt.topic_for(message.device), message.payload)
                with devices.lock:
                    devices.published += 1
                self.over_mqtt += 1
            else:
                devices.publish(message, wait=False)
            self.halt.wait(self.interval_s)

    def stop(self):
        self.halt.set()
        self.join(30)


def _realtime(scenario: Scenario, train: str):
    return (scenario.client.collection("realtime").document(train).get().to_dict() or {}).get("current_value")


def _wait_value(scenario: Scenario, pipeline, train: str, value: int, timeout_s: float = 60) -> None:
    stack.wait_for(
        lambda: pipeline.poll() is not None or _realtime(scenario, train) == value,
        timeout_s,
        what=f"{NAME}: realtime {train} = {value}",
    )


def run(context, short: bool) -> dict:
    scenario = Scenario(context, NAME, trains=3, doors=2, seed=36)
    devices = scenario.devices
    broker = Broker(directory=os.path.join(context.work_dir, "broker-poison"), autosave_s=1)
    proxy = Proxy(os.environ["PUBSUB_EMULATOR_HOST"]).start()  # never cut here
    dead = DeadLetterTopic(scenario)
    bridge, honest, clients = None, None, []
    expected = collections.Counter()
    try:
        broker.start()
        mqtt_door = devices.trains["t0"][1]
        # Poison over MQTT comes from a device of its own: the broker gives a username one
        # connection (use_username_as_clientid), which the honest door holds.
        poisoner = "t0-poisoner"
        registry.register_device(scenario.client, "devices", poisoner, "t0")
        secret_file = os.path.join(context.work_dir, f"{mqtt_door}.secret")
        poisoner_secret = os.path.join(context.work_dir, f"{poisoner}.secret")
        bridge_secret = setup_credentials(scenario, broker, [mqtt_door, poisoner], context.work_dir)
        # Trains of the replays, apart from the honest fleet's truth.
        for train in ("tr", "tm1", "tm2"):
            registry.set_train(scenario.client, "trains", train, 300)
        registry.register_device(scenario.client, "devices", "tr-door1", "tr")
        registry.register_device(scenario.client, "devices", "mv-door1", "tm1")
        devices.keys.register(scenario.client, "devices", ["tr-door1", "mv-door1"])
        bridge = Bridge(broker, proxy, scenario.topic_name, bridge_secret, context.work_dir)
        bridge.start()
        pipeline = scenario.start_pipeline(f"--dead_letter_topic={dead.topic}")
        scenario.warm_up(pipeline)
        scenario.prime(pipeline)  # no arrival order (MQTT beside Pub/Sub) meets the clamp at 0
        door_client = MqttClient(broker, mqtt_door, mqtt.read_secret_file(secret_file))
        poison_client = MqttClient(broker, poisoner, mqtt.read_secret_file(poisoner_secret))
        clients += [door_client, poison_client]
        honest = HonestTraffic(scenario, mqtt_door, door_client)
        honest.start()

        def poison(payload: bytes, reason: str, attributes=None, over_mqtt: bool = False):
            if over_mqtt:
                poison_client.publish(mqtt.topic_for(poisoner), payload)
                with devices.lock:
                    devices.published += 1
            else:
                devices.publish_raw(payload, attributes or {"x": "1"})
            expected[reason] += 1
            time.sleep(0.5)

        now = wire.now_us()
        victim = devices.trains["t1"][0]
        poison(b"\x00" * 7_800_000, wire.OVERSIZED)
        big_seq, attributes = wire.encode_event(victim, 1, now, 2**63)
        poison(devices.keys.sign(victim, big_seq), wire.INVALID_FIELD, attributes)
        poison(_envelope("__evil__/k1", wire.encode_reset("t0", now)[0]), wire.MALFORMED)
        poison(_envelope(f"{mqtt_door}/k1", b"[" * 5000), wire.MALFORMED)
        poison(_envelope(f"{mqtt_door}/k1", b"[" * 5000), wire.MALFORMED, over_mqtt=True)
        long_time = json.dumps({"device_id": mqtt_door, "delta": 1, "event_time": "2" * 2000, "seq": 10**9})
        poison(devices.keys.sign(mqtt_door, long_time.encode()), wire.INVALID_FIELD, over_mqtt=True)

        # A control-signed reset and terminus, re-published byte for byte once counts came after.
        def count(device: str, delta: int, seq: int) -> bytes:
            payload = devices.keys.sign(device, wire.encode_event(device, delta, wire.now_us(), seq)[0])
            devices.publish_raw(payload, {"x": "1"})
            time.sleep(0.05)
            return payload

        count("tr-door1", 6, 1)
        reset = devices.keys.sign_control(wire.encode_reset("tr", wire.now_us())[0])
        devices.publish_raw(reset, {"x": "1"})
        time.sleep(0.05)
        count("tr-door1", 4, 2)
        terminus = devices.keys.sign_control(wire.encode_reset("tr", wire.now_us(), wire.TERMINUS)[0])
        devices.publish_raw(terminus, {"x": "1"})
        time.sleep(0.05)
        count("tr-door1", 3, 3)
        _wait_value(scenario, pipeline, "tr", 3)
        trip = [d.to_dict() for d in scenario.client.collection("trips").stream() if d.to_dict()["train"] == "tr"]
        time.sleep(4)  # past the reorder window, where a reset's id used to be forgotten
        devices.publish_raw(reset, {"x": "1"})
        devices.publish_raw(terminus, {"x": "1"})
        time.sleep(0.5)
        count("tr-door1", 2, 4)
        _wait_value(scenario, pipeline, "tr", 5)

        # A device moved to another train; its old signed count re-published.
        old = count("mv-door1", 10, 1)
        _wait_value(scenario, pipeline, "tm1", 10)
        registry.assign_device(scenario.client, "devices", "mv-door1", "tm2")
        time.sleep(5 + 2)  # the pipeline's --registry_refresh_s, and a margin
        devices.publish_raw(old, {"x": "1"})
        expected[wire.BEFORE_ASSIGNMENT] += 1
        time.sleep(0.5)
        count("mv-door1", 2, 2)
        _wait_value(scenario, pipeline, "tm2", 2)

        honest.stop()
        recovery = scenario.wait_exact(pipeline, timeout_s=120)
        deadline = time.monotonic() + 60
        reasons = dead.pull()
        while reasons != expected and time.monotonic() < deadline:
            reasons = dead.pull()
        trip_after = [d.to_dict() for d in scenario.client.collection("trips").stream() if d.to_dict()["train"] == "tr"]
        replays_changed_nothing = (
            _realtime(scenario, "tr") == 5
            and trip == trip_after
            and len(trip) == 1
            and _realtime(scenario, "tm1") == 10
            and _realtime(scenario, "tm2") == 2
        )
        status, health = bridge.health()
        bridge_alive = bridge.process.poll() is None and status == 200
        pipeline_alive = pipeline.poll() is None
        kinds = ", ".join(f"{n} {r}" for r, n in sorted(expected.items()))
        return scenario.result(
            recovery,
            dead_lettered=sum(reasons.values()),
            poison=sum(expected.values()),
            poison_dead_letters=dict(reasons),
            expected_dead_letters=dict(expected),
            over_mqtt=honest.over_mqtt,
            replays_changed_nothing=replays_changed_nothing,
            bridge_alive=bridge_alive,
            bridge_counters=health,
            pipeline_alive=pipeline_alive,
            passed=reasons == expected and replays_changed_nothing and bridge_alive and pipeline_alive,
            notes=f"{sum(expected.values())} poison messages ({kinds}) mid-stream, "
            f"{honest.over_mqtt} honest counts over MQTT; a reset and a terminus replayed, "
            "a moved device's old count replayed: nothing changed",
        )
    finally:
        if honest is not None:
            honest.halt.set()
        for client in clients:
            client.close()
        if bridge is not None:
            bridge.stop()
        broker.stop()
        proxy.stop()
        scenario.close()
