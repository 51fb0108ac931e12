"""An operator attaches a train to a scheduled trip (rolling stock that runs several train
numbers a day); without one, its train number's trip applies (occupancy/schedule.py)."""

import datetime

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from adapters import registry
from api import ids
from api.auth import OPERATOR_RESPONSES, require_operator
from api.deps import ClientDep, SettingsDep
from api.models import TripAssignmentIn, TripOut
from api.services import services_of
from api.trains import trip_out
from occupancy import registry_entries, schedule

router = APIRouter(
    tags=["fleet registry"],
    dependencies=[Depends(require_operator)],
    responses=OPERATOR_RESPONSES,
)


def _schedule(request: Request) -> schedule.Schedule:
    loaded = services_of(request).schedule
    if loaded is None:
        raise HTTPException(status_code=409, detail="no static schedule: start the API with --gtfs_static GTFS.zip")
    return loaded


@router.put(
    "/v1/trains/{train_id}/trip",
    response_model=TripOut,
    summary="Assign a train to a scheduled trip",
    responses={
        404: {"description": "No such train"},
        409: {"description": "No static schedule loaded"},
        422: {"description": "No such trip, or it does not run that date"},
    },
)
def assign_trip(
    body: TripAssignmentIn,
    request: Request,
    settings: SettingsDep,
    client: ClientDep,
    train_id: str = Depends(ids.train_id),
) -> dict:
    """Until that run is over, the train is published as running it, whatever its train number says."""
    try:
        run = _schedule(request).assigned_run(body.trip_id, body.start_date)
    except schedule.ScheduleError as e:
        raise HTTPException(status_code=422, detail=str(e)) from None
    if run.ends_at + datetime.timedelta(seconds=schedule.LATE_S) < datetime.datetime.now(datetime.timezone.utc):
        raise HTTPException(status_code=422, detail=f"trip {body.trip_id} on {body.start_date} is over")
    try:
        registry.assign_trip(
            client,
            settings.trains_collection,
            train_id,
            body.trip_id,
            body.start_date,
            timeout=settings.firestore_timeout_s,
        )
    except registry_entries.RegistryConflict as e:
        raise HTTPException(status_code=404, detail=str(e)) from None
    return trip_out(run, "assignment")


@router.delete(
    "/v1/trains/{train_id}/trip",
    status_code=204,
    summary="Clear a train's trip assignment",
    responses={404: {"description": "No such train"}},
)
def clear_trip(
    request: Request, settings: SettingsDep, client: ClientDep, train_id: str = Depends(ids.train_id)
) -> Response:
    try:
        registry.assign_trip(
            client, settings.trains_collection, train_id, None, None, timeout=settings.firestore_timeout_s
        )
    except registry_entries.RegistryConflict as e:
        raise HTTPException(status_code=404, detail=str(e)) from None
    return Response(status_code=204)
