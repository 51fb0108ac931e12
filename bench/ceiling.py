"""The runner ceiling: the least a streaming occupancy job does, on the same runner and source.

    Read (Pub/Sub subscription) -> key by train -> stateful sum with the flush timer -> realtime write

No parsing (train, delta and event time come from bench-only attributes), no
registry, no de-duplication, no history, no dead letters. What it keeps is the
pipeline's flush policy and cell (`occupancy.train_cell`), because that is what
the local runner charges for: one event-time timer per train, set where the
policy says; and one realtime write per train per flush,
batched per bundle through `adapters.store.commit_documents` (so the
operation counting hook counts its writes as well).

    python -m bench.ceiling --runner=BundleBasedDirectRunner --streaming --project=demo-occupancy \
        --input_subscription=projects/demo-occupancy/subscriptions/ceiling
"""

import logging

import apache_beam as beam
from apache_beam.coders import coders
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from adapters.store import RetryPolicy, commit_documents, make_client
from bench.workload import ATTR_DELTA, ATTR_T_US, ATTR_TRAIN
from occupancy import train_cell, wire
from transforms.coders import EventCoder, TrainCellCoder

_LOGGER = logging.getLogger(__name__)


class CeilingOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--input_subscription",
            type=str,
            required=True,
            help="Pub/Sub subscription, projects/<project>/subscriptions/<name>.",
        )
        parser.add_argument(
            "--flush_interval_s",
            type=float,
            default=1.0,
            help="Least time between two flushes of a train while its counts keep coming.",
        )
        parser.add_argument(
            "--reorder_delay_s",
            type=float,
            default=2.0,
            help="How long past its event time an event waits before it is summed.",
        )
        parser.add_argument(
            "--realtime_collection",
            type=str,
            default="realtime",
            help="Firestore collection of the realtime documents.",
        )


def key_by_train(message):
    attributes = message.attributes
    return attributes[ATTR_TRAIN], (int(attributes[ATTR_T_US]), int(attributes[ATTR_DELTA]))


class SumWithFlushTimer(beam.DoFn):
    """(train, (t_us, delta)) -> (train, value, last_us) once per flush that released events."""

    CELL = ReadModifyWriteStateSpec("cell", TrainCellCoder())
    LATER = BagStateSpec("later", EventCoder())
    TOTAL = ReadModifyWriteStateSpec("total", coders.TupleCoder([coders.VarIntCoder()] * 2))  # (value, last count)
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)

    def __init__(self, flush_interval_us: int, reorder_delay_us: int):
        self._policy = train_cell.FlushPolicy(reorder_delay_us, flush_interval_us)

    def _write(self, cell, stored, flush) -> None:
        at = train_cell.rearm(cell, self._policy)
        if at is not None:
            flush.set(Timestamp(micros=at))
        stored.write(cell)

    def process(
        self,
        element,
        stored=beam.DoFn.StateParam(CELL),
        later=beam.DoFn.StateParam(LATER),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        t_us, delta = element[1]
        cell = stored.read() or train_cell.TrainCell()
        event = wire.Event("", t_us, delta=delta)
        for beyond in train_cell.add(cell, event, self._policy):
            later.add(beyond)
        self._write(cell, stored, flush)

    @on_timer(FLUSH)
    def on_flush(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        stored=beam.DoFn.StateParam(CELL),
        later=beam.DoFn.StateParam(LATER),
        total=beam.DoFn.StateParam(TOTAL),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        cell = stored.read() or train_cell.TrainCell()
        cell.armed_us = 0
        ready, rewrite = train_cell.take_due(cell, fired.micros, self._policy, later.read)
        if rewrite is not None:
            later.clear()
            for event in rewrite:
                later.add(event)
        self._write(cell, stored, flush)
        if not ready:
            return
        value, last = total.read() or (0, 0)
        value += sum(e.delta for e in ready)
        last = max([last] + [e.event_time_us for e in ready if e.delta])
        total.write((value, last))
        yield key, value, last


class WriteRealtime(beam.DoFn):
    """(train, value, last_us) -> realtime/{train}, the bundle's last value per train, batched."""

    def __init__(self, project: str, collection: str):
        self._project = project
        self._collection = collection

    def setup(self):
        self._client = make_client(self._project)

    def start_bundle(self):
        self._buffer = {}

    def process(self, element):
        train, value, last = element
        self._buffer[train] = {"current_value": value, "last_updated": wire.from_micros(last) if last else None}

    def finish_bundle(self):
        if self._buffer:
            commit_documents(
                self._client, [(self._collection, train, data) for train, data in self._buffer.items()], RetryPolicy()
            )
            self._buffer = {}


def build(p: beam.Pipeline, options: CeilingOptions) -> None:
    project = options.view_as(GoogleCloudOptions).project
    (
        p
        | "Read" >> beam.io.ReadFromPubSub(subscription=options.input_subscription, with_attributes=True)
        | "KeyByTrain" >> beam.Map(key_by_train)
        | "Sum"
        >> beam.ParDo(SumWithFlushTimer(int(options.flush_interval_s * 1e6), int(options.reorder_delay_s * 1e6)))
        | "WriteRealtime" >> beam.ParDo(WriteRealtime(project, options.realtime_collection))
    )


def run(argv=None) -> None:
    options = CeilingOptions(argv)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, options)
    pipeline.run().wait_until_finish()


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
