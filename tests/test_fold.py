"""The running-occupancy fold (pure): the five semantics of docs/design.md, without Beam."""

import datetime
import random
import zoneinfo

from occupancy import documents, fold, state_codec, train_state, wire

T0 = wire.parse_time("2026-11-24T07:00:00Z")
S = 1_000_000
CONFIG = fold.FoldConfig(flush_interval_us=S, reorder_delay_us=2 * S, dedup_window=1000)


def ev(device, seq, delta, t_s, **kw):
    return wire.Event(
        event_id=wire.event_id_for(device, seq),
        event_time_us=T0 + int(t_s * S),
        device_id=device,
        delta=delta,
        seq=seq,
        **kw,
    )


def run(events, state=None, config=CONFIG, flush_at=None):
    state = state or train_state.TrainState()
    result = fold.apply_events(state, events, config, flush_at or T0 + 3600 * S)
    return state, result


def test_clamp_at_zero_records_a_correction():
    state, result = run([ev("d1", 1, 2, 0.1), ev("d1", 2, -5, 0.2), ev("d1", 3, 1, 0.3)])
    assert state.value == 1
    [bucket] = result.buckets
    assert (bucket.delta, bucket.correction, bucket.value) == (-2, 3, 1)
    assert (bucket.boarded, bucket.alighted, bucket.events) == (3, 5, 3)
    assert result.corrections == 1
    # The identity every bucket keeps: value = previous + delta + correction.
    assert 0 + bucket.delta + bucket.correction == bucket.value


def test_any_arrival_order_gives_the_in_order_result():
    events = [ev(f"d{i % 3}", i, random.Random(i).randint(-3, 4), i * 0.37) for i in range(1, 40)]
    in_order_state, in_order = run(events)
    for seed in range(5):
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        state, result = run(shuffled)
        assert state.value == in_order_state.value
        assert result.buckets == in_order.buckets


def test_ties_are_broken_by_device_then_seq():
    # Same event time: d1's -3 comes before d2's +3 -> clamp at 0 then +3.
    state, result = run([ev("d2", 1, 3, 0.5), ev("d1", 1, -3, 0.5)])
    assert state.value == 3 and result.buckets[0].correction == 3


def test_duplicates_are_counted_once():
    e = ev("d1", 7, 4, 0.1)
    state, result = run([e, e, ev("d1", 8, 1, 0.2), e])
    assert state.value == 5 and result.duplicates == 2 and result.applied == 2


def test_dedup_remembers_applied_seqs_in_a_window_and_accepts_gaps():
    state, _ = run([ev("d1", 10, 1, 0.1), ev("d1", 12, 1, 0.2)])
    memory = state.devices["d1"]
    assert memory.seq == 12 and memory.applied == [[10, 10], [12, 12]]
    # seq 11 was never applied: it arrives late and counts; 10 again does not.
    state, result = run([ev("d1", 11, 1, 0.15), ev("d1", 10, 1, 0.1)], state)
    assert state.value == 3 and result.duplicates == 1
    assert state.devices["d1"].applied == [[10, 12]]


def test_dedup_memory_is_bounded_by_the_window():
    config = fold.FoldConfig(flush_interval_us=S, reorder_delay_us=2 * S, dedup_window=5)
    state = train_state.TrainState()
    for seq in range(1, 200, 2):  # every other seq: worst case for ranges
        run([ev("d1", seq, 1, seq * 0.01)], state, config)
    memory = state.devices["d1"]
    assert len(memory.applied) <= 3 and memory.applied[0][0] >= memory.seq - 4
    before = state.value
    run([ev("d1", 150, 1, 5)], state, config)  # older than the window: a duplicate
    assert state.value == before


def test_late_event_is_applied_in_the_latest_bucket_and_marked():
    state, first = run([ev("d1", 1, 5, 0.5), ev("d1", 2, 1, 3.5)])
    assert [b.start_us for b in first.buckets] == [T0, T0 + 3 * S]
    state, result = run([ev("d2", 1, 2, 1.5)], state)
    [bucket] = result.buckets
    assert bucket.start_us == T0 + 3 * S  # rewritten: the train's latest bucket
    assert (bucket.late, bucket.events, bucket.value, bucket.delta) == (1, 2, 8, 3)
    assert result.late == 1 and state.last_applied_us == T0 + int(3.5 * S)


