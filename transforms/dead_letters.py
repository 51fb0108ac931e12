"""WriteDeadLetters: dead-letter records (dict) -> a Pub/Sub topic or a Firestore collection.

A record is bounded where it is made (occupancy.dead_letters.record: the payload's first
16 KiB, attributes cut), so that it fits either sink whatever the message was.
"""

import json
import logging

import apache_beam as beam

from occupancy import dead_letters, documents
from transforms.firestore_sink import WriteDocuments

_LOGGER = logging.getLogger(__name__)


def _to_pubsub(record: dict):
    from apache_beam.io.gcp.pubsub import PubsubMessage

    return PubsubMessage(
        json.dumps(record, sort_keys=True).encode("utf-8"), {"reason": record["reason"], "step": record["step"]}
    )


class StoreDeadLetters(WriteDocuments):
    """dict (occupancy.dead_letters.record) -> a document in the dead-letter collection; no output.

    One step rather than convert -> write -> log: the local runner pays a
    fixed cost per step per bundle, and this branch sees an (almost always
    empty) bundle from every upstream bundle.
    """

    def __init__(self, project: str, database: str, collection: str, retry_deadline_s: float = 60.0):
        super().__init__(project, database, {documents.DEAD_LETTERS: collection}, retry_deadline_s)

    def process(self, record: dict):
        write = documents.DocumentWrite(documents.DEAD_LETTERS, dead_letters.record_id(record), record)
        if self._add(write):
            self._log_unstorable(self._commit())

    def finish_bundle(self):
        self._log_unstorable(self._commit())

    @staticmethod
    def _log_unstorable(records) -> None:
        # A dead letter that cannot be stored is logged whole: never dropped silently.
        for record in records:
            _LOGGER.error("Could not store dead letter: %s", json.dumps(record, default=str, sort_keys=True))


class WriteDeadLetters(beam.PTransform):
    """PCollection[dict] (occupancy.dead_letters records) -> written to `topic` if given, else Firestore."""

    def __init__(
        self,
        topic: str = None,
        project: str = None,
        database: str = "(default)",
        collection: str = "dead_letters",
        retry_deadline_s: float = 60.0,
    ):
        super().__init__()
        self._topic = topic
        self._project = project
        self._database = database
        self._collection = collection
        self._retry_deadline_s = retry_deadline_s

    def expand(self, records):
        if self._topic:
            return (
                records
                | "ToPubsubMessage" >> beam.Map(_to_pubsub)
                | "PublishDeadLetters" >> beam.io.WriteToPubSub(self._topic, with_attributes=True)
            )
        return records | "StoreDeadLetters" >> beam.ParDo(
            StoreDeadLetters(self._project, self._database, self._collection, self._retry_deadline_s)
        )
