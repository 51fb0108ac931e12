"""The fleet view kept by Firestore listeners on the emulator: changes arrive without a read
per request, and the API serves them with --fleet_listener."""

import httpx

from local import stack
from occupancy import registry
from occupancy.fleet_listener import FleetListener, NotReady
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
