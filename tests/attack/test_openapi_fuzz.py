"""Schemathesis against the service's own OpenAPI document (``/schema/openapi.json``), in process
over ASGI, on both storage backends (SQLite + the in-process store; PostgreSQL + Redis): every
operation, positive and negative inputs, each input sent as every kind of caller (anonymous,
holder, channel, department, verifier, consent relying party, OIDC relying party, terminal with
signed requests, each operator role).

It fails on any 5xx and on any response whose status code, content type, headers or body the
document does not declare.  Bounded: ``ECARD_FUZZ_EXAMPLES`` examples per operation and mode
(derandomized, so a run is repeatable), each sent as 12 callers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ecard.app import create_app
from ecard.crypto.keyring import Keyring
from ecard.settings import load_settings
from ecard.store.keyfiles import save_keyring
from tests.attack.actors import Cast, build_cast, seed_operators, spare_operator_tokens
from tests.attack.test_hostile_bodies import SMALL_CORPUS

EXAMPLES = int(os.environ.get("ECARD_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: operations whose success ends the caller's credentials: each call gets a fresh holder
SPENDS_CREDENTIALS = {
    "POST /holder/v1/session/logout",
    "POST /holder/v1/ecard/unbind",
    "POST /operator/v1/logout",
}


def _operations() -> dict[str, bool]:
    """The operations, known at collection time from the document the app would serve, each with
    whether it takes any input (parameters or a body) that negative cases can break."""
    app = create_app(
        load_settings({"ECARD_KEYS_DIR": "/nonexistent", "ECARD_LOG_LEVEL": "WARNING"})
    )
    document = app.openapi_schema.to_schema()
    methods = {"get", "put", "post", "patch", "delete"}
    return {
        f"{m.upper()} {path}": bool(operation.get("requestBody"))
        or any(
            _breakable(parameter)
            for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]
        )
        for path, item in document["paths"].items()
        for m, operation in item.items()
        if m in methods
    }


def _breakable(parameter: dict) -> bool:
    """A path parameter that is any text at all cannot be made invalid; anything else can."""
    schema = parameter.get("schema", {})
    unconstrained_text = schema.get("type") == "string" and not set(schema) - {
        "type",
        "description",
    }
    return parameter.get("in") != "path" or not unconstrained_text


TAKES_INPUT = _operations()
OPERATIONS = list(TAKES_INPUT)
CASES = [(label, GenerationMode.POSITIVE) for label in OPERATIONS] + [
    (label, GenerationMode.NEGATIVE) for label in OPERATIONS if TAKES_INPUT[label]
]


def known_path_parameters(label: str, ids: dict[str, str]) -> dict[str, str]:
    """Path parameters naming resources of the cast, for operations whose path has them."""
    path = label.split(" ", 1)[1]
    names = {
        "person_id": ids["person_id"],
        "card_id": ids["card_id"],
        "ecard_id": ids["ecard_id"],
        "terminal_id": ids["terminal_id"],
        "version": "1",
        "client_id": ids["oidc_client_id"] if "/oidc/" in path else ids["channel_id"],
    }
    return {name: value for name, value in names.items() if "{" + name + "}" in path}


@dataclass
class Target:
    schema: schemathesis.schemas.BaseSchema
    cast: Cast
    operations: set[str] = field(default_factory=set)
    examples: int = 0
    requests: int = 0


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The embedded backend: a SQLite file and the in-process store.  ``test_openapi_fuzz_postgres``
    runs every test of this file again on PostgreSQL + Redis (its own file, so the two run in
    parallel processes)."""
    return {"ECARD_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('fuzzdb')}/ecard.db"}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, backend: dict[str, str]) -> Iterator[Target]:
    directory = tmp_path_factory.mktemp("fuzz")
    save_keyring(directory, Keyring.create(["330000", "110000"]))
    environ = {
        "ECARD_KEYS_DIR": str(directory),
        "ECARD_LOG_JSON": "true",
        "ECARD_LOG_LEVEL": "ERROR",
        **backend,
    }
    app_settings = load_settings(environ)
    operators = seed_operators(app_settings)
    spare = spare_operator_tokens(app_settings, operators, 6 * EXAMPLES + 20)
    app = create_app(app_settings)
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    schema.config.generation.update(deterministic=True)
    with asgi.get_client(app) as session:
        cast = build_cast(session, operators, spare)
        target = Target(schema, cast)
        try:
            yield target
        finally:
            asgi.shutdown_lifespans()
            print(
                f"\nschemathesis: {len(target.operations)} operations × {len(cast.callers)} "
                "callers, "
                f"{target.examples} examples, {target.requests} requests"
            )


def test_every_operation_is_fuzzed() -> None:
    assert len(OPERATIONS) >= 80, OPERATIONS


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("label", "mode"), CASES, ids=[f"{mode.value}-{label}" for label, mode in CASES]
)
def test_operation(target: Target, label: str, mode: GenerationMode) -> None:
    operation = target.schema[label.split(" ", 1)[1]][label.split(" ", 1)[0]]
    target.operations.add(label)
    strategy = operation.as_strategy(generation_mode=mode)
    known = known_path_parameters(label, target.cast.ids)
    if known and mode is GenerationMode.POSITIVE:  # half the cases name resources that exist
        strategy = st.one_of(
            strategy, operation.as_strategy(generation_mode=mode, path_parameters=known)
        )
    callers = list(target.cast.callers.values())

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        target.examples += 1
        for caller in callers:
            target.requests += 1
            if label in SPENDS_CREDENTIALS and caller.fresh:
                caller = caller.fresh()
            kwargs = caller.kwargs()
            response = case.call(session=target.cast.session, **kwargs)
            try:
                case.validate_response(response, checks=CHECKS, headers=kwargs["headers"])
            except AssertionError as failure:
                raise AssertionError(f"as {caller.name}: {failure}") from None

    run()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("label", OPERATIONS)
def test_hostile_corpus(target: Target, label: str) -> None:
    """The hostile bodies of ``test_hostile_bodies`` (deep nesting, NaN, huge numbers, invalid
    UTF-8, duplicate keys, …) on every operation, as every caller: a 4xx each time, never a 5xx."""
    method, path = label.split(" ", 1)
    known = known_path_parameters(label, target.cast.ids)
    for name, value in known.items():
        path = path.replace("{" + name + "}", value).replace("{" + name + ":str}", value)
    path = re.sub(r"\{[^}]+\}", "x1", path)
    failures = []
    for caller in target.cast.callers.values():
        if label in SPENDS_CREDENTIALS and caller.fresh:
            caller = caller.fresh()
        kwargs = caller.kwargs()
        for body_name, body in SMALL_CORPUS.items():
            headers = {**kwargs["headers"], "content-type": "application/json"}
            response = target.cast.session.request(
                method, path, data=body, **{**kwargs, "headers": headers}
            )
            target.requests += 1
            if response.status_code >= 500:
                failures.append(
                    f"as {caller.name} with {body_name}: {response.status_code} "
                    f"{response.text[:200]}"
                )
    assert not failures, "\n".join(failures)
