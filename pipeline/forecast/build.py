"""build_pipeline(p, options): the forecast job's steps, composed (never run here)."""

import datetime
import json

import apache_beam as beam
from apache_beam.options.pipeline_options import GoogleCloudOptions

from pipeline.forecast.options import ForecastOptions
from transforms import forecast_io
from transforms.forecast import ForecastRoutes, JoinObservations
from transforms.tides_bigquery_sink import WriteTidesBigQuery

TABLES = ("stop_visits", "trips_performed")


def build_pipeline(p: beam.Pipeline, options: ForecastOptions):
    """Returns the paths written (a PCollection)."""
    options.validate_forecast()
    start = options.start_date()
    read = {}
    # Both tables as they stood at one moment (a minute ago: never ahead of BigQuery's clock), a
    # trip's visits and its trip performed together.
    snapshot = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    for table in TABLES:
        label = f"Read{''.join(w.title() for w in table.split('_'))}"
        dataset = options.tides_bigquery()
        if dataset:
            billing = options.view_as(GoogleCloudOptions).project or dataset.rpartition(".")[0]
            read[table] = p | label >> forecast_io.ReadTidesBigQuery(table, dataset, billing, start, snapshot)
        else:
            patterns = getattr(options, table) or forecast_io.patterns(options.tides_input, table)
            read[table] = p | label >> forecast_io.ReadTidesTable(table, patterns)
    shared = options.shared()
    observations = {t: read[t].rows for t in TABLES} | "JoinObservations" >> JoinObservations(shared.gtfs_static)
    forecast = observations | "ForecastRoutes" >> ForecastRoutes(
        shared.gtfs_static,
        start,
        options.forecast_days,
        options.registry_project(),
        shared.firestore_database,
        shared.trains_collection,
    )
    root = options.forecast_output.rstrip("/")
    dead = [read[t][forecast_io.DEAD_LETTER] for t in TABLES]
    project = options.registry_project()
    if options.forecast_collection and project:
        dead.append(
            forecast
            | "WriteForecastDocuments"
            >> forecast_io.WriteForecastDocuments(project, shared.firestore_database, options.forecast_collection)
        )
    if options.forecast_bigquery:
        dead.append(
            {forecast_io.TABLE: forecast | "ByServiceDate" >> beam.Map(forecast_io.at_service_date)}
            | "WriteForecastBigQuery"
            >> WriteTidesBigQuery(options.forecast_bigquery, forecast_io.DAY_S, shared.write_retry_deadline_s)
        )
    (
        dead
        | "DeadLetters" >> beam.Flatten()
        | "DeadLettersAsJson" >> beam.Map(json.dumps, sort_keys=True)
        | "WriteDeadLetters" >> beam.io.WriteToText(f"{root}/dead_letters/{start}", file_name_suffix=".jsonl")
    )
    return forecast | "WriteForecast" >> forecast_io.WriteForecastFiles(root, forecast_io.FORECAST_PART)
