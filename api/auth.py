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

from api.models import UNAVAILABLE, AuthConfig, Problem
from api.services import services_of

_LOGGER = logging.getLogger(__name__)

OPERATOR_CLAIM = "operator"
EMULATOR_ENV = "FIREBASE_AUTH_EMULATOR_HOST"
_VERIFY_APP = "occupancy-api-verify"
_ADMIN_APP = "occupancy-api-admin"
# Seconds a call to Firebase Auth may take (firebase-admin's default is 120): readers of an
# operator's check wait for it, in the request threads every route shares.
AUTH_TIMEOUT_S = 10

# What a route answers about its caller's token, declared in the OpenAPI document (`responses`).
READ_RESPONSES = {
    401: {"model": Problem, "description": "A token was sent and is not a valid ID token (reads need none)"},
    **UNAVAILABLE,
}
OPERATOR_RESPONSES = {
    401: {"model": Problem, "description": "No valid ID token, or its user was disabled or its tokens revoked"},
    403: {"model": Problem, "description": "The token's user is not (or no longer) an operator"},
    **UNAVAILABLE,
}

router = APIRouter(tags=["auth"])
_bearer = HTTPBearer(auto_error=False, description="A Firebase Authentication ID token.")


def init(settings) -> None:
    """Initialises the firebase-admin apps used to check tokens (once per process).

    Two apps, so that a token's signature is always checked before anything needs a credential:
    `_VERIFY_APP` checks signatures against Google's public keys and holds no credential (none is
    needed, and a missing one must never turn a forged token into a 500); `_ADMIN_APP` asks
    Firebase Auth whether a signed token was revoked (operator writes), with Application Default
    Credentials, loaded only then.

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
    firebase_app(_app_name(_VERIFY_APP, settings.project), settings.project, no_credentials())
    if emulator:  # the emulator's Admin API needs no credential
        firebase_app(_app_name(_ADMIN_APP, settings.project), settings.project, no_credentials())
    else:
        from firebase_admin import credentials

        firebase_app(_app_name(_ADMIN_APP, settings.project), settings.project, credentials.ApplicationDefault())


def _app_name(role: str, project: str) -> str:
    """One pair of apps per project: an app's project is fixed when it is made."""
    return f"{role}:{project}"


def firebase_app(name: str, project: str, credential=None):
    """The firebase-admin app of this name, initialised on first use (None: ADC)."""
    import firebase_admin

    try:
        return firebase_admin.get_app(name)
    except ValueError:
        options = {"projectId": project, "httpTimeout": AUTH_TIMEOUT_S}
        return firebase_admin.initialize_app(credential=credential, options=options, name=name)


def no_credentials():
    """firebase-admin wants a credential object; verifying ID tokens never uses it."""
    from firebase_admin import credentials
    from google.auth.credentials import AnonymousCredentials

    class NoCredentials(credentials.Base):
        def get_credential(self):
            return AnonymousCredentials()

    return NoCredentials()


UNCHECKABLE = (
    "this server cannot check the token for revocation (it has no credentials for Firebase Auth), so it "
    "refuses operator requests"
)


def _refused(reason: str) -> HTTPException:
    return HTTPException(status_code=401, detail=reason, headers={"WWW-Authenticate": "Bearer"})


def verify(token: str, project: str) -> dict:
    """The claims of a token whose signature, issuer, audience and expiry hold, checked against
    Google's public keys (no credential); HTTPException(401) otherwise.

    Whatever goes wrong here, keys that cannot be fetched included, is a 401: a token that cannot
    be verified is refused, never a 5xx.
    """
    import firebase_admin
    from firebase_admin import auth
    from firebase_admin import exceptions as firebase_exceptions
    from google.auth import exceptions as google_auth_exceptions

    try:
        return auth.verify_id_token(
            token, app=firebase_admin.get_app(_app_name(_VERIFY_APP, project)), clock_skew_seconds=10
        )
    except auth.CertificateFetchError as e:
        _LOGGER.warning("Cannot fetch the public keys ID tokens are checked against: %s", e)
        raise _refused("invalid ID token: it cannot be verified now (the public keys could not be fetched)") from None
    except (ValueError, firebase_exceptions.FirebaseError, google_auth_exceptions.GoogleAuthError) as e:
        _LOGGER.info("Rejected token: %s", e)
        raise _refused(f"invalid ID token: {e}") from None


