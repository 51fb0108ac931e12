"""The fleet view kept by Firestore listeners on the emulator: changes arrive without a read
per request, and the API serves them with --fleet_listener."""

import datetime
import types

import httpx
import pytest

from adapters import registry
from adapters.fleet_listener import FleetListener, NotReady
from local import stack
from occupancy import fleet
from tests.support import ago, serve_api, write_realtime


def _ready(listener):
    try:
        return listener.view()
    except NotReady:
        return None


def test_the_listener_follows_writes_and_removals(firestore_client):
    registry.set_train(firestore_client, "trains", "t1", 100, "One")
    listener = FleetListener(firestore_client).start()
    try:
        stack.wait_for(lambda: _ready(listener), 30, what="the first snapshot")
        write_realtime(firestore_client, "t1", 12, 100, {"d1": (2, ago(1))})
        write_realtime(firestore_client, "t2", 7, 50, {"d2": (1, ago(1))})

        def values():
            return {v.train_id: v.current_value for v in listener.view()[1]}

        stack.wait_for(lambda: values() == {"t1": 12, "t2": 7}, 30, what="both writes in the view")
        assert {v.train_id: v.name for v in listener.view()[1]}["t1"] == "One"
        firestore_client.collection("realtime").document("t2").delete()
        stack.wait_for(lambda: values() == {"t1": 12}, 30, what="the removal in the view")
        # A stopped listener is noticed and started again.
        listener._collections[0].stop()
        stack.wait_for(lambda: _ready(listener), 30, what="the restarted listener's snapshot")
        assert listener.restarts == 1 and values() == {"t1": 12}
    finally:
        listener.stop()


def test_a_change_is_decoded_alone_not_with_every_document_sent_again(firestore_client, monkeypatch):
    """The emulator sends the whole collection again with each snapshot: decoding all of it
    each time is what kept a 3,000-train listener a minute behind (bench.serving)."""
    from google.cloud.firestore_v1 import watch

    batch = firestore_client.batch()
    for i in range(200):
        batch.set(firestore_client.collection("realtime").document(f"t{i:03d}"), {"current_value": i})
    batch.commit()
    decode_dict, decoded = watch._helpers.decode_dict, []

    def counting(fields, client):
        decoded.append(1)
        return decode_dict(fields, client)

    monkeypatch.setattr(watch._helpers, "decode_dict", counting)
    listener = FleetListener(firestore_client).start()
    try:
        stack.wait_for(lambda: _ready(listener), 30, what="the first snapshot")
        assert len(decoded) >= 200
        decoded.clear()
        for value in (1000, 1001, 1002):
            firestore_client.collection("realtime").document("t007").set({"current_value": value})
            stack.wait_for(
                lambda v=value: {x.train_id: x.current_value for x in listener.view()[1]}["t007"] == v,
                30,
                what=f"the change to {value}",
            )
        assert {x.train_id: x.current_value for x in listener.view()[1]}["t008"] == 8
        assert len(decoded) <= 6, f"{len(decoded)} documents decoded for 3 changes"
    finally:
        listener.stop()


def test_the_api_serves_the_listeners_view(firestore_emulator, auth_emulator, firestore_client, tmp_path_factory):
    registry.set_train(firestore_client, "trains", "t1", 100)
    # A fleet cache of an hour: without the listener the second value could not show.
    process, base_url = serve_api(
        tmp_path_factory,
        {**firestore_emulator.env(), **auth_emulator.env()},
        "--fleet_listener",
        "--fleet_cache_s=3600",
        "--fleet_max_age_s=7200",
    )
    try:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            for value in (5, 6):
                write_realtime(firestore_client, "t1", value, 100, {"d1": (value, ago(1))})
                stack.wait_for(
                    lambda v=value: http.get("/v1/trains").json()["trains"][0]["current_value"] == v,
                    30,
                    what=f"the API showing {value}",
                )
    finally:
        stack.stop_process(process)


