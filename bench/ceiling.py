"""The runner ceiling: the least a streaming occupancy job does, on the same runner and source.

    Read (Pub/Sub subscription) -> key by train -> stateful sum with the flush timer -> realtime write

No parsing (train, delta and event time come from bench-only attributes), no
registry, no de-duplication, no history, no dead letters. What it keeps is the
pipeline's timer discipline, because that is what the local runner charges
for: one event-time timer per train, armed for the oldest pending release time
(bucket end + reorder delay), never pushed later by newer events, re-armed for
what is left after a flush; and one realtime write per train per flush,
batched per bundle through `occupancy.store.commit_documents` (so the
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

from bench.workload import ATTR_DELTA, ATTR_T_US, ATTR_TRAIN
from occupancy import wire
from occupancy.store import RetryPolicy, commit_documents, make_client
from transforms.release_queue import QueueState, ReleaseQueue  # the pipeline's own timer discipline

_LOGGER = logging.getLogger(__name__)
_PAIR = coders.TupleCoder([coders.VarIntCoder(), coders.VarIntCoder()])


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
            help="Bucket width and least time between realtime writes of a train.",
        )
        parser.add_argument(
            "--reorder_delay_s",
            type=float,
            default=2.0,
            help="How long past its bucket's end an event waits before it is summed.",
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

    PENDING = BagStateSpec("pending", _PAIR)
    WAITING = BagStateSpec("waiting", _PAIR)
    LATER = BagStateSpec("later", _PAIR)
    HORIZON = ReadModifyWriteStateSpec("horizon", coders.VarIntCoder())
    # (value, event time of the last count, the release queue's clock: armed flush, last flush)
    TOTAL = ReadModifyWriteStateSpec("total", coders.TupleCoder([coders.VarIntCoder()] * 4))
    TIMER_AT = ReadModifyWriteStateSpec("timer_at", _PAIR)  # (armed release or 0, last flush)
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)

    def __init__(self, flush_interval_us: int, reorder_delay_us: int):
        self._flush_us = flush_interval_us
        self._delay_us = reorder_delay_us
        self._queue = ReleaseQueue(lambda event: self._release(event[0]), flush_interval_us, reorder_delay_us)

    def _release(self, t_us: int) -> int:
        return t_us - t_us % self._flush_us + self._flush_us + self._delay_us

    def process(
        self,
        element,
        pending=beam.DoFn.StateParam(PENDING),
        waiting=beam.DoFn.StateParam(WAITING),
        later=beam.DoFn.StateParam(LATER),
        horizon=beam.DoFn.StateParam(HORIZON),
        total=beam.DoFn.StateParam(TOTAL),
        timer_at=beam.DoFn.StateParam(TIMER_AT),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        _, _, armed, last_flush = total.read() or (0, 0, 0, 0)
        self._queue.add(element[1], QueueState(pending, waiting, later, horizon, timer_at, flush, (armed, last_flush)))

    @on_timer(FLUSH)
    def on_flush(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        pending=beam.DoFn.StateParam(PENDING),
        waiting=beam.DoFn.StateParam(WAITING),
        later=beam.DoFn.StateParam(LATER),
        horizon=beam.DoFn.StateParam(HORIZON),
        total=beam.DoFn.StateParam(TOTAL),
        timer_at=beam.DoFn.StateParam(TIMER_AT),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        value, last, armed, last_flush = total.read() or (0, 0, 0, 0)
        ready, clock = self._queue.take_due(
            fired.micros, QueueState(pending, waiting, later, horizon, timer_at, flush, (armed, last_flush))
        )
        if not ready:
            return
        value += sum(delta for _, delta in ready)
        last = max([last] + [t for t, delta in ready if delta])
        total.write((value, last) + clock)
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
