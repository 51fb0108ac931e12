"""Coders of what the job keeps: `occupancy.wire.Event` (registered for every PCollection and
state that holds one), the train's cell and, for earlier jobs' cells, the train's state.

EventCoder is deterministic and compact (no pickling per element); registering
it also gives the keyed PCollection (train_id, Event) a deterministic key coder,
which stateful processing on Dataflow requires.
"""

import pickle

import apache_beam as beam
from apache_beam.coders import coders

from occupancy import state_codec, wire
from occupancy.fold import TrainState
from occupancy.stop_visits import VisitState
from transforms.train_cell import TrainCellValue

# How the bytes a `PickleCoder` wrote begin (pickle protocol 2 and later); state_codec's begin
# with their version, 1 and up.
_PICKLE_PROTOCOL_OPCODE = 0x80


class EventCoder(coders.Coder):
    """Encodes every field of an Event, in field order."""

    def __init__(self):
        self._tuple = coders.TupleCoder(
            [
                coders.StrUtf8Coder(),
                coders.VarIntCoder(),
                coders.StrUtf8Coder(),
                coders.StrUtf8Coder(),
                coders.VarIntCoder(),
                coders.VarIntCoder(),
                coders.StrUtf8Coder(),
                coders.NullableCoder(coders.VarIntCoder()),
                coders.VarIntCoder(),
                coders.BytesCoder(),
                coders.IterableCoder(coders.TupleCoder([coders.StrUtf8Coder(), coders.StrUtf8Coder()])),
                coders.StrUtf8Coder(),
            ]
        )

    def encode(self, event):
        return self._tuple.encode(tuple(event))

    def decode(self, encoded):
        event = self._tuple.decode(encoded)
        return wire.Event(*event[:10], tuple(event[10]), event[11])

    def is_deterministic(self):
        return True

    def to_type_hint(self):
        return wire.Event


class TrainStateCoder(coders.Coder):
    """The `train` state cell: `occupancy.state_codec`'s versioned encoding of a TrainState.

    Reads, too, the pickled TrainState that jobs up to 5807173 stored with
    `PickleCoder` (a job updated in place finds its trains' state in that form)
    and writes it back in the versioned encoding at the train's next flush.
    """

    def encode(self, state: TrainState) -> bytes:
        return state_codec.encode_state(state)

    def decode(self, encoded: bytes) -> TrainState:
        if encoded[:1] == bytes([_PICKLE_PROTOCOL_OPCODE]):
            return pickle.loads(encoded)  # the job's own state, as its earlier version wrote it
        return state_codec.decode_state(encoded)

    def is_deterministic(self):
        return True

    def to_type_hint(self):
        return TrainState


class TrainCellCoder(coders.Coder):
    """The `train_cell` state cell (transforms.train_cell): a version byte, then the release
    queue's clock, horizon and count of `later` events, its `pending` and `waiting` events
    (EventCoder) and the TrainState's own versioned bytes (occupancy.state_codec), or none
    before the train's first flush.

    A new field is a new version whose decoder still reads the old ones (docs/design.md,
    "State encodings")."""

    VERSION = 1

    def __init__(self):
        events = coders.IterableCoder(EventCoder())
        self._v1 = coders.TupleCoder(
            [
                coders.VarIntCoder(),
                coders.VarIntCoder(),
                coders.VarIntCoder(),
                coders.VarIntCoder(),
                events,
                events,
                coders.NullableCoder(coders.BytesCoder()),
            ]
        )

    def encode(self, value: TrainCellValue) -> bytes:
        return bytes([self.VERSION]) + self._v1.encode(value.fields())

    def decode(self, encoded: bytes) -> TrainCellValue:
        if not encoded or encoded[0] != self.VERSION:
            version = encoded[0] if encoded else None
            raise state_codec.UnknownVersion(f"train cell in version {version}; this job reads version {self.VERSION}")
        return TrainCellValue(*self._v1.decode(encoded[1:]))

    def is_deterministic(self):
        return True

    def to_type_hint(self):
        return TrainCellValue


class VisitStateCoder(coders.Coder):
    """The `visits` state cell of transforms.stop_visits: `occupancy.state_codec`'s versioned
    encoding of a VisitState (its run by key; the DoFn looks the run up again)."""

    def encode(self, state: VisitState) -> bytes:
        return state_codec.encode_visits(state)

    def decode(self, encoded: bytes) -> VisitState:
        return state_codec.decode_visits(encoded)

    def is_deterministic(self):
        return True

    def to_type_hint(self):
        return VisitState


beam.coders.registry.register_coder(wire.Event, EventCoder)
