"""Settings: embedded defaults, TOML file, environment precedence, clear errors."""

import pytest

from ecard.settings import SettingsError, load_settings


def test_defaults_need_no_configuration() -> None:
    settings = load_settings({})
    assert settings.is_sqlite and settings.redis_url is None and settings.code_lifetime == 60


def test_environment_overrides_the_file(tmp_path) -> None:
    config = tmp_path / "ecard.toml"
    config.write_text('port = 9000\nregion_code = "110000"\n')
    settings = load_settings({"ECARD_CONFIG": str(config), "ECARD_PORT": "9100"})
    assert settings.port == 9100 and settings.region_code == "110000"


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"ECARD_PORT": "eighty"}, "ECARD_PORT"),
        ({"ECARD_CODE_LIFETIME": "5"}, "ECARD_CODE_LIFETIME"),
        ({"ECARD_REGION_CODE": "33"}, "ECARD_REGION_CODE"),
        ({"ECARD_DATABASE_URL": "mysql://x"}, "ECARD_DATABASE_URL"),
        ({"ECARD_REDIS_URL": "http://x"}, "ECARD_REDIS_URL"),
        ({"ECARD_CONFIG": "/nonexistent.toml"}, "ECARD_CONFIG"),
    ],
)
def test_a_bad_value_names_the_setting(environ, names) -> None:
    with pytest.raises(SettingsError, match=names):
        load_settings(environ)


def test_unknown_keys_in_the_file_are_refused(tmp_path) -> None:
    config = tmp_path / "ecard.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="prot"):
        load_settings({"ECARD_CONFIG": str(config)})
