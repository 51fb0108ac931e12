"""The door-device simulator's generator: pure, no Pub/Sub.

Every property is checked on the messages as the pipeline would see them
(parsed with occupancy.wire), not on the generator's internals.
"""

import collections

import pytest

from occupancy import fold, train_state, wire
from sim import simulator
from sim.simulator import COUNT, DUPLICATE, HEARTBEAT, MALFORMED, OUT_OF_ORDER, RESET, FaultRates, SimConfig, Simulation

START_US = wire.parse_time("2027-01-15T08:00:00.123Z")
S = 1_000_000
REORDER_DELAY_S = 2.0
# Rates well above the defaults, so that a short run shows every fault many times.
FAULTY = SimConfig(faults=FaultRates(duplicate=0.08, out_of_order=0.1, malformed=0.05))


def run(seed=1, seconds=150, config=FAULTY, fleet=simulator.DEMO_FLEET):
    sim = Simulation(fleet, seed, config)
    return sim, list(sim.messages(START_US, seconds))


def parse(message):
    return wire.parse_message(
        message.payload, None, now_us=START_US + 3600 * S, max_abs_delta=100, max_future_skew_s=300
    )


def valid(messages):
    """(message, Event) for every message the pipeline accepts, in send order."""
    return [(m, parse(m)) for m in messages if m.kind != MALFORMED]


def train_of(device_id):
    return device_id.split("-car")[0]


@pytest.fixture(scope="module")
def faulty_run():
    return run()


def test_same_seed_same_messages_and_another_seed_others():
    _, first = run(seed=7, seconds=60)
    _, again = run(seed=7, seconds=60)
    _, other = run(seed=8, seconds=60)
    assert first == again
    assert first != other


def test_every_kind_occurs_and_messages_come_in_send_order(faulty_run):
    _, messages = faulty_run
    kinds = collections.Counter(m.kind for m in messages)
    assert set(kinds) == set(simulator.KINDS), kinds
    assert kinds[RESET] == len(simulator.DEMO_FLEET)
    assert [m.send_at for m in messages] == sorted(m.send_at for m in messages)


def test_seq_per_device_goes_up_by_one_in_event_time(faulty_run):
    _, messages = faulty_run
    seqs = collections.defaultdict(list)
    originals = sorted(
        (e.event_time_us, e.seq, e.device_id)
        for m, e in valid(messages)
        if m.kind != DUPLICATE and e.kind == wire.COUNT
    )
    for _, seq, device in originals:
        seqs[device].append(seq)
    assert set(seqs) == {d for t in simulator.DEMO_FLEET for d in t.devices}
    for device, values in seqs.items():
        assert values == list(range(1, len(values) + 1)), device


def test_duplicates_are_exact_repeats_of_an_earlier_message(faulty_run):
    _, messages = faulty_run
    seen = []
    duplicates = 0
    for m in messages:
        if m.kind == DUPLICATE:
            duplicates += 1
            assert (m.payload, m.attributes) in seen
        elif m.kind != MALFORMED:
            assert (m.payload, m.attributes) not in seen, "a non-duplicate repeats a message"
            seen.append((m.payload, m.attributes))
    assert duplicates >= 5


def test_out_of_order_messages_are_overtaken_but_within_the_reorder_delay(faulty_run):
    _, messages = faulty_run
    overtaken = 0
    latest_sent = {}  # train -> latest event time among the messages sent so far
    for m, event in valid(messages):
        train = event.train_id or train_of(event.device_id)
        lag = m.send_at - (event.event_time_us - START_US) / S
        if m.kind == OUT_OF_ORDER:
            assert 0.5 - 1e-9 <= lag < REORDER_DELAY_S, lag
            overtaken += latest_sent.get(train, 0) > event.event_time_us
        elif m.kind in (COUNT, HEARTBEAT, RESET):
            assert lag == pytest.approx(0, abs=1e-6), m
        latest_sent[train] = max(latest_sent.get(train, 0), event.event_time_us)
    assert overtaken >= 5