def test_event_for_an_already_written_bucket_rewrites_it_whole():
    state, _ = run([ev("d1", 1, 5, 0.2)])
    state, result = run([ev("d1", 2, 2, 0.7)], state)  # same bucket, not late
    [bucket] = result.buckets
    assert (bucket.events, bucket.delta, bucket.value, bucket.late) == (2, 7, 7, 0)
    assert bucket.timestamp_us == T0 + int(0.7 * S)


def test_reset_event_sets_zero_and_records_the_removed_amount():
    reset = wire.Event(event_id="reset:t1:x", event_time_us=T0 + S, kind=wire.RESET, train_id="t1")
    state, result = run([ev("d1", 1, 7, 0.5), reset, ev("d1", 2, 2, 1.5)])
    assert state.value == 2
    bucket = result.buckets[-1]
    assert bucket.correction == -7 and bucket.value == 2
    state, result = run([reset], state)  # the same reset again is a duplicate
    assert state.value == 2 and result.duplicates == 1


def test_daily_reset_at_the_boundary_in_the_configured_timezone():
    vienna = zoneinfo.ZoneInfo("Europe/Vienna")
    config = fold.FoldConfig(
        flush_interval_us=S, reorder_delay_us=2 * S, daily_reset=fold.DailyReset.parse("03:00", vienna)
    )
    boundary = wire.to_micros(datetime.datetime(2026, 11, 25, 3, 0, tzinfo=vienna))
    before = (boundary - T0) / S - 10
    state, _ = run([ev("d1", 1, 9, before)], config=config)
    state, result = run([ev("d1", 2, 1, before + 20), ev("d1", 3, 1, before + 30)], state, config)
    assert state.value == 2
    assert sum(b.correction for b in result.buckets) == -9
    assert state.reset_through_us == boundary
    state, result = run([ev("d1", 4, 1, before + 40)], state, config)  # crossed once only
    assert state.value == 3 and result.corrections == 0


def test_daily_reset_boundary_across_daylight_saving_change():
    vienna = zoneinfo.ZoneInfo("Europe/Vienna")
    reset = fold.DailyReset.parse("02:30", vienna)
    # 2026-03-29: clocks jump from 02:00 to 03:00 in Vienna; 02:30 does not exist that day.
    t = wire.to_micros(datetime.datetime(2026, 3, 29, 12, 0, tzinfo=vienna))
    boundary = wire.from_micros(reset.boundary_at_or_before(t))
    assert boundary.date() == datetime.date(2026, 3, 29) and boundary < wire.from_micros(t)
    summer = wire.to_micros(datetime.datetime(2026, 7, 1, 12, 0, tzinfo=vienna))
    assert wire.from_micros(reset.boundary_at_or_before(summer)) == datetime.datetime(
        2026, 7, 1, 0, 30, tzinfo=datetime.timezone.utc
    )


def test_heartbeats_update_last_seen_without_history():
    state, result = run([ev("d1", 1, 0, 0.5), ev("d1", 2, 0, 1.5)], flush_at=T0 + 100 * S)
    assert result.buckets == [] and result.heartbeats == 2 and state.value == 0
    assert state.devices["d1"].last_seen_us == T0 + int(1.5 * S) and state.devices["d1"].seq == 2
    assert result.write_realtime  # first time: devices_seen is new
    _, again = run([ev("d1", 3, 0, 2.5)], state, flush_at=T0 + 110 * S)
    assert not again.write_realtime  # heartbeat-only flushes write at most once a minute
    _, later = run([ev("d1", 4, 0, 70)], state, flush_at=T0 + 161 * S)
    assert later.write_realtime


