"""Fixtures of the card-life tests: the service on both backends (from tests/api)."""
