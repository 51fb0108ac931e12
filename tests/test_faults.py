"""`python -m faults --short` (what `make faults` runs in full): Firestore cut off mid-stream,
the pipeline SIGKILLed and restarted, a duplicate storm, 1,000 hostile payloads and the poison
messages that once stopped the fleet, each on the real emulators and the real pipeline process,
checked against the devices' ground truth.
"""

import json
import subprocess
import sys

import pytest

from faults import proxy


@pytest.mark.emulator
@pytest.mark.timeout(600)
def test_short_fault_suite_loses_nothing_and_counts_nothing_twice(tmp_path):
    out = tmp_path / "results.json"
    completed = subprocess.run(
        [sys.executable, "-m", "faults", "--short", f"--output={out}"], capture_output=True, text=True, timeout=590
    )
    assert out.exists(), (
        f"no results: exit {completed.returncode}\n{completed.stdout[-3000:]}\n{completed.stderr[-5000:]}"
    )
    results = json.loads(out.read_text())
    rows = {row["name"]: row for row in results["scenarios"]}
    assert set(rows) == {"firestore_outage", "pipeline_kills", "duplicate_storm", "hostile_input", "poison"}, rows
    failed = {name: row for name, row in rows.items() if not row["passed"]}
    if failed:  # printed whole: pytest cuts a long assertion message
        print(json.dumps(failed, indent=1, sort_keys=True), completed.stdout[-3000:], completed.stderr[-5000:])
    assert not failed, sorted(failed)
    for _name, row in rows.items():
        assert (row["lost"], row["double_counted"], row["count_error"]) == (0, 0, 0), row
        assert row["accepted"] + row["dead_lettered"] == row["sent"], row
        assert row["recovery_s"] is not None, row
    assert rows["hostile_input"]["dead_lettered"] == rows["hostile_input"]["hostile"] == 1000
    assert rows["hostile_input"]["crashed"] is False
    assert rows["firestore_outage"]["write_retries_logged"] > 0  # the outage reached the writes
    assert rows["pipeline_kills"]["republished"] > 0  # the kills did cost pulled messages: the gap is real
    poison = rows["poison"]
    assert poison["poison_dead_letters"] == poison["expected_dead_letters"] and poison["poison"] >= 7
    assert poison["pipeline_alive"] and poison["bridge_alive"] and poison["replays_changed_nothing"]
    assert poison["over_mqtt"] > 0 and poison["bridge_counters"]["status"] == "ok"
    assert completed.returncode == 0
    assert "firestore_outage" in completed.stdout  # the table


def test_proxy_cuts_and_restores_on_the_same_port():
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def echo():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            data = conn.recv(100)
            conn.sendall(data.upper())
            conn.close()

    threading.Thread(target=echo, daemon=True).start()
    p = proxy.Proxy(f"127.0.0.1:{server.getsockname()[1]}").start()
    host, port = p.host_port.split(":")

    def call():
        with socket.create_connection((host, int(port)), timeout=5) as c:
            c.sendall(b"hi")
            return c.recv(100)

    assert call() == b"HI"
    p.cut()
    with pytest.raises(OSError):
        call()
    p.restore()
    assert call() == b"HI" and p.host_port == f"{host}:{port}"
    p.stop()
    server.close()


def test_proxy_carries_large_transfers_both_ways_at_once():
    """64 MB echoed through the proxy while it is still being sent: both directions at once."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def echo():  # single-threaded: reads a chunk, writes it back, reads the next
        conn, _ = server.accept()
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    p = proxy.Proxy(f"127.0.0.1:{server.getsockname()[1]}").start()
    host, port = p.host_port.split(":")
    payload = b"x" * (64 * 1024 * 1024)
    received = bytearray()
    with socket.create_connection((host, int(port)), timeout=20) as c:

        def read():
            while len(received) < len(payload):
                chunk = c.recv(65536)
                if not chunk:
                    return
                received.extend(chunk)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        c.sendall(payload)
        reader.join(20)
    p.stop()
    server.close()
    assert len(received) == len(payload)
