"""`make run`'s live table: Firestore's realtime documents beside the simulator's truth, and a
footer of what the run did (local/demo.py starts and stops what it reads)."""

import logging
import shutil
import sys
import time
from typing import Dict, List, Optional

from google.api_core import exceptions as gexc

from local.table import Row, render
from local.terminal import CLEAR, relative, say, show
from occupancy import wire
from sim import simulator

_LOGGER = logging.getLogger(__name__)
REALTIME = "realtime"
DEAD_LETTERS = "dead_letters"
FIRESTORE_TIMEOUT_S = 5.0
PLAIN_INTERVAL_S = 5.0


def count_dead_letters(client) -> Optional[Dict[str, int]]:
    """Dead letters by reason (one count query per reason), or None if Firestore cannot say."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    counts = {}
    try:
        for reason in wire.REASONS:
            query = client.collection(DEAD_LETTERS).where(filter=FieldFilter("reason", "==", reason))
            counts[reason] = int(query.count().get(timeout=FIRESTORE_TIMEOUT_S)[0][0].value)
    except gexc.GoogleAPICallError as e:
        _LOGGER.warning("Could not count dead letters: %s", e)
        return None
    return counts


class Watch:
    """Redraws the table every --refresh seconds (a plain one every few seconds when stdout is not
    a terminal) until --duration is up or something the demo started fails."""

    def __init__(self, demo):
        self.demo = demo
        self.first_result_at: Optional[float] = None

    def read_rows(self) -> List[Row]:
        refs = [self.demo.client.collection(REALTIME).document(t.train_id) for t in self.demo.fleet]
        docs = {
            snap.id: snap.to_dict()
            for snap in self.demo.client.get_all(refs, timeout=FIRESTORE_TIMEOUT_S)
            if snap.exists
        }
        truth = self.demo.publisher.simulation.truth
        rows = []
        for train in self.demo.fleet:
            doc = docs.get(train.train_id) or {}
            last = doc.get("last_updated")
            expected = truth.value_at(train.train_id, wire.to_micros(last)) if last else None
            rows.append(
                Row(
                    train.train_id,
                    train.name,
                    doc.get("current_value"),
                    doc.get("capacity", train.capacity),
                    last,
                    expected,
                )
            )
        return rows

    def failure(self) -> Optional[str]:
        """Why the demo cannot go on, or None."""
        if self.demo.pipeline.poll() is not None:
            return (
                f"the pipeline exited with code {self.demo.pipeline.returncode}; "
                f"last lines of {relative(self.demo.log_path)}:\n{self.log_tail()}"
            )
        if self.demo.publisher.error is not None:
            return f"the device simulator stopped: {self.demo.publisher.error!r}"
        if self.demo.api is not None and self.demo.api.poll() is not None:
            return f"the API exited with code {self.demo.api.returncode}; see {relative(self.demo.api_log_path)}"
        return None

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.demo.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError as e:
            return f"(cannot read the log: {e})"

    def run(self) -> int:
        live = sys.stdout.isatty() and not self.demo.args.plain
        interval = self.demo.args.refresh if live else PLAIN_INTERVAL_S
        began = time.monotonic()
        deadline = began + self.demo.args.duration if self.demo.args.duration > 0 else None
        say(
            "running: "
            + (f"for {self.demo.args.duration:g}s" if deadline else "until Ctrl-C")
            + ("" if live else f"; a table every {interval:g}s")
        )
        next_show = began
        while True:
            problem = self.failure()
            if problem:
                say(f"error: {problem}")
                return 1
            now = time.monotonic()
            if now >= next_show or (deadline and now >= deadline):
                self.show(live, now - began)
                next_show = now + interval
            if deadline and now >= deadline:
                say(f"{self.demo.args.duration:g}s are up")
                return 0
            time.sleep(min(self.demo.args.refresh, max(0.05, (deadline or now + 1) - now)))

    def show(self, live: bool, elapsed: float) -> None:
        try:
            rows, error = self.read_rows(), None
        except gexc.GoogleAPICallError as e:
            rows, error = [], f"cannot read Firestore: {e}"
        if rows and self.first_result_at is None and any(r.value is not None for r in rows):
            self.first_result_at = time.monotonic()
        width = shutil.get_terminal_size().columns if live else 0
        text = render(rows, self.footer(elapsed, error), width)
        show((CLEAR if live else "\n") + text)

    def mqtt_line(self) -> str:
        counters = self.demo.mqtt.counters() if self.demo.mqtt else None
        if counters is None:
            return "MQTT bridge: not answering"
        return (
            f"MQTT bridge: {counters['status']}, received {counters['received']}, forwarded "
            f"{counters['forwarded']}, in flight {counters['in_flight']}, publish errors "
            f"{counters['publish_errors']}"
        )

    def footer(self, elapsed: float, error: Optional[str]) -> List[str]:
        c = self.demo.publisher.counts()
        by_reason = count_dead_letters(self.demo.client)
        dead = None if by_reason is None else sum(by_reason.values())
        dead_text = (
            "?"
            if dead is None
            else f"{dead}"
            + (f" ({dead - self.demo.dead_letters_before} this run)" if self.demo.dead_letters_before else "")
            + (" (" + ", ".join(f"{reason} {n}" for reason, n in sorted(by_reason.items()) if n) + ")" if dead else "")
        )
        up = time.monotonic() - self.demo.pipeline_started
        status = (
            f"running (pid {self.demo.pipeline.pid}, up {up:.0f}s)"
            if self.first_result_at
            else f"starting, no results yet (up {up:.0f}s)"
        )
        until = (f" of {self.demo.args.duration:g}s" if self.demo.args.duration > 0 else "") + ", Ctrl-C stops"
        lines = [
            f"messages published: {sum(c[k] for k in simulator.KINDS)} ({c[simulator.COUNT]} counts, "
            f"{c[simulator.HEARTBEAT]} heartbeats, {c[simulator.RESET]} resets)",
            f"faults injected: {c[simulator.DUPLICATE]} duplicates, {c[simulator.OUT_OF_ORDER]} out of "
            f"order, {c[simulator.MALFORMED]} malformed; publish failures: {c['failed']}",
            f"dead letters: {dead_text}    pipeline: {status}",
            self.mqtt_line(),
            self.demo.forecast.status() if self.demo.forecast else "forecast: not started",
            f"pipeline log: {relative(self.demo.log_path)}    dashboard: {self.demo.api_url}/",
            f"EXPECTED: the simulator's count at the same event time.  Elapsed {elapsed:.0f}s{until}",
        ]
        if error:
            lines.append(f"warning: {error}")
        return lines
