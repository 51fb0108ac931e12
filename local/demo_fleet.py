"""The demo's fleet as `make run` sets it up: its timetable (a GTFS feed whose trips begin just
after now) and its trains and door devices in the registry, each device with a key of its own."""

import datetime
import pathlib
import zoneinfo

from adapters import registry
from local.terminal import relative, say
from occupancy import registry_entries
from occupancy.schedule import Schedule
from sim import timetable
from sim.keyring import CONTROL_ID, Keyring


def write_timetable(path: pathlib.Path, weeks_before: int, lead_s: int) -> int:
    """Writes the demo's static feed to `path`, its service running from `weeks_before` weeks
    before today, its trips moved so that the trains begin `lead_s` from now: a train joins a trip
    at its first stop (sim.timetable.stops_from). Returns the trips' phase (seconds), which the
    simulated trains keep to."""
    now = datetime.datetime.now(zoneinfo.ZoneInfo(timetable.TIMEZONE))
    phase_s = (timetable.service_seconds(now, now.date()) + lead_s) % timetable.HEADWAY_S
    first, last = now.date() - datetime.timedelta(weeks=weeks_before), now.date() + datetime.timedelta(days=366)
    path.parent.mkdir(parents=True, exist_ok=True)
    Schedule.write_zip(path, timetable.gtfs_files(first, last, phase_s))
    say(
        f"timetable (GTFS, sim/timetable.py): {relative(path)}: each train runs its "
        f"route back and forth, a stop every {timetable.STOP_S} s"
    )
    return phase_s


def register(client, fleet, devices_collection: str, trains_collection: str) -> Keyring:
    """Registers `fleet` (sim.simulator's trains), each train numbered after itself, and returns
    the keys its simulated devices and the control principal sign with."""
    say(f"registering {len(fleet)} trains and {sum(len(t.devices) for t in fleet)} door devices...")
    for train in fleet:
        registry.set_train(
            client, trains_collection, train.train_id, train.capacity, train.name, train_number=train.train_id
        )
        for device_id in train.devices:
            door = device_id[len(train.train_id) + 1 :]
            try:
                registry.register_device(client, devices_collection, device_id, train.train_id, door)
            except registry_entries.RegistryError:
                # From an earlier session (perhaps moved or disabled by hand): the demo takes it
                # back and starts its seq afresh, as its simulated device does.
                registry.assign_device(client, devices_collection, device_id, train.train_id)
                registry.register_device(client, devices_collection, device_id, train.train_id, door, again=True)
                registry.set_enabled(client, devices_collection, device_id, True)
        say(f"  {train.train_id:7} {train.name} (capacity {train.capacity}): " + ", ".join(train.devices))
    # Each simulated device signs with a key pair made now (the private halves never leave
    # this process); resets are signed by the operator's control key.
    keys = Keyring()
    keys.register(
        client,
        devices_collection,
        [d for train in fleet for d in train.devices],
        control_trains=[train.train_id for train in fleet],
    )
    say(f"registered a fresh Ed25519 key for each device and the control principal {CONTROL_ID}")
    return keys
