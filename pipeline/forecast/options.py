"""The forecast job's command-line options."""

import argparse
import datetime

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from occupancy.cli import positive_int
from pipeline.options import OccupancyOptions, bigquery_dataset


def _date(text: str) -> str:
    """A date, YYYY-MM-DD; empty: the default (argparse converts a default too, and Beam parses
    every options class for every job in the process)."""
    if not text:
        return text
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None
    return text


class ForecastOptions(PipelineOptions):
    """Options of the forecast job, on top of Beam's standard ones and those it shares with the
    occupancy job (`shared`: one definition per flag, as Beam parses every options class)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        source = parser.add_argument_group(
            "history",
            "With --gtfs_static (the static feed the trips ran on), --firestore_project, "
            "--firestore_database, --trains_collection (the registry whose trains' capacities give "
            "each row its percentage and level), and --tides_bigquery (PROJECT.DATASET: the TIDES tables "
            "are read from BigQuery instead of files, with the Storage Read API billed to --project): the "
            "occupancy job's options, read as it reads them.",
        )
        source.add_argument(
            "--tides_input",
            default="",
            help="Where the TIDES tables lie (local or gs://): Hive-partitioned Parquet as the "
            "occupancy job writes it (<root>/stop_visits/service_date=<day>/*.parquet) or one CSV "
            "per table (<root>/stop_visits.csv), as the TIDES samples are.",
        )
        for table in ("stop_visits", "trips_performed"):
            source.add_argument(
                f"--{table}",
                action="append",
                default=[],
                metavar="PATTERN",
                help=f"Files of the {table} table, CSV or Parquet (repeatable; ** matches any depth); "
                "instead of --tides_input's.",
            )
        ahead = parser.add_argument_group("forecast")
        ahead.add_argument(
            "--forecast_start",
            type=_date,
            default="",
            help="The first service date forecast, YYYY-MM-DD (default: tomorrow, UTC). "
            "Only history before it is used.",
        )
        ahead.add_argument("--forecast_days", type=positive_int, default=14, help="Days forecast (default: 14).")
        ahead.add_argument(
            "--forecast_output",
            default="",
            help="Where the rows are written as Parquet (local or gs://): "
            "<root>/occupancy_forecast/service_date=<day>/forecast.parquet (a later run replaces "
            "a day's); dead letters under <root>/dead_letters/.",
        )
        ahead.add_argument(
            "--forecast_bigquery",
            type=bigquery_dataset,
            default="",
            help="The BigQuery dataset, PROJECT.DATASET, whose occupancy_forecast table the rows are "
            "also appended to, exactly once per run (Storage Write API; the table is made with the TIDES "
            "tables: python -m adapters.tides_bigquery create). Every run appends its own rows: "
            "forecast_start tells the runs apart. Empty: not written.",
        )
        ahead.add_argument(
            "--forecast_collection",
            default="forecasts",
            help="Firestore collection of the documents the API serves, one per trip and service date, "
            "in the registry's project (empty: not written; default: forecasts).",
        )

    def start_date(self) -> datetime.date:
        if self.forecast_start:
            return datetime.date.fromisoformat(self.forecast_start)
        return datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=1)

    def shared(self) -> OccupancyOptions:
        """The options the occupancy job defines too, read as it reads them: --gtfs_static (the
        feed the trips ran on), --firestore_project (default --project; neither: no capacity, so
        no percentage and no level), --firestore_database, --trains_collection, --tides_bigquery."""
        return self.view_as(OccupancyOptions)

    def tides_bigquery(self) -> str:
        """The BigQuery dataset (PROJECT.DATASET) whose TIDES tables stop_visits and
        trips_performed are read instead of files: the occupancy job's --tides_bigquery, which
        it writes them to ("" : files)."""
        return self.shared().tides_bigquery

    def registry_project(self):
        return self.shared().firestore_project or self.view_as(GoogleCloudOptions).project

    def validate_forecast(self) -> None:
        files = self.tides_input or (self.stop_visits and self.trips_performed)
        if self.tides_bigquery() and (self.tides_input or self.stop_visits or self.trips_performed):
            raise ValueError(
                "give the history in files (--tides_input, --stop_visits, --trips_performed) "
                "or in BigQuery (--tides_bigquery), not both"
            )
        if not (files or self.tides_bigquery()):
            raise ValueError("give --tides_input, or --tides_bigquery, or both --stop_visits and --trips_performed")
        if not self.shared().gtfs_static:
            raise ValueError("give --gtfs_static: the static feed the trips ran on and will run on")
        if not self.forecast_output:
            raise ValueError("give --forecast_output")
