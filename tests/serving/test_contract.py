"""API v1 as written down: schemathesis generates requests from the OpenAPI document and checks every real
answer against it (status documented, content type, body schema, no 5xx), on a real uvicorn server."""

from __future__ import annotations

import threading
import time

import pytest
import uvicorn

from pestid.serving.app import create_app
from tests.conftest import free_port
from tests.serving.conftest import make_settings

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a [dev] dependency")
pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def documented_server(tiny_model, tmp_path_factory):
    port = free_port()
    settings = make_settings(tiny_model, tmp_path_factory.mktemp("contract") / "data", public_operations=True)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_the_farmer_facing_api_keeps_its_written_contract(documented_server):
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable

    schema = schemathesis.openapi.from_url(f"{documented_server}/openapi.json").include(
        path_regex=r"^/(v1/(identify|species|model)|healthz|readyz)"
    )
    failures = []
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    for operation, mode in ((o.ok(), m) for o in schema.get_all_operations() for m in modes):

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case):
            # Every check but two. A schema cannot say "these bytes decode as a photo", so a schema-valid request
            # with random bytes as a photo is rightly refused (422 not_an_image). And a form body carries text,
            # not JSON types: a "violation" such as an array where one value is expected is sent as repeated
            # fields, which is a valid form. Documented statuses, content types and answer schemas are checked.
            excluded = [schemathesis.checks.positive_data_acceptance]
            if case.media_type == "multipart/form-data":
                excluded.append(schemathesis.checks.negative_data_rejection)
            case.call_and_validate(excluded_checks=excluded)

        try:
            check()
        except Unsatisfiable:  # no invalid request exists (an operation without parameters or body)
            continue
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them together
            failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
