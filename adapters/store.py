"""Firestore access shared by the pipeline, the registry CLI and the tools.

One way to create a client (Application Default Credentials, or none against
the emulator: the client library honours FIRESTORE_EMULATOR_HOST itself) and
one way to commit writes: batched, transient errors retried with capped
exponential back-off and then re-raised, permanent errors reported per
document so that only the documents that cannot succeed are dead-lettered.
"""

import logging
import os
import random
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from google.api_core import exceptions as gexc

_LOGGER = logging.getLogger(__name__)

# Errors that may succeed when tried again.
TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.Aborted,
    gexc.ResourceExhausted,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.GatewayTimeout,
    gexc.BadGateway,
)
# Errors that cannot succeed on retry: the documents go to the dead letters.
PERMANENT = (
    gexc.InvalidArgument,
    gexc.PermissionDenied,
    gexc.FailedPrecondition,
    gexc.Unauthenticated,
    gexc.NotFound,
    gexc.BadRequest,
)

MAX_BATCH = 500  # Firestore's limit of writes per commit
# And of bytes per commit: Firestore takes 10 MiB a request, the emulator's gRPC server 4 MiB
# (a larger commit fails with ResourceExhausted, which looks transient and is retried in vain).
MAX_BATCH_BYTES = 3 * 1024 * 1024
# A guarded write (occupancy.fencing.Guard) whose precondition did not hold fails with one of these.
PRECONDITION_FAILED = (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.NotFound)
# A document the client cannot turn into a request (a value of no Firestore type, an integer past
# 64 bits): it cannot succeed either, and one such document must not fail its whole batch for ever.
UNENCODABLE = (TypeError, ValueError, OverflowError)


class WriteConflict(Exception):
    """Guarded writes whose document changed since it was read (and the writes held back with
    them); every other write was committed, or failed for good: `failed`, as commit_documents
    returns them."""

    def __init__(self, writes, failed=()):
        super().__init__(f"{len(writes)} guarded writes conflicted")
        self.writes, self.failed = writes, list(failed)


# Opt-in operation counting for the benchmark (bench/): the Firestore emulator
# neither bills nor counts, so reads and writes are counted where they are made.
# Off unless this variable names a file; then each call appends "<reads> <writes>"
# to it with one O_APPEND write (whole between threads, exact when the process dies).
COUNT_OPS_ENV = "OCCUPANCY_COUNT_OPS"


def count_ops(reads: int = 0, writes: int = 0) -> None:
    path = os.environ.get(COUNT_OPS_ENV)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{reads} {writes}\n".encode("ascii"))
    finally:
        os.close(fd)


def make_client(project: Optional[str], database: str = "(default)"):
    from google.cloud import firestore

    return firestore.Client(project=project, database=database)


class RetryPolicy:
    """Capped exponential back-off with jitter, bounded by a total time."""

    def __init__(
        self,
        initial_s: float = 0.25,
        max_backoff_s: float = 8.0,
        deadline_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        service: str = "Firestore",
        transient: Tuple[type, ...] = TRANSIENT,
    ):
        self.service = service  # named in the log: which store is failing
        self.transient = transient  # the errors retried: the service's own
        self.initial_s = initial_s
        self.max_backoff_s = max_backoff_s
        self.deadline_s = deadline_s
        self.sleep = sleep

    def call(self, fn, on_retry: Callable[[Exception], None] = lambda e: None):
        start = time.monotonic()
        backoff = self.initial_s
        while True:
            try:
                return fn()
            except self.transient as e:
                if time.monotonic() - start + backoff > self.deadline_s:
                    _LOGGER.error(
                        "Giving up after %.1fs of transient %s errors: %s", time.monotonic() - start, self.service, e
                    )
                    raise
                on_retry(e)
                _LOGGER.warning("Transient %s error, retrying in %.2fs: %s", self.service, backoff, e)
                self.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, self.max_backoff_s)


