"""WriteDeadLetters: dead-letter records (dict) -> a Pub/Sub topic or a Firestore collection."""
import json
import logging

import apache_beam as beam

from occupancy import documents, wire
from transforms.firestore_sink import WriteToFirestore

_LOGGER = logging.getLogger(__name__)


def _to_pubsub(record: dict):
    from apache_beam.io.gcp.pubsub import PubsubMessage
    return PubsubMessage(json.dumps(record, sort_keys=True).encode("utf-8"),
                         {"reason": record["reason"], "step": record["step"]})


def _log_lost(record: dict) -> None:
    # A dead letter that cannot be stored is logged whole: never dropped silently.
    _LOGGER.error("Could not store dead letter: %s", json.dumps(record, default=str, sort_keys=True))


class WriteDeadLetters(beam.PTransform):
    """PCollection[dict] (wire.dead_letter records) -> written to `topic` if given, else Firestore."""

    def __init__(self, topic: str = None, project: str = None, database: str = "(default)",
                 collection: str = "dead_letters", retry_deadline_s: float = 60.0):
        super().__init__()
        self._topic = topic
        self._project = project
        self._database = database
        self._collection = collection
        self._retry_deadline_s = retry_deadline_s

    def expand(self, records):
        if self._topic:
            return (records
                    | "ToPubsubMessage" >> beam.Map(_to_pubsub)
                    | "PublishDeadLetters" >> beam.io.WriteToPubSub(self._topic, with_attributes=True))
        return (records
                | "ToDocument" >> beam.Map(lambda r: documents.DocumentWrite(
                    documents.DEAD_LETTERS, wire.dead_letter_id(r), r))
                | "StoreDeadLetters" >> WriteToFirestore(
                    self._project, self._database, {documents.DEAD_LETTERS: self._collection},
                    self._retry_deadline_s)
                | "LogUnstorable" >> beam.Map(_log_lost))
