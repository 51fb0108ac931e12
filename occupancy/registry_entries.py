"""The device registry's entries as the pipeline, the API and the CLI read them: pure, no client.

  devices/{device_id}: {train_id, enabled, door, registered_at, assigned_at, updated_at, keys}
  devices/{control_id}: {role: "control", trains, enabled, registered_at, updated_at, keys}
  trains/{train_id}:   {capacity, name, train_number, vehicle_id, trip, updated_at}

`device_entry` and `train_entry` turn a registry document (a dict) into a `DeviceEntry` or a
`TrainEntry`, leaving out what is malformed rather than failing; `RegistrySnapshot` holds the
entries the pipeline's cached view serves. The Firestore reads and writes that produce and
change these documents are adapters.registry's; the rules they keep are in docs/design.md,
"Device registry".

`keys`: up to 3 public keys a principal signs its messages with (occupancy.identity). A
control principal (an operator's system) signs resets and terminus events of the trains it
names ("*": all); door devices never may.
"""

import datetime
from typing import Dict, NamedTuple, Optional, Tuple

from occupancy.wire import to_micros, valid_id

# A train's realtime document holds every device's de-duplication memory; with
# documents.MAX_RANGES_PER_DEVICE this keeps it far below Firestore's 1 MiB
# (docs/sizing.md). A 16-car train with 8 doors a car has 128.
MAX_DEVICES_PER_TRAIN = 256


class RegistryError(ValueError):
    """A registry command that cannot be carried out, with a message for the user."""


class UnknownDevice(RegistryError):
    """The device is not registered."""


class RegistryConflict(RegistryError):
    """The registry's current state forbids the change (e.g. the device is on another train)."""


DOOR, CONTROL = "door", "control"
ALL_TRAINS = "*"


class DeviceEntry(NamedTuple):
    train_id: str
    enabled: bool
    registered_us: int
    door: Optional[str] = None
    keys: tuple = ()  # occupancy.identity.PublicKey, at most identity.MAX_KEYS
    role: str = DOOR
    trains: tuple = ()  # a control principal's trains (ALL_TRAINS: every one)
    # When the device was last moved to `train_id` or registered again (0: never, or in a
    # document written before `assigned_at`): its counts made before it are refused.
    assigned_us: int = 0

    def key(self, name: str):
        return next((k for k in self.keys if k.key_id == name), None)

    def controls(self, train_id: str) -> bool:
        return self.role == CONTROL and (ALL_TRAINS in self.trains or train_id in self.trains)


class TrainEntry(NamedTuple):
    capacity: Optional[int]
    name: Optional[str] = None
    # What attaches the train to its scheduled trip (occupancy.schedule.trip_of): its number
    # and an operator's assignment, (trip_id, start_date).
    train_number: Optional[str] = None
    trip: Optional[Tuple[str, str]] = None

    def schedule_fields(self) -> dict:
        """The fields of the train's registry document occupancy.schedule.trip_of reads."""
        trip = {"trip_id": self.trip[0], "start_date": self.trip[1]} if self.trip else None
        return {"train_number": self.train_number, "trip": trip}


class RegistrySnapshot:
    """A picklable view of the registry: what the pipeline's cache holds."""

    def __init__(self, devices=None, trains=None, updated_through=None):
        self.devices: Dict[str, DeviceEntry] = devices or {}
        self.trains: Dict[str, TrainEntry] = trains or {}
        # The newest `updated_at` seen: the next refresh asks for what came since.
        self.updated_through: Optional[datetime.datetime] = updated_through

    def capacity(self, train_id: str) -> Optional[int]:
        entry = self.trains.get(train_id)
        return entry.capacity if entry else None


def _micros(value) -> int:
    return to_micros(value) if isinstance(value, datetime.datetime) else 0


def device_entry(data: Optional[dict]) -> Optional[DeviceEntry]:
    if not data:
        return None
    keys = public_keys(data)
    if data.get("role") == CONTROL:
        trains = tuple(t for t in data.get("trains") or () if t == ALL_TRAINS or valid_id(t))
        return DeviceEntry(
            train_id="",
            enabled=bool(data.get("enabled", True)),
            registered_us=_micros(data.get("registered_at")),
            keys=keys,
            role=CONTROL,
            trains=trains,
        )
    if not valid_id(data.get("train_id")):
        return None
    return DeviceEntry(
        train_id=data["train_id"],
        enabled=bool(data.get("enabled", True)),
        registered_us=_micros(data.get("registered_at")),
        door=data.get("door"),
        keys=keys,
        assigned_us=_micros(data.get("assigned_at")),
    )


def public_keys(data: dict) -> tuple:
    """The well-formed keys of a registry document (a malformed one is left out, never fatal)."""
    from occupancy.identity import ALGORITHMS, PublicKey, expiry_us

    keys = []
    for item in data.get("keys") or ():
        if (
            isinstance(item, dict)
            and valid_id(item.get("key_id"))
            and item.get("alg") in ALGORITHMS
            and isinstance(item.get("public_key"), str)
        ):
            expires = item.get("expires_at")
            keys.append(
                PublicKey(
                    item["key_id"],
                    item["alg"],
                    item["public_key"],
                    expiry_us(expires) if isinstance(expires, datetime.datetime) else 0,
                )
            )
    return tuple(keys)


def train_entry(data: Optional[dict]) -> TrainEntry:
    data = data or {}
    capacity = data.get("capacity")
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
        capacity = None
    number = data.get("train_number")
    trip = data.get("trip")
    assigned = None
    if isinstance(trip, dict) and trip.get("trip_id") and trip.get("start_date"):
        assigned = (str(trip["trip_id"]), str(trip["start_date"]))
    return TrainEntry(
        capacity=capacity,
        name=data.get("name"),
        train_number=str(number) if number not in (None, "") else None,
        trip=assigned,
    )
