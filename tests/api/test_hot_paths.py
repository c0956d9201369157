"""Shape of the hot paths, checked without timing anything (timings live in scripts/bench/)."""

from __future__ import annotations

import pytest

from ecard.app import create_app
from ecard.settings import Settings

#: requests every holder and verifier makes all day long
HOT = [("/holder/v1/codes", "POST"), ("/verifier/v1/verifications", "POST")]


@pytest.mark.parametrize(("path", "method"), HOT)
def test_hot_endpoints_resolve_their_dependencies_one_after_another(settings: Settings, path: str, method: str) -> None:
    """Litestar resolves independent dependencies of one level in a task group, which costs more
    than issuing a code (litestar-org/litestar#4563): each level must hold one dependency."""
    handler = create_app(settings).route_handler_method_map[path][method]
    batches = handler.create_kwargs_model(path_parameters={}).dependency_batches
    assert batches and all(len(batch) == 1 for batch in batches), [sorted(d.key for d in b) for b in batches]
