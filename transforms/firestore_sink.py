"""WriteToFirestore: DocumentWrite -> documents set in Firestore; permanent failures -> dead letters."""

import json
import logging
import uuid

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from adapters.store import RetryPolicy, WriteConflict, commit_documents, count_ops, make_client
from occupancy import dead_letters, documents, wire
from occupancy.fencing import EPOCH_FIELD, WriterFence
from transforms import worker_cache

_LOGGER = logging.getLogger(__name__)
DEAD_LETTER = "dead_letter"


class WriteDocuments(beam.DoFn):
    """DocumentWrite -> nothing on the main output; `dead_letter` (dict) for permanent failures.

    Writes are buffered within a bundle and committed in batches of up to 500
    at the end of it (or when 500 are buffered). Within a bundle only the last
    write of each document is sent: a backlog of flushes of one train costs one
    realtime write. Transient errors are retried with capped back-off and then
    raised so that the runner retries the bundle; the writes are idempotent
    (full documents with deterministic ids), so a retry replaces, never adds.

    With a `writer_epoch_us`, realtime writes are guarded (occupancy.fencing):
    a train that a newer job writes is no longer written by this one.
    """

    # Rounds of re-reading and re-writing realtime documents another job changed meanwhile.
    CONFLICT_ROUNDS = 4

    def __init__(
        self, project: str, database: str, collections: dict, retry_deadline_s: float = 60.0, writer_epoch_us: int = 0
    ):
        self._project = project
        self._database = database
        self._collections = dict(collections)
        self._logical = {name: logical for logical, name in self._collections.items()}
        self._retry_deadline_s = retry_deadline_s
        self._writer_epoch_us = writer_epoch_us
        self._fenced = beam.metrics.Metrics.counter("occupancy", "fenced_writes")
        self._writes = {name: beam.metrics.Metrics.counter("occupancy", f"{name}_writes") for name in self._collections}
        self._retries = beam.metrics.Metrics.counter("occupancy", "write_retries")
        self._conflicts = beam.metrics.Metrics.counter("occupancy", "realtime_write_conflicts")
        self._failed = beam.metrics.Metrics.counter("occupancy", "rejected_write_failed")
        # One fence per worker process, whichever instance writes a train (occupancy.fencing).
        self._fence_key = f"fence-{writer_epoch_us}-{uuid.uuid4()}"

    def setup(self):
        from google.cloud import firestore

        self._client = make_client(self._project, self._database)
        self._server_timestamp = firestore.SERVER_TIMESTAMP
        self._delete_field = firestore.DELETE_FIELD
        self._policy = RetryPolicy(deadline_s=self._retry_deadline_s)
        self._fence = None
        if self._writer_epoch_us and documents.REALTIME in self._collections:
            epoch = self._writer_epoch_us
            self._fence = worker_cache.get(self._fence_key, lambda: WriterFence(epoch))

    def start_bundle(self):
        self._buffer = {}

    def process(self, write: documents.DocumentWrite):
        if self._add(write):
            yield from (beam.pvalue.TaggedOutput(DEAD_LETTER, d) for d in self._commit())

    def finish_bundle(self):
        for record in self._commit():
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, WindowedValue(record, Timestamp.now(), [GlobalWindow()]))

    def _add(self, write: documents.DocumentWrite) -> bool:
        """Buffers a write; True when the buffer is full and must be committed."""
        key = (write.collection, write.doc_id)
        self._buffer.pop(key, None)  # the later write of a document replaces the earlier
        self._buffer[key] = write
        return len(self._buffer) >= 500

    def _commit(self):
        if not self._buffer:
            return []
        writes = list(self._buffer.values())
        self._buffer = {}
        if self._fence is None:
            failed = self._commit_round(writes)
        else:
            # A train's realtime document and the history and trip documents of the same flush
            # are one commit: a job that died between two commits would leave realtime saying
            # a count was applied while its history bucket lacks it, and a job seeded from both
            # never writes that count to history again. Realtime is guarded, so a train found
            # fenced off or conflicting has its other writes held back with it.
            failed = self._commit_guarded(writes)
        dead = []
        now_us = wire.now_us()
        for (collection, doc_id, data, *_), error in failed:
            self._failed.inc()
            _LOGGER.error("Permanent failure writing %s/%s: %s", collection, doc_id, error)
            payload = json.dumps(
                {"collection": collection, "doc_id": doc_id, "data": data}, default=str, sort_keys=True
            ).encode("utf-8")
            dead.append(
                dead_letters.record(
                    wire.WRITE_FAILED, f"{type(error).__name__}: {error}", payload, {}, None, now_us, "WriteToFirestore"
                )
            )
        return dead

    def _commit_round(self, writes) -> list:
        return commit_documents(
            self._client,
            self._prepared(writes),
            self._policy,
            lambda e: self._retries.inc(),
            self._committed,
            # A document of no train is a group of its own.
            group_of=lambda w: _train_of(self._logical[w[0]], w[1], w[2]) or (w[0], w[1]),
        )

    def _commit_guarded(self, writes) -> list:
        """The writes, each train's realtime one with the other writes of its flush; those of a
        train whose realtime document another job changed under this one are tried again once
        it is read again. Returns the writes that failed for good, of every round.

        Bounded: after CONFLICT_ROUNDS the writes still conflicting are given up as permanent
        failures (dead letters), not raised (a streaming runner would retry the bundle for
        ever). Nothing is lost by it: a realtime document is the train's whole state and a
        history document its bucket's, each written whole again at the next flush of it, and
        the other job's write is the newer one.
        """
        failed = []
        for _ in range(self.CONFLICT_ROUNDS):
            try:
                return failed + self._commit_round(writes)
            except WriteConflict as conflict:
                failed += conflict.failed
                realtime = self._collections[documents.REALTIME]
                trains = {doc_id for collection, doc_id, _, _ in conflict.writes if collection == realtime}
                self._conflicts.inc(len(trains))
                self._fence.conflicted(trains)
                writes = [w for w in writes if _train_of(w.collection, w.doc_id, w.data) in trains]
        _LOGGER.error(
            "Realtime documents of %s trains kept changing under this job (%s rounds): "
            "another job writes them; drain or cancel one of the two (docs/faults.md, "
            '"Two jobs at once")',
            len({_train_of(w.collection, w.doc_id, w.data) for w in writes}),
            self.CONFLICT_ROUNDS,
        )
        error = WriteConflict(writes)
        return failed + [((self._collections[w.collection], w.doc_id, w.data), error) for w in writes]

    def _prepared(self, writes) -> list:
        """(collection name, doc_id, data, guard or None) for each write this job may make."""
        if self._fence is not None:
            self._read_unknown({w.doc_id for w in writes if w.collection == documents.REALTIME})
        prepared = []
        for write in writes:
            data, guard = dict(write.data), None
            if self._fence is not None:
                train = write.doc_id if write.collection == documents.REALTIME else data.get("train")
                if train is not None and self._fence.fenced(train):
                    self._fenced.inc()
                    continue
                if write.collection == documents.REALTIME:
                    data[EPOCH_FIELD] = self._writer_epoch_us
                    guard = self._fence.guard(train)
                    if not guard.must_not_exist:  # an update: what the document must no longer have
                        data.update({f: self._delete_field for f in documents.REALTIME_OPTIONAL if f not in data})
            if write.collection == documents.REALTIME:
                data["updated_at"] = self._server_timestamp
            prepared.append((self._collections[write.collection], write.doc_id, data, guard))
        return prepared

    def _read_unknown(self, trains) -> None:
        unknown = self._fence.unknown(trains)
        if not unknown:
            return
        collection = self._client.collection(self._collections[documents.REALTIME])
        # retry=None: RetryPolicy is the one retry layer (the library's own would wait out an outage
        # silently).
        snapshots = self._policy.call(
            lambda: list(self._client.get_all([collection.document(t) for t in unknown], retry=None, timeout=30)),
            lambda e: self._retries.inc(),
        )
        count_ops(reads=len(unknown))
        for snap in snapshots:
            self._fence.saw(snap.id, snap.to_dict() if snap.exists else None, snap.update_time)

    def _committed(self, write, result) -> None:
        collection, doc_id = write[0], write[1]
        logical = self._logical[collection]
        self._writes[logical].inc()
        if self._fence is not None and logical == documents.REALTIME:
            self._fence.wrote(doc_id, result.update_time)


def _train_of(collection: str, doc_id: str, data: dict):
    """The train a realtime, history or trip document is of (None for any other document);
    `collection` as documents names it (REALTIME, ...), not as this job's options do."""
    return doc_id if collection == documents.REALTIME else data.get("train")


class WriteToFirestore(beam.PTransform):
    """PCollection[DocumentWrite] -> PCollection[dict] of `write_failed` dead letters."""

    def __init__(
        self, project: str, database: str, collections: dict, retry_deadline_s: float = 60.0, writer_epoch_us: int = 0
    ):
        super().__init__()
        self._fn = WriteDocuments(project, database, collections, retry_deadline_s, writer_epoch_us)

    def expand(self, writes):
        return (writes | "Write" >> beam.ParDo(self._fn).with_outputs(DEAD_LETTER, main="written"))[DEAD_LETTER]
