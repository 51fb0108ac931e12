"""What every fault scenario shares: the emulators (Firestore behind a cuttable proxy), a
fleet of door devices with ground truth (faults/devices.py), the pipeline as a subprocess,
and the accounting of what was sent, accepted, dead-lettered, lost and double counted.

Ground truth: every count message the devices sent, once per (device, seq); boardings
and alightings are drawn so that no train's truth goes below zero (no clamping), so
the truth of a train is the plain sum of its deltas and its number of events is the
number of its distinct non-zero messages. The pipeline's side: `realtime/{train}`
(count) and the sum of `events` over the train's `history` documents (every applied
event lands in exactly one bucket).
"""

import collections
import logging
import os
import signal
import threading
import time
import uuid
from typing import Dict, List, Optional

from google.api_core import exceptions as gexc

from adapters import registry
from adapters.store import make_client
from faults.devices import Devices, Heartbeats
from local import stack
from local.stack import PROJECT
from occupancy import documents

_LOGGER = logging.getLogger(__name__)
PIPELINE_ARGS = (
    "--registry_refresh_s=5",
    "--reorder_delay_s=1",
    "--flush_interval_s=1",
    "--write_retry_deadline_s=120",
)


class Progress(threading.Thread):
    """Samples, every `interval_s`, what the pipeline has applied against what the devices sent.

    Each sample (a dict): `t_s` since start, `sent` (distinct count messages made so far),
    `applied` (the highest applied seq of every count device in realtime's `devices_seen`,
    summed: the devices' seqs start at 1 without gaps, so this is the counts applied when
    they are applied in order) and `lag_s`, wall clock minus the oldest train's
    `last_updated` (the event time of its last applied count: how far the pipeline is
    behind the devices).
    """

    def __init__(self, scenario: "Scenario", interval_s: float = 5.0):
        super().__init__(daemon=True)
        self.scenario, self.interval_s = scenario, interval_s
        self.samples: List[dict] = []
        self.halt = threading.Event()
        self.began = time.monotonic()

    def sample(self) -> dict:
        devices = self.scenario.devices
        with devices.lock:
            sent = len(devices.sent)
        applied, oldest = 0, None
        for doc in self.scenario.client.collection("realtime").stream():
            data = doc.to_dict() or {}
            for device, seen in (data.get("devices_seen") or {}).items():
                if device in devices.train_of:
                    applied += max(0, int(seen.get("seq") or 0))
            updated = data.get("last_updated")
            if updated is not None and (oldest is None or updated < oldest):
                oldest = updated
        lag = None if oldest is None else time.time() - oldest.timestamp()
        return {
            "t_s": round(time.monotonic() - self.began, 1),
            "sent": sent,
            "applied": applied,
            "lag_s": None if lag is None else round(lag, 1),
        }

    def run(self):
        while not self.halt.wait(self.interval_s):
            try:
                sample = self.sample()
            except gexc.GoogleAPIError as e:  # a missed sample (Firestore cut off) must not end the scenario
                _LOGGER.warning("%s: progress sample failed: %s", self.scenario.name, e)
                continue
            self.samples.append(sample)
            _LOGGER.info(
                "%s: %.0f s, sent %d, applied %d, behind %s s",
                self.scenario.name,
                sample["t_s"],
                sample["sent"],
                sample["applied"],
                sample["lag_s"],
            )

    def stop(self) -> List[dict]:
        self.halt.set()
        self.join(30)
        return self.samples