def test_malformed_messages_are_rejected_by_the_wire_format(faulty_run):
    _, messages = faulty_run
    bad = [m for m in messages if m.kind == MALFORMED]
    assert len(bad) >= 5
    reasons = set()
    for m in bad:
        with pytest.raises(wire.Rejected) as rejected:
            parse(m)
        reasons.add(rejected.value.reason)
    assert reasons == {wire.MALFORMED, wire.INVALID_FIELD}


def naive_fold(events):
    """max(0, value + delta) in event-time order (ties: device, seq); a reset sets 0."""
    values = {}
    for e in sorted(events, key=fold.sort_key):
        train = e.train_id or train_of(e.device_id)
        values[train] = 0 if e.kind == wire.RESET else max(0, values.get(train, 0) + e.delta)
    return values


def test_truth_is_the_fold_of_the_valid_deltas_counted_once(faulty_run):
    sim, messages = faulty_run
    once = {e.event_id: e for m, e in valid(messages)}
    assert len(once) < len(valid(messages))  # there were duplicates to drop
    assert sim.truth.final() == naive_fold(once.values())
    assert any(v > 0 for v in sim.truth.final().values())


def test_truth_is_what_the_pipelines_fold_gives_duplicates_and_shuffles_included(faulty_run):
    sim, messages = faulty_run
    per_train = collections.defaultdict(list)
    for _m, e in valid(messages):
        train = e.train_id or train_of(e.device_id)
        per_train[train].append(e._replace(train_id=train))
    for train, events in per_train.items():
        state = train_state.TrainState()
        # In send order (out of order, duplicated) in one flush: the fold sorts and de-duplicates.
        fold.apply_events(state, events, fold.FoldConfig(), flush_time_us=START_US + 3600 * S)
        assert state.value == sim.truth.final()[train], train


def test_truth_over_time_follows_the_events():
    sim, messages = run(seed=3, seconds=120)
    events = {e.event_id: e for _, e in valid(messages)}.values()  # duplicates counted once
    train = "ic1832"
    mine = [e for e in events if (e.train_id or train_of(e.device_id)) == train]
    changes = sorted({e.event_time_us for e in mine if e.delta})
    assert len(changes) > 10
    for t in changes[::7]:
        assert sim.truth.value_at(train, t) == naive_fold([e for e in mine if e.event_time_us <= t]).get(train, 0)
    assert sim.truth.value_at(train, START_US - S) is None


def test_bursts_keep_deltas_small_and_nobody_alights_who_did_not_board(faulty_run):
    sim, messages = faulty_run
    counts = [e for _, e in valid(messages) if e.kind == wire.COUNT and e.delta]
    assert counts and max(abs(e.delta) for e in counts) <= FAULTY.max_abs_delta
    assert any(e.delta < 0 for e in counts) and any(e.delta > 0 for e in counts)
    # Never below zero in event-time order: the model needs no clamp (no corrections).
    values = collections.defaultdict(int)
    for e in sorted(counts, key=fold.sort_key):
        train = train_of(e.device_id)
        values[train] += e.delta
        assert values[train] >= 0, e


def test_heartbeats_keep_every_device_talking_between_stops(faulty_run):
    _, messages = faulty_run
    times = collections.defaultdict(list)
    for m, e in valid(messages):
        if e.kind == wire.COUNT and m.kind != DUPLICATE:
            times[e.device_id].append(e.event_time_us)
    for device, ts in times.items():
        ts.sort()
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        assert max(gaps) <= 3 * S + 1000, device


def test_seconds_bounds_the_event_times_and_stops_happen_early():
    sim, messages = run(seed=5, seconds=30, config=SimConfig())
    events = [e for _, e in valid(messages)]
    assert max(e.event_time_us for e in events) < START_US + 30 * S
    first_count = min(e.event_time_us for e in events if e.delta)
    assert first_count - START_US < 5 * S  # counts move within seconds of the start


def test_no_faults_means_only_counts_heartbeats_and_resets():
    config = SimConfig(faults=FaultRates(0, 0, 0), reset_at_start=False)
    _, messages = run(seed=2, seconds=60, config=config)
    assert {m.kind for m in messages} == {COUNT, HEARTBEAT}
