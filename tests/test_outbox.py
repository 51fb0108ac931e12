"""The door device's outbox (device/outbox.py): seqs that survive a restart, rows that leave only
when acknowledged, a full outbox that blocks the reader, one owner at a time."""

import sqlite3
import threading
import time

import pytest

from device.outbox import Outbox, OutboxError
from occupancy import wire


def test_outbox_seq_is_persisted_and_continues_after_reopening(tmp_path):
    path = str(tmp_path / "o.sqlite")
    box = Outbox(path)
    rows = [box.append("door-a", d, 1000 + i) for i, d in enumerate((1, -1, 2))]
    assert [(r.seq, r.event_id) for r in rows] == [(1, "door-a:1"), (2, "door-a:2"), (3, "door-a:3")]
    box.delete([r.id for r in rows])
    box.close()
    box = Outbox(path)  # a restart: the seq continues even though the outbox is empty
    assert box.pending() == 0 and box.last_seq("door-a") == 3
    assert box.append("door-a", 5, 2000).seq == 4
    assert box.append("door-b", 1, 2001).seq == 1  # per device
    box.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_outbox_rows_come_oldest_first_and_leave_only_when_deleted(tmp_path):
    box = Outbox(str(tmp_path / "o.sqlite"))
    for i in range(5):
        box.append("door-a", i + 1, 1000 + i)
    first = box.oldest(3)
    assert [r.seq for r in first] == [1, 2, 3]
    assert box.oldest(3) == first, "reading does not remove: only an acknowledged delete does"
    assert box.delete([first[0].id, first[1].id]) == 2
    assert [r.seq for r in box.oldest(10)] == [3, 4, 5] and box.pending() == 3
    payload, attributes = box.oldest(1)[0].encode()
    assert payload == wire.encode_event("door-a", 3, 1002, 3)[0]
    assert attributes == {"event_id": "door-a:3", "event_time": wire.format_time(1002)}
    box.close()


def test_outbox_meta_is_written_with_the_count(tmp_path):
    box = Outbox(str(tmp_path / "o.sqlite"))
    box.append("door-a", 1, 1000, meta={"replay:/x": "7"})
    assert box.get_meta("replay:/x") == "7"
    box.set_meta("replay:/x", "9")
    assert box.get_meta("replay:/x") == "9" and box.get_meta("other") is None
    box.close()


def test_a_full_outbox_blocks_the_reader_until_rows_are_acknowledged(tmp_path):
    warnings = []
    box = Outbox(str(tmp_path / "o.sqlite"), max_rows=2, on_full=warnings.append)
    box.append("door-a", 1, 1)
    box.append("door-a", 1, 2)
    stored = []
    reader = threading.Thread(target=lambda: stored.append(box.append("door-a", 1, 3)))
    reader.start()
    time.sleep(0.5)
    assert reader.is_alive() and not stored and warnings == [2], "blocked, with one warning"
    box.delete([box.oldest(1)[0].id])
    reader.join(5)
    assert [r.seq for r in stored] == [3] and box.pending() == 2

    # Stopping while full: the count already read is stored anyway, one over the bound.
    cancel = threading.Event()
    late = threading.Thread(target=lambda: stored.append(box.append("door-a", 1, 4, cancel=cancel)))
    late.start()
    time.sleep(0.3)
    assert late.is_alive()
    cancel.set()
    late.join(5)
    assert [r.seq for r in stored] == [3, 4] and box.pending() == 3
    box.close()


def test_an_outbox_has_one_owner(tmp_path):
    path = str(tmp_path / "o.sqlite")
    box = Outbox(path)
    with pytest.raises(OutboxError, match="in use by another publisher"):
        Outbox(path)
    box.close()
    Outbox(path).close()  # free again
