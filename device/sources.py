"""What a door device's counts come from: a sensor's lines on stdin, a replayed file, or a
simulated door; each yields Readings for the publisher's reader thread (device/publisher.py).

Depends on nothing outside the standard library and occupancy.wire (the `simulate`
source alone imports sim.simulator, a development aid, not part of a device install).
"""

import contextlib
import json
import threading
import time
from typing import Iterator, NamedTuple, Optional

from occupancy import wire

# The pipeline's default --max_abs_delta: a larger delta would only be dead-lettered.
DEFAULT_MAX_ABS_DELTA = 100
MAX_LINE_BYTES = 4096
_S = 1_000_000


# ---- parsing what the sources deliver --------------------------------------------


def parse_count_line(text: str, max_abs_delta: int = DEFAULT_MAX_ABS_DELTA) -> Optional[int]:
    """The delta of one stdin line, None for a blank or `#` comment line; ValueError if malformed.

    `+2`, `-1`, `3`: the delta itself. `IN,OUT` (e.g. `2,1`): people in and out
    since the last line, delta = IN - OUT. OUT may be written with a minus sign
    (`2,-1` is the same as `2,1`: some counters report leaving people as
    negative numbers); IN may not.
    """
    text = text.strip()
    if not text or text.startswith("#"):
        return None
    fields = [f.strip() for f in text.split(",")]
    try:
        numbers = [int(f) for f in fields]
    except ValueError:
        raise ValueError(f"not an integer delta or 'in,out' pair: {text!r}") from None
    if len(numbers) == 1:
        delta = numbers[0]
    elif len(numbers) == 2:
        people_in, people_out = numbers
        if people_in < 0:
            raise ValueError(f"people in cannot be negative: {text!r}")
        delta = people_in - abs(people_out)
    else:
        raise ValueError(f"expected 'delta' or 'in,out', got {len(fields)} fields: {text!r}")
    if abs(delta) > max_abs_delta:
        raise ValueError(f"|delta| {abs(delta)} exceeds --max_abs_delta {max_abs_delta}: {text!r}")
    return delta


def parse_time_value(value) -> int:
    """An event time as epoch microseconds: RFC 3339 with an offset, or epoch seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        return int(round(value * _S))
    text = str(value).strip()
    with contextlib.suppress(ValueError):
        return int(round(float(text) * _S))
    try:
        return wire.parse_time(text)
    except wire.Rejected as e:
        raise ValueError(e.detail) from None


def parse_replay_line(text: str, max_abs_delta: int = DEFAULT_MAX_ABS_DELTA):
    """(event_time_us, delta) of one log line, None for a blank, comment or header line.

    CSV `time,delta` or JSON Lines `{"event_time": ..., "delta": ...}`; times are
    RFC 3339 with an offset or epoch seconds. Raises ValueError if malformed.
    """
    text = text.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise ValueError(f"invalid JSON: {e}") from None
        if not isinstance(obj, dict) or "event_time" not in obj or "delta" not in obj:
            raise ValueError(f'expected {{"event_time": ..., "delta": ...}}: {text!r}')
        time_value, delta = obj["event_time"], obj["delta"]
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise ValueError(f"delta must be an integer: {text!r}")
    else:
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != 2:
            raise ValueError(f"expected 'time,delta': {text!r}")
        if fields[0].lower() in ("time", "event_time"):
            return None  # the CSV header
        time_value = fields[0]
        try:
            delta = int(fields[1])
        except ValueError:
            raise ValueError(f"delta must be an integer: {text!r}") from None
    if abs(delta) > max_abs_delta:
        raise ValueError(f"|delta| {abs(delta)} exceeds --max_abs_delta {max_abs_delta}: {text!r}")
    return parse_time_value(time_value), delta


# ---- sources ------------------------------------------------------------------------


class Reading(NamedTuple):
    """What a source yields: a count, a malformed input (`error`), or progress only.

    `event_time_us` None means "now, when stored". `position` is a replay's
    line number, stored with the count so that a restart resumes after it.
    """

    delta: Optional[int] = None
    event_time_us: Optional[int] = None
    error: str = ""
    position: Optional[int] = None


def stdin_source(stream, max_abs_delta: int, stop: threading.Event) -> Iterator[Reading]:
    """Lines from a binary, unbuffered stream (a count read is a count stored: no read-ahead)."""
    line_no = 0
    while not stop.is_set():
        raw = stream.readline(MAX_LINE_BYTES)
        if not raw:
            return
        line_no += 1
        if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the overlong line
                raw = stream.readline(MAX_LINE_BYTES)
            yield Reading(error=f"line {line_no}: longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            delta = parse_count_line(raw.decode("utf-8"), max_abs_delta)
        except (UnicodeDecodeError, ValueError) as e:
            yield Reading(error=f"line {line_no}: {e}")
            continue
        if delta is not None:
            yield Reading(delta)


def replay_source(
    path: str, *, speed: float, retime: bool, start_line: int, max_abs_delta: int, stop: threading.Event
) -> Iterator[Reading]:
    """The counts of a `time,delta` CSV or JSON Lines log, paced like the original / `speed`.

    Event times are the log's own unless `retime`, which stamps each count with
    the time it is replayed (so the log's pace, scaled by `speed`, becomes the
    event-time pace). `speed` 0 replays without waiting. Lines up to
    `start_line` were sent by an earlier run and are skipped.
    """
    first_us = started = None
    line_no = 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if line_no <= start_line:
                continue
            try:
                parsed = parse_replay_line(raw.decode("utf-8"), max_abs_delta)
            except (UnicodeDecodeError, ValueError) as e:
                yield Reading(error=f"{path}:{line_no}: {e}")
                continue
            if parsed is None:
                continue
            event_time_us, delta = parsed
            if first_us is None:
                first_us, started = event_time_us, time.monotonic()
            if speed > 0:
                due = started + (event_time_us - first_us) / _S / speed
                if stop.wait(max(0.0, due - time.monotonic())):
                    return  # not consumed: a restart replays this line
            yield Reading(delta, None if retime else event_time_us, position=line_no)
    yield Reading(position=line_no)  # trailing skipped lines count as consumed too


# A single door's share of a train in the simulator's model.
SIMULATED_DOOR_CAPACITY = 80


def simulate_source(device_id: str, seed: int, stop: threading.Event) -> Iterator[Reading]:
    """Realistic station bursts for one door, in real time, from sim/simulator.py's model."""
    from sim import simulator  # only this source needs it (a development aid)

    spec = simulator.TrainSpec(device_id, SIMULATED_DOOR_CAPACITY, device_id, (device_id,))
    # No injected faults and no reset: this is one honest door; the outbox assigns the seqs.
    config = simulator.SimConfig(faults=simulator.FaultRates(0.0, 0.0, 0.0), reset_at_start=False)
    started = time.monotonic()
    for message in simulator.Simulation([spec], seed, config).messages(wire.now_us()):
        if message.kind != simulator.COUNT:
            continue  # its heartbeats: --heartbeat_s is the publisher's own
        if stop.wait(max(0.0, started + message.send_at - time.monotonic())):
            return
        yield Reading(json.loads(message.payload)["delta"])
