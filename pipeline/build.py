"""build_pipeline: composes the occupancy pipeline on a Pipeline; never runs it."""

import zoneinfo

import apache_beam as beam

from occupancy import documents, fold, wire
from pipeline.options import OccupancyOptions
from transforms import stop_visits
from transforms.archive import ReadArchive
from transforms.dead_letters import WriteDeadLetters
from transforms.enrich import EnrichWithTrain
from transforms.firestore_sink import WriteToFirestore
from transforms.occupancy import RealtimeSeed, RunningOccupancy
from transforms.parse import ParseEvents
from transforms.tides_bigquery_sink import WriteTidesBigQuery
from transforms.tides_sink import WriteTidesParquet

# Step labels are part of the job's contract: Dataflow's --update matches them.
READ, PARSE, ENRICH, OCCUPANCY, WRITE = (
    "ReadEvents",
    "ParseEvents",
    "EnrichWithTrain",
    "RunningOccupancy",
    "WriteToFirestore",
)
COLLECT_DEAD_LETTERS, WRITE_DEAD_LETTERS = "CollectDeadLetters", "WriteDeadLetters"
READ_ARCHIVE = "ReadArchive"
WRITE_TIDES = "WriteTidesParquet"
WRITE_TIDES_BIGQUERY = "WriteTidesBigQuery"


def fold_config(options: OccupancyOptions) -> fold.FoldConfig:
    daily_reset = (
        fold.DailyReset.parse(options.daily_reset, zoneinfo.ZoneInfo(options.timezone)) if options.daily_reset else None
    )
    return fold.FoldConfig(
        flush_interval_us=int(options.flush_interval_s * 1_000_000),
        reorder_delay_us=int(options.reorder_delay_s * 1_000_000),
        dedup_window=options.dedup_window,
        daily_reset=daily_reset,
    )


def _read(p, options: OccupancyOptions):
    """The messages: the subscription (or topic), or an archive in a replay.

    No `id_label`: Dataflow would de-duplicate by an attribute the publisher sets and no
    signature covers, so a message carrying a victim's next `event_id` would make Dataflow drop
    the real count. The fold de-duplicates by what the signature covers (device and seq).
    """
    if options.archive:  # a replay: the archived messages, in batch
        return p | READ_ARCHIVE >> ReadArchive(options.archive)
    kwargs = {"with_attributes": True}
    if options.input_subscription:
        kwargs["subscription"] = options.input_subscription
    else:
        kwargs["topic"] = options.input_topic
    return p | READ >> beam.io.ReadFromPubSub(**kwargs)


def _visits(options: OccupancyOptions):
    """The stop visits' tracker inside the fold (docs/design.md, "Stop visits"), or None."""
    if not (options.tides_output or options.tides_bigquery):
        return None
    return stop_visits.tracker(
        options.firestore_project_id(),
        options.firestore_database,
        options.trains_collection,
        options.registry_refresh_s,
        options.gtfs_static,
        options.timezone,
        options.stop_gap_s,
        hold_s=options.reorder_delay_s,
    )


def build_pipeline(p: beam.Pipeline, options: OccupancyOptions):
    """Applies every step to `p`; returns the writes and the dead letters (PCollections)."""
    options.validate_occupancy()
    return compose(_read(p, options), options)


def compose(messages, options: OccupancyOptions):
    """Every step after the read: PCollection[PubsubMessage] -> (writes, dead letters).

    Apart from the read so that the benchmark's SDK-harness run feeds the very
    same steps from a bounded source.
    """
    project, database = options.firestore_project_id(), options.firestore_database
    parsed = messages | PARSE >> ParseEvents(options.max_abs_delta, options.max_future_skew_s, options.legacy_timezone)
    enriched = parsed.events | ENRICH >> EnrichWithTrain(
        project,
        database,
        options.devices_collection,
        options.trains_collection,
        options.registry_refresh_s,
        options.device_auth,
    )
    seed = RealtimeSeed(
        project, database, options.realtime_collection, options.history_collection, options.write_retry_deadline_s
    )
    occupancy = enriched.keyed | OCCUPANCY >> RunningOccupancy(fold_config(options), seed, _visits(options))
    tables = {name: occupancy[name] for name in stop_visits.TABLES}
    if options.tides_output:
        tables | WRITE_TIDES >> WriteTidesParquet(options.tides_output, options.tides_window_s)
    tides_refused = ()
    if options.tides_bigquery:
        tides_refused = (
            tables
            | WRITE_TIDES_BIGQUERY
            >> WriteTidesBigQuery(options.tides_bigquery, options.tides_window_s, options.write_retry_deadline_s),
        )
    writes = occupancy["writes"]
    # The job's epoch: a job built later (a second job, a restart) fences this one off the
    # trains it writes (occupancy.fencing).
    write_failures = writes | WRITE >> WriteToFirestore(
        project,
        database,
        {
            documents.REALTIME: options.realtime_collection,
            documents.HISTORY: options.history_collection,
            documents.TRIPS: options.trips_collection,
        },
        options.write_retry_deadline_s,
        writer_epoch_us=wire.now_us(),
    )
    dead_letters = (
        parsed.dead_letter,
        enriched.dead_letter,
        occupancy["dead_letter"],
        write_failures,
        *tides_refused,
    ) | COLLECT_DEAD_LETTERS >> beam.Flatten()
    dead_letters | WRITE_DEAD_LETTERS >> WriteDeadLetters(
        options.dead_letter_topic, project, database, options.dead_letter_collection, options.write_retry_deadline_s
    )
    return writes, dead_letters
