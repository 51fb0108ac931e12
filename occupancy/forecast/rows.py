"""Predictions -> rows of the forecast table, one per (service_date, trip_id, stop_sequence)
of a run, with the run's first day (`forecast_start`: a day's lead time is service_date minus it).

`occupancy_status` is a GTFS-Realtime OccupancyStatus name from the predicted load and the
capacity of the train that ran the trip most recently; without a capacity, no percentage and
no status (never an invented one); without a prediction (no usable history), no numbers and
NO_DATA_AVAILABLE.
"""

import datetime
import hashlib
from typing import Dict, Iterable, List, Optional, Sequence

from occupancy import tides
from occupancy.fleet import Thresholds
from occupancy.forecast.history import Observation, Slot
from occupancy.forecast.model import Prediction
from occupancy.levels import NO_DATA_AVAILABLE

TABLE = "occupancy_forecast"
FIELDS = tuple(f.name for f in tides.FIELDS[TABLE])
# Fields the same for every stop of a trip's document.
_PER_TRIP = ("service_date", "trip_id", "model", "history_days", "forecast_start")


def latest_vehicles(observations: Iterable[Observation]) -> Dict[str, str]:
    """trip_id -> the vehicle that ran it most recently."""
    latest: Dict[str, tuple] = {}
    for o in observations:
        if o.vehicle_id and (o.trip_id not in latest or o.service_date >= latest[o.trip_id][0]):
            latest[o.trip_id] = (o.service_date, o.vehicle_id)
    return {trip: vehicle for trip, (_, vehicle) in latest.items()}


def forecast_rows(
    slots: Sequence[Slot],
    predictions: Sequence[Optional[Prediction]],
    capacity_of_trip: Dict[str, int],
    model: str,
    history_days: int,
    start: datetime.date,
    thresholds: Thresholds = Thresholds(),
) -> List[dict]:
    out = []
    for slot, prediction in zip(slots, predictions):
        capacity = capacity_of_trip.get(slot.trip_id)
        row = {
            "service_date": slot.service_date,
            "trip_id": slot.trip_id,
            "stop_sequence": slot.stop_sequence,
            "stop_id": slot.stop_id,
            "predicted_load": None,
            "predicted_load_p10": None,
            "predicted_load_p90": None,
            "occupancy_percentage": None,
            "occupancy_status": NO_DATA_AVAILABLE,
            "model": model,
            "history_days": history_days,
            "forecast_start": start,
        }
        if prediction is not None:
            row.update(
                predicted_load=round(prediction.load),
                predicted_load_p10=round(prediction.p10),
                predicted_load_p90=round(prediction.p90),
                occupancy_status=None,
            )
            if capacity:
                ratio = prediction.load / capacity
                row.update(occupancy_percentage=round(100 * ratio), occupancy_status=thresholds.status(ratio))
        out.append(row)
    return out


def document_id(trip_id: str, service_date: str) -> str:
    """Deterministic and Firestore-safe whatever the trip id (a GTFS id may hold '/')."""
    return hashlib.sha256(f"{trip_id}|{service_date}".encode("utf-8")).hexdigest()[:32]


def trip_document(trip_rows: Sequence[dict]) -> dict:
    """The rows of one trip on one service date -> its forecast document (what the API serves:
    `forecasts/{document_id}`), the stops in their order."""
    first = trip_rows[0]
    day = first["service_date"].isoformat()
    return {
        "trip_id": first["trip_id"],
        "service_date": day,
        "model": first["model"],
        "history_days": first["history_days"],
        "forecast_start": first["forecast_start"].isoformat(),
        "stops": [
            {k: row[k] for k in FIELDS if k not in _PER_TRIP}
            for row in sorted(trip_rows, key=lambda r: r["stop_sequence"])
        ],
    }
