"""The coder of `occupancy.wire.Event`, registered for every PCollection and state that holds one.

Deterministic and compact (no pickling per element); registering it also
gives the keyed PCollection (train_id, Event) a deterministic key coder,
which stateful processing on Dataflow requires.
"""
import apache_beam as beam
from apache_beam.coders import coders

from occupancy import wire


class EventCoder(coders.Coder):
    """Encodes every field of an Event, in field order."""

    def __init__(self):
        self._tuple = coders.TupleCoder([
            coders.StrUtf8Coder(), coders.VarIntCoder(), coders.StrUtf8Coder(), coders.StrUtf8Coder(),
            coders.VarIntCoder(), coders.VarIntCoder(), coders.StrUtf8Coder(),
            coders.NullableCoder(coders.VarIntCoder()), coders.VarIntCoder(), coders.BytesCoder(),
            coders.IterableCoder(coders.TupleCoder([coders.StrUtf8Coder(), coders.StrUtf8Coder()])),
            coders.StrUtf8Coder()])

    def encode(self, event):
        return self._tuple.encode(tuple(event))

    def decode(self, encoded):
        event = self._tuple.decode(encoded)
        return wire.Event(*event[:10], tuple(event[10]), event[11])

    def is_deterministic(self):
        return True

    def to_type_hint(self):
        return wire.Event


beam.coders.registry.register_coder(wire.Event, EventCoder)
