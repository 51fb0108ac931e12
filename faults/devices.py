"""The fault scenarios' door devices: they sign and publish counts, keep what they sent (the
ground truth, faults/harness.py), and send again what they cannot see applied in `realtime`;
and the heartbeats that keep the local runner's watermark moving."""

import collections
import random
import threading
import time
from typing import Dict, List, NamedTuple, Optional

from occupancy import documents, wire
from sim.keyring import Keyring


class Message(NamedTuple):
    device: str
    train: str
    seq: int
    delta: int
    t_us: int
    payload: bytes
    attributes: dict


class Devices:
    """Door devices of a fleet publishing counts (and heartbeats), with the ground truth."""

    def __init__(self, topic: str, trains: Dict[str, List[str]], seed: int = 0):
        from google.cloud import pubsub_v1

        self.publisher = pubsub_v1.PublisherClient()
        self.topic = topic
        self.trains = trains
        self.train_of = {d: t for t, devices in trains.items() for d in devices}
        self.random = random.Random(seed)
        self.seqs = collections.Counter()
        self.truth = collections.Counter()
        self.sent: List[Message] = []  # distinct messages, in creation order
        self.published = 0  # every publish, duplicates and re-publishes too
        self.last_t_us = 0
        # Alightings never take a train's truth below this: with a margin, events that the
        # pipeline applies late (re-published after a crash) cannot hit the clamp at zero,
        # so the truth stays what the pipeline must show whatever the arrival order.
        self.floor = 0
        self.lock = threading.Lock()
        # Every device's key pair (and the operator's control key): each message is signed.
        self.keys = Keyring()

    def encode(self, device: str, delta: int, t_us: int, seq: int):
        """(signed payload, attributes) of a count, as the device sends it."""
        payload, attributes = wire.encode_event(device, delta, t_us, seq)
        return self.keys.sign(device, payload), attributes

    def make(self, device: Optional[str] = None, delta: Optional[int] = None, t_us: Optional[int] = None) -> Message:
        """The next message of a device (a random one, a random delta that keeps truth >= 0)."""
        with self.lock:
            device = device or self.random.choice(sorted(self.train_of))
            train = self.train_of[device]
            if delta is None:
                delta = (
                    self.random.choice([1, 2, 3, 4])
                    if self.random.random() < 0.6
                    else -min(max(0, self.truth[train] - self.floor), self.random.choice([1, 2, 3]))
                )
            self.truth[train] += delta
            self.seqs[device] += 1
            seq = self.seqs[device]
            # Event times strictly increase in the order the truth is made, so that the
            # pipeline's event-time order is the truth's order (no clamping between them).
            t_us = max(t_us if t_us is not None else wire.now_us(), self.last_t_us + 1000)
            self.last_t_us = t_us
            payload, attributes = self.encode(device, delta, t_us, seq)
            message = Message(device, train, seq, delta, t_us, payload, attributes)
            self.sent.append(message)
            return message

    def publish(self, message: Message, wait: bool = True):
        future = self.publisher.publish(self.topic, message.payload, **message.attributes)
        with self.lock:
            self.published += 1
        return future.result(timeout=60) if wait else future

    def publish_raw(self, payload: bytes, attributes: dict, wait: bool = True):
        future = self.publisher.publish(self.topic, payload, **attributes)
        with self.lock:
            self.published += 1
        return future.result(timeout=60) if wait else future

    def send(self, n: int, interval_s: float = 0.0) -> None:
        for _ in range(n):
            self.publish(self.make())
            if interval_s:
                time.sleep(interval_s)

    def expected_events(self) -> Dict[str, int]:
        events = collections.Counter()
        for m in self.sent:
            if m.delta:
                events[m.train] += 1
        return {t: events.get(t, 0) for t in self.trains}

    def republish_unapplied(self, client) -> int:
        """What a device does when it cannot see its message applied: sends it again.

        Applied = the seq is within the ranges that realtime's devices_seen records.
        """
        unapplied = self.unapplied({d.id: d.to_dict() or {} for d in client.collection("realtime").stream()})
        for m in unapplied:
            self.publish(m, wait=False)
        return len(unapplied)

    def unapplied(self, realtime: Dict[str, dict]) -> List[Message]:
        """The messages sent whose seq is in none of the applied ranges of their train's
        realtime document (`realtime`: train -> document)."""
        ranges = {train: documents.applied_ranges(doc) for train, doc in realtime.items()}
        return [
            m
            for m in list(self.sent)
            if not any(lo <= m.seq <= hi for lo, hi in ranges.get(m.train, {}).get(m.device) or [])
        ]


class Heartbeats(threading.Thread):
    """Every train's heartbeat device sends delta 0 every interval: the local runner's
    watermark moves only while messages arrive, as in the field."""

    def __init__(self, devices: Devices, interval_s: float = 0.5):
        super().__init__(daemon=True)
        self.devices, self.interval_s = devices, interval_s
        self.halt = threading.Event()
        self.seqs = collections.Counter()

    def run(self):
        while not self.halt.is_set():
            for train in self.devices.trains:
                device = f"hb-{train}"
                self.seqs[device] += 1
                payload, attributes = self.devices.encode(device, 0, wire.now_us(), self.seqs[device])
                self.devices.publish_raw(payload, attributes, wait=False)
            self.halt.wait(self.interval_s)

    def stop(self):
        self.halt.set()
        self.join(10)
