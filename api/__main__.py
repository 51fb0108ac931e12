"""python -m api --host H --port P: serves the API (and, on Cloud Run, listens on $PORT)."""

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from api import settings as api_settings
from occupancy import log_format
from occupancy.cli import non_negative_float

_LOGGER = logging.getLogger(__name__)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m api",
        description="The train occupancy HTTP API (OpenAPI at /docs).",
        epilog="Against the emulators set FIRESTORE_EMULATOR_HOST (and FIREBASE_AUTH_EMULATOR_HOST); "
        "otherwise Application Default Credentials are used.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="Interface to listen on (default: 127.0.0.1; 0.0.0.0 in a container)."
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=int(os.environ.get("PORT") or 8080),
        help="Port to listen on (default: $PORT, else 8080).",
    )
    parser.add_argument(
        "--log_level", default="info", choices=["debug", "info", "warning", "error"], help="Log level (default: info)."
    )
    parser.add_argument(
        "--log_format",
        default=log_format.default(),
        choices=log_format.FORMATS,
        help=f"text, or json: one object per line for Cloud Logging (default: ${log_format.ENV} or text).",
    )
    parser.add_argument(
        "--graceful_timeout_s",
        type=non_negative_float,
        default=10.0,
        help="Seconds to finish requests in flight on SIGTERM (default: 10).",
    )
    api_settings.add_setting_flags(parser)
    return parser


def settings_from(args):
    from occupancy.cli import NoProject, resolve_project

    try:
        project = resolve_project(args.project)
    except NoProject as e:
        raise SystemExit(f"error: {e}") from None
    return api_settings.settings_from(args, project=project)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    log_format.configure(args.log_level, args.log_format)
    import uvicorn

    from api.app import create_app

    settings = settings_from(args)
    app = create_app(settings)
    _LOGGER.info("Serving project %s on http://%s:%s (docs at /docs)", settings.project, args.host, args.port)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        # Its loggers (access lines included) through the root logger, in --log_format.
        log_config=None,
        timeout_graceful_shutdown=args.graceful_timeout_s,
        proxy_headers=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