def test_registering_a_device_again_resets_its_seq_memory():
    state, _ = run([ev("d1", 500, 3, 0.5, registered_us=1)])
    state, result = run([ev("d1", 1, 2, 1.5, registered_us=1)], state)
    assert result.applied == 1  # within the window below 500: a seq never applied
    state, result = run([ev("d1", 1, 2, 2.5, registered_us=1)], state)
    assert result.duplicates == 1
    state, result = run([ev("d1", 1, 2, 3.5, registered_us=2)], state)
    assert result.applied == 1 and state.devices["d1"].seq == 1


def test_legacy_events_are_deduplicated_by_id_within_the_reorder_window():
    legacy = wire.Event(event_id="legacy:m1", event_time_us=T0 + S, device_id="d9", delta=2)
    state, _ = run([legacy, legacy])
    assert state.value == 2
    state, result = run([legacy._replace(event_time_us=T0 + S)], state)
    assert result.duplicates == 1
    run([ev("d1", 1, 1, 60)], state)  # time moves on: the id is forgotten (bounded memory)
    assert "legacy:m1" not in state.recent_ids


def test_state_survives_a_round_trip_through_the_documents():
    state, result = run([ev("d1", 1, 5, 0.5), ev("d1", 3, 2, 1.5), ev("d2", 9, 1, 1.7)])
    realtime = documents.realtime_write("t1", state).data
    history = documents.history_write("t1", result.buckets[-1]).data
    seeded = documents.state_from_documents(realtime, history, CONFIG.dedup_window)
    assert seeded.value == 8 and seeded.last_applied_us == state.last_applied_us
    assert seeded.devices["d1"].applied == [[1, 1], [3, 3]]
    assert seeded.bucket == state.bucket
    # After the restart: a re-published seq 3 is a duplicate, the never-applied seq 2 counts,
    # and a late event rewrites the seeded latest bucket with its full aggregates.
    _, after = run([ev("d1", 3, 2, 1.5), ev("d1", 2, 4, 1.2)], seeded)
    assert after.duplicates == 1 and seeded.value == 12
    [bucket] = after.buckets
    assert bucket.start_us == state.bucket.start_us and bucket.events == 3 and bucket.late == 1


