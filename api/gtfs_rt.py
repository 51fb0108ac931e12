"""GTFS-Realtime VehiclePositions with occupancy, for journey planners.

    GET /gtfs-rt/vehicle-positions.pb            protobuf FeedMessage (application/x-protobuf)
    GET /gtfs-rt/vehicle-positions.pb?format=json  the same message as JSON, for people

One FeedEntity per train that has ever been counted (gtfs-realtime 2.0, FULL_DATASET;
a registered train never seen has nothing to say yet and is left out):
  vehicle.trip                 with --gtfs_static: the scheduled trip it runs now (trip_id,
                               route_id, start_date, start_time, direction_id, SCHEDULED), by
                               an operator's assignment or its train number (occupancy.schedule)
  vehicle.vehicle.id / label   train id / its registry name (else the id)
  vehicle.timestamp            the newest message of its devices (heartbeats included: the
                               moment the number was last confirmed), else its last count;
                               for a stale train the feed's time (what is stated, "no data",
                               is stated now; GTFS-RT practice flags positions over 90 s old)
  vehicle.occupancy_status     the level of count / capacity (occupancy.fleet thresholds);
                               NO_DATA_AVAILABLE when stale (no message from any of its
                               devices for --stale_after_s), never seen, or without capacity
  vehicle.occupancy_percentage round(100 * count / capacity); only with a capacity and fresh
                               data; may exceed 100, as the spec allows for an over-full vehicle
  vehicle.multi_carriage_details  where the train's doors are named like "car3-door2": one
                               CarriageDetails per carriage 1..N, an estimate (see
                               occupancy.fleet.carriage_counts), each carriage's capacity
                               taken as an equal share of the train's; a carriage without a
                               mapped door says NO_DATA_AVAILABLE and percentage -1.
"""

import datetime
import json
from typing import Dict, Iterable, Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from adapters import registry
from adapters.fleet_listener import NotReady
from adapters.store import count_ops
from api.auth import READ_RESPONSES, allow_read
from api.deps import SettingsDep, read_fleet, trip_for
from api.public import exact_for, views_for
from api.services import services_of
from occupancy import fleet
from occupancy.levels import NO_DATA_AVAILABLE

router = APIRouter(
    prefix="/gtfs-rt", tags=["GTFS-Realtime"], dependencies=[Depends(allow_read)], responses=READ_RESPONSES
)
PROTOBUF = "application/x-protobuf"
GTFS_RT_VERSION = "2.0"
# The largest percentage both fields hold (a carriage's is int32, a vehicle's uint32): a count
# inflated past it is published at it rather than fail the feed of every train.
MAX_PERCENTAGE = 2**31 - 1


def _seconds(moment: Optional[datetime.datetime]) -> Optional[int]:
    return int(moment.timestamp()) if moment is not None else None


def _carriages(
    pb, vehicle, view: fleet.TrainView, doors: Dict[str, Optional[str]], thresholds: fleet.Thresholds
) -> None:
    mapped = {carriage for carriage in map(fleet.carriage_of, doors.values()) if carriage}
    if not mapped:
        return
    counts = fleet.carriage_counts(view.devices_seen, doors)
    fresh = view.status == fleet.STATUS_OK and view.capacity
    numbers = {number: name for name, number in mapped}
    # Carriages 1..N (N the highest mapped) of equal size: an estimate.
    share = view.capacity / max(numbers) if view.capacity else None
    for number in range(1, max(numbers) + 1):
        details = vehicle.multi_carriage_details.add()
        details.carriage_sequence = number
        details.id = f"{view.train_id}-car{number}"
        details.label = numbers.get(number, f"car{number}")
        count = counts.get((numbers.get(number), number))
        if fresh and count is not None:
            details.occupancy_percentage = min(fleet.occupancy_percentage(count, share), MAX_PERCENTAGE)
            details.occupancy_status = pb.VehiclePosition.OccupancyStatus.Value(thresholds.status(count / share))
        else:
            details.occupancy_percentage = -1
            details.occupancy_status = pb.VehiclePosition.NO_DATA_AVAILABLE


def _trip(pb, vehicle, run) -> None:
    """The TripDescriptor a journey planner matches its timetable with (occupancy.schedule)."""
    descriptor = vehicle.trip
    descriptor.trip_id = run.trip.trip_id
    descriptor.route_id = run.trip.route_id
    descriptor.start_date = run.start_date
    descriptor.start_time = run.start_time
    if run.trip.direction_id is not None:
        descriptor.direction_id = run.trip.direction_id
    descriptor.schedule_relationship = pb.TripDescriptor.SCHEDULED


