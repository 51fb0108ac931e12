"""The door-device publisher (device/publisher.py) without Pub/Sub: line parsing, back-off, its
sources (replay, simulate), its imports, and its configuration errors.

Its outbox: tests/test_outbox.py; its delivery to the real Pub/Sub emulator:
tests/test_publisher_delivery.py."""

import itertools
import json
import os
import subprocess
import sys

import pytest

from device import sender, sources
from occupancy import wire
from tests.publisher_process import (
    run_publisher,
)

S = 1_000_000
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- pure: parsing, back-off ---------------------------------------------------------


@pytest.mark.parametrize(
    "line, delta",
    [
        ("+2", 2),
        ("-1", -1),
        ("3", 3),
        (" 0 ", 0),
        ("2,1", 1),
        ("2,-1", 1),
        ("0,4", -4),
        (" 5 , 2 \n", 3),
        ("", None),
        ("   \n", None),
        ("# a comment", None),
    ],
)
def test_parse_count_line(line, delta):
    assert sources.parse_count_line(line) == delta


@pytest.mark.parametrize("line", ["abc", "+", "1.5", "1,2,3", "-1,2", "1;2", "+101", "60,-60,"])
def test_parse_count_line_rejects(line):
    with pytest.raises(ValueError):
        sources.parse_count_line(line)


def test_parse_replay_line_csv_jsonl_and_header():
    t = wire.parse_time("2025-03-01T07:30:00.250Z")
    assert sources.parse_replay_line("2025-03-01T07:30:00.250Z,3") == (t, 3)
    assert sources.parse_replay_line("2025-03-01T08:30:00.250+01:00, -2") == (t, -2)
    assert sources.parse_replay_line(f"{t / S},1") == (t, 1)  # epoch seconds
    assert sources.parse_replay_line('{"event_time": "2025-03-01T07:30:00.250Z", "delta": 4}') == (t, 4)
    assert sources.parse_replay_line(json.dumps({"event_time": t / S, "delta": -1})) == (t, -1)
    for skipped in ("time,delta", "event_time,delta", "", "# note"):
        assert sources.parse_replay_line(skipped) is None
    for bad in (
        "2025-03-01 07:30:00,1",
        "yesterday,1",
        "2025-03-01T07:30:00Z,x",
        "1,2,3",
        '{"delta": 1}',
        '{"event_time": 1, "delta": "1"}',
        "{not json",
        "1,500",
    ):
        with pytest.raises(ValueError):
            sources.parse_replay_line(bad)


def test_backoff_grows_exponentially_is_capped_and_jittered():
    import random

    rng = random.Random(1)
    delays = [sender.backoff_s(n, cap_s=10, rng=rng) for n in range(1, 12)]
    assert 0.25 <= delays[0] <= 0.5 and 0.5 <= delays[1] <= 1.0 and 2 <= delays[3] <= 4
    assert all(5 <= d <= 10 for d in delays[6:])
    assert len({round(d, 6) for d in delays[6:]}) > 1, "jitter"


class _NoWait:
    """A stop event whose waits return at once: sources run without pacing."""

    def __init__(self):
        self.waited = []

    def wait(self, timeout=None):
        self.waited.append(timeout)
        return False

    def is_set(self):
        return False


def test_replay_source_paces_by_speed_resumes_and_retimes(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(
        "time,delta\n2025-03-01T07:30:00.000Z,2\n2025-03-01T07:30:01.000Z,oops\n2025-03-01T07:30:04.000Z,-1\n\n"
    )
    stop = _NoWait()
    readings = list(sources.replay_source(str(log), speed=2, retime=False, start_line=0, max_abs_delta=100, stop=stop))
    t0 = wire.parse_time("2025-03-01T07:30:00Z")
    assert [(r.delta, r.event_time_us, r.position) for r in readings if not r.error] == [
        (2, t0, 2),
        (-1, t0 + 4 * S, 4),
        (None, None, 5),
    ]
    assert [r.error for r in readings if r.error] == [
        f"{log}:3: delta must be an integer: '2025-03-01T07:30:01.000Z,oops'"
    ]
    assert stop.waited[-1] == pytest.approx(2.0, abs=0.1), "4 s of log at speed 2"

    resumed = list(
        sources.replay_source(str(log), speed=0, retime=True, start_line=2, max_abs_delta=100, stop=_NoWait())
    )
    assert [(r.delta, r.event_time_us, r.position) for r in resumed if not r.error] == [
        (-1, None, 4),
        (None, None, 5),
    ], "resumes after line 2; retimed counts are stamped when stored"


def test_simulate_source_gives_one_doors_station_bursts():
    readings = list(itertools.islice(sources.simulate_source("door-sim", 3, _NoWait()), 40))
    deltas = [r.delta for r in readings]
    assert all(r.error == "" and r.event_time_us is None for r in readings)
    assert 0 not in deltas and all(abs(d) <= 5 for d in deltas), "counts only, small deltas"
    assert any(d > 0 for d in deltas)


def test_the_publisher_imports_neither_beam_nor_firestore():
    code = (
        "import sys, device.publisher as p, device.outbox, sim.simulator, sim.publisher\n"
        "p.make_client_factory(None, 10, 0.01)\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('apache_beam', 'google.cloud.firestore')))\n"
        "assert not bad, bad\n"
        "assert 'google.cloud.pubsub_v1' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--device_id", "car3/door2"], "invalid device id 'car3/door2'"),
        (
            ["--device_id", "d1", "--credentials", "/nonexistent/key.json"],
            "bad credentials file /nonexistent/key.json: not found",
        ),
        (["--device_id", "d1", "--source", "replay"], "replay needs one FILE"),
        (["--device_id", "d1", "--emulator", "localhost:1", "--topic", "a/b"], "invalid --topic 'a/b'"),
        # Without a key every count would be sent unsigned, dead-lettered by the pipeline and
        # deleted here on Pub/Sub's ack: lost, silently. Unsigned only on purpose.
        (["--device_id", "d1", "--emulator", "localhost:1", "--private_key", ""], "no --private_key"),
        (["--device_id", "d1", "--unsigned", "--private_key", "/k.pem"], "--unsigned with --private_key"),
    ],
)
def test_configuration_errors_are_one_line_with_exit_code_2(argv, message, tmp_path):
    result = run_publisher(argv + ["--outbox", str(tmp_path / "o.sqlite")], timeout=30)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0]


def test_a_credentials_file_that_is_not_a_key_is_refused(tmp_path):
    key = tmp_path / "key.json"
    key.write_text('{"type": "service_account"}')
    result = run_publisher(
        [
            "--device_id",
            "d1",
            "--credentials",
            str(key),
            "--topic",
            "projects/p1/topics/events",
            "--outbox",
            str(tmp_path / "o.sqlite"),
        ],
        timeout=30,
    )
    assert result.returncode == 2 and result.stderr.startswith(f"error: bad credentials file {key}: ")
    assert len(result.stderr.strip().splitlines()) == 1
