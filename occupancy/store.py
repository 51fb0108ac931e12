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
from typing import Callable, List, Optional, Sequence, Tuple

from google.api_core import exceptions as gexc

_LOGGER = logging.getLogger(__name__)

# Errors that may succeed when tried again.
TRANSIENT = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.Aborted,
             gexc.ResourceExhausted, gexc.InternalServerError, gexc.TooManyRequests,
             gexc.GatewayTimeout, gexc.BadGateway)
# Errors that cannot succeed on retry: the documents go to the dead letters.
PERMANENT = (gexc.InvalidArgument, gexc.PermissionDenied, gexc.FailedPrecondition,
             gexc.Unauthenticated, gexc.NotFound, gexc.BadRequest)

MAX_BATCH = 500  # Firestore's limit of writes per commit

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

    def __init__(self, initial_s: float = 0.25, max_backoff_s: float = 8.0, deadline_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep):
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
            except TRANSIENT as e:
                if time.monotonic() - start + backoff > self.deadline_s:
                    _LOGGER.error("Giving up after %.1fs of transient errors: %s",
                                  time.monotonic() - start, e)
                    raise
                on_retry(e)
                _LOGGER.warning("Transient Firestore error, retrying in %.2fs: %s", backoff, e)
                self.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, self.max_backoff_s)


def commit_documents(client, writes: Sequence[Tuple[str, str, dict]], policy: RetryPolicy,
                     on_retry: Callable[[Exception], None] = lambda e: None
                     ) -> List[Tuple[Tuple[str, str, dict], Exception]]:
    """Sets every (collection, doc_id, data) in batches of up to 500.

    Returns the writes that failed permanently, each with its error. Transient
    errors are retried by `policy` and re-raised when it gives up.
    """
    failed = []
    for i in range(0, len(writes), MAX_BATCH):
        chunk = writes[i:i + MAX_BATCH]
        try:
            policy.call(lambda: _commit(client, chunk), on_retry)
        except PERMANENT:
            # One bad document fails its whole batch: find it by writing one by one.
            for write in chunk:
                try:
                    policy.call(lambda: _commit(client, [write]), on_retry)
                except PERMANENT as e:
                    failed.append((write, e))
    return failed


def _commit(client, writes) -> None:
    batch = client.batch()
    for collection, doc_id, data in writes:
        batch.set(client.collection(collection).document(doc_id), data)
    batch.commit(retry=None, timeout=30)  # RetryPolicy is the one retry layer
    count_ops(writes=len(writes))
