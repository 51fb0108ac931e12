"""`make run`'s MQTT side (local/mqtt_side.py) against mosquitto and the emulators: the bridge
it starts is healthy even when the health port it picked is taken before the bridge binds it
(another process, or the local end of a connection: a demo exited at start-up once in CI)."""

import socket

from local import emulators
from local.mqtt_side import MqttSide
from local.stack import PROJECT


def test_the_bridge_starts_on_another_health_port_when_the_one_picked_is_taken(
    emulator_env, firestore_client, tmp_path, monkeypatch
):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    picks = iter([taken.getsockname()[1]])  # the first pick is taken by the time the bridge binds
    real = emulators.free_port
    monkeypatch.setattr(emulators, "free_port", lambda: next(picks, None) or real())
    log = tmp_path / "bridge.log"
    side = MqttSide(str(tmp_path / "mqtt"))
    try:
        side.start(firestore_client, [], PROJECT, "occupancy-events", str(log))
        assert side.health_port != taken.getsockname()[1]
        assert side.counters() is not None and side.bridge.poll() is None
        assert "Address already in use" in log.read_text()  # the first bridge, on the taken port
    finally:
        side.stop()
        taken.close()
