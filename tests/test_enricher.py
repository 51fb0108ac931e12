"""The enricher: an operator's own VehiclePositions feed, fetched over HTTP, served with the
pipeline's occupancy added to the vehicles the registry maps; positions, trips and unmapped
vehicles kept exactly as they came."""

import datetime
import http.server
import threading

import httpx
import pytest
from google.transit import gtfs_realtime_pb2 as pb

from adapters import registry
from api import enricher
from local import stack
from local.emulators import free_port
from occupancy import fleet
from tests.support import register, serve_api, wait_for_values, warm_up

UTC = datetime.timezone.utc


def operator_feed(now: datetime.datetime) -> pb.FeedMessage:
    """What an operator's AVL system publishes: positions and trips, no occupancy."""
    feed = pb.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.timestamp = int(now.timestamp())
    for vehicle_id, lat, lon, trip_id in (("veh-100", 47.378, 8.540, "ic1832-wd"), ("veh-200", 46.853, 9.529, "s3-7")):
        entity = feed.entity.add()
        entity.id = f"e-{vehicle_id}"
        vp = entity.vehicle
        vp.vehicle.id = vehicle_id
        vp.position.latitude, vp.position.longitude, vp.position.bearing = lat, lon, 90.0
        vp.trip.trip_id, vp.trip.start_date = trip_id, now.strftime("%Y%m%d")
        vp.timestamp = int(now.timestamp()) - 5
    return feed


def test_enrich_sets_occupancy_on_mapped_vehicles_only():
    now = datetime.datetime.now(UTC)
    realtime = {
        "current_value": 30,
        "last_updated": now,
        "devices_seen": {"d1": {"last_seen": now, "seq": 1, "trip_boarded": 30, "trip_alighted": 0}},
    }
    view = fleet.train_view("t1", realtime, {"capacity": 100, "vehicle_id": "veh-100"}, now)
    upstream = operator_feed(now)
    enriched = enricher.enrich(
        upstream.SerializeToString(), {"veh-100": view}, fleet.Thresholds(), {"t1": {"d1": "car1-door1"}}
    )
    ours, theirs = enriched.entity
    assert ours.vehicle.occupancy_percentage == 30
    assert ours.vehicle.occupancy_status == pb.VehiclePosition.FEW_SEATS_AVAILABLE
    assert [c.carriage_sequence for c in ours.vehicle.multi_carriage_details] == [1]
    assert ours.vehicle.position == upstream.entity[0].vehicle.position
    assert ours.vehicle.trip == upstream.entity[0].vehicle.trip
    assert ours.vehicle.timestamp == upstream.entity[0].vehicle.timestamp
    assert theirs.SerializeToString() == upstream.entity[1].SerializeToString()
    assert enriched.header == upstream.header
    with pytest.raises(enricher.UpstreamUnavailable):
        enricher.parse(b"\xff not a feed")


class _Upstream(http.server.ThreadingHTTPServer):
    """The operator's feed on localhost."""

    def __init__(self, body: bytes):
        self.body = body

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler):  # noqa: N802, N805
                handler.send_response(200)
                handler.send_header("Content-Type", "application/x-protobuf")
                handler.send_header("Content-Length", str(len(self.body)))
                handler.end_headers()
                handler.wfile.write(self.body)

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_the_enricher_end_to_end_over_http_with_the_running_pipeline(
    local_stack, emulator_env, auth_emulator, tmp_path_factory
):
    client, fleet_devices, start = local_stack
    register(client, {"t1": ["d1"], "t2": ["d2"]}, {"t1": 100, "t2": 50})
    registry.set_train(client, "trains", "t1", 100, vehicle_id="veh-100")
    pipeline = start()
    warm_up(client, fleet_devices, pipeline, ["d1"])
    upstream = operator_feed(datetime.datetime.now(UTC))
    server = _Upstream(upstream.SerializeToString())
    api, base_url = serve_api(
        tmp_path_factory,
        {**emulator_env, **auth_emulator.env()},
        "--fleet_cache_s=0",
        f"--upstream_vehicle_positions=http://127.0.0.1:{server.server_port}/vp.pb",
    )
    try:
        fleet_devices.publish("d1", 45)
        wait_for_values(client, {"t1": 45}, pipeline)
        with httpx.Client(base_url=base_url, timeout=30) as http_client:
            response = http_client.get("/gtfs-rt/enriched-vehicle-positions.pb")
            assert response.status_code == 200 and response.headers["content-type"] == "application/x-protobuf"
            feed = pb.FeedMessage.FromString(response.content)
            ours, theirs = feed.entity
            assert (ours.vehicle.occupancy_percentage, ours.vehicle.occupancy_status) == (
                45,
                pb.VehiclePosition.FEW_SEATS_AVAILABLE,
            )
            assert ours.vehicle.position == upstream.entity[0].vehicle.position
            assert ours.vehicle.trip == upstream.entity[0].vehicle.trip
            assert theirs.SerializeToString() == upstream.entity[1].SerializeToString()
            as_json = http_client.get("/gtfs-rt/enriched-vehicle-positions.pb", params={"format": "json"}).json()
            assert as_json["entity"][0]["vehicle"]["occupancy_percentage"] == 45
            server.shutdown()
            server.server_close()
            down = http_client.get("/gtfs-rt/enriched-vehicle-positions.pb")
            assert down.status_code == 503 and down.headers.get("retry-after"), down.text
    finally:
        stack.stop_process(api)
