"""WriteToFirestore: DocumentWrite -> documents set in Firestore; permanent failures -> dead letters."""
import json
import logging

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from occupancy import documents, wire
from occupancy.store import RetryPolicy, commit_documents, make_client

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
    """

    def __init__(self, project: str, database: str, collections: dict, retry_deadline_s: float = 60.0):
        self._project = project
        self._database = database
        self._collections = dict(collections)
        self._retry_deadline_s = retry_deadline_s
        self._writes = {name: beam.metrics.Metrics.counter("occupancy", f"{name}_writes")
                        for name in self._collections}
        self._retries = beam.metrics.Metrics.counter("occupancy", "write_retries")
        self._failed = beam.metrics.Metrics.counter("occupancy", "rejected_write_failed")

    def setup(self):
        from google.cloud import firestore
        self._client = make_client(self._project, self._database)
        self._server_timestamp = firestore.SERVER_TIMESTAMP
        self._policy = RetryPolicy(deadline_s=self._retry_deadline_s)

    def start_bundle(self):
        self._buffer = {}

    def process(self, write: documents.DocumentWrite):
        if self._add(write):
            yield from (beam.pvalue.TaggedOutput(DEAD_LETTER, d) for d in self._commit())

    def finish_bundle(self):
        for record in self._commit():
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, WindowedValue(
                record, Timestamp.now(), [GlobalWindow()]))

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
        batch = []
        for write in writes:
            data = dict(write.data)
            if write.collection == documents.REALTIME:
                data["updated_at"] = self._server_timestamp
            batch.append((self._collections[write.collection], write.doc_id, data))
        failed = commit_documents(self._client, batch, self._policy, lambda e: self._retries.inc())
        failed_ids = {(collection, doc_id) for (collection, doc_id, _), _ in failed}
        for write in writes:
            if (self._collections[write.collection], write.doc_id) not in failed_ids:
                self._writes[write.collection].inc()
        dead = []
        now_us = wire.now_us()
        for (collection, doc_id, data), error in failed:
            self._failed.inc()
            _LOGGER.error("Permanent failure writing %s/%s: %s", collection, doc_id, error)
            payload = json.dumps({"collection": collection, "doc_id": doc_id, "data": data},
                                 default=str, sort_keys=True).encode("utf-8")
            dead.append(wire.dead_letter(wire.WRITE_FAILED, f"{type(error).__name__}: {error}",
                                         payload, {}, None, now_us, "WriteToFirestore"))
        return dead


class WriteToFirestore(beam.PTransform):
    """PCollection[DocumentWrite] -> PCollection[dict] of `write_failed` dead letters."""

    def __init__(self, project: str, database: str, collections: dict, retry_deadline_s: float = 60.0):
        super().__init__()
        self._fn = WriteDocuments(project, database, collections, retry_deadline_s)

    def expand(self, writes):
        return (writes | "Write" >> beam.ParDo(self._fn).with_outputs(DEAD_LETTER, main="written")
                )[DEAD_LETTER]
