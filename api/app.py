"""create_app(settings) -> the FastAPI application: it builds what the routers share (one
`Services`, api/services.py), assembles the routers and maps errors to answers. The routers reach
the services through api/services.py and api/deps.py, never through this module."""

import contextlib
import logging

from fastapi import FastAPI
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.api_core import exceptions as gexc
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.fleet_cache import FleetCache, FleetStale
from adapters.fleet_listener import FleetListener
from adapters.fleet_views import FleetReader
from adapters.store import TRANSIENT
from api.body_limit import BodyLimit
from api.caches import ReadCache
from api.request_metrics import RequestMetrics
from api.services import Services
from api.settings import Settings
from occupancy.registry_entries import RegistryConflict, RegistryError, UnknownDevice

_LOGGER = logging.getLogger(__name__)
# Seconds a client is told to wait after a 503.
RETRY_AFTER_S = 5


def _schedule(path: str):
    """The static schedule, loaded once at start-up; a feed that cannot be used stops the start."""
    if not path:
        return None
    from occupancy import schedule

    try:
        loaded = schedule.Schedule.from_zip(path)
    except schedule.ScheduleError as e:
        raise SystemExit(f"error: --gtfs_static: {e}") from None
    _LOGGER.info("Static schedule %s: %d trips", path, len(loaded.trips))
    return loaded


def _services(settings: Settings, client=None) -> Services:
    """What the routers share; `client` defaults to a Firestore client for settings.project/database."""
    from adapters.store import make_client
    from api import public
    from api.forecasts import FORECAST_CACHE_S
    from occupancy import privacy

    client = client if client is not None else make_client(settings.project, settings.database)
    policy = privacy.Policy(
        public.load_seed(settings.privacy_seed_file),
        settings.privacy_step_pct,
        settings.privacy_min_capacity,
        window_s=settings.privacy_window_s,
    )
    return Services(
        settings=settings,
        client=client,
        fleet_reader=FleetReader(
            client,
            settings.realtime_collection,
            settings.trains_collection,
            settings.stale_after_s,
            settings.fleet_full_read_s,
        ),
        fleet_cache=FleetCache(settings.fleet_cache_s, settings.fleet_max_age_s),
        doors_cache=FleetCache(settings.doors_cache_s, max(settings.fleet_max_age_s, 2 * settings.doors_cache_s)),
        upstream_cache=FleetCache(settings.fleet_cache_s, settings.fleet_max_age_s),
        schedule=_schedule(settings.gtfs_static),
        privacy_policy=policy,
        privacy_holder=privacy.Holder(settings.thresholds, policy),
        public_reads=ReadCache(settings.public_cache_s),
        forecast_documents=ReadCache(FORECAST_CACHE_S, size=4096),
        # A board holds up to 50 whole documents (600 KB at 30 stops each): few are kept.
        forecast_boards=ReadCache(FORECAST_CACHE_S, size=64),
        metrics=RequestMetrics(),
    )


