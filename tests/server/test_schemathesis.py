"""Property-based: schemathesis generates requests from the app's own OpenAPI document. No route
answers 5xx, and every answer conforms to the document (status codes, headers, bodies)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import positive_data_acceptance

from server.app import create_app
from server.loaded_model import LoadedModel
from server.model_store import ModelStore
from server.settings import ServerSettings

EXAMPLES_PER_OPERATION = 30
# MLflow's protocol accepts shapes whose rules JSON Schema cannot state (each row as wide as
# `columns`, every signature column present), so a schema-valid /invocations body may rightly be
# refused: there, and only there, "schema-valid means accepted" is not checked. Every other check
# (no 5xx, documented statuses and bodies, schema-invalid input refused) holds everywhere.
PROTOCOL_WITH_CROSS_FIELD_RULES = "/invocations"


def test_every_route_conforms_to_its_documentation(
    settings: ServerSettings, loaded_champion: LoadedModel
) -> None:
    app = create_app(settings, store=ModelStore(loaded_champion))
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def conforms(case: schemathesis.Case) -> None:
            excluded = [positive_data_acceptance] if case.path == PROTOCOL_WITH_CROSS_FIELD_RULES else []
            case.call_and_validate(excluded_checks=excluded)

        conforms()
