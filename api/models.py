"""Request and response bodies (they make the OpenAPI schema at /openapi.json)."""

import datetime
from typing import Annotated, Dict, List, Optional

from pydantic import AfterValidator, BaseModel, Field

from occupancy.wire import ID_PATTERN, MIN_EVENT_TIME

# The times a request may name, in UTC: from the event format's earliest to 2100 (a time past
# the ends of Python's calendar once answered 500: moved to UTC, 0001-01-01T00:00:00+01:00 has no
# year).
EARLIEST_TIME = datetime.datetime.fromisoformat(MIN_EVENT_TIME)
LATEST_TIME = datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc)


def utc_in_range(value: datetime.datetime) -> datetime.datetime:
    """`value` in UTC (a naive one taken as UTC); ValueError (a 422) outside EARLIEST_TIME to
    LATEST_TIME."""
    try:
        utc = value.astimezone(datetime.timezone.utc) if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_TIME <= utc <= LATEST_TIME:
        raise ValueError(
            f"a time from {EARLIEST_TIME.isoformat()} to {LATEST_TIME.isoformat()}, got {value.isoformat()}"
        )
    return utc


# A time in a request: ISO 8601, bounded (utc_in_range).
RequestTime = Annotated[datetime.datetime, AfterValidator(utc_in_range)]


def Id(description: str):  # noqa: N802 (reads like a type in the models)
    """An id in a body, checked with the wire format's pattern (pydantic's regex engine
    anchors `$` at the very end, so a trailing newline fails too); paths: `api.ids`."""
    return Field(pattern=ID_PATTERN, description=description)


class TripOut(BaseModel):
    trip_id: str
    start_date: str = Field(description="Service date, YYYYMMDD (a trip past midnight keeps the day before).")
    start_time: str = Field(description="Scheduled first departure, HH:MM:SS (may pass 24:00:00).")
    route_id: str
    route_short_name: str = ""
    headsign: str = ""
    direction_id: Optional[int] = None
    source: str = Field(description="assignment (an operator's) or schedule (by train number).")


class TripAssignmentIn(BaseModel):
    trip_id: str = Field(min_length=1, max_length=200, description="A trip_id of the static feed.")
    start_date: str = Field(pattern=r"^[0-9]{8}$", description="The service date it runs, YYYYMMDD.")


class Train(BaseModel):
    train_id: str
    name: Optional[str] = None
    capacity: Optional[int] = None
    current_value: Optional[int] = Field(None, description="People on board now; null before any count.")
    occupancy_ratio: Optional[float] = Field(None, description="current_value / capacity.")
    occupancy_status: str = Field(
        description="GTFS-Realtime OccupancyStatus name from the ratio; "
        "NO_DATA_AVAILABLE when stale, never seen or without capacity."
    )
    last_updated: Optional[datetime.datetime] = Field(None, description="Event time of the last applied count.")
    last_seen: Optional[datetime.datetime] = Field(None, description="Newest message (heartbeats too) of its devices.")
    staleness_s: Optional[float] = Field(None, description="Seconds since last_seen.")
    status: str = Field(description="ok, stale (no message for stale_after_s) or no_data (never seen).")
    trip: Optional[TripOut] = Field(None, description="The scheduled trip it runs now (with --gtfs_static).")


class DeviceSeen(BaseModel):
    device_id: str
    last_seen: Optional[datetime.datetime] = None
    seq: Optional[int] = None


class TrainDetail(Train):
    devices: List[DeviceSeen] = []


class TrainList(BaseModel):
    generated_at: datetime.datetime
    trains: List[Train]


class HistoryItem(BaseModel):
    timestamp: datetime.datetime
    bucket_start: Optional[datetime.datetime] = None
    value: int
    delta: int = 0
    events: int = 0
    boarded: int = 0
    alighted: int = 0
    late: int = 0
    correction: int = 0


class HistoryPage(BaseModel):
    items: List[HistoryItem]
    next_cursor: Optional[str] = Field(None, description="Pass as ?cursor= for the next page; null at the end.")


class Device(BaseModel):
    device_id: str
    train_id: Optional[str] = None
    door: Optional[str] = None
    enabled: bool = True
    registered_at: Optional[datetime.datetime] = None
    updated_at: Optional[datetime.datetime] = None
    last_seen: Optional[datetime.datetime] = None
    seq: Optional[int] = None
    health: Optional[Dict[str, object]] = None


