"""Plays a simulation (sim/simulator.py) in real time: to a Pub/Sub topic from a background
thread (honours PUBSUB_EMULATOR_HOST), the doors a `sim.mqtt_route.MqttRoute` names over MQTT.
`make run` uses it for its devices; alone:

    python -m sim.publisher --project demo-occupancy --topic occupancy-events --seconds 60
"""

import argparse
import json
import logging
import sys
import threading
import time
from typing import Dict, Optional

from occupancy import wire
from sim.simulator import (
    DEFAULT_PROJECT,
    DEFAULT_TOPIC,
    DEMO_FLEET,
    KINDS,
    FaultRates,
    SimConfig,
    Simulation,
    TrainSpec,
    make_train,
)

_LOGGER = logging.getLogger(__name__)


class DevicePublisher:
    """Publishes a simulation in real time to a Pub/Sub topic from a background thread."""

    def __init__(
        self, simulation: Simulation, project: str, topic: str, seconds: Optional[float] = None, mqtt_route=None
    ):
        """`mqtt_route` (sim.mqtt_route.MqttRoute): the devices it names send over MQTT instead."""
        self.simulation = simulation
        self.mqtt_route = mqtt_route
        self.topic_path = f"projects/{project}/topics/{topic}"
        self.seconds = seconds
        self.start_us: Optional[int] = None
        self.error: Optional[BaseException] = None
        self._last_send_at = 0.0
        self._completed = False
        self._sent = {kind: 0 for kind in KINDS}
        self._failed = 0
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="device-simulator", daemon=True)

    def start(self) -> "DevicePublisher":
        from google.cloud import pubsub_v1  # the device extra; the generator needs none of it

        self._client = pubsub_v1.PublisherClient()
        self.start_us = wire.now_us()
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                _LOGGER.warning("Simulator thread did not stop within %.0fs", timeout_s)

    def wait(self, timeout_s: Optional[float] = None) -> bool:
        """Waits until every message is sent (a finite run) or the publisher is stopped."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def counts(self) -> Dict[str, int]:
        """Messages acknowledged by Pub/Sub, per kind, plus `failed`."""
        with self._lock:
            return dict(self._sent, failed=self._failed)

    def published(self) -> int:
        with self._lock:
            return sum(self._sent.values())

    def expected(self) -> Dict[str, Optional[int]]:
        """The truth per train as of the latest event time all of whose messages were sent."""
        if self.start_us is None:
            return {}
        if self._completed:
            return self.simulation.truth.final()
        # Messages are sent in send order, but one held back may still be due.
        held_back_s = self.simulation.config.out_of_order_delay_s[1]
        through_us = self.start_us + int((self._last_send_at - held_back_s) * 1_000_000)
        return {t.train_id: self.simulation.truth.value_at(t.train_id, through_us) for t in self.simulation.fleet}

    def _run(self) -> None:
        try:
            for message in self.simulation.messages(self.start_us, self.seconds):
                # Wait for the message's time; a stop interrupts the wait at once.
                if self._halt.wait(max(0.0, self._started + message.send_at - time.monotonic())):
                    break
                device = self.mqtt_route.device_of(message.attributes) if self.mqtt_route else None
                if device is not None:
                    self.mqtt_route.publish(
                        device, message.payload, lambda ok, kind=message.kind: self._counted(kind, ok)
                    )
                else:
                    future = self._client.publish(self.topic_path, message.payload, **message.attributes)
                    future.add_done_callback(lambda f, kind=message.kind: self._done(f, kind))
                self._last_send_at = message.send_at
            else:
                self._completed = True  # every message of a finite run was sent
        except Exception as e:  # reported to whoever runs the publisher, not swallowed
            _LOGGER.exception("Simulator stopped by an error")
            self.error = e
        finally:
            # Flushes what is still batched, so that the counts are final.
            self._client.stop()
            if self.mqtt_route is not None:
                self.mqtt_route.close()

    def _done(self, future, kind: str) -> None:
        error = future.exception()
        self._counted(kind, error is None)
        if error is not None:
            _LOGGER.warning("Publish of a %s message failed: %s", kind, error)

    def _counted(self, kind: str, ok: bool) -> None:
        with self._lock:
            if ok:
                self._sent[kind] += 1
            else:
                self._failed += 1


# ---- command line ----------------------------------------------------------------


def _train_arg(text: str) -> TrainSpec:
    """ID[:CAPACITY[:DOORS]]; a demo train's id alone gives its demo capacity and doors."""
    demo = {t.train_id: t for t in DEMO_FLEET}
    parts = text.split(":")
    if len(parts) == 1 and parts[0] in demo:
        return demo[parts[0]]
    if len(parts) > 3 or not wire.valid_id(parts[0]):
        raise argparse.ArgumentTypeError(f"expected ID[:CAPACITY[:DOORS]], got {text!r}")
    try:
        capacity = int(parts[1]) if len(parts) > 1 else 200
        doors = int(parts[2]) if len(parts) > 2 else 4
    except ValueError:
        raise argparse.ArgumentTypeError(f"capacity and doors must be integers: {text!r}") from None
    if capacity <= 0 or not 1 <= doors <= 32:
        raise argparse.ArgumentTypeError(f"need capacity > 0 and 1-32 doors: {text!r}")
    return make_train(parts[0], capacity, doors=doors)


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a rate is between 0 and 1, got {text}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sim.publisher",
        description="Publish simulated door-device counts to Pub/Sub in real time "
        "(honours PUBSUB_EMULATOR_HOST). The devices must be registered "
        "(e.g. by `python -m local.demo`) or the pipeline dead-letters them.",
    )
    parser.add_argument("--project", type=str, default=DEFAULT_PROJECT, help="Pub/Sub project.")
    parser.add_argument("--topic", type=str, default=DEFAULT_TOPIC, help="Pub/Sub topic name.")
    parser.add_argument(
        "--trains",
        type=_train_arg,
        nargs="+",
        default=list(DEMO_FLEET),
        metavar="ID[:CAPACITY[:DOORS]]",
        help="Trains to simulate (default: the demo fleet " + ", ".join(t.train_id for t in DEMO_FLEET) + ").",
    )
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="Simulated (and real) seconds to run; 0 runs until Ctrl-C."
    )
    parser.add_argument("--seed", type=int, default=0, help="Random seed: same seed, same messages.")
    parser.add_argument(
        "--duplicate-rate", type=_rate, default=FaultRates.duplicate, help="Share of messages published twice."
    )
    parser.add_argument(
        "--out-of-order-rate",
        type=_rate,
        default=FaultRates.out_of_order,
        help="Share of messages held back by 0.5-1.5 s.",
    )
    parser.add_argument(
        "--malformed-rate",
        type=_rate,
        default=FaultRates.malformed,
        help="Share of messages followed by a malformed one.",
    )
    parser.add_argument("--no-reset", action="store_true", help="Do not send a reset per train at the start.")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Print the messages as JSON lines instead of publishing them (no waiting).",
    )
    return parser.parse_args(argv)


