"""Entrypoint: python -m pipeline.forecast --help"""

import logging

import apache_beam as beam

from pipeline.forecast.build import build_pipeline
from pipeline.forecast.options import ForecastOptions


def run(argv=None) -> None:
    options = ForecastOptions(argv)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, options)
    pipeline.run().wait_until_finish()


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