def test_realtime_document_fields():
    state, _ = run([ev("d1", 1, 30, 0.5, capacity=120)])
    data = documents.realtime_write("t1", state).data
    assert data["current_value"] == 30 and data["capacity"] == 120 and data["occupancy_ratio"] == 0.25
    assert data["last_updated"] == wire.from_micros(T0 + S // 2)
    assert data["devices_seen"]["d1"]["seq"] == 1


def test_history_ids_are_deterministic_and_not_sequential():
    ids = [documents.history_doc_id("t1", T0 + i * S) for i in range(3)]
    assert ids == [documents.history_doc_id("t1", T0 + i * S) for i in range(3)]
    # Consecutive buckets land far apart in the key space (no hot-spotting on one range).
    assert len({doc_id[:4] for doc_id in ids}) == 3
    assert documents.history_doc_id("t2", T0) != ids[0]


def test_doors_count_their_trip_until_a_reset_and_survive_a_restart():
    reset = wire.Event(event_id="reset:t1:y", event_time_us=T0 + 2 * S, kind=wire.RESET, train_id="t1")
    state, _ = run([ev("d1", 1, 5, 0.1), ev("d1", 2, -2, 0.2), ev("d2", 1, 3, 0.3), ev("d2", 2, 0, 0.4)])
    assert (state.devices["d1"].trip_boarded, state.devices["d1"].trip_alighted) == (5, 2)
    assert (state.devices["d2"].trip_boarded, state.devices["d2"].trip_alighted) == (3, 0)
    seen = documents.realtime_write("t1", state).data["devices_seen"]
    assert (seen["d1"]["trip_boarded"], seen["d1"]["trip_alighted"]) == (5, 2)
    seeded = documents.state_from_documents(documents.realtime_write("t1", state).data, None, 1000)
    assert seeded.devices["d1"].trip_boarded == 5 and seeded.devices["d2"].trip_boarded == 3
    run([reset, ev("d1", 3, 1, 2.5)], seeded)
    assert (seeded.devices["d1"].trip_boarded, seeded.devices["d1"].trip_alighted) == (1, 0)
    assert (seeded.devices["d2"].trip_boarded, seeded.devices["d2"].trip_alighted) == (0, 0)
    # A state pickled before the fields existed reads 0.
    old = train_state.DeviceMemory(seq=1)
    del old.__dict__["trip_boarded"]
    assert old.trip_boarded == 0


def test_terminus_zeroes_the_train_and_balances_the_trip_per_door():
    first = wire.Event(event_id="reset:t1:a", event_time_us=T0, kind=wire.RESET, train_id="t1")
    terminus = wire.Event(event_id="terminus:t1:b", event_time_us=T0 + 5 * S, kind=wire.TERMINUS, train_id="t1")
    state, result = run(
        [
            first,
            ev("d1", 1, 10, 1),
            ev("d2", 1, 4, 1.5),
            ev("d1", 2, -6, 2),
            ev("d2", 2, -5, 3),
            terminus,
            ev("d1", 3, 2, 6),
        ]
    )
    assert state.value == 2 and state.trip_start_us == T0 + 5 * S
    [trip] = result.trips
    # The doors counted 14 in and 11 out: 3 people too many were still on board at the terminus.
    assert (trip.start_us, trip.end_us, trip.ons, trip.offs, trip.residual) == (T0, T0 + 5 * S, 14, 11, 3)
    assert trip.doors == {"d1": (10, 6), "d2": (4, 5)}
    assert sum(b.correction for b in result.buckets) == -3  # recorded as a correction, like a reset
    doc = documents.trip_write("t1", trip)
    assert doc.collection == documents.TRIPS and doc.data["residual"] == 3
    assert doc.data["doors"]["d2"] == {"boarded": 4, "alighted": 5, "net": -1}
    assert doc.data["ended_at"] == wire.from_micros(T0 + 5 * S)
    # The same terminus again is a duplicate: no second trip.
    _, again = run([terminus], state)
    assert again.trips == [] and again.duplicates == 1
    # A reset zeroes too, but is not a balancing point.
    _, reset_result = run(
        [wire.Event(event_id="reset:t1:c", event_time_us=T0 + 9 * S, kind=wire.RESET, train_id="t1")], state
    )
    assert reset_result.trips == [] and state.value == 0


# ---- the realtime document's size: bounded whatever the devices' seq gaps ---------------


def test_capped_ranges_fill_the_narrowest_gaps_and_keep_every_applied_seq_covered():
    ranges = [[1, 1], [3, 10], [12, 12], [20, 25], [40, 40]]
    assert documents.capped_ranges(ranges, 5) is ranges
    assert documents.capped_ranges(ranges, 3) == [[1, 12], [20, 25], [40, 40]]
    assert documents.capped_ranges(ranges, 1) == [[1, 40]]
    assert ranges[0] == [1, 1]  # not modified in place


def test_a_train_with_the_most_devices_and_the_worst_gaps_stays_far_below_one_mib():
    from occupancy.registry_entries import MAX_DEVICES_PER_TRAIN

    state = train_state.TrainState(value=120, capacity=400, last_applied_us=wire.parse_time("2026-11-24T07:00:00Z"))
    for d in range(MAX_DEVICES_PER_TRAIN):
        memory = train_state.DeviceMemory(last_seen_us=state.last_applied_us, registered_us=1)
        for seq in range(1, 1001, 2):  # every other seq lost: 500 gaps within the window
            memory.accept(seq, 1000)
        state.devices[f"train-with-a-long-name-car{d // 8 + 1:02d}-door{d % 8 + 1}"] = memory
    write = documents.realtime_write("t1", state)
    ranges = documents.applied_ranges(write.data)
    assert {len(r) for r in ranges.values()} == {documents.MAX_RANGES_PER_DEVICE}
    size = documents.storage_size("realtime/t1", write.data)
    assert size < documents.MAX_DOCUMENT_BYTES / 8, size
    # Uncapped, the same train's checkpoint alone holds 500 ranges a device.
    uncapped = state_codec.encode_dedup({d: (m.registered_us, m.applied) for d, m in state.devices.items()})
    assert len(uncapped) > 8 * len(write.data[documents.CHECKPOINT])


def test_a_restart_from_a_capped_document_never_counts_a_seq_twice():
    memory = train_state.DeviceMemory(registered_us=1)
    for seq in range(1, 201, 2):
        memory.accept(seq, 1000)
    state = train_state.TrainState(devices={"d1": memory})
    seeded = documents.state_from_documents(documents.realtime_write("t1", state).data, None, 1000)
    again = seeded.devices["d1"]
    assert not any(again.accept(seq, 1000) for seq in range(1, 201, 2))  # applied: still duplicates
    assert again.accept(201, 1000)


def test_storage_size_follows_firestores_rules():
    # Firestore's worked example: a task document in users/jeff/tasks/my_task_id.
    data = {"type": "Personal", "done": False, "priority": 1, "description": "Learn Cloud Firestore"}
    assert documents.storage_size("users/jeff/tasks/my_task_id", data) == 147  # as the docs add it up


def test_a_seq_far_ahead_is_refused_and_the_door_keeps_counting():
    """One message with a seq beyond SEQ_JUMP_WINDOWS x the window (a device's bug, or a forgery
    that got a key) would make every later honest seq look old: the door would be muted."""
    state = train_state.TrainState()
    window = CONFIG.dedup_window
    fold.apply_events(state, [ev("d1", 1, 2, 0.1), ev("d1", 2, 1, 0.2)], CONFIG, 2 * S)
    far = 2 + fold.SEQ_JUMP_WINDOWS * window + 1
    result = fold.apply_events(state, [ev("d1", far, 90, 1.1)], CONFIG, 3 * S)
    assert [(e.seq, reason) for e, reason, _ in result.refused] == [(far, wire.SEQ_JUMP)]
    assert "register the device again" in result.refused[0][2]
    assert state.value == 3 and state.devices["d1"].seq == 2
    just_within = 2 + fold.SEQ_JUMP_WINDOWS * window
    fold.apply_events(state, [ev("d1", 3, 1, 2.1), ev("d1", just_within, 1, 2.2)], CONFIG, 4 * S)
    assert state.value == 5 and state.devices["d1"].seq == just_within
    # Registered again (seq starts over): any seq is a first sight.
    again = ev("d1", 10**9, 4, 3.1)._replace(registered_us=5)
    assert fold.apply_events(state, [again], CONFIG, 5 * S).refused == [] and state.value == 9


def control(kind, t_s):
    t = T0 + int(t_s * S)
    return wire.Event(f"{kind}:t1:{wire.format_time(t)}", t, kind=kind, train_id="t1")


def test_a_reset_or_terminus_replayed_long_after_changes_nothing():
    """The same signed reset re-published 40 s later (beyond the reorder window, where its id used
    to be forgotten) zeroed the train again; a terminus replayed emptied its trip record."""
    state, _ = run([ev("d1", 1, 6, 0.5), control(wire.RESET, 1), ev("d1", 2, 4, 1.5), control(wire.TERMINUS, 3)])
    state, _ = run([ev("d1", 3, 10, 4)], state)
    assert state.value == 10
    for seq, replayed in enumerate((control(wire.RESET, 1), control(wire.TERMINUS, 3)), 4):
        state, result = run([replayed, ev("d1", seq, 1, 40 + seq)], state)
        assert (result.duplicates, result.trips, result.refused) == (1, [], [])
    assert state.value == 12


def test_applied_resets_survive_a_restart_in_the_realtime_checkpoint():
    state, _ = run([ev("d1", 1, 6, 0.5), control(wire.TERMINUS, 2), ev("d1", 2, 10, 3)])
    seeded = documents.state_from_documents(documents.realtime_write("t1", state).data, None, 1000)
    assert seeded.controls == ((T0 + 2 * S, wire.TERMINUS),)
    seeded, result = run([control(wire.TERMINUS, 2)], seeded)
    assert (seeded.value, result.duplicates, result.trips) == (10, 1, [])


def test_a_document_without_applied_resets_takes_all_before_the_trip_start_as_applied():
    """A realtime document written before the checkpoint named resets: what came before the
    train's last trip start is old news, never applied again."""
    state, _ = run([ev("d1", 1, 6, 0.5), control(wire.RESET, 2), ev("d1", 2, 10, 3)])
    data = documents.realtime_write("t1", state).data
    data[documents.CHECKPOINT] = state_codec.encode_dedup({})[:1].replace(b"\x02", b"\x01") + b"\x00"
    seeded = documents.state_from_documents(data, None, 1000)
    assert seeded.control_floor_us == T0 + 2 * S and seeded.controls == ()
    seeded, result = run([control(wire.RESET, 2), control(wire.RESET, 1)], seeded)
    assert (seeded.value, result.duplicates) == (10, 2)


def test_a_reset_older_than_an_applied_count_is_refused_not_applied():
    """Applied late it would erase the counts made after it: a dead letter with the reason."""
    state, _ = run([ev("d1", 1, 6, 0.5), ev("d1", 2, 4, 5)])
    state, result = run([control(wire.RESET, 3)], state)
    assert state.value == 10
    [(event, reason, detail)] = result.refused
    assert (event.kind, reason) == (wire.RESET, wire.LATE_CONTROL) and "erase the counts" in detail
    state, result = run([control(wire.RESET, 6)], state)  # a new one is applied
    assert state.value == 0 and result.refused == []


def test_the_memory_of_resets_is_bounded_and_what_it_forgot_counts_as_applied():
    state = train_state.TrainState()
    n = train_state.MAX_CONTROLS + 5
    for i in range(n):
        state, _ = run([control(wire.RESET, i)], state)
    assert len(state.controls) == train_state.MAX_CONTROLS
    assert state.control_floor_us == T0 + 4 * S and state.controls[0][0] == T0 + 5 * S
    state, result = run([control(wire.RESET, i) for i in range(n)], state)
    assert result.duplicates == n and result.refused == []


def test_a_count_of_a_devices_earlier_registration_is_refused():
    """A worker a registry refresh behind lets a wiped device's old count through: its seq must
    not enter the new registration's memory (it would mute the honest seqs)."""
    state, _ = run([ev("d1", 500, 2, 0.5)._replace(registered_us=1)])
    state, _ = run([ev("d1", 1, 3, 1.5)._replace(registered_us=2)], state)  # registered again
    state, result = run([ev("d1", 501, 4, 2.5)._replace(registered_us=1)], state)
    assert [(e.seq, reason) for e, reason, _ in result.refused] == [(501, wire.BEFORE_ASSIGNMENT)]
    assert state.value == 5 and state.devices["d1"].seq == 1


def test_a_new_bucket_width_goes_on_in_the_open_bucket_and_rewrites_no_earlier_one():
    """A job updated in place with another --flush_interval_s (1 s, then 5 s): an event whose
    5 s bucket began before the open 1 s bucket is counted in the open one, never in a new
    document that would replace what the 1 s job wrote for that start."""
    s = 1_000_000
    narrow, wide = fold.FoldConfig(flush_interval_us=s), fold.FoldConfig(flush_interval_us=5 * s)
    state, written = train_state.TrainState(), {}

    def flush(config, *times):
        events = [wire.Event(f"e{t}", int(t * s), device_id="d", delta=1, seq=int(t * 10), train_id="t") for t in times]
        for bucket in fold.apply_events(state, events, config, 0).buckets:
            assert bucket.events >= written.get(bucket.start_us, (0, 0))[1], bucket  # never less
            written[bucket.start_us] = (bucket.value, bucket.events)

    flush(narrow, 10.5, 12.5)
    flush(wide, 13.0, 14.0)
    flush(wide, 15.5)
    assert written == {10 * s: (1, 1), 12 * s: (4, 3), 15 * s: (5, 1)}
