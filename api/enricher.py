"""The operator's own VehiclePositions feed, with occupancy added: how most operators deploy it.

    GET /gtfs-rt/enriched-vehicle-positions.pb[?format=json]

The API fetches `--upstream_vehicle_positions URL` (the operator's GTFS-RT VehiclePositions,
with positions and trips) and serves it with each vehicle whose `vehicle.id` a train's
`vehicle_id` names in the registry given that train's occupancy (status, percentage,
carriages: the same fields as /gtfs-rt/vehicle-positions.pb). Everything else (positions,
trips, timestamps, the header, vehicles no train names) is kept as it came. The upstream feed
is fetched in the background like the fleet view (`--fleet_cache_s`), and answers 503 once it
could not be fetched for `--fleet_max_age_s`.
"""

import logging
import urllib.error
import urllib.request
from typing import Dict, Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from api.auth import READ_RESPONSES, allow_read
from api.deps import SettingsDep, read_fleet
from api.gtfs_rt import PROTOBUF, feed_response, read_doors, set_occupancy
from api.public import exact_for, views_for
from api.services import services_of
from occupancy import fleet

_LOGGER = logging.getLogger(__name__)
router = APIRouter(
    prefix="/gtfs-rt", tags=["GTFS-Realtime"], dependencies=[Depends(allow_read)], responses=READ_RESPONSES
)
MAX_UPSTREAM_BYTES = 50 * 1024 * 1024


class UpstreamUnavailable(ConnectionError):
    """The operator's feed could not be fetched or parsed (an OSError: the background refresh
    keeps the last good feed, as for a Firestore outage)."""


def fetch(url: str, timeout_s: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            data = response.read(MAX_UPSTREAM_BYTES + 1)
    except (urllib.error.URLError, OSError) as e:
        raise UpstreamUnavailable(f"cannot fetch the upstream feed {url}: {e}") from None
    if len(data) > MAX_UPSTREAM_BYTES:
        raise UpstreamUnavailable(f"the upstream feed {url} is over {MAX_UPSTREAM_BYTES} bytes")
    parse(data)  # a broken feed is an outage of the upstream, not a feed to serve
    return data


def parse(data: bytes):
    from google.protobuf.message import DecodeError
    from google.transit import gtfs_realtime_pb2 as pb

    feed = pb.FeedMessage()
    try:
        feed.ParseFromString(data)
    except DecodeError as e:
        raise UpstreamUnavailable(f"the upstream feed is not a GTFS-RT FeedMessage: {e}") from None
    return feed


def enrich(
    upstream: bytes,
    views_by_vehicle: Dict[str, fleet.TrainView],
    thresholds: fleet.Thresholds,
    doors_by_train: Dict[str, Dict],
):
    """The upstream FeedMessage with occupancy set on each vehicle a train names (pure)."""
    from google.transit import gtfs_realtime_pb2 as pb

    feed = parse(upstream)
    for entity in feed.entity:
        if not entity.HasField("vehicle") or not entity.vehicle.HasField("vehicle"):
            continue
        view = views_by_vehicle.get(entity.vehicle.vehicle.id)
        if view is None or (view.last_seen or view.last_updated) is None:
            continue  # not ours, or never counted: left exactly as it came
        vehicle = entity.vehicle
        vehicle.ClearField("multi_carriage_details")
        vehicle.ClearField("occupancy_percentage")
        set_occupancy(pb, vehicle, view, thresholds, doors_by_train.get(view.train_id, {}))
    return feed


@router.get(
    "/enriched-vehicle-positions.pb",
    response_class=Response,
    summary="The operator's VehiclePositions feed with occupancy added",
    responses={
        200: {"content": {PROTOBUF: {}, "application/json": {}}},
        404: {"description": "No --upstream_vehicle_positions configured"},
        503: {"description": "The upstream feed or Firestore is unavailable"},
    },
)
def enriched_vehicle_positions(
    request: Request,
    settings: SettingsDep,
    format: str = Query("pb", pattern="^(pb|json)$"),
    claims: Optional[dict] = Depends(allow_read),
):
    if not settings.upstream_vehicle_positions:
        raise HTTPException(
            status_code=404, detail="no upstream feed: start the API with --upstream_vehicle_positions URL"
        )
    upstream = services_of(request).upstream_cache.get(
        lambda: fetch(settings.upstream_vehicle_positions, settings.firestore_timeout_s)
    )
    read_at, views = read_fleet(request)
    doors = read_doors(request)

    def build():
        shown = views_for(request, views, read_at, claims)
        by_vehicle = {str(v.trains_doc["vehicle_id"]): v for v in shown if v.trains_doc.get("vehicle_id")}
        return enrich(upstream, by_vehicle, settings.thresholds, doors)

    # Parsed and enriched once per upstream read and fleet view, not per request (up to 50 MB).
    exact = exact_for(request, claims)
    feed = services_of(request).feeds.get(("enriched", exact), (upstream, views, doors), read_at, build)
    return feed_response(request, ("enriched", exact), feed, read_at, format)
