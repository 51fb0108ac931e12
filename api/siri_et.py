"""SIRI-ET (Estimated Timetable, SIRI 2.1) with the forecast load at each stop still to come, for
journey planners that read SIRI (OpenTripPlanner keeps per-stop predicted occupancy only from
it; docs/forecast.md, "Same day").

    GET /siri/2.1/estimated-timetable.xml

The same trains and loads as the TripUpdates feed (api/trip_updates.py): one
EstimatedVehicleJourney per train out on a scheduled trip now that has a forecast and a
capacity (api/trip_updates.running_trips: one train per run), identified as SIRI's
FramedVehicleJourneyRef (the GTFS service date and trip_id), LineRef the GTFS route_id,
DirectionRef its direction_id ("unknown" where the schedule has none), VehicleRef the train.
One EstimatedCall per stop still to come, in the trip's order:

  StopPointRef                the GTFS stop_id
  Order                       the stop's place among all the trip's stops, from 1 (GTFS
                              stop_sequence may start at 0 or skip, and a stop may have no
                              times; SIRI's Order is a positive integer)
  Occupancy                   SIRI 2.0's three values (seatsAvailable, standingAvailable, full),
                              for readers of 2.0
  AimedDepartureTime          the static schedule's departure
  ExpectedDepartureOccupancy  SIRI 2.1: OccupancyLevel, the GTFS-Realtime level in SIRI's
                              spelling (SIRI's OccupancyEnumeration names the GTFS-R value each
                              of its values stands for)

The level is the one the TripUpdates feed states for the same stop and caller. With no train to
describe, the frame holds no journey: SIRI's schema asks for at least one and has no valid
empty answer, the document's one departure from it.
"""

import datetime
import re
from typing import Iterable, Optional, Tuple
from xml.etree import ElementTree

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api.auth import READ_RESPONSES, allow_read
from api.deps import SettingsDep
from api.gtfs_rt import feed_headers
from api.services import services_of
from api.trip_updates import on_board, trips_ahead
from occupancy import fleet
from occupancy.forecast import same_day

router = APIRouter(prefix="/siri/2.1", tags=["SIRI"], dependencies=[Depends(allow_read)], responses=READ_RESPONSES)
NAMESPACE = "http://www.siri.org.uk/siri"
SIRI_VERSION = "2.1"
XML = "application/xml"
# GTFS-Realtime OccupancyStatus -> SIRI 2.1 OccupancyEnumeration (ExpectedDepartureOccupancy).
LEVEL = {
    "EMPTY": "empty",
    "MANY_SEATS_AVAILABLE": "manySeatsAvailable",
    "FEW_SEATS_AVAILABLE": "fewSeatsAvailable",
    "STANDING_ROOM_ONLY": "standingRoomOnly",
    "CRUSHED_STANDING_ROOM_ONLY": "crushedStandingRoomOnly",
    "FULL": "full",
    "NOT_ACCEPTING_PASSENGERS": "notAcceptingPassengers",
}
# The same level in SIRI 2.0's three values (a call's Occupancy).
LEVEL_2_0 = {
    "EMPTY": "seatsAvailable",
    "MANY_SEATS_AVAILABLE": "seatsAvailable",
    "FEW_SEATS_AVAILABLE": "seatsAvailable",
    "STANDING_ROOM_ONLY": "standingAvailable",
    "CRUSHED_STANDING_ROOM_ONLY": "standingAvailable",
    "FULL": "full",
    "NOT_ACCEPTING_PASSENGERS": "full",
}


# What XML 1.0 cannot carry (control characters a GTFS id may hold): ElementTree writes them as
# they are, and a reader then refuses the whole document.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _add(parent: ElementTree.Element, name: str, text=None) -> ElementTree.Element:
    element = ElementTree.SubElement(parent, f"{{{NAMESPACE}}}{name}")
    if text is not None:
        element.text = _NOT_XML.sub("\ufffd", str(text))
    return element


def _time(moment: datetime.datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _journey(frame, view: fleet.TrainView, run, ahead, generated_at, thresholds: fleet.Thresholds) -> None:
    journey = _add(frame, "EstimatedVehicleJourney")
    _add(journey, "LineRef", run.trip.route_id)
    _add(journey, "DirectionRef", "unknown" if run.trip.direction_id is None else run.trip.direction_id)
    framed = _add(journey, "FramedVehicleJourneyRef")
    _add(framed, "DataFrameRef", run.service_date.isoformat())
    _add(framed, "DatedVehicleJourneyRef", run.trip.trip_id)
    _add(journey, "VehicleRef", view.train_id)
    calls = _add(journey, "EstimatedCalls")
    by_sequence = {stop.stop_sequence: stop for stop in run.trip.stops}
    for sequence, stop_id, load in ahead:
        stop = by_sequence.get(sequence)
        if stop is None:
            continue  # a stop the forecast has and today's schedule does not
        level = thresholds.status(load / view.capacity)
        call = _add(calls, "EstimatedCall")
        _add(call, "StopPointRef", stop_id or stop.stop_id)
        if stop.place:
            _add(call, "Order", stop.place)
        _add(call, "Occupancy", LEVEL_2_0[level])
        _add(call, "AimedDepartureTime", _time(run.at(stop.departure_s)))
        _add(_add(call, "ExpectedDepartureOccupancy"), "OccupancyLevel", LEVEL[level])


def build_estimated_timetable(
    running: Iterable[Tuple[fleet.TrainView, object, dict]],
    generated_at: datetime.datetime,
    thresholds: fleet.Thresholds,
) -> bytes:
    """The SIRI document (UTF-8 XML) for (train view, run, forecast document) of each train
    running a trip, as api/trip_updates.trips_ahead lists them."""
    ElementTree.register_namespace("", NAMESPACE)
    siri = ElementTree.Element(f"{{{NAMESPACE}}}Siri", {"version": SIRI_VERSION})
    delivery = _add(siri, "ServiceDelivery")
    _add(delivery, "ResponseTimestamp", _time(generated_at))
    timetable = _add(delivery, "EstimatedTimetableDelivery")
    timetable.set("version", SIRI_VERSION)
    _add(timetable, "ResponseTimestamp", _time(generated_at))
    frame = _add(timetable, "EstimatedJourneyVersionFrame")
    _add(frame, "RecordedAtTime", _time(generated_at))
    for view, run, forecast in running:
        if not view.capacity:
            continue
        ahead = same_day.stops_to_come(run, forecast, on_board(view), generated_at)
        if ahead:
            _journey(frame, view, run, ahead, generated_at, thresholds)
    return ElementTree.tostring(siri, encoding="utf-8", xml_declaration=True)


@router.get(
    "/estimated-timetable.xml",
    summary="SIRI-ET: the forecast level at each stop to come (ExpectedDepartureOccupancy)",
    response_class=Response,
    responses={200: {"content": {XML: {}}, "description": "A SIRI 2.1 ServiceDelivery"}},
)
def estimated_timetable(request: Request, settings: SettingsDep, claims: Optional[dict] = Depends(allow_read)):
    exact, generated_at, ahead = trips_ahead(request, claims)
    document = services_of(request).trips_ahead.get(
        ("siri-et", exact),
        (ahead,),
        generated_at,
        lambda: build_estimated_timetable(ahead, generated_at, settings.thresholds),
    )
    return Response(document, media_type=XML, headers=feed_headers(settings))
