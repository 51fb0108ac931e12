"""Liveness (the process answers) and readiness (Firestore answers)."""

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from google.api_core import exceptions as gexc

from api.deps import ClientDep, SettingsDep
from api.models import Problem, Status

_LOGGER = logging.getLogger(__name__)
router = APIRouter(tags=["health"])
READY_TIMEOUT_S = 3.0


@router.get("/healthz", summary="The process is up", response_model=Status)
def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Firestore is reachable",
    response_model=Status,
    responses={503: {"model": Problem, "description": "Firestore unreachable"}},
)
def readyz(request: Request, settings: SettingsDep, client: ClientDep):
    try:
        # One document read with no retries: an unreachable Firestore answers 503 within seconds.
        client.collection(settings.trains_collection).document("readyz-probe").get(timeout=READY_TIMEOUT_S, retry=None)
    except (gexc.GoogleAPICallError, gexc.RetryError) as e:
        _LOGGER.warning("Not ready: %s", e)
        return JSONResponse(status_code=503, content={"detail": f"Firestore unreachable: {type(e).__name__}"})
    return {"status": "ready"}