class DeviceList(BaseModel):
    devices: List[Device]


class NewDevice(BaseModel):
    device_id: str = Id("The new device's id.")
    train_id: str = Id("The train it is mounted on.")
    door: Optional[str] = Field(None, max_length=128)
    again: bool = Field(
        False,
        description="Register an already registered device again (its seq counter was wiped): its counts "
        "made before are refused from then on; a disabled device stays disabled. Without it, an existing "
        "device is a 409.",
    )


class TrainAssignment(BaseModel):
    train_id: str = Id("The train the device moves to.")


class TrainSettings(BaseModel):
    capacity: int = Field(gt=0, le=100_000, description="People the train holds (seated + standing).")
    name: Optional[str] = Field(None, max_length=200, description="Kept as it is when not given.")


class TrainSettingsOut(BaseModel):
    train_id: str
    capacity: Optional[int] = None
    name: Optional[str] = None
    updated_at: Optional[datetime.datetime] = None


class Problem(BaseModel):
    detail: str


class Status(BaseModel):
    status: str = Field(description="`ok` (the process is up) or `ready` (Firestore answers).")


class AuthConfig(BaseModel):
    provider: str = Field(description="Always `firebase`: Firebase Authentication (Identity Toolkit).")
    emulator: bool = Field(description="Whether sign-in goes to the Firebase Auth emulator.")
    sign_in_url: str = Field(description="Where to POST email and password (`accounts:signInWithPassword`).")
    api_key: str = Field(description="The Web API key to send with it (`key=`).")
    public_reads: bool = Field(description="Whether occupancy reads need no token.")


# The 503 every route that reads Firestore (or asks Firebase Auth) may answer (api.app): the data
# cannot be read now, try again after Retry-After.
UNAVAILABLE = {503: {"model": Problem, "description": "Cannot be read now: try again after Retry-After"}}


class ForecastLoad(BaseModel):
    """A departure's forecast numbers, as a trip's stops and a stop's departures give them."""

    occupancy_percentage: Optional[int] = Field(None, description="Of the capacity (public: in the public steps).")
    predicted_load: Optional[int] = Field(None, description="People on board as it leaves (operators only).")
    predicted_load_p10: Optional[int] = None
    predicted_load_p90: Optional[int] = None
    same_day: Optional[bool] = Field(
        None,
        description="True: the forecast of a train on this trip now, corrected by the count on board "
        "(the same-day forecast, operators only); absent: the day-ahead forecast.",
    )


class ForecastStop(ForecastLoad):
    stop_sequence: int
    stop_id: Optional[str] = None
    stop_name: Optional[str] = Field(None, description="From the static feed's stops.txt (with --gtfs_static).")
    departure_time: Optional[datetime.datetime] = Field(
        None, description="Scheduled departure on the service date (with --gtfs_static)."
    )
    occupancy_status: Optional[str] = Field(
        None, description="GTFS-Realtime OccupancyStatus name; absent: no capacity known for the trip's train."
    )


class TripForecast(BaseModel):
    trip_id: str
    service_date: str = Field(description="YYYY-MM-DD")
    model: Optional[str] = None
    history_days: Optional[int] = Field(None, description="Days of history the model was fitted on.")
    forecast_start: Optional[str] = Field(
        None, description="YYYY-MM-DD: the first day of the run that made it (the lead time is service_date minus it)."
    )
    train_id: Optional[str] = Field(None, description="The train on this trip now, if any (stops to come: same_day)")
    stops: List[ForecastStop]


class Departure(ForecastLoad):
    trip_id: str
    service_date: str
    route_id: str
    route_short_name: str = ""
    headsign: str = ""
    stop_sequence: int
    departure_time: datetime.datetime
    occupancy_status: str = Field(description="GTFS-Realtime OccupancyStatus name; NO_DATA_AVAILABLE: no forecast.")


class StopDepartures(BaseModel):
    stop_id: str
    stop_name: Optional[str] = Field(None, description="From the static feed's stops.txt.")
    generated_at: datetime.datetime
    departures: List[Departure]
