"""Entrypoint: python -m pipeline.main --help"""

import logging

import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions

from pipeline.build import build_pipeline
from pipeline.options import OccupancyOptions


def run(argv=None) -> None:
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
