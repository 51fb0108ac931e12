"""pipeline.local_runner: the local runner computes a DoFn class's state and timer specs once."""

import collections

import apache_beam as beam
import pytest
from apache_beam.coders import coders
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.direct import transform_evaluator
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from occupancy import fold
from pipeline import local_runner
from transforms.occupancy import FoldOccupancy


class RunningSum(beam.DoFn):
    TOTAL = ReadModifyWriteStateSpec("total", coders.VarIntCoder())

    def process(self, element, total=beam.DoFn.StateParam(TOTAL)):
        value = (total.read() or 0) + element[1]
        total.write(value)
        yield element[0], value


@pytest.fixture
def counted(monkeypatch):
    """install()ed for the test only; counts the specs computed (per class) and asked for."""
    computed, asked = collections.Counter(), collections.Counter()
    original = local_runner._original_get_dofn_specs

    def computing(dofn):
        computed[type(dofn).__name__] += 1
        return original(dofn)

    def asking(dofn):
        asked[type(dofn).__name__] += 1
        return local_runner.get_dofn_specs(dofn)

    monkeypatch.setattr(local_runner, "_original_get_dofn_specs", computing)
    local_runner._cached_specs.cache_clear()
    monkeypatch.setattr(userstate, "get_dofn_specs", userstate.get_dofn_specs)
    monkeypatch.setattr(transform_evaluator, "get_dofn_specs", transform_evaluator.get_dofn_specs)
    local_runner.install()
    assert userstate.get_dofn_specs is transform_evaluator.get_dofn_specs is local_runner.get_dofn_specs
    monkeypatch.setattr(userstate, "get_dofn_specs", asking)
    monkeypatch.setattr(transform_evaluator, "get_dofn_specs", asking)
    yield computed, asked
    local_runner._cached_specs.cache_clear()


def test_the_specs_are_what_beam_computes():
    for dofn in (FoldOccupancy(fold.FoldConfig()), RunningSum(), beam.Map(lambda x: x).dofn):
        assert local_runner.get_dofn_specs(dofn) == local_runner._original_get_dofn_specs(dofn)
    states, timers = local_runner.get_dofn_specs(FoldOccupancy(fold.FoldConfig()))
    assert {s.name for s in states} == {"train_cell", "later", "visits"}
    assert {t.name for t in timers} == {"ts-flush"}  # Beam prefixes a TimerSpec name


def test_a_streaming_run_computes_each_classes_specs_once(counted):
    computed, asked = counted
    stream = TestStream()
    for i in range(20):  # a bundle each
        stream = stream.add_elements([("k", 1), ("j", 2)]).advance_watermark_to(10 * (i + 1))
    options = PipelineOptions(runner="BundleBasedDirectRunner")
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=options) as p:
        sums = p | stream | "Sum" >> beam.ParDo(RunningSum()) | beam.Filter(lambda kv: kv[1] >= 20)
        assert_that(
            sums,
            equal_to(
                [
                    ("k", 20),
                    ("j", 20),
                    ("j", 22),
                    ("j", 24),
                    ("j", 26),
                    ("j", 28),
                    ("j", 30),
                    ("j", 32),
                    ("j", 34),
                    ("j", 36),
                    ("j", 38),
                    ("j", 40),
                ]
            ),
        )
    assert asked["RunningSum"] >= 20  # the runner asks at every bundle...
    assert computed["RunningSum"] == 1  # ...and it is computed once


def test_a_pull_of_more_than_4_mib_from_the_emulator_works_once_installed(pubsub_emulator, monkeypatch):
    """The hostile_input flake: ten messages of which several 1 MB ones failed the local runner's
    pull (gRPC's default 4 MiB limit on the emulator's channel), unacknowledged, again and again."""
    import uuid

    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.subscriber import client as subscriber_client

    from local import stack

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host_port)
    monkeypatch.setattr(subscriber_client, "grpc", subscriber_client.grpc)
    monkeypatch.setattr(userstate, "get_dofn_specs", userstate.get_dofn_specs)
    monkeypatch.setattr(transform_evaluator, "get_dofn_specs", transform_evaluator.get_dofn_specs)
    name = f"big-{uuid.uuid4().hex[:8]}"  # a topic name starts with a letter
    stack.ensure_topic(stack.PROJECT, name, [f"{name}-a", f"{name}-b"])
    publisher = pubsub_v1.PublisherClient()
    for _ in range(6):
        publisher.publish(stack.topic_path(stack.PROJECT, name), b"x" * 1_000_000).result(timeout=30)

    def pull(subscription):
        with pubsub_v1.SubscriberClient() as subscriber:
            return len(
                subscriber.pull(
                    subscription=stack.subscription_path(stack.PROJECT, subscription), max_messages=10, timeout=30
                ).received_messages
            )

    with pytest.raises(gexc.ResourceExhausted):
        pull(f"{name}-a")
    local_runner.install()
    assert pull(f"{name}-b") == 6
