"""Entrypoint: python -m pipeline.main --help

The one program the image's Flex Template launcher runs (templates/Dockerfile) for its three
templates: the forecast job (pipeline.forecast) when --forecast_output is given, as only
templates/forecast.json's parameters give it; the occupancy job otherwise (streaming, or the
batch replay with --archive)."""

import argparse
import logging
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions

from pipeline.build import build_pipeline
from pipeline.options import OccupancyOptions


def is_forecast(argv) -> bool:
    """Whether the arguments give --forecast_output (read alone: --help stays the occupancy job's)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--forecast_output", default="")
    return bool(parser.parse_known_args(sys.argv[1:] if argv is None else argv)[0].forecast_output)


def run(argv=None) -> None:
    if is_forecast(argv):
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
