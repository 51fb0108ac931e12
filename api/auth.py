"""Who may do what: Firebase Authentication ID tokens, the operator role a custom claim.

* Occupancy reads (`/v1/trains...`, the feed, the dashboard) are public when
  `Settings.public_reads` (the default); otherwise they need any valid token.
* Everything about devices and every write needs a token whose custom claims
  hold `operator: true` (set with firebase-admin's `set_custom_user_claims`).
* 401 without a valid token, 403 for a valid token without the role.

Tokens are verified with firebase-admin's `verify_id_token`: in production
against Google's public keys for the project (no credentials needed to verify);
locally against the Firebase Auth emulator from `firebase-tools` (npm), which
firebase-admin uses whenever `FIREBASE_AUTH_EMULATOR_HOST` is set. The
emulator runs offline here and issues real (unsigned) ID tokens for real
sign-ins, so the tests exercise the same code path as production, bar the
signature check. A browser signs in through the Identity Toolkit REST API
(`accounts:signInWithPassword`) described by `GET /v1/auth/config`.
"""

import logging
import os
from typing import Optional

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.models import AuthConfig

_LOGGER = logging.getLogger(__name__)

OPERATOR_CLAIM = "operator"
EMULATOR_ENV = "FIREBASE_AUTH_EMULATOR_HOST"
_APP_NAME = "occupancy-api"

router = APIRouter(tags=["auth"])
_bearer = HTTPBearer(auto_error=False, description="A Firebase Authentication ID token.")


def init(settings) -> None:
    """Initialises the firebase-admin app used to verify tokens (once per process).

    Verification needs only the project id: the keys it checks against are public.

    With FIREBASE_AUTH_EMULATOR_HOST set, firebase-admin accepts unsigned tokens (anyone can
    write one claiming to be an operator): allowed only for a `demo-` project, which cannot be
    a real one (Firebase's rule for emulator-only projects), so that a stray variable in a
    production environment stops the start instead of opening every write.
    """
    emulator = os.environ.get(EMULATOR_ENV)
    if emulator and not settings.project.startswith("demo-"):
        raise SystemExit(
            f"error: {EMULATOR_ENV}={emulator} is set, and firebase-admin then accepts unsigned "
            f"ID tokens; refusing to serve project {settings.project} so (the emulator is for "
            f"demo- projects only): unset {EMULATOR_ENV}"
        )
    # Reads verify against public keys and need no credential; checking for revoked tokens
    # (operator writes) calls Firebase Auth's Admin API, with Application Default Credentials
    # (the emulator needs none).
    if emulator:
        firebase_app(_APP_NAME, settings.project, no_credentials())
    else:
        from firebase_admin import credentials

        firebase_app(_APP_NAME, settings.project, credentials.ApplicationDefault())


def firebase_app(name: str, project: str, credential=None):
    """The firebase-admin app of this name, initialised on first use (None: ADC)."""
    import firebase_admin

    try:
        return firebase_admin.get_app(name)
    except ValueError:
        return firebase_admin.initialize_app(credential=credential, options={"projectId": project}, name=name)


def no_credentials():
    """firebase-admin wants a credential object; verifying ID tokens never uses it."""
    from firebase_admin import credentials
    from google.auth.credentials import AnonymousCredentials

    class NoCredentials(credentials.Base):
        def get_credential(self):
            return AnonymousCredentials()

    return NoCredentials()


def verify(token: str, check_revoked: bool = False) -> dict:
    """The token's claims; raises HTTPException(401) for an invalid, expired or revoked one.

    `check_revoked` (operator writes): also asks Firebase Auth whether the user's tokens were
    revoked or the user disabled since, one request to Auth per write, so that an operator
    removed is shut out at once instead of when the token expires (up to an hour)."""
    import firebase_admin
    from firebase_admin import auth
    from firebase_admin import exceptions as firebase_exceptions

    try:
        return auth.verify_id_token(
            token, app=firebase_admin.get_app(_APP_NAME), clock_skew_seconds=10, check_revoked=check_revoked
        )
    except (
        ValueError,
        auth.InvalidIdTokenError,
        auth.ExpiredIdTokenError,
        auth.RevokedIdTokenError,
        auth.UserDisabledError,
        auth.CertificateFetchError,
    ) as e:
        _LOGGER.info("Rejected token: %s", e)
        raise HTTPException(
            status_code=401, detail=f"invalid ID token: {e}", headers={"WWW-Authenticate": "Bearer"}
        ) from None
    except (firebase_exceptions.FirebaseError, OSError) as e:  # Auth itself unreachable: not the token's fault
        _LOGGER.warning("Could not check the token with Firebase Auth: %s", e)
        raise HTTPException(
            status_code=503, detail="cannot check the token with Firebase Auth now", headers={"Retry-After": "5"}
        ) from None


def _claims(credentials: Optional[HTTPAuthorizationCredentials], check_revoked: bool = False) -> dict:
    if credentials is None or not credentials.credentials:
        raise HTTPException(
            status_code=401,
            detail="sign in: this needs an 'Authorization: Bearer <Firebase ID token>' header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return verify(credentials.credentials, check_revoked)


def require_operator(credentials: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)) -> dict:
    """Dependency: the claims of an operator's token (401 without one, or revoked; 403 without the role)."""
    claims = _claims(credentials, check_revoked=True)
    if claims.get(OPERATOR_CLAIM) is not True:
        raise HTTPException(
            status_code=403,
            detail=f"user {claims.get('email') or claims.get('uid')} "
            f"is not an operator (custom claim "
            f"'{OPERATOR_CLAIM}: true' missing)",
        )
    return claims


def allow_read(
    request: Request, credentials: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)
) -> Optional[dict]:
    """Dependency for occupancy reads: anyone when reads are public, else any signed-in user."""
    if request.app.state.settings.public_reads and credentials is None:
        return None
    return _claims(credentials)


@router.get("/v1/auth/config", summary="How a browser signs in", response_model=AuthConfig)
def auth_config(request: Request) -> dict:
    """The Identity Toolkit endpoint and Web API key for `accounts:signInWithPassword`."""
    emulator = os.environ.get(EMULATOR_ENV)
    base = f"http://{emulator}/identitytoolkit.googleapis.com" if emulator else "https://identitytoolkit.googleapis.com"
    settings = request.app.state.settings
    return {
        "provider": "firebase",
        "emulator": bool(emulator),
        "sign_in_url": f"{base}/v1/accounts:signInWithPassword",
        "api_key": settings.firebase_api_key or ("emulator" if emulator else ""),
        "public_reads": settings.public_reads,
    }
