"""schemathesis against the real daemon, generating requests from its own /openapi.json.

Both valid requests (which must be accepted) and invalid ones (which must get a documented
4xx) are generated from the document, so a wrong document fails here as surely as a wrong
server does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import BaseSchema, Case
from schemathesis.checks import CHECKS, CheckFunction, load_all_checks
from schemathesis.core.result import Ok

from exporter.web.ingest import MAX_LISTED_REJECTIONS
from exporter.web.pages import openapi_document
from tests.support.daemon import Daemon, running_daemon

#: Limits far above what schemathesis generates, so a valid request is a 2xx.
CONFIG = {"server": {"limits": {"max_body_bytes": 4 << 20, "max_batch_items": 1000}}}
CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """Run the daemon as a subprocess on loopback for this module."""
    with running_daemon(tmp_path_factory.mktemp("openapi"), CONFIG) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def api_schema(daemon: Daemon) -> BaseSchema:
    """Load the daemon's own OpenAPI document, from the daemon."""
    return schemathesis.openapi.from_url(f"{daemon.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


def checks() -> list[CheckFunction]:
    load_all_checks()
    found = CHECKS.get_by_names(list(CHECK_NAMES))
    functions = [check for check in found if not isinstance(check, type)]
    assert len(functions) == len(found), found
    return functions


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case: Case[Any], daemon: Daemon) -> None:
    """Generated requests on every operation: no 5xx, documented statuses and bodies."""
    case.call_and_validate(checks=checks())
    assert daemon.process.poll() is None


class TestDocument:
    def test_served_document_is_the_one_built_here(self, daemon: Daemon) -> None:
        """The daemon serves openapi_document(), an OpenAPI 3.1 document schemathesis loads."""
        loaded = schemathesis.openapi.from_url(f"{daemon.url}/openapi.json")
        assert loaded.raw_schema == openapi_document()
        assert loaded.raw_schema["openapi"] == "3.1.0"
        found = list(loaded.get_all_operations())
        assert all(isinstance(result, Ok) for result in found), found
        operations = {
            (result.ok().method.upper(), result.ok().path)
            for result in found
            if isinstance(result, Ok)
        }
        assert operations == {
            ("POST", "/v1/conversations"),
            ("POST", "/v1/feedback"),
            ("POST", "/v1/traces"),
            ("POST", "/v1/logs"),
        }

    def test_listed_rejections_cap_matches_the_code(self) -> None:
        """The document's cap on listed rejections is the handler's."""
        responses = openapi_document()["paths"]["/v1/conversations"]["post"]["responses"]
        counts = responses["202"]["content"]["application/json"]["schema"]
        assert counts["properties"]["rejected"]["maxItems"] == MAX_LISTED_REJECTIONS

    def test_timestamps_are_documented_as_date_time(self) -> None:
        """started_at/ended_at say `format: date-time`, not just any string."""
        conversation = openapi_document()["components"]["schemas"]["Conversation"]
        for name in ("started_at", "ended_at"):
            (timestamp, null) = conversation["properties"][name]["anyOf"]
            assert timestamp == {"type": "string", "format": "date-time"}
            assert null == {"type": "null"}


def test_no_state_left_in_the_checkout() -> None:
    """schemathesis' pytest plugin writes nothing into the repository."""
    assert not (Path(__file__).parents[1] / ".schemathesis").exists()