def _simulation(args: argparse.Namespace) -> Simulation:
    faults = FaultRates(args.duplicate_rate, args.out_of_order_rate, args.malformed_rate)
    return Simulation(args.trains, args.seed, SimConfig(faults=faults, reset_at_start=not args.no_reset))


def _dry_run(simulation: Simulation, seconds: Optional[float]) -> None:
    try:
        for m in simulation.messages(wire.now_us(), seconds or 60.0):
            print(
                json.dumps(
                    {
                        "send_at": m.send_at,
                        "kind": m.kind,
                        "attributes": m.attributes,
                        "payload": m.payload.decode("utf-8", errors="replace"),
                    }
                )
            )
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    simulation = _simulation(args)
    seconds = args.seconds or None
    if args.dry_run:
        _dry_run(simulation, seconds)
        return 0
    publisher = DevicePublisher(simulation, args.project, args.topic, seconds).start()
    _LOGGER.info(
        "Publishing to %s for %s (seed %s)",
        publisher.topic_path,
        f"{seconds:g}s" if seconds else "ever, Ctrl-C stops",
        args.seed,
    )
    try:
        while not publisher.wait(5.0):
            _LOGGER.info("Published %s", publisher.counts())
    except KeyboardInterrupt:
        _LOGGER.info("Stopping")
    finally:
        publisher.stop()
    _LOGGER.info("Published %s", publisher.counts())
    _LOGGER.info("Expected occupancy once the pipeline has applied everything sent: %s", publisher.expected())
    return 1 if publisher.error or publisher.counts()["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
