"""The per-province policy of 实人 methods, from TOML or the environment; a bad one
stops start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecard.settings import SettingsError, load_settings


def test_the_default_policy_accepts_three_methods_everywhere() -> None:
    settings = load_settings({})
    assert settings.liveness_methods == {
        "*": ["face_liveness", "face_compare_police", "counter_in_person"]
    }
    assert settings.liveness_max_age_seconds == 300


def test_the_policy_comes_from_toml_or_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "ecard.toml"
    config.write_text(
        'liveness_max_age_seconds = 120\n[liveness_methods]\n"*" = ["face_liveness"]\n'
        '"110000" = ["counter_in_person"]\n',
        encoding="utf-8",
    )
    settings = load_settings({}, config)
    assert settings.liveness_methods == {"*": ["face_liveness"], "110000": ["counter_in_person"]}
    assert settings.liveness_max_age_seconds == 120
    from_env = load_settings({"ECARD_LIVENESS_METHODS": '{"330000": ["bank_card_4factor"]}'})
    assert from_env.liveness_methods == {"330000": ["bank_card_4factor"]}


@pytest.mark.parametrize(
    "raw",
    ['{"*": ["horoscope"]}', '{"zhejiang": ["face_liveness"]}', "not json", '["face_liveness"]'],
)
def test_a_bad_policy_names_the_setting(raw: str) -> None:
    with pytest.raises(SettingsError, match="LIVENESS_METHODS"):
        load_settings({"ECARD_LIVENESS_METHODS": raw})
