"""The live dashboard: GET / (static HTML, CSS and JS shipped in this package, no CDN).

The page polls GET /v1/trains every 0.75 s (docs/api.md, "Dashboard"); it calls the
same endpoints as any app, so it needs nothing of its own on the server.
"""

import pathlib

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = pathlib.Path(__file__).resolve().parent / "static"
router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False)
def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def mount(app) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
