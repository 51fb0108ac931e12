"""Where a device, or the bridge, publishes on Pub/Sub, and as whom: the credentials (a
service-account key file, else Application Default Credentials; none with the emulator) and
the topic's full path, its project from --project, else $GOOGLE_CLOUD_PROJECT, else the
credentials' own, else the emulator's. Each failure is a UsageError: one line, exit 2.
"""

import os
from typing import Optional, Tuple

from device.sender import describe_error
from occupancy import cli
from occupancy.cli import UsageError

PUBSUB_SCOPE = "https://www.googleapis.com/auth/pubsub"


def load_credentials(path: Optional[str], use_emulator: bool):
    """(credentials or None, their project or None)."""
    import google.auth
    from google.auth import exceptions as auth_exc

    if path:
        if not os.path.isfile(path):
            raise UsageError(f"bad credentials file {path}: not found")
        try:
            return google.auth.load_credentials_from_file(path, scopes=[PUBSUB_SCOPE])
        except (auth_exc.GoogleAuthError, ValueError, OSError) as e:
            raise UsageError(f"bad credentials file {path}: {describe_error(e)}") from None
    if use_emulator:
        return None, None  # the client uses anonymous credentials with the emulator
    try:
        return google.auth.default(scopes=[PUBSUB_SCOPE])
    except auth_exc.DefaultCredentialsError:
        raise UsageError(
            "no Google credentials found: pass --credentials KEY.json, set up "
            "Application Default Credentials, or use --emulator HOST:PORT"
        ) from None


def pubsub_destination(
    topic: str, project: Optional[str], credentials_file: Optional[str], use_emulator: bool
) -> Tuple[object, str]:
    """(credentials or None, projects/P/topics/T) for --topic, --project and --credentials."""
    credentials, credentials_project = load_credentials(credentials_file, use_emulator)
    if cli.is_topic_path(topic) and not project:
        inferred = None  # the full path names its project
    else:
        inferred = (
            project
            or os.environ.get("GOOGLE_CLOUD_PROJECT")
            or credentials_project
            or (cli.EMULATOR_PROJECT if use_emulator else None)
        )
    try:
        return credentials, cli.topic_path(topic, inferred)
    except ValueError as e:
        raise UsageError(str(e)) from None
