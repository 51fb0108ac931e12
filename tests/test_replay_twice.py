"""One archive replayed twice into the same collections leaves the same documents
(docs/design.md, "No element stops the job"): a replay meets what the first one applied in the
trains' realtime checkpoints, resets and terminus events included.

Before the resets were kept there, the second replay applied them again: a train at 10 went to
0 and a trip record was emptied.
"""

import os
import subprocess
import sys

from adapters import registry
from local.stack import PROJECT
from occupancy import wire
from sim.keyring import Keyring
from tests.support import REPO_ROOT

S = 1_000_000
T0 = wire.parse_time("2026-11-24T07:00:00Z")


def _archive(keys: Keyring) -> bytes:
    """Two trains' counts, a reset and a terminus on t1, as a Pub/Sub Cloud Storage subscription
    writes them (each message's data, then a newline)."""
    lines, seqs = [], {}

    def count(device, delta, t_s):
        seqs[device] = seqs.get(device, 0) + 1
        lines.append(keys.sign(device, wire.encode_event(device, delta, T0 + int(t_s * S), seqs[device])[0]))

    def control(kind, t_s):
        lines.append(keys.sign_control(wire.encode_reset("t1", T0 + int(t_s * S), kind)[0]))

    for i in range(10):
        count("t1-d1", 3, 1 + i)
        count("t2-d1", 2, 1.5 + i)
    control(wire.RESET, 12)
    for i in range(6):
        count("t1-d1", 2, 13 + i)
    control(wire.TERMINUS, 20)
    for i in range(5):
        count("t1-d1", 2, 21 + i)  # t1 at 10 after the terminus
        count("t2-d1", -1, 21.5 + i)
    return b"".join(line + b"\n" for line in lines)


def _documents(client) -> dict:
    return {
        name: {d.id: d.to_dict() for d in client.collection(name).stream()} for name in ("realtime", "history", "trips")
    }


def test_an_archive_replayed_twice_leaves_the_same_documents(firestore_client, firestore_emulator, tmp_path):
    keys = Keyring()
    for train in ("t1", "t2"):
        registry.set_train(firestore_client, "trains", train, 100)
        registry.register_device(firestore_client, "devices", f"{train}-d1", train)
    keys.register(firestore_client, "devices", ["t1-d1", "t2-d1"], control_trains=["*"])
    (tmp_path / "archive.txt").write_bytes(_archive(keys))
    command = [
        sys.executable,
        "-m",
        "pipeline.main",
        "--runner=FnApiRunner",
        f"--project={PROJECT}",
        f"--archive={tmp_path / 'archive.txt'}",
    ]

    def replay():
        done = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, **firestore_emulator.env()},
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return _documents(firestore_client)

    first = replay()
    assert {t: d["current_value"] for t, d in first["realtime"].items()} == {"t1": 10, "t2": 15}
    [trip] = first["trips"].values()
    assert (trip["ons"], trip["residual"]) == (12, 12)
    assert replay() == first
    assert list(firestore_client.collection("dead_letters").stream()) == []
