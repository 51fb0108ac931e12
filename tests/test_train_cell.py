"""The `train_cell` state cell's encoding (transforms.coders.TrainCellCoder): every field survives,
the version-1 bytes stored in tests/data stay readable and are what the coder writes, other
versions are refused with a reason, and an element that never asks for the train's state passes
its bytes through undecoded."""

import random

import pytest

from occupancy import state_codec, wire
from tests.test_state_codec import DATA, random_state, stored_state
from transforms.coders import TrainCellCoder
from transforms.train_cell import BundleMemo, TrainCell, TrainCellValue

S = 1_000_000
T0 = 1_800_000_120 * S


def event(seq: int, t_us: int, **fields) -> wire.Event:
    return wire.Event(f"d1:{seq}", t_us, device_id="t1-car1-door1", delta=1, seq=seq, train_id="t1", **fields)


def stored_cell() -> TrainCellValue:
    """What tests/data/train_cell_v1.bin holds, written out by hand."""
    return TrainCellValue(
        armed=T0 + 6 * S,
        last_flush=T0 + 4 * S,
        horizon=T0 + 64 * S,
        later=2,
        pending=[event(121, T0 + 2 * S, capacity=300, registered_us=1_790_000_000_000_000)],
        waiting=[event(122, T0 + 4 * S + 1), wire.Event("reset-1", T0 + 5 * S, kind=wire.RESET, train_id="t1")],
        # The train's state in its own version-1 bytes, passed through undecoded.
        train_bytes=(DATA / "train_state_v1.bin").read_bytes(),
    )


def stored_train():
    """The train state stored_cell() holds, as read from its version-1 bytes: its job kept applied
    resets within the reorder window only, so all before the trip's start counts as seen."""
    state = stored_state()
    state.control_floor_us = state.trip_start_us
    return state


def test_every_field_of_the_cell_survives_the_encoding():
    coder, rng = TrainCellCoder(), random.Random(11)
    for _ in range(100):
        value = TrainCellValue(
            armed=rng.randrange(0, 2**62),
            last_flush=rng.randrange(0, 2**62),
            horizon=rng.randrange(0, 2**62),
            later=rng.randrange(0, 10**6),
            pending=[event(rng.randrange(1, 10**9), rng.randrange(0, 2**62)) for _ in range(rng.randrange(0, 5))],
            waiting=[event(rng.randrange(1, 10**9), rng.randrange(0, 2**62)) for _ in range(rng.randrange(0, 50))],
            train=random_state(rng) if rng.random() < 0.8 else None,
        )
        decoded = coder.decode(coder.encode(value))
        assert decoded == value
        assert decoded.train == value.train


def test_version_1_bytes_stay_readable_and_are_what_the_coder_writes():
    stored = (DATA / "train_cell_v1.bin").read_bytes()
    decoded = TrainCellCoder().decode(stored)
    assert decoded == stored_cell()
    # A cell whose train was never decoded is written back as it was read.
    assert TrainCellCoder().encode(decoded) == stored
    assert decoded.train == stored_train()
    assert [e.seq for e in decoded.pending + decoded.waiting] == [121, 122, wire.NO_SEQ]
    # A change to version 1's layout would strand every train's state: it must be a new version.
    assert TrainCellCoder().encode(stored_cell()) == stored


def test_bytes_of_another_version_or_none_are_refused_with_a_reason():
    encoded = TrainCellCoder().encode(stored_cell())
    with pytest.raises(state_codec.UnknownVersion, match="train cell in version 2; this job reads version 1"):
        TrainCellCoder().decode(bytes([2]) + encoded[1:])
    with pytest.raises(state_codec.UnknownVersion, match="version None"):
        TrainCellCoder().decode(b"")


class _Cell:
    def __init__(self, value):
        self.value = value

    def read(self):
        return self.value

    def write(self, value):
        self.value = value


def test_an_element_passes_the_trains_bytes_through_undecoded():
    coder = TrainCellCoder()
    stored = coder.encode(stored_cell())
    cell = _Cell(coder.decode(stored))
    train_cell = TrainCell("t1", cell, BundleMemo(), legacy=None)
    train_cell.queue_state(later=None, flush=None).waiting.add(event(123, T0 + 7 * S))
    assert cell.value._train is None  # never decoded: the queue is all an element needs
    again = coder.decode(coder.encode(cell.value))
    assert [e.seq for e in again.waiting][-1] == 123 and again.train == stored_train()


def test_a_value_read_is_never_changed_in_place():
    """A state cache hands out the object it keeps; a bundle that changed it and then failed
    would leave the cache holding what was never committed."""
    kept = TrainCellCoder().decode(TrainCellCoder().encode(stored_cell()))
    assert kept.train == stored_train()  # decoded, as the cache keeps it after a flush
    cell = _Cell(kept)
    train_cell = TrainCell("t1", cell, BundleMemo(), legacy=None)
    queue = train_cell.queue_state(later=None, flush=None)
    queue.waiting.add(event(123, T0 + 7 * S))
    queue.pending.clear()
    queue.timer_at.write((T0 + 9 * S, T0 + 8 * S))
    train_cell.train.value += 1
    assert kept.fields()[:6] == stored_cell().fields()[:6] and kept.train == stored_train()
    assert cell.value is not kept and cell.value.train.value == stored_state().value + 1