def build_feed(
    views: Iterable[fleet.TrainView],
    generated_at: datetime.datetime,
    thresholds: fleet.Thresholds,
    doors_by_train: Dict[str, Dict[str, Optional[str]]],
    trips: Optional[Dict[str, object]] = None,
):
    """The FeedMessage for these trains (pure: the tests and the benchmark call it directly);
    `trips`: train_id -> the occupancy.schedule.TripRun it runs now."""
    from google.transit import gtfs_realtime_pb2 as pb

    feed = pb.FeedMessage()
    feed.header.gtfs_realtime_version = GTFS_RT_VERSION
    feed.header.incrementality = pb.FeedHeader.FULL_DATASET
    feed.header.timestamp = _seconds(generated_at)
    for view in views:
        measured = view.last_seen or view.last_updated
        if measured is None:
            continue
        entity = feed.entity.add()
        entity.id = view.train_id
        vehicle = entity.vehicle
        vehicle.vehicle.id = view.train_id
        vehicle.vehicle.label = view.name or view.train_id
        run = (trips or {}).get(view.train_id)
        if run is not None:
            _trip(pb, vehicle, run)
        vehicle.timestamp = _seconds(generated_at if view.status == fleet.STATUS_STALE else measured)
        set_occupancy(pb, vehicle, view, thresholds, doors_by_train.get(view.train_id, {}))
    return feed


def set_occupancy(
    pb, vehicle, view: fleet.TrainView, thresholds: fleet.Thresholds, doors: Dict[str, Optional[str]]
) -> None:
    """A VehiclePosition's occupancy fields from a train's view: status, percentage, carriages
    (what this feed publishes, and what the enricher adds to an operator's own feed)."""
    status = fleet.published_status(view, thresholds)
    vehicle.occupancy_status = pb.VehiclePosition.OccupancyStatus.Value(status)
    if status != NO_DATA_AVAILABLE and view.occupancy_ratio is not None:
        # From the ratio: a public view's is coarse and has no count (occupancy.privacy).
        vehicle.occupancy_percentage = min(int(round(100 * max(0.0, view.occupancy_ratio))), MAX_PERCENTAGE)
    _carriages(pb, vehicle, view, doors, thresholds)


def read_doors(request: Request) -> Dict[str, Dict[str, Optional[str]]]:
    """train_id -> {device_id: door}: from the devices listener (--fleet_listener), else one query
    on the registry every --doors_cache_s (doors change rarely; one read per device each time)."""
    services = services_of(request)
    settings, client = services.settings, services.client
    listener = services.fleet_listener
    if listener is not None:
        try:
            return listener.doors()
        except NotReady:
            pass  # starting: read them as without a listener

    def read():
        devices = registry.list_devices(client, settings.devices_collection, timeout=settings.firestore_timeout_s)
        count_ops(reads=max(1, len(devices)))
        return fleet.doors_by_train(devices)

    return services.doors_cache.get(read)


@router.get(
    "/vehicle-positions.pb",
    summary="GTFS-Realtime VehiclePositions with occupancy",
    response_class=Response,
    responses={
        200: {
            "content": {PROTOBUF: {}, "application/json": {}},
            "description": "A FeedMessage (protobuf, or JSON with ?format=json)",
        }
    },
)
def vehicle_positions(
    request: Request,
    settings: SettingsDep,
    format: str = Query("pb", pattern="^(pb|json)$", description="pb (default) or json"),
    claims: Optional[dict] = Depends(allow_read),
):
    generated_at, views = read_fleet(request)
    doors = read_doors(request)
    # A function of (fleet view, doors, exact or public): built once per view, not per request
    # (10,000 trains: about 1 s to build).
    exact = exact_for(request, claims)

    def build():
        shown = views_for(request, views, generated_at, claims)
        trips = {view.train_id: trip_for(request, view, generated_at)[0] for view in shown}
        return build_feed(shown, generated_at, settings.thresholds, doors, trips)

    feed = services_of(request).feeds.get(("vehicle-positions", exact), (views, doors), generated_at, build)
    return feed_response(request, ("vehicle-positions", exact), feed, generated_at, format)


def feed_response(request: Request, key: tuple, feed, at: datetime.datetime, format: str) -> Response:
    """`feed` as asked for: protobuf, or JSON for people (?format=json), each made once per feed
    built and `key` (the feed and whose numbers: 10,000 trains take 0.5 s to JSON, 0.007 s to
    protobuf)."""

    def serialize() -> bytes:
        if format == "json":
            from google.protobuf.json_format import MessageToDict

            body = MessageToDict(feed, preserving_proto_field_name=True)
            return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return feed.SerializeToString()

    services = services_of(request)
    body = services.feeds.get((*key, format), (feed,), at, serialize)
    media_type = "application/json" if format == "json" else PROTOBUF
    return Response(body, media_type=media_type, headers=feed_headers(services.settings))


def feed_headers(settings) -> dict:
    """A feed's answer may be kept as long as the fleet view it was built from."""
    return {"Cache-Control": f"public, max-age={int(settings.fleet_cache_s)}"}
