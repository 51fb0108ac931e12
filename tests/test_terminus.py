"""A terminus (zero-load) event through the running pipeline: the train goes to 0, the
residual is a correction, and trips/{id} records the trip's balance per door."""

import time

from google.cloud.firestore_v1.base_query import FieldFilter

from local import stack
from occupancy import wire
from tests.support import KEYS, Heartbeats, register, wait_for_values, warm_up


def test_terminus_balances_the_trip_while_the_pipeline_runs(local_stack):
    client, fleet, start = local_stack
    register(client, {"ta": ["a1", "a2", "hb-a"]}, {"ta": 100})
    process = start()
    warm_up(client, fleet, process, ["hb-a"])
    beats = Heartbeats(fleet, ["hb-a"])
    beats.start()
    try:
        fleet.publish("a1", 9)
        fleet.publish("a2", 3)
        fleet.publish("a1", -5)
        fleet.publish("a2", -4)
        wait_for_values(client, {"ta": 3}, process)
        time.sleep(0.2)
        payload, attributes = wire.encode_reset("ta", wire.now_us(), kind=wire.TERMINUS)
        payload = KEYS.sign_control(payload)  # the operator's system signs it
        fleet.publish_raw(payload, **attributes)
        fleet.publish_raw(payload, **attributes)  # the operator's system sends it twice
        stack.wait_for(lambda: list(client.collection("trips").stream()), 60, what="a trips document")
        fleet.publish("a1", 2)  # the next trip starts counting from 0
        wait_for_values(client, {"ta": 2}, process)
    finally:
        beats.stop()
    [trip] = [d.to_dict() for d in client.collection("trips").stream()]
    assert (trip["train"], trip["ons"], trip["offs"], trip["residual"]) == ("ta", 12, 9, 3)
    assert trip["doors"] == {
        "a1": {"boarded": 9, "alighted": 5, "net": 4},
        "a2": {"boarded": 3, "alighted": 4, "net": -1},
    }
    assert trip["ended_at"] == wire.from_micros(wire.parse_time(attributes["event_time"]))
    query = client.collection("history").where(filter=FieldFilter("train", "==", "ta"))
    history = [d.to_dict() for d in query.stream()]
    assert sum(h["correction"] for h in history) == -3
    seen = client.collection("realtime").document("ta").get().to_dict()["devices_seen"]
    assert (seen["a1"]["trip_boarded"], seen["a2"]["trip_boarded"]) == (2, 0)