def check_current(claims: dict, project: str) -> None:
    """For an operator's token `verify` accepted (operator requests): asks Firebase Auth for the
    user as it is now, one request, so that an operator removed is shut out at once instead of
    when the token expires (up to an hour): tokens revoked since this one was signed in (the
    `revoke` of `python -m api.operators` revokes them), the user disabled or deleted: 401; the
    operator claim removed since: 403.

    No credential to ask with (the server's configuration): 401 as well, since the revocation
    cannot be ruled out, and logged as an error for whoever runs the server (its service account
    needs firebaseauth.users.get: deploy/infra.sh grants roles/firebaseauth.viewer). Auth
    unreachable for a genuine token: 503 with Retry-After, the one answer that is not the
    token's fault.
    """
    import firebase_admin
    from firebase_admin import auth
    from firebase_admin import exceptions as firebase_exceptions
    from google.auth import exceptions as google_auth_exceptions

    try:
        user = auth.get_user(claims["uid"], app=firebase_admin.get_app(_app_name(_ADMIN_APP, project)))
    except auth.UserNotFoundError:
        raise _refused("invalid ID token: its user no longer exists") from None
    except google_auth_exceptions.DefaultCredentialsError as e:
        _LOGGER.error("Cannot check tokens for revocation, so operator requests are refused: %s", e)
        raise _refused(UNCHECKABLE) from None
    except (firebase_exceptions.FirebaseError, google_auth_exceptions.GoogleAuthError, OSError) as e:
        # Auth unreachable, or the server's own credential not refreshed now (RefreshError)
        _LOGGER.warning("Could not check the token with Firebase Auth: %s", e)
        raise HTTPException(
            status_code=503, detail="cannot check the token with Firebase Auth now", headers={"Retry-After": "5"}
        ) from None
    if user.disabled:
        raise _refused("invalid ID token: its user is disabled")
    # As firebase-admin's own check_revoked: a token signed in before the revocation is revoked.
    valid_after_ms = user.tokens_valid_after_timestamp or 0
    if int(claims.get("auth_time") or 0) * 1000 < valid_after_ms:
        _LOGGER.info("Rejected token of %s: revoked", claims.get("uid"))
        raise _refused("invalid ID token: the token has been revoked")
    if (user.custom_claims or {}).get(OPERATOR_CLAIM) is not True:
        raise HTTPException(
            status_code=403, detail=f"user {claims.get('email') or claims.get('uid')} is no longer an operator"
        )


def _token(credentials: Optional[HTTPAuthorizationCredentials]) -> str:
    if credentials is None or not credentials.credentials:
        raise _refused("sign in: this needs an 'Authorization: Bearer <Firebase ID token>' header")
    return credentials.credentials


def require_operator(request: Request, credentials: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)) -> dict:
    """Dependency: the claims of an operator's token (401 without a valid one, or revoked; 403
    without the role). The role is checked before the revocation: Auth is asked only for operators."""
    token, project = _token(credentials), services_of(request).settings.project
    claims = verify(token, project)
    if claims.get(OPERATOR_CLAIM) is not True:
        raise HTTPException(
            status_code=403,
            detail=f"user {claims.get('email') or claims.get('uid')} "
            f"is not an operator (custom claim "
            f"'{OPERATOR_CLAIM}: true' missing)",
        )
    check_current(claims, project)
    return claims


def allow_read(
    request: Request, credentials: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)
) -> Optional[dict]:
    """Dependency for occupancy reads: anyone when reads are public, else any signed-in user.
    An operator's token, which reads exact numbers, is checked with Firebase Auth as a write's
    is, at most once per OPERATOR_RECHECK_S per token (a dashboard polls every second): a
    removed operator reads exact numbers for that long, not until the token expires (an hour).
    A token revoked is refused; one whose user is no longer an operator, or that Auth cannot
    check now, reads what a signed-in user without the role reads (never an error for a read
    anyone may make)."""
    services = services_of(request)
    if services.settings.public_reads and credentials is None:
        return None
    token, project = _token(credentials), services.settings.project
    claims = verify(token, project)
    if claims.get(OPERATOR_CLAIM) is True and not services.operator_checks.get(
        token, lambda: _operator_now(claims, project)
    ):
        return {k: v for k, v in claims.items() if k != OPERATOR_CLAIM}
    return claims


def _operator_now(claims: dict, project: str) -> bool:
    """For a read: whether the token's user is an operator now (check_current); False when no
    longer one, or when Auth cannot say now (kept, as True is, for OPERATOR_RECHECK_S). A token
    revoked, or a user disabled or deleted: 401."""
    try:
        check_current(claims, project)
    except HTTPException as e:
        if e.status_code == 401 and e.detail != UNCHECKABLE:
            raise
        return False
    return True


@router.get("/v1/auth/config", summary="How a browser signs in", response_model=AuthConfig)
def auth_config(request: Request) -> dict:
    """The Identity Toolkit endpoint and Web API key for `accounts:signInWithPassword`."""
    emulator = os.environ.get(EMULATOR_ENV)
    base = f"http://{emulator}/identitytoolkit.googleapis.com" if emulator else "https://identitytoolkit.googleapis.com"
    settings = services_of(request).settings
    return {
        "provider": "firebase",
        "emulator": bool(emulator),
        "sign_in_url": f"{base}/v1/accounts:signInWithPassword",
        "api_key": settings.firebase_api_key or ("emulator" if emulator else ""),
        "public_reads": settings.public_reads,
    }
