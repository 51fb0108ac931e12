"""ReadArchive: archived Pub/Sub messages (files) -> PubsubMessage, for a replay or backfill.

Input: a file pattern, local or gs://, of the files a Pub/Sub Cloud Storage subscription
writes in its text format (each message's data, then a newline), as `make run` records them
too (local/archive.py). Output: PubsubMessage(data=the line without its newline,
attributes={}, message_id="<file>@<byte offset>"), the rest of the job as it reads Pub/Sub.

The message id says where the line is, so that a line the job refuses (not an event, a bad
signature) is a dead letter naming its file and byte offset (the dead letter's message_id);
nothing else is lost: every line is one message. Lines are redistributed after the read
(`Reshuffle`), as one file holds many minutes of the whole fleet.
"""

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.gcp.pubsub import PubsubMessage


class ReadArchiveLines(beam.DoFn):
    """fileio.ReadableFile -> PubsubMessage per line."""

    def __init__(self):
        self._lines = beam.metrics.Metrics.counter("replay", "archive_lines")
        self._files = beam.metrics.Metrics.counter("replay", "archive_files")

    def process(self, readable):
        path = readable.metadata.path
        offset = 0
        with readable.open() as f:
            for line in f:
                data = line[:-1] if line.endswith(b"\n") else line
                self._lines.inc()
                yield PubsubMessage(data, {}, message_id=f"{path}@{offset}")
                offset += len(line)
        self._files.inc()


class ReadArchive(beam.PTransform):
    """PBegin -> PCollection[PubsubMessage] (see the module's docstring)."""

    def __init__(self, pattern: str):
        super().__init__()
        self._pattern = pattern

    def expand(self, pbegin):
        return (
            pbegin
            | "MatchArchive" >> fileio.MatchFiles(self._pattern)
            | "OpenArchiveFiles" >> fileio.ReadMatches()
            | "ArchiveLines" >> beam.ParDo(ReadArchiveLines())
            | "SpreadArchiveLines" >> beam.Reshuffle()
        )
