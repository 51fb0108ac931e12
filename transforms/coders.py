"""Coders of what the job keeps: `occupancy.wire.Event` (registered for every PCollection and
state that holds one), the train's cell and its stop visits.

EventCoder is deterministic and compact (no pickling per element); registering
it also gives the keyed PCollection (train_id, Event) a deterministic key coder,
which stateful processing on Dataflow requires.
"""

import apache_beam as beam
from apache_beam.coders import coders

from occupancy import state_codec, wire
from occupancy.stop_visits import VisitState
from occupancy.train_cell import V1_LATER, TrainCell


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


class TrainCellCoder(coders.Coder):
    """The `train_cell` state cell (occupancy.train_cell.TrainCell): a version byte, then the
    flush clock (last flush, armed, wake, retry), the window (horizon, events in
    `later`, the earliest release among them) as varints, the waiting events (EventCoder) and the TrainState's own
    versioned bytes (occupancy.state_codec), or none before the train's first flush.

    Version 1 is still read: its `pending` and `waiting` events both wait, and its `later` bag
    is read and rewritten at the train's next flush (occupancy.train_cell.V1_LATER). A new
    field is a new version whose decoder still reads the one before (docs/design.md, "State
    encodings")."""

    VERSION = 2

    def __init__(self):
        events = coders.IterableCoder(EventCoder())
        varint, train = coders.VarIntCoder(), coders.NullableCoder(coders.BytesCoder())
        self._v2 = coders.TupleCoder([varint] * 7 + [events, train])
        self._v1 = coders.TupleCoder([varint] * 4 + [events, events, train])

    def encode(self, value: TrainCell) -> bytes:
        return bytes([self.VERSION]) + self._v2.encode(value.fields())

    def decode(self, encoded: bytes) -> TrainCell:
        version = encoded[0] if encoded else None
        if version == self.VERSION:
            *clock, waiting, train = self._v2.decode(encoded[1:])
            return TrainCell(*clock, list(waiting), train)
        if version == 1:
            armed, last_flush, horizon, later, pending, waiting, train = self._v1.decode(encoded[1:])
            # Its `later` bag, copied out by that job's release times, is read at the next flush.
            return TrainCell(
                last_flush_us=last_flush,
                armed_us=armed,
                horizon_us=horizon,
                later=later,
                later_first_us=V1_LATER if later else 0,
                waiting=[*pending, *waiting],
                train_bytes=train,
            )
        raise state_codec.UnknownVersion(f"train cell in version {version}; this job reads versions 1 and 2")

    def is_deterministic(self):
        return True

    def to_type_hint(self):
        return TrainCell


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
