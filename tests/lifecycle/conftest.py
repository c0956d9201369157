"""Fixtures of the card-life tests: the service on both backends (from tests/api)."""

from tests.api.conftest import World, basic, bearer, client, keys_dir, platform_of, settings, world  # noqa: F401