def create_app(settings: Settings, client=None) -> FastAPI:
    """The application; `client` defaults to a Firestore client for settings.project/database."""
    from api import (
        auth,
        dashboard,
        devices,
        enricher,
        forecasts,
        gtfs_rt,
        health,
        keys,
        metrics,
        siri_et,
        trains,
        trip_updates,
        trips,
    )

    app = FastAPI(
        title="Train occupancy API",
        version="1.0",
        lifespan=_lifespan,
        description="Fleet registry and train occupancy (realtime and history). "
        "Device endpoints and every write need an operator's Firebase ID token.",
    )
    app.state.services = _services(settings, client)
    auth.init(settings)
    app.add_middleware(BodyLimit)
    app.middleware("http")(app.state.services.metrics.middleware())

    @app.middleware("http")
    async def private_when_authorized(request, call_next):
        """What a token changes must never be served from a shared cache to someone else: every
        answer varies on Authorization, and one to a request that carried a token is private."""
        response = await call_next(request)
        vary = response.headers.get("Vary")
        response.headers["Vary"] = f"{vary}, Authorization" if vary else "Authorization"
        if request.headers.get("authorization"):
            response.headers["Cache-Control"] = "private, no-store"
        return response

    @app.exception_handler(RegistryError)
    async def registry_error(_request, exc: RegistryError):
        status = 404 if isinstance(exc, UnknownDevice) else 409 if isinstance(exc, RegistryConflict) else 422
        return JSONResponse(status_code=status, content={"detail": str(exc)})

    @app.exception_handler(enricher.UpstreamUnavailable)
    async def upstream_unavailable(_request, exc):
        _LOGGER.warning("%s", exc)
        return _unavailable(str(exc))

    @app.exception_handler(FleetStale)
    async def fleet_stale(_request, exc: FleetStale):
        return _unavailable(str(exc))

    @app.exception_handler(gexc.GoogleAPIError)
    async def firestore_error(_request, exc: gexc.GoogleAPIError):
        if isinstance(exc, TRANSIENT) or isinstance(exc, gexc.RetryError):
            _LOGGER.warning("Firestore unavailable: %s", exc)
            return _unavailable("Firestore is unavailable; try again shortly")
        _LOGGER.error("Firestore refused a request: %s", exc)
        return JSONResponse(status_code=500, content={"detail": "internal error"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        # A body that is not UTF-8 is a request to correct, like any body that is not valid JSON
        # (422), not FastAPI's own 400 (docs/api.md; the OpenAPI document declares 422).
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            return JSONResponse(status_code=422, content={"detail": "the body is not JSON text in UTF-8"})
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={"detail": _readable(exc)})

    for router in (
        health.router,
        auth.router,
        trains.router,
        devices.router,
        keys.router,
        trips.router,
        forecasts.router,
        gtfs_rt.router,
        trip_updates.router,
        siri_et.router,
        enricher.router,
        dashboard.router,
        metrics.router,
    ):
        app.include_router(router)
    dashboard.mount(app)
    app.openapi = lambda: _openapi(app)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    """Starts the fleet listeners (with --fleet_listener); stops them and closes the Firestore
    client (its channels) when the server stops."""
    services: Services = app.state.services
    settings = services.settings
    if settings.fleet_listener:
        services.fleet_listener = FleetListener(
            services.client,
            settings.realtime_collection,
            settings.trains_collection,
            settings.stale_after_s,
            settings.devices_collection,
        ).start()
    yield
    if services.fleet_listener is not None:
        services.fleet_listener.stop()
    close = getattr(services.client, "close", None)
    if callable(close):
        close()
        _LOGGER.info("Firestore client closed")


def _openapi(app: FastAPI) -> dict:
    """The schema, with every 422 declared as what the API sends: {"detail": "<one line>"}
    (api.models.Problem), not FastAPI's default list of errors, and the 413 of a body too large
    on every operation that takes one."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["HTTPValidationError"] = {
            "title": "Problem",
            "type": "object",
            "required": ["detail"],
            "properties": {
                "detail": {"title": "Detail", "type": "string", "description": "What is wrong, in one line."}
            },
        }
        schemas.pop("ValidationError", None)
        problem = {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                declared = operation.get("responses", {}).get("422")
                if declared is not None:
                    declared.setdefault("content", problem)
                if "requestBody" in operation:  # api/body_limit.py
                    operation["responses"].setdefault(
                        "413", {"description": "The request body is over 64 KiB", "content": problem}
                    )
        app.openapi_schema = schema
    return app.openapi_schema


def _unavailable(detail: str) -> JSONResponse:
    """503 with Retry-After: what a client should do when the data cannot be read now."""
    return JSONResponse(status_code=503, content={"detail": detail}, headers={"Retry-After": str(RETRY_AFTER_S)})


def _readable(exc: RequestValidationError) -> str:
    """One sentence per problem, e.g. "body.train_id: Field required"."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body" or len(error["loc"]) == 1)
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts) or "invalid request"