def test_the_devices_listener_keeps_the_feeds_doors(firestore_client):
    """The feed's carriages need each device's door: followed like the fleet, not read per request."""
    registry.register_device(firestore_client, "devices", "d1", "t1", "car1-door1")
    listener = FleetListener(firestore_client, devices_collection="devices").start()
    try:

        def doors():
            try:
                return listener.doors()
            except NotReady:
                return None

        stack.wait_for(lambda: doors() == {"t1": {"d1": "car1-door1"}}, 30, what="the first snapshot's doors")
        registry.register_device(firestore_client, "devices", "d2", "t1", "car2-door1")
        registry.set_enabled(firestore_client, "devices", "d1", False)  # a disabled door counts for nothing
        stack.wait_for(lambda: doors() == {"t1": {"d2": "car2-door1"}}, 30, what="the change in the doors")
        assert listener.doors() is listener.doors()  # built once per change, not per call
    finally:
        listener.stop()


class _FakeFirestore:
    """Collections whose listeners the test drives: `push(name, {id: doc or None})`."""

    def __init__(self):
        self.callbacks = {}

    def follow(self, client, name, callback):
        self.callbacks[name] = callback
        return types.SimpleNamespace(is_active=True, unsubscribe=lambda: None)

    def push(self, name, docs, at):
        changes = [
            types.SimpleNamespace(
                type=types.SimpleNamespace(name="REMOVED" if doc is None else "MODIFIED"),
                document=types.SimpleNamespace(id=doc_id, to_dict=lambda doc=doc: doc),
            )
            for doc_id, doc in docs.items()
        ]
        self.callbacks[name](None, changes, at)


def test_the_view_joins_only_the_trains_that_changed_and_restates_the_rest_from_the_clock():
    t0 = datetime.datetime(2026, 12, 1, 8, tzinfo=datetime.timezone.utc)
    firestore = _FakeFirestore()
    listener = FleetListener(firestore, stale_after_s=90, follow=firestore.follow).start()
    seen = {"devices_seen": {"d1": {"last_seen": t0}}}
    firestore.push("realtime", {f"t{i}": {"current_value": i, **seen} for i in range(100)}, t0)
    firestore.push("trains", {f"t{i}": {"capacity": 200} for i in range(100)}, t0)
    at, views = listener.view(now=t0)
    assert at == t0 and [v.train_id for v in views] == sorted(f"t{i}" for i in range(100))
    assert listener.joins == 100
    assert listener.view(now=t0 + datetime.timedelta(seconds=0.5)) == (at, views)  # reused within REUSE_S

    firestore.push("realtime", {"t7": {"current_value": 70, **seen}, "t8": None}, t0)  # t8's realtime removed
    firestore.push("trains", {"t8": None, "t200": {"capacity": 10}}, t0)  # t8 gone, t200 registered
    later = t0 + datetime.timedelta(seconds=120)
    at, views = listener.view(now=later)
    by_id = {v.train_id: v for v in views}
    assert listener.joins == 100 + 3  # t7, t8, t200 only
    assert at == later and "t8" not in by_id and by_id["t200"].status == fleet.STATUS_NO_DATA
    assert by_id["t7"].current_value == 70 and by_id["t6"].current_value == 6
    # Nothing else changed, yet every train's liveness is the request's: 120 s without a count.
    assert {(v.status, v.staleness_s) for v in views if v.train_id != "t200"} == {(fleet.STATUS_STALE, 120.0)}
    assert [v.train_id for v in views] == sorted(by_id)

    listener._collections[0].start()  # a restart reads every document anew: nothing kept from before
    with pytest.raises(NotReady):
        listener.view(now=later)
    firestore.push("realtime", {"t1": {"current_value": 1, **seen}}, later)
    _, views = listener.view(now=later)
    assert {v.train_id for v in views if v.current_value is not None} == {"t1"}
