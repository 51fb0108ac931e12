"""The pipeline's command-line options (docs/design.md, "Command line")."""

import argparse
import datetime
import re
import zoneinfo

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from occupancy.cli import positive_float

# Chosen from `make bench`'s flush_policy step (docs/sizing.md, "Flush policy").
DEFAULT_FLUSH_INTERVAL_S = 5.0


def _timezone(text: str) -> str:
    zoneinfo.ZoneInfo(text)  # raises for an unknown zone
    return text


def bigquery_dataset(text: str) -> str:
    project, _, dataset = text.rpartition(".")
    # A dataset's name is letters, digits and underscores (BigQuery's naming rules).
    if text and not (project and re.fullmatch(r"[A-Za-z0-9_]{1,1024}", dataset)):
        raise argparse.ArgumentTypeError(f"not PROJECT.DATASET: {text!r}")
    return text


def _hh_mm(text: str) -> str:
    from occupancy.fold import DailyReset

    if text:  # empty: no daily reset
        DailyReset.parse(text, datetime.timezone.utc)
    return text


class OccupancyOptions(PipelineOptions):
    """Options of the occupancy pipeline, on top of Beam's standard ones."""

    @classmethod
    def _add_argparse_args(cls, parser):
        source = parser.add_argument_group("input")
        source.add_argument(
            "--input_subscription",
            type=str,
            default=None,
            help="Pub/Sub subscription to read events from, "
            "projects/<project>/subscriptions/<name>. Use this locally: with a topic the "
            "local runner creates a new subscription on every start.",
        )
        source.add_argument(
            "--input_topic",
            type=str,
            default=None,
            help="Pub/Sub topic to read events from (a subscription is created for the job), "
            "projects/<project>/topics/<name>. Give this or --input_subscription.",
        )
        source.add_argument(
            "--archive",
            type=str,
            default=None,
            help="Replay (batch, not --streaming): the archived messages instead of Pub/Sub, a file "
            "pattern (local or gs://) of a Cloud Storage subscription's text files, or make run's "
            'archive (docs/operations.md, "Replay and backfill"). Instead of the two above.',
        )
        parser.add_argument(
            "--dead_letter_topic",
            type=str,
            default=None,
            help="Pub/Sub topic for rejected messages, projects/<project>/topics/<name>. "
            "Without it, dead letters go to the --dead_letter_collection in Firestore.",
        )
        parser.add_argument(
            "--firestore_project",
            type=str,
            default=None,
            help="Project of the Firestore database (default: --project).",
        )
        parser.add_argument("--firestore_database", type=str, default="(default)", help="Firestore database id.")
        parser.add_argument(
            "--registry_refresh_s",
            type=positive_float,
            default=60.0,
            help="Seconds between reloads of the cached device registry view on each worker.",
        )
        parser.add_argument(
            "--device_auth",
            type=str,
            default="require",
            choices=("require", "log", "off"),
            help='Device identity (docs/design.md, "Device identity"): require: a message not '
            "signed by its sender's registered key is a dead letter (unsigned, bad_signature, "
            "unknown_key, expired_key); log: verified and counted but accepted (while moving a "
            "fleet over); off: not checked, INSECURE, only for legacy devices that cannot sign.",
        )
        parser.add_argument(
            "--reorder_delay_s",
            type=float,
            default=2.0,
            help="Seconds an event waits for earlier events that arrive out of order before it "
            "is applied; realtime shows it only after that.",
        )
        parser.add_argument(
            "--flush_interval_s",
            type=positive_float,
            default=DEFAULT_FLUSH_INTERVAL_S,
            help="Width of a history bucket in seconds; also, while a train's counts keep coming, the least "
            "time between two of its flushes (its first count after a quiet spell and its last are flushed "
            'as soon as they are released; docs/design.md, "Timing").',
        )
        parser.add_argument(
            "--max_abs_delta",
            type=int,
            default=100,
            help="Largest |delta| accepted in one message; larger ones are dead-lettered.",
        )
        parser.add_argument(
            "--max_future_skew_s",
            type=float,
            default=300.0,
            help="Events stamped more than this many seconds in the future are dead-lettered.",
        )
        parser.add_argument(
            "--dedup_window",
            type=int,
            default=1000,
            help="Per device, how many seqs below the highest applied one are remembered; "
            "older seqs count as duplicates.",
        )
        parser.add_argument(
            "--legacy_timezone",
            type=_timezone,
            default="UTC",
            help="Time zone of the naive timestamps in the legacy CSV payload.",
        )
        parser.add_argument(
            "--daily_reset",
            type=_hh_mm,
            default="",
            help="HH:MM at which every train's occupancy returns to 0 (event time, in --timezone). Empty: off.",
        )
        parser.add_argument(
            "--timezone",
            type=_timezone,
            default="UTC",
            help="Time zone of --daily_reset, and of the service day of a train on no scheduled trip "
            "in the TIDES tables.",
        )
        tides = parser.add_argument_group('TIDES tables (docs/design.md, "TIDES tables")')
        tides.add_argument(
            "--tides_output",
            type=str,
            default="",
            help="Where the job writes the TIDES tables stop_visits, passenger_events and trips_performed as Parquet "
            "files: a directory or a gs:// prefix. Empty: not written.",
        )
        tides.add_argument(
            "--tides_bigquery",
            type=bigquery_dataset,
            default="",
            help="The BigQuery dataset, PROJECT.DATASET, whose stop_visits, passenger_events and trips_performed "
            "tables the job writes the TIDES rows to, exactly once (Storage Write API; make the "
            "tables with python -m adapters.tides_bigquery create). Empty: not written. The forecast job "
            "(python -m pipeline.forecast) reads its history from the same tables.",
        )
        tides.add_argument(
            "--gtfs_static",
            type=str,
            default="",
            help="The static GTFS feed (zip; local or gs://) the stop visits are matched to, as the "
            "API's --gtfs_static. Empty: every visit is unscheduled, numbered along the train's day.",
        )
        tides.add_argument(
            "--tides_window_s",
            type=positive_float,
            default=300.0,
            help="Seconds of event time per file of each table and service date.",
        )
        tides.add_argument(
            "--stop_gap_s",
            type=positive_float,
            default=30.0,
            help="Seconds without a count of a train's doors after which it has left the stop: less "
            "than the shortest run between two stops, more than the quietest moment of a dwell.",
        )
        parser.add_argument(
            "--write_retry_deadline_s",
            type=positive_float,
            default=60.0,
            help="How long transient Firestore (and BigQuery) errors are retried before the bundle fails "
            "(the runner then retries it).",
        )
        collections = parser.add_argument_group("Firestore collections")
        for name, default in (
            ("realtime", "realtime"),
            ("history", "history"),
            ("devices", "devices"),
            ("trains", "trains"),
            ("dead_letter", "dead_letters"),
            ("trips", "trips"),
        ):
            collections.add_argument(
                f"--{name}_collection",
                type=str,
                default=default,
                help=f"Firestore collection for {name.replace('_', ' ')} documents.",
            )

    def firestore_project_id(self) -> str:
        return self.firestore_project or self.view_as(GoogleCloudOptions).project

    def validate_occupancy(self) -> None:
        """Checks what argparse cannot: exactly one input."""
        if sum(map(bool, (self.input_subscription, self.input_topic, self.archive))) != 1:
            raise ValueError("give exactly one of --input_subscription, --input_topic and --archive")
        if not self.firestore_project_id():
            raise ValueError("give --project or --firestore_project")
