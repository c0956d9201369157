"""The console's pure rules: which card actions are offered (exactly the lifecycle's operator
moves), the form token (bound to one session, compared whole), the language choice, and the
documented screenshot command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecard.console import session
from ecard.console.labels import STATUS, card_action, card_actions
from ecard.errors import AppError
from ecard.registry.lifecycle import TRANSITIONS, CardStatus

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("status", list(CardStatus))
def test_offered_card_actions_are_the_operators_moves_of_the_lifecycle(status: CardStatus) -> None:
    offered = {a.to for a in card_actions(status)}
    allowed = {str(t) for t, actors in TRANSITIONS[status].items() if "operator" in actors}
    assert offered == allowed
    for action in card_actions(status):
        assert action.zh and action.en and action.to in STATUS
        assert action.final == (action.to in ("cancelled", "deceased"))
        assert card_action(status, action.to) == action


def test_no_action_from_a_final_or_unknown_status() -> None:
    assert card_actions("replaced") == card_actions("cancelled") == card_actions("nonsense") == []
    assert card_action("active", "replaced") is None  # not a move from active


class _Keys:
    def __init__(self, pseudonym_key: bytes) -> None:
        self.pseudonym_key = pseudonym_key


@given(st.text(min_size=1, max_size=64), st.text(min_size=1, max_size=64))
def test_a_form_token_belongs_to_one_session(first: str, second: str) -> None:
    platform: Any = _Keys(b"k" * 32)
    token = session.csrf_token(platform, first)
    session.check_csrf(token, token)
    if first != second:
        with pytest.raises(AppError) as refused:
            session.check_csrf(token, session.csrf_token(platform, second))
        assert refused.value.code == "console_csrf_failed"
    # a login form's token is not a session's, and another key makes other tokens
    assert session.csrf_token(platform, first, "login") != token
    assert session.csrf_token(_Keys(b"j" * 32), first) != token  # type: ignore[arg-type]


@pytest.mark.parametrize("sent", [None, "", "0" * 64, "short"])
def test_a_missing_or_wrong_form_token_is_refused(sent: str | None) -> None:
    with pytest.raises(AppError) as refused:
        session.check_csrf("a" * 64, sent)
    assert refused.value.code == "console_csrf_failed" and refused.value.status == 403


def _request(query: dict[str, str], cookies: dict[str, str], accept: str = "") -> Any:
    return SimpleNamespace(query_params=query, cookies=cookies, headers={"accept-language": accept})


def test_language_by_parameter_then_cookie_then_header() -> None:
    assert session.language(_request({}, {})) == "zh-CN"
    assert session.language(_request({}, {}, "en-GB,en;q=0.8")) == "en"
    assert session.language(_request({}, {session.LANG_COOKIE: "en"}, "zh-CN")) == "en"
    assert session.language(_request({"lang": "zh-CN"}, {session.LANG_COOKIE: "en"})) == "zh-CN"
    assert session.language(_request({"lang": "fr"}, {session.LANG_COOKIE: "xx"})) == "zh-CN"


def test_the_documented_screenshot_script_runs() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/screenshots.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "--out" in done.stdout
