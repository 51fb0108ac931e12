"""Occupancy reads: every train now, one train with its devices, one train's history."""

import base64
import binascii
import datetime
import json
from typing import Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from adapters import fleet_views
from adapters.store import count_ops
from api import ids, public, public_history
from api.auth import READ_RESPONSES, allow_read
from api.deps import ClientDep, SettingsDep, read_fleet, trip_for
from api.models import DeviceSeen, HistoryItem, HistoryPage, RequestTime, TrainDetail, TrainList, utc_in_range
from api.services import services_of
from occupancy import fleet, privacy, wire

router = APIRouter(
    prefix="/v1/trains", tags=["occupancy"], dependencies=[Depends(allow_read)], responses=READ_RESPONSES
)
MAX_PAGE = 1000


def trip_out(run, source) -> Optional[dict]:
    if run is None:
        return None
    trip = run.trip
    return dict(
        trip_id=trip.trip_id,
        start_date=run.start_date,
        start_time=run.start_time,
        route_id=trip.route_id,
        route_short_name=trip.route_short_name,
        headsign=trip.headsign,
        direction_id=trip.direction_id,
        source=source,
    )


def train_out(view: fleet.TrainView, settings, trip=(None, None)) -> dict:
    return dict(
        trip=trip_out(*trip),
        train_id=view.train_id,
        name=view.name,
        capacity=view.capacity,
        current_value=view.current_value,
        occupancy_ratio=view.occupancy_ratio,
        occupancy_status=fleet.published_status(view, settings.thresholds),
        last_updated=view.last_updated,
        last_seen=view.last_seen,
        staleness_s=None if view.staleness_s is None else round(view.staleness_s, 1),
        status=view.status,
    )


@router.get("", response_model=TrainList, summary="Occupancy of every train now")
def list_trains(request: Request, settings: SettingsDep, claims: Optional[dict] = Depends(allow_read)):
    """Two Firestore queries (realtime, trains) whatever the fleet's size, shared by every request
    within --fleet_cache_s; `generated_at` says when they were read. Coarse unless an operator
    asks (docs/design.md, "Privacy")."""
    read_at, views = read_fleet(request)
    exact = public.exact_for(request, claims)

    # The body is a function of (fleet view, exact or public): rendered once per view, not per
    # request (10,000 trains: 2.7 MB, about 0.3 s to render).
    def render() -> bytes:
        shown = public.views_for(request, views, read_at, claims)
        trains = [train_out(v, settings, trip_for(request, v, read_at)) for v in shown]
        return TrainList(generated_at=read_at, trains=trains).model_dump_json().encode("utf-8")

    body = services_of(request).trains_bodies.get(exact, (views,), read_at, render)
    return Response(body, media_type="application/json")


@router.get(
    "/{train_id}",
    response_model=TrainDetail,
    summary="One train now, with its devices",
    responses={404: {"description": "No such train"}, 422: {"description": "Invalid id"}},
)
def get_train(
    request: Request,
    settings: SettingsDep,
    client: ClientDep,
    train_id: str = Depends(ids.train_id),
    claims: Optional[dict] = Depends(allow_read),
):
    """A public reader gets the coarse numbers and no devices, from the fleet view GET /v1/trains
    serves; an operator, the train read now."""
    if public.exact_for(request, claims):
        view = fleet_views.read_train(
            client,
            train_id,
            settings.realtime_collection,
            settings.trains_collection,
            stale_after_s=settings.stale_after_s,
        )
        now = datetime.datetime.now(datetime.timezone.utc)
    else:
        now, view = public.public_train(request, train_id)
    if view is None:
        raise HTTPException(status_code=404, detail=f"no train {train_id}: neither registered nor counted")
    devices = [
        DeviceSeen(device_id=d, last_seen=(seen or {}).get("last_seen"), seq=(seen or {}).get("seq"))
        for d, seen in sorted(view.devices_seen.items())
    ]
    return {**train_out(view, settings, trip_for(request, view, now)), "devices": devices}


def _public_history(request: Request, train_id: str, start, end, limit: int, after) -> Response:
    """A page of the public history (occupancy.privacy.public_history): one coarse sample per
    hold that ended. Every bound is widened to whole holds first: `from` (or the cursor, the
    last sample's time) to the start of the hold it falls in, `to` to the start of its hold, so
    that no bound cuts a hold and tells more than its sample. The page, as bytes, is kept
    --public_cache_s for every reader asking for the same holds."""
    now, view = public.public_train(request, train_id)
    policy = services_of(request).privacy_policy
    if view is None or privacy.coarse_history_value(0, view.capacity, policy) is None:
        return Response(HistoryPage(items=[]).model_dump_json(), media_type="application/json")

    def hold_at(at):
        return public.hold_at(request, view, at)

    lower = max((t for t in (start, after[0] if after else None) if t is not None), default=None)
    since = hold_at(lower).start if lower is not None else None
    until = hold_at(end).start if end is not None else None
    return services_of(request).public_reads.get(
        ("history", train_id, since, until, limit),
        lambda: _read_public_history(request, train_id, since, until, limit, hold_at, view.capacity, now),
    )


