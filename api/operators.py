"""python -m api.operators grant|revoke|show EMAIL: who holds the operator role.

The role is the Firebase Authentication custom claim `operator: true`
(`api.auth.OPERATOR_CLAIM`). A user sees a granted role in their next ID token
(sign in again, or wait for the hourly refresh). A revoke takes effect at once:
it also revokes the user's refresh tokens, and the API asks Firebase Auth for
the user's current claims at every operator request (api.auth.check_current).

Credentials: Application Default Credentials of someone allowed to manage
Firebase Authentication users (roles/firebaseauth.admin); none against the
Auth emulator (FIREBASE_AUTH_EMULATOR_HOST).
"""

import argparse
import os
import sys
from typing import Optional, Sequence

from api.auth import EMULATOR_ENV, OPERATOR_CLAIM

_APP_NAME = "occupancy-operators"


def _app(project: str):
    from api.auth import firebase_app, no_credentials

    return firebase_app(_APP_NAME, project, no_credentials() if os.environ.get(EMULATOR_ENV) else None)


def set_operator(project: str, email: str, operator: bool) -> dict:
    """Grants or revokes the role, keeping the user's other claims; returns the new claims. A
    revoke also revokes the user's refresh tokens: tokens signed in before it stop working."""
    from firebase_admin import auth

    app = _app(project)
    user = auth.get_user_by_email(email, app=app)
    claims = dict(user.custom_claims or {})
    if operator:
        claims[OPERATOR_CLAIM] = True
    else:
        claims.pop(OPERATOR_CLAIM, None)
    auth.set_custom_user_claims(user.uid, claims or None, app=app)
    if not operator:
        auth.revoke_refresh_tokens(user.uid, app=app)
    return claims


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.operators", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["grant", "revoke", "show"], help="What to do with the role.")
    parser.add_argument("email", help="The user's sign-in email (the user must exist).")
    parser.add_argument(
        "--project",
        default=os.environ.get("GOOGLE_CLOUD_PROJECT", "demo-occupancy"),
        help="Firebase / Google Cloud project (default: $GOOGLE_CLOUD_PROJECT, else demo-occupancy).",
    )
    args = parser.parse_args(argv)
    from firebase_admin import auth, exceptions

    try:
        if args.action == "show":
            user = auth.get_user_by_email(args.email, app=_app(args.project))
            claims = user.custom_claims or {}
        else:
            claims = set_operator(args.project, args.email, args.action == "grant")
    except auth.UserNotFoundError:
        print(f"error: no user with email {args.email} in project {args.project}", file=sys.stderr)
        return 1
    except (exceptions.FirebaseError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    role = "operator" if claims.get(OPERATOR_CLAIM) is True else "not an operator"
    print(f"{args.email}: {role}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
