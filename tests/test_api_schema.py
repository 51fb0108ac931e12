"""The running API against its own OpenAPI document, by schemathesis: every operation, with
generated paths, queries and bodies, as the public (no token), with a token that is not one, and
as an operator. Never a 5xx; only statuses the document declares for the operation; bodies as
it declares them.

The API is `python -m api` on the Firestore and Firebase Auth emulators, its public reads
coarse as deployed (occupancy/privacy.py). Driven per operation from the test (schemathesis's
pytest plugin does not run under pytest 9).
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from local import stack
from tests.support import serve_api

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api(firestore_emulator, auth_emulator, tmp_path_factory):
    env = {**firestore_emulator.env(), **auth_emulator.env()}
    process, base_url = serve_api(tmp_path_factory, env, "--fleet_cache_s=0", "--public_precision=coarse")
    yield base_url
    stack.stop_process(process)


def test_every_operation_answers_only_as_its_document_declares(api, tokens):
    schema = schemathesis.openapi.from_url(f"{api}/openapi.json")
    identities = {"public": {}, "bad token": {"Authorization": "Bearer not-a-token"}, "operator": tokens["operator"]}
    failures, operations = {}, 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case):
            for who, headers in identities.items():
                try:
                    case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)
                except FailureGroup as e:  # every check that failed
                    raise AssertionError(f"{who}: {_failures(e)}") from None

        try:
            check()
        except AssertionError as e:
            failures[operation.label] = str(e)[:1200]
    assert operations >= 19
    assert failures == {}, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def _failures(error: BaseException) -> str:
    """What each failed check said (a FailureGroup holds one exception per check)."""
    parts = [" ".join(str(e).split())[:300] for e in getattr(error, "exceptions", ())]
    return "; ".join(parts) or " ".join(str(error).split())[:600]
