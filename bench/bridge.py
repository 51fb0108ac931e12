"""`make bench-bridge`: the MQTT path beside the straight one, in one run (docs/benchmarks.md).

1. **Bridge throughput.** N signed counts wait at the broker (queued for the bridge's
   session while it is away); then `python -m bridge` starts and forwards them to the Pub/Sub
   emulator. Reported: messages per CPU-second of the bridge process (its user + system
   time) and per wall-clock second.
2. **Latency, device to realtime.** The pipeline runs; every 0.5 s one door sends a count
   over MQTT (broker, bridge) and a door of another train sends one straight to Pub/Sub, at
   the same moment; a poller reads both trains' realtime documents every 50 ms and notes when
   each count shows. Reported: p50 and p95 per path.

Writes bench/bridge.json and prints a table.
"""

import argparse
import json
import os
import sys
import threading
import time
import types

import psutil

from adapters import registry
from adapters.store import make_client
from bench.measure import machine
from bench.run import start_emulators
from bridge.health import probe
from faults.mqtt_client import MqttClient
from local import stack
from local.broker import Broker
from local.emulators import free_port
from local.stack import PROJECT
from occupancy import mqtt, wire
from registry import mqtt_commands
from sim.keyring import Keyring

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = Keyring()


def _percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else None


def _bridge(broker, secret_file, topic, health_port, log_path):
    return stack.start_command(
        stack.bridge_command(
            PROJECT,
            broker.host_port,
            secret_file,
            topic,
            os.environ["PUBSUB_EMULATOR_HOST"],
            health_port,
            "--status_interval_s",
            "60",
        ),
        log_path,
        env={"PYTHONUNBUFFERED": "1"},
    )


def _counters(port):
    return probe(port)[1]


def throughput(client, broker, secrets, bridge_secret, work_dir, n):
    name = f"bench-bridge-{os.getpid()}"
    stack.ensure_topic(PROJECT, name, [f"{name}-sub"])
    health_port = free_port()
    # The bridge's session exists (subscribed) before the messages come: start, stop, queue.
    process = _bridge(broker, bridge_secret, name, health_port, os.path.join(work_dir, "bridge-1.log"))
    stack.wait_for(lambda: _counters(health_port).get("connected"), 30, what="the bridge connected")
    stack.stop_process(process)
    device = MqttClient(broker, "bench-mqtt-d1", secrets["bench-mqtt-d1"])
    for seq in range(1, n + 1):
        payload = KEYS.sign("bench-mqtt-d1", wire.encode_event("bench-mqtt-d1", 1, wire.now_us(), seq)[0])
        device.client.publish(mqtt.topic_for("bench-mqtt-d1"), payload, qos=1)
    stack.wait_for(lambda: len(device.pubacks) >= n, 120, what="the broker took every count")
    device.close()
    began = time.monotonic()
    process = _bridge(broker, bridge_secret, name, health_port, os.path.join(work_dir, "bridge-2.log"))
    stack.wait_for(
        lambda: (_counters(health_port).get("forwarded") or 0) >= n,
        300,
        interval_s=0.1,
        what="the bridge forwarded every count",
    )
    wall = time.monotonic() - began
    times = psutil.Process(process.pid).cpu_times()
    cpu = times.user + times.system
    counters = _counters(health_port)
    stack.stop_process(process)
    return {
        "messages": n,
        "wall_s": round(wall, 2),
        "bridge_cpu_s": round(cpu, 2),
        "msgs_per_cpu_s": round(n / cpu),
        "msgs_per_wall_s": round(n / wall),
        "max_in_flight_seen": counters.get("max_in_flight_seen"),
        "note": "CPU time includes the bridge's start-up",
    }


