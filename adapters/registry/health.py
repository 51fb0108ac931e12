"""Door health written to the registry (occupancy.door_health's rule over the trips balanced at
each terminus), for the CLI's `health`."""

from typing import Dict, List, Optional

from adapters.registry.writes import list_devices, rpc_options
from adapters.store import count_ops
from occupancy.wire import valid_id


def assess_doors(
    client,
    devices_collection: str,
    trips_collection: str,
    train_id: Optional[str] = None,
    rule=None,
    *,
    timeout: Optional[float] = None,
) -> Dict[str, object]:
    """device_id -> DoorHealth for every registered device (or one train's), written to each
    device's `health` field (not `updated_at`: the pipeline's registry view does not use it).

    One query per train for its newest `rule.window` trips (index: train, ended_at desc).
    """
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    from occupancy import door_health

    rule = rule or door_health.Rule()
    by_train: Dict[str, List[str]] = {}
    for device_id, data in list_devices(client, devices_collection, train_id, timeout=timeout):
        if valid_id(data.get("train_id")):
            by_train.setdefault(data["train_id"], []).append(device_id)
    results = {}
    batch = client.batch()
    for train, devices in sorted(by_train.items()):
        query = (
            client.collection(trips_collection)
            .where(filter=FieldFilter("train", "==", train))
            .order_by("ended_at", direction=firestore.Query.DESCENDING)
            .limit(rule.window)
        )
        trips = [d.to_dict() for d in query.stream(**rpc_options(timeout))]
        count_ops(reads=max(1, len(trips)))
        health = door_health.assess(list(reversed(trips)), devices, rule)
        for device_id, h in health.items():
            batch.update(
                client.collection(devices_collection).document(device_id),
                {"health": dict(h.as_document(), assessed_at=firestore.SERVER_TIMESTAMP)},
            )
        results.update(health)
        if len(batch) >= 400:
            batch.commit(**rpc_options(timeout))
            batch = client.batch()
    if len(batch):
        batch.commit(**rpc_options(timeout))
    return results