def commit_documents(
    client,
    writes: Sequence[tuple],
    policy: RetryPolicy,
    on_retry: Callable[[Exception], None] = lambda e: None,
    on_committed: Callable[[tuple, object], None] = lambda write, result: None,
    group_of: Optional[Callable[[tuple], object]] = None,
) -> List[Tuple[tuple, Exception]]:
    """Sets every (collection, doc_id, data[, guard]) in batches of up to 500.

    A write with a guard (occupancy.fencing.Guard) is committed only if its
    precondition holds (the document is absent, or last updated at the given
    time); it then updates every field given rather than setting the document.
    Returns the writes that failed permanently, each with its error. Transient
    errors are retried by `policy` and re-raised when it gives up. Guarded
    writes whose precondition failed raise WriteConflict at the end, after the
    others were committed, with the permanent failures in it. `on_committed(write, WriteResult)` follows each commit.

    `group_of(write)`: writes of one group are committed together or not at all (one batch,
    never split): a group whose guarded write conflicts is held back whole, in the
    WriteConflict; one with a permanent failure is written one by one, to find it.

    Args:
        client: the Firestore client.
        writes: (collection, doc_id, data[, guard]) tuples; `guard` an occupancy.fencing.Guard or None.
        policy: retries each commit's transient errors (`policy.transient`) within its deadline.
        on_retry: called with each transient error before the commit is tried again.
        on_committed: called with each write and its WriteResult once its batch is committed.
        group_of: a write's group key; None: every write is a group of its own.

    Returns:
        (write, error) for every write that failed permanently (PERMANENT, a document that cannot be
        encoded, an unguarded write's failed precondition); empty when all were committed.

    Raises:
        WriteConflict: a guarded write's precondition failed; raised after every other write was tried.
        TRANSIENT: the last transient error (any of `policy.transient`) once `policy` gives up.
    """
    groups: Dict[object, list] = {}
    for i, write in enumerate(writes):
        groups.setdefault(group_of(write) if group_of else i, []).append(write)
    failed, conflicts = [], []
    for chunk in _chunks(list(groups.values())):
        try:
            policy.call(lambda chunk=chunk: _commit(client, [w for g in chunk for w in g], on_committed), on_retry)
        except PERMANENT + PRECONDITION_FAILED + UNENCODABLE:
            # One bad document fails its whole batch: find it, a group then a write at a time.
            for group in chunk:
                if len(group) > 1:
                    try:
                        policy.call(lambda group=group: _commit(client, group, on_committed), on_retry)
                        continue
                    except PRECONDITION_FAILED:
                        if any(_guarded(w) for w in group):
                            conflicts += group  # held back whole: the caller tries the group again
                            continue
                    except PERMANENT + UNENCODABLE:
                        pass
                for write in group:
                    try:
                        policy.call(lambda write=write: _commit(client, [write], on_committed), on_retry)
                    except PRECONDITION_FAILED as e:
                        if _guarded(write):
                            conflicts.append(write)
                        else:
                            failed.append((write, e))
                    except PERMANENT + UNENCODABLE as e:
                        failed.append((write, e))
    if conflicts:
        raise WriteConflict(conflicts, failed)
    return failed


def _guarded(write: tuple) -> bool:
    """Whether a (collection, doc_id, data[, guard]) write has a precondition."""
    return len(write) > 3 and write[3] is not None


def _chunks(groups):
    """The groups' writes in order, in batches of at most MAX_BATCH writes and about
    MAX_BATCH_BYTES, a group never split."""
    from occupancy.documents import storage_size

    chunk, count, size = [], 0, 0
    for group in groups:
        group_size = sum(storage_size(f"{w[0]}/{w[1]}", w[2]) for w in group)
        if chunk and (count + len(group) > MAX_BATCH or size + group_size > MAX_BATCH_BYTES):
            yield chunk
            chunk, count, size = [], 0, 0
        chunk.append(group)
        count += len(group)
        size += group_size
    if chunk:
        yield chunk


def _commit(client, writes, on_committed) -> None:
    from adapters import firestore_writes as fw

    batch = client.batch()
    for collection, doc_id, data, *guard in writes:
        ref = client.collection(collection).document(doc_id)
        guard = guard[0] if guard else None
        if guard is None:
            fw.add_to_batch(batch, ref, data, fw.SET)
        elif guard.must_not_exist:
            fw.add_to_batch(batch, ref, data, fw.CREATE)
        else:
            fw.add_to_batch(batch, ref, data, fw.UPDATE, guard.update_time)
    results = batch.commit(retry=None, timeout=30)  # RetryPolicy is the one retry layer
    count_ops(writes=len(writes))
    for write, result in zip(writes, results):
        on_committed(write, result)