def latency(client, broker, secrets, bridge_secret, work_dir, samples):
    name = f"bench-latency-{os.getpid()}"
    stack.ensure_topic(PROJECT, name, [f"{name}-sub"])
    health_port = free_port()
    bridge = _bridge(broker, bridge_secret, name, health_port, os.path.join(work_dir, "bridge-3.log"))
    pipeline = stack.start_pipeline(
        PROJECT,
        f"{name}-sub",
        "--registry_refresh_s=5",
        "--reorder_delay_s=1",
        "--flush_interval_s=1",
        log_path=os.path.join(work_dir, "pipeline.log"),
    )
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = stack.topic_path(PROJECT, name)
    device = MqttClient(broker, "bench-mqtt-d1", secrets["bench-mqtt-d1"], client_id="bench-latency")
    paths = {"mqtt": ("bench-mqtt", "bench-mqtt-d1"), "pubsub": ("bench-direct", "bench-direct-d1")}
    sent, seen = {p: {} for p in paths}, {p: {} for p in paths}
    halt = threading.Event()

    def poll():
        refs = {p: client.collection("realtime").document(train) for p, (train, _) in paths.items()}
        while not halt.is_set():
            for p, ref in refs.items():
                data = ref.get().to_dict() or {}
                seq = int(((data.get("devices_seen") or {}).get(paths[p][1]) or {}).get("seq") or 0)
                now = time.monotonic()
                for s in range(1, seq + 1):
                    seen[p].setdefault(s, now)
            halt.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    try:
        stack.wait_for(lambda: _counters(health_port).get("connected"), 30, what="the bridge connected")
        poller.start()
        base = 10_000  # seqs above the throughput step's

        def send(seq):
            for p, (_, dev) in paths.items():
                payload = KEYS.sign(dev, wire.encode_event(dev, 1, wire.now_us(), seq)[0])
                sent[p][seq] = time.monotonic()
                if p == "mqtt":
                    device.client.publish(mqtt.topic_for(dev), payload, qos=1)
                else:
                    publisher.publish(topic, payload, event_id=wire.event_id_for(dev, seq))

        send(base)  # a warm-up count on each path: sampling starts once the pipeline applies them
        stack.wait_for(lambda: all(base in seen[p] for p in paths), 180, what="the pipeline's first writes")
        for p in paths:
            sent[p].pop(base)
        for i in range(1, samples + 1):
            send(base + i)
            time.sleep(0.5)
        stack.wait_for(
            lambda: all(len([s for s in seen[p] if s > base]) >= samples for p in paths),
            180,
            what="every count in realtime",
        )
    finally:
        halt.set()
        device.close()
        stack.stop_process(pipeline)
        stack.stop_process(bridge)
    result = {}
    for p in paths:
        lat = [seen[p][s] - sent[p][s] for s in sent[p] if s in seen[p]]
        result[p] = {
            "samples": len(lat),
            "p50_s": round(_percentile(lat, 0.5), 3),
            "p95_s": round(_percentile(lat, 0.95), 3),
        }
    # Per sample, MQTT's latency minus the straight path's (sent at the same moment, same
    # pipeline): what the broker and the bridge add, without the pipeline's own stalls.
    added = [
        (seen["mqtt"][s] - sent["mqtt"][s]) - (seen["pubsub"][s] - sent["pubsub"][s])
        for s in sent["mqtt"]
        if s in seen["mqtt"] and s in seen["pubsub"]
    ]
    result["mqtt_minus_pubsub"] = {
        "samples": len(added),
        "p50_s": round(_percentile(added, 0.5), 3),
        "p95_s": round(_percentile(added, 0.95), 3),
    }
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bridge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="Counts for the throughput step.")
    parser.add_argument("--samples", type=int, default=60, help="Latency samples per path.")
    parser.add_argument("--output", default=os.path.join(HERE, "bridge.json"))
    args = parser.parse_args(argv)
    import tempfile

    work_dir = tempfile.mkdtemp(prefix="bench-bridge-")
    firestore, pubsub = start_emulators()
    os.environ.update({**firestore.env(), **pubsub.env()})
    broker = Broker(directory=os.path.join(work_dir, "broker")).start()
    try:
        client = make_client(PROJECT)
        for train, device in (("bench-mqtt", "bench-mqtt-d1"), ("bench-direct", "bench-direct-d1")):
            registry.set_train(client, "trains", train, 10_000_000)
            registry.register_device(client, "devices", device, train)
        KEYS.register(client, "devices", ["bench-mqtt-d1", "bench-direct-d1"])
        secrets = {"bench-mqtt-d1": mqtt.write_secret_file(os.path.join(work_dir, "d1.secret"))}
        mqtt_commands.set_secret(client, "devices", "bench-mqtt-d1", secrets["bench-mqtt-d1"])
        bridge_secret = os.path.join(work_dir, "bridge.secret")
        mqtt.write_secret_file(bridge_secret)
        mqtt_commands.register_bridge(client, "devices", mqtt.BRIDGE, mqtt.read_secret_file(bridge_secret))
        mqtt_commands.sync_once(
            client,
            types.SimpleNamespace(
                devices_collection="devices",
                timeout=30,
                password_file=broker.password_file,
                acl_file=broker.acl_file,
                pid_file=broker.pid_file,
            ),
        )
        time.sleep(0.5)
        results = {
            "machine": machine(),
            "throughput": throughput(client, broker, secrets, bridge_secret, work_dir, args.messages),
            "latency": latency(client, broker, secrets, bridge_secret, work_dir, args.samples),
        }
    finally:
        broker.stop()
        firestore.stop()
        pubsub.stop()
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    t, lat = results["throughput"], results["latency"]
    print(
        f"bridge: {t['messages']} messages in {t['wall_s']} s, {t['msgs_per_wall_s']}/s wall, "
        f"{t['msgs_per_cpu_s']}/s per CPU-second of the bridge"
    )
    for p, row in lat.items():
        print(f"device -> realtime over {p}: p50 {row['p50_s']} s, p95 {row['p95_s']} s ({row['samples']} samples)")
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
