"""The holder access token codec: what the platform MACs reads back exactly; anything else, of
any shape, reads as nothing (never an exception)."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from ecard.auth import HOLDER_ACCESS_PREFIX, HolderAccess, _holder_access, holder_access_token

PLATFORM = SimpleNamespace(holder_token_key=b"k" * 32)
OTHER_PLATFORM = SimpleNamespace(holder_token_key=b"o" * 32)

ids = st.text(alphabet="0123456789abcdefghjkmnpqrstvwxyz", min_size=1, max_size=40)
accesses = st.builds(
    HolderAccess,
    session_id=ids,
    ecard_id=ids,
    card_id=ids,
    channel_id=ids,
    issued_at=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    expires_at=st.integers(min_value=0, max_value=2**40),
)


@settings(max_examples=200, deadline=None)
@given(accesses)
def test_a_token_reads_back_as_issued_and_only_under_its_key(access: HolderAccess) -> None:
    token = holder_access_token(PLATFORM, access)
    assert token.startswith(HOLDER_ACCESS_PREFIX)
    assert _holder_access(PLATFORM, token) == access
    assert _holder_access(OTHER_PLATFORM, token) is None


@settings(max_examples=300, deadline=None)
@given(accesses, st.integers(min_value=0), st.characters(codec="ascii"))
def test_any_changed_character_makes_it_nothing(
    access: HolderAccess, where: int, replacement: str
) -> None:
    token = holder_access_token(PLATFORM, access)
    index = len(HOLDER_ACCESS_PREFIX) + where % (len(token) - len(HOLDER_ACCESS_PREFIX))
    if token[index] == replacement:
        return
    changed = token[:index] + replacement + token[index + 1 :]
    assert _holder_access(PLATFORM, changed) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_reads_as_nothing(text: str) -> None:
    assert _holder_access(PLATFORM, HOLDER_ACCESS_PREFIX + text) is None