def _read_public_history(request, train_id, since, until, limit, hold_at, capacity, now) -> Response:
    from google.cloud.firestore_v1.base_query import FieldFilter

    services = services_of(request)
    settings = services.settings
    collection = services.client.collection(settings.history_collection)
    query = collection.where(filter=FieldFilter("train", "==", train_id))
    if since is not None:
        query = query.where(filter=FieldFilter("timestamp", ">=", since))
    if until is not None:
        query = query.where(filter=FieldFilter("timestamp", "<", until))
    page, more = public_history.read_samples(
        query, settings.firestore_timeout_s, limit, hold_at, capacity, services.privacy_policy, now
    )
    next_cursor = _encode_cursor(page[-1].at, "hold") if more and page else None
    items = [HistoryItem(timestamp=s.at, bucket_start=s.hold.start, value=s.value) for s in page]
    body = HistoryPage(items=items, next_cursor=next_cursor).model_dump_json()
    return Response(body.encode("utf-8"), media_type="application/json")


def _encode_cursor(timestamp: datetime.datetime, doc_id: str) -> str:
    raw = json.dumps({"t": timestamp.isoformat(), "id": doc_id}).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode_cursor(cursor: str):
    try:
        data = wire.load_json(base64.urlsafe_b64decode(cursor.encode("ascii")))  # Rejected: a ValueError
        timestamp = datetime.datetime.fromisoformat(data["t"])
        doc_id = data["id"]
        # An id this API wrote: letters and digits, far shorter than Firestore's 1,500 bytes (a
        # longer one was a 500 from Firestore's INVALID_ARGUMENT).
        if not isinstance(doc_id, str) or not (doc_id.isascii() and doc_id.isalnum() and len(doc_id) <= 256):
            raise ValueError(doc_id)
        if timestamp.tzinfo is None:
            raise ValueError(doc_id)
        return utc_in_range(timestamp), doc_id
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        raise HTTPException(
            status_code=422, detail="invalid cursor: pass next_cursor from the previous page unchanged"
        ) from None


@router.get(
    "/{train_id}/history",
    response_model=HistoryPage,
    summary="One train's occupancy over time",
    responses={422: {"description": "Invalid id, range or cursor"}},
)
def history(
    request: Request,
    settings: SettingsDep,
    client: ClientDep,
    train_id: str = Depends(ids.train_id),
    start: Optional[RequestTime] = Query(
        None, alias="from", description="Earliest timestamp (inclusive), ISO 8601, from 2000 to 2100."
    ),
    end: Optional[RequestTime] = Query(
        None, alias="to", description="Latest timestamp (exclusive), ISO 8601, from 2000 to 2100."
    ),
    limit: int = Query(500, ge=1, le=MAX_PAGE),
    cursor: Optional[str] = None,
    claims: Optional[dict] = Depends(allow_read),
):
    """History buckets in timestamp order, a page at a time (the train + timestamp composite index).
    A public reader gets one coarse sample per departure (or window) that ended, at its end, no
    event counts, each page kept --public_cache_s for every reader (docs/design.md, "Privacy")."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    if start and end and start >= end:
        raise HTTPException(status_code=422, detail="'from' must be before 'to'")
    after = _decode_cursor(cursor) if cursor else None
    if not public.exact_for(request, claims):
        return _public_history(request, train_id, start, end, limit, after)
    collection = client.collection(settings.history_collection)
    query = collection.where(filter=FieldFilter("train", "==", train_id))
    if start:
        query = query.where(filter=FieldFilter("timestamp", ">=", start))
    if end:
        query = query.where(filter=FieldFilter("timestamp", "<", end))
    query = query.order_by("timestamp").order_by("__name__")
    if after:
        query = query.start_after({"timestamp": after[0], "__name__": collection.document(after[1])})
    docs = list(query.limit(limit + 1).stream(timeout=settings.firestore_timeout_s))
    count_ops(reads=max(1, len(docs)))
    page = docs[:limit]
    items = [HistoryItem(**{k: v for k, v in doc.to_dict().items() if k in HistoryItem.model_fields}) for doc in page]
    next_cursor = _encode_cursor(page[-1].to_dict()["timestamp"], page[-1].id) if len(docs) > limit else None
    return {"items": items, "next_cursor": next_cursor}