class Scenario:
    """One scenario's topic, subscription, fleet, pipeline processes and accounting."""

    def __init__(self, context, name: str, trains: int = 4, doors: int = 3, seed: int = 0):
        self.context, self.name = context, name
        context.firestore.reset()
        suffix = uuid.uuid4().hex[:6]
        self.topic_name, self.subscription = f"events-{name}-{suffix}", f"pipeline-{name}-{suffix}"
        stack.ensure_topic(PROJECT, self.topic_name, [self.subscription])
        self.client = make_client(PROJECT)
        fleet = {f"t{i}": [f"t{i}-car{d + 1}-door1" for d in range(doors)] for i in range(trains)}
        for train, devices in fleet.items():
            registry.set_train(self.client, "trains", train, 300, f"Train {train}")
            for device in devices + [f"hb-{train}"]:
                registry.register_device(self.client, "devices", device, train, device.split("-", 1)[-1])
        self.devices = Devices(stack.topic_path(PROJECT, self.topic_name), fleet, seed)
        self.devices.keys.register(
            self.client,
            "devices",
            [d for devices in fleet.values() for d in devices] + [f"hb-{t}" for t in fleet],
            control_trains=["*"],
        )
        self.heartbeats = Heartbeats(self.devices)
        self.processes = []

    def start_pipeline(self, *extra_args: str):
        log_path = os.path.join(self.context.work_dir, f"{self.name}-{len(self.processes)}.log")
        process = stack.start_pipeline(
            PROJECT, self.subscription, *PIPELINE_ARGS, *extra_args, env=self.context.pipeline_env, log_path=log_path
        )
        process.log_path = log_path
        self.processes.append(process)
        return process

    def warm_up(self, process, timeout_s: float = 120) -> None:
        """Waits until this process applies new traffic: a probe count (+1, part of the truth)
        shows in realtime (a restarted job finds the old job's documents already there)."""
        if not self.heartbeats.is_alive():
            self.heartbeats.start()
        train = sorted(self.devices.trains)[0]
        probe = self.devices.make(self.devices.trains[train][0], 1)
        self.devices.publish(probe)

        def applied():
            if process.poll() is not None:
                return True
            doc = self.client.collection("realtime").document(train).get().to_dict() or {}
            return ((doc.get("devices_seen") or {}).get(probe.device) or {}).get("seq", 0) >= probe.seq

        stack.wait_for(applied, timeout_s, what=f"{self.name}: the pipeline's first writes")
        if process.poll() is not None:
            raise RuntimeError(f"{self.name}: the pipeline died:\n{tail(process)}")

    def prime(self, process, people: int = 200) -> None:
        """Boards `people` on every train and waits until realtime shows it; later alightings
        keep each train at least `people` - 50 (see Devices.floor)."""
        for _train, doors in self.devices.trains.items():
            for _ in range(people // 100):
                self.devices.publish(self.devices.make(doors[0], 100))
        stack.wait_for(
            lambda: (
                process.poll() is not None or all((self.realtime().get(t) or 0) >= people for t in self.devices.trains)
            ),
            60,
            what=f"{self.name}: the primed counts",
        )
        self.devices.floor = people - 50

    def start_primed(self):
        """A pipeline started, applying traffic, with every train primed (see `prime`)."""
        process = self.start_pipeline()
        self.warm_up(process)
        self.prime(process)
        return process

    def kill(self, process) -> None:
        stack.stop_process(process, sig=signal.SIGKILL)

    def realtime(self) -> Dict[str, int]:
        return {d.id: (d.to_dict() or {}).get("current_value") for d in self.client.collection("realtime").stream()}

    def applied_events(self) -> Dict[str, int]:
        events = collections.Counter()
        for doc in self.client.collection("history").stream():
            data = doc.to_dict() or {}
            events[data.get("train")] += int(data.get("events") or 0)
        return {t: events.get(t, 0) for t in self.devices.trains}

    def dead_letters(self) -> Dict[str, int]:
        return dict(
            collections.Counter(
                (d.to_dict() or {}).get("reason") for d in self.client.collection("dead_letters").stream()
            )
        )

    def exact(self) -> bool:
        realtime = self.realtime()
        return (
            all(realtime.get(t) == self.devices.truth[t] for t in self.devices.trains)
            and self.applied_events() == self.devices.expected_events()
        )

    def wait_exact(self, process, timeout_s: float) -> Optional[float]:
        """Seconds until realtime and history match the truth, or None if they never do."""
        began = time.monotonic()
        deadline = began + timeout_s
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{self.name}: the pipeline died:\n{tail(process)}")
            if self.exact():
                return time.monotonic() - began
            time.sleep(0.25)
        return None

    def wait_progressing(self, process, progress: Progress, stuck_s: float, cap_s: float) -> str:
        """Waits while the pipeline catches up: until the numbers are exact ("exact"), `progress`
        shows no new applied count for `stuck_s` ("stuck"), or `cap_s` passed ("cap")."""
        began = time.monotonic()
        last_applied, moved_at = None, began
        while time.monotonic() - began < cap_s:
            if self.wait_exact(process, timeout_s=5) is not None:
                return "exact"
            applied = progress.samples[-1]["applied"] if progress.samples else None
            if applied != last_applied:
                last_applied, moved_at = applied, time.monotonic()
            elif time.monotonic() - moved_at >= stuck_s:
                return "stuck"
        return "cap"

    def wait_exact_republishing(self, process, since: float):
        """wait_exact for 120 s; if not exact by then, one more round of re-publishing, as a
        device would after a timeout, and 60 s more. (recovery s or None, messages re-published)."""
        recovery = self.wait_exact(process, timeout_s=120)
        if recovery is not None:
            return recovery, 0
        again = self.devices.republish_unapplied(self.client)
        recovery = self.wait_exact(process, timeout_s=60)
        return (None if recovery is None else time.monotonic() - since), again

    def result(self, recovery_s: Optional[float], dead_lettered: Optional[int] = None, **extra) -> dict:
        truth, expected = self.devices.truth, self.devices.expected_events()
        realtime, applied = self.realtime(), self.applied_events()
        lost = sum(max(0, expected[t] - applied[t]) for t in expected)
        double = sum(max(0, applied[t] - expected[t]) for t in expected)
        count_error = sum(abs((realtime.get(t) or 0) - truth[t]) for t in self.devices.trains)
        dead = self.dead_letters()
        dead_total = sum(dead.values()) if dead_lettered is None else dead_lettered
        sent = self.devices.published
        row = {
            "name": self.name,
            "sent": sent,
            "accepted": sent - dead_total,
            "dead_lettered": dead_total,
            "dead_letter_reasons": dead,
            "lost": lost,
            "double_counted": double,
            "count_error": count_error,
            "recovery_s": None if recovery_s is None else round(recovery_s, 1),
            "distinct_count_messages": sum(expected.values()),
        }
        row.update(extra)
        row["passed"] = bool(
            recovery_s is not None and lost == 0 and double == 0 and count_error == 0 and row.get("passed", True)
        )
        if not row["passed"]:
            row["mismatch"] = self.mismatch(realtime, applied)
        return row

    def mismatch(self, realtime: Dict[str, int], applied: Dict[str, int]) -> dict:
        """For whoever looks into a failure: each train whose numbers differ from the truth, with
        the seqs its devices sent that realtime's devices_seen does not hold as applied."""
        expected = self.devices.expected_events()
        docs = {d.id: d.to_dict() or {} for d in self.client.collection("realtime").stream()}
        unapplied = self.devices.unapplied(docs)
        out = {}
        for train in self.devices.trains:
            if (realtime.get(train), applied[train]) == (self.devices.truth[train], expected[train]):
                continue
            ranges = documents.applied_ranges(docs.get(train, {}))
            out[train] = {
                "realtime": realtime.get(train),
                "truth": self.devices.truth[train],
                "events_in_history": applied[train],
                "events_sent": expected[train],
                "unapplied": [f"{m.device}:{m.seq}" for m in unapplied if m.train == train][:20],
                "ranges": {d: r for d, r in ranges.items() if d in self.devices.train_of},
            }
        return out

    def close(self) -> None:
        self.heartbeats.stop()
        for process in self.processes:
            stack.stop_process(process)


def tail(process, lines: int = 30) -> str:
    try:
        with open(process.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""
