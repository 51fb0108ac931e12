"""The door device's durable outbox: counts wait here, in SQLite, until Pub/Sub has them.

A count is committed to the outbox (WAL journal, `synchronous=FULL`: every
commit is fsync'd) before anything is sent, together with its per-device `seq`,
which is incremented in the same transaction as the insert. So after a crash or
a power cut a count is either in the outbox with its seq, or it was never
accepted; a seq is never handed out twice and never skipped. A row is deleted
only after Pub/Sub acknowledged its publish; rows whose acknowledgement was lost
are sent again, and the pipeline drops the copy by `event_id` (`device:seq`).

One process at a time owns an outbox file (an exclusive `flock` on
`PATH.lock`): two publishers draining one outbox would reorder and double-send.

Pure standard library (sqlite3): no Google client is needed to use it.
"""

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional

from occupancy import wire

_LOGGER = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS seqs (
    device_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order = seq order of each device
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    delta INTEGER NOT NULL,
    event_time_us INTEGER NOT NULL,
    created_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class OutboxError(RuntimeError):
    """The outbox file cannot be used (in use by another process, unreadable, newer schema)."""


class Row(NamedTuple):
    """One count waiting in the outbox."""

    id: int
    device_id: str
    seq: int
    event_id: str
    delta: int
    event_time_us: int
    created_us: int

    def encode(self):
        """The (payload, attributes) to publish: always the same for the same row."""
        return wire.encode_event(self.device_id, self.delta, self.event_time_us, self.seq)


class Outbox:
    """A bounded, durable FIFO of counts with a persistent per-device seq.

    Thread-safe: one reader thread appends while a sender thread reads and
    deletes. Only local disk I/O happens under the lock, never network I/O.
    """

    def __init__(self, path: str, max_rows: int = 100_000, on_full: Optional[Callable[[int], None]] = None):
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.path = path
        self.max_rows = max_rows
        # Called (outside the lock) once each time the outbox fills up.
        self._on_full = on_full
        self._lock_file = self._take_file_lock(path)
        try:
            self._db = self._open(path)
            self._pending = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        except (sqlite3.Error, OutboxError) as e:
            self._lock_file.close()
            if isinstance(e, OutboxError):
                raise
            raise OutboxError(f"cannot open outbox {path}: {e}") from None
        self._cond = threading.Condition()
        self._closed = False

    # ---- opening -----------------------------------------------------------

    @staticmethod
    def _take_file_lock(path: str):
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            lock_file = open(path + ".lock", "a")
        except OSError as e:
            raise OutboxError(f"cannot create outbox {path}: {e.strerror}") from None
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.close()
            raise OutboxError(f"outbox {path} is in use by another publisher") from None
        return lock_file

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL in WAL mode syncs the WAL on every commit: a committed count survives a power cut.
        db.execute("PRAGMA synchronous=FULL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            db.close()
            raise OutboxError(
                f"outbox {path} has schema version {version}, newer than this publisher's {SCHEMA_VERSION}"
            )
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return db

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            self._db.close()
        self._lock_file.close()

    @contextlib.contextmanager
    def _transaction(self):
        """BEGIN IMMEDIATE ... COMMIT under the lock (caller holds self._cond)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---- the reader's side -------------------------------------------------------

    def append(
        self,
        device_id: str,
        delta: int,
        event_time_us: int,
        *,
        meta: Optional[Dict[str, str]] = None,
        cancel: Optional[threading.Event] = None,
    ) -> Row:
        """Stores one count with the device's next seq; returns its row once committed.

        Blocks while the outbox is full (never drops a count). When `cancel` is
        set while waiting, the count is stored anyway, one row over the bound:
        it has been read from the source already and would otherwise be lost.
        `meta` entries (e.g. a replay position) are written in the same transaction.
        """
        if not wire.valid_id(device_id):
            raise ValueError(f"invalid device id {device_id!r}")
        waited_s = self._wait_for_room(cancel)
        if waited_s:
            _LOGGER.warning("Outbox has room again after %.0fs: reading resumed", waited_s)
        with self._cond:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO seqs (device_id, last_seq) VALUES (?, 0) ON CONFLICT (device_id) DO NOTHING",
                    (device_id,),
                )
                db.execute("UPDATE seqs SET last_seq = last_seq + 1 WHERE device_id = ?", (device_id,))
                seq = db.execute("SELECT last_seq FROM seqs WHERE device_id = ?", (device_id,)).fetchone()[0]
                event_id = wire.event_id_for(device_id, seq)
                created_us = wire.now_us()
                cursor = db.execute(
                    "INSERT INTO outbox (device_id, seq, event_id, delta, event_time_us, created_us) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (device_id, seq, event_id, delta, event_time_us, created_us),
                )
                for key, value in (meta or {}).items():
                    self._set_meta(db, key, value)
            self._pending += 1
            self._cond.notify_all()
            return Row(cursor.lastrowid, device_id, seq, event_id, delta, event_time_us, created_us)

    def _wait_for_room(self, cancel: Optional[threading.Event]) -> float:
        """Blocks while the outbox is full; returns how long it waited (0.0: not at all)."""
        announced, started = False, time.monotonic()
        while True:
            with self._cond:
                if self._pending < self.max_rows or (cancel is not None and cancel.is_set()):
                    return time.monotonic() - started if announced else 0.0
                if announced:
                    self._cond.wait(0.5)
                    continue
            announced = True
            if self._on_full:
                self._on_full(self.max_rows)

    # ---- the sender's side -------------------------------------------------------

    def oldest(self, limit: int) -> List[Row]:
        """Up to `limit` rows, oldest first (each device's rows in seq order)."""
        with self._cond:
            rows = self._db.execute(
                "SELECT id, device_id, seq, event_id, delta, event_time_us, created_us FROM outbox ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [Row(*r) for r in rows]

    def delete(self, ids: Iterable[int]) -> int:
        """Removes acknowledged rows in one transaction; returns how many were removed."""
        ids = list(ids)
        if not ids:
            return 0
        with self._cond:
            with self._transaction() as db:
                removed = 0
                for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
                    chunk = ids[start : start + 500]
                    removed += db.execute(
                        f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(chunk))})", chunk
                    ).rowcount
            self._pending -= removed
            self._cond.notify_all()
        return removed

    def wait_for_rows(self, timeout_s: float) -> bool:
        """Waits until the outbox has a row (or `timeout_s` passes); True if it has one."""
        with self._cond:
            if not self._pending and not self._closed:
                self._cond.wait(timeout_s)
            return self._pending > 0

    def wait_until_empty(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
            return True

    # ---- inspection ------------------------------------------------------------

    def pending(self) -> int:
        with self._cond:
            return self._pending

    def oldest_age_s(self) -> Optional[float]:
        """How long the oldest waiting count has been in the outbox, or None when empty."""
        with self._cond:
            row = self._db.execute("SELECT MIN(created_us) FROM outbox").fetchone()
        return None if row[0] is None else max(0.0, (wire.now_us() - row[0]) / 1e6)

    def last_seq(self, device_id: str) -> int:
        """The last seq handed out to the device (0: none yet)."""
        with self._cond:
            row = self._db.execute("SELECT last_seq FROM seqs WHERE device_id = ?", (device_id,)).fetchone()
        return row[0] if row else 0

    @staticmethod
    def peek(path: str):
        """(counts waiting, highest seq handed out to any device) of an outbox file, read-only
        from another process while its publisher holds it (which Outbox() would refuse)."""
        if not os.path.exists(path):
            return 0, 0
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            pending = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            last = db.execute("SELECT MAX(last_seq) FROM seqs").fetchone()[0] or 0
            return pending, last
        except sqlite3.OperationalError:  # tables not created yet
            return 0, 0
        finally:
            db.close()

    def get_meta(self, key: str) -> Optional[str]:
        with self._cond:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._cond:
            with self._transaction() as db:
                self._set_meta(db, key, value)

    @staticmethod
    def _set_meta(db, key: str, value: str) -> None:
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, str(value)),
        )
