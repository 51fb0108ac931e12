"""Entrypoint: python -m pipeline.main --help

The one program the image's Flex Template launcher runs (templates/Dockerfile) for its three
templates: the forecast job (pipeline.forecast) when --forecast_output is given, as only
templates/forecast.json's parameters give it; the occupancy job otherwise (streaming, or the
batch replay with --archive)."""

import logging

import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions

from pipeline.build import build_pipeline
from pipeline.forecast.options import ForecastOptions
from pipeline.options import OccupancyOptions


def run(argv=None) -> None:
    if ForecastOptions(argv).forecast_output:
        from pipeline.forecast.__main__ import run as run_forecast

        return run_forecast(argv)
    options = OccupancyOptions(argv)
    if "direct" in (options.view_as(StandardOptions).runner or "DirectRunner").lower():
        from pipeline import local_runner

        local_runner.install()
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, options)
    pipeline.run().wait_until_finish()


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
