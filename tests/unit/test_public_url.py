"""``ECARD_PUBLIC_URL``: explicit when given; otherwise the address actually served, so the OIDC
discovery document of ``ecard serve --port N`` names port N; production must set it."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from ecard.settings import Settings, SettingsError, load_settings, served_url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unset_public_url_follows_the_port() -> None:
    assert load_settings({"ECARD_PORT": "9000"}).public_url == "http://127.0.0.1:9000"


def test_an_unset_public_url_follows_the_host() -> None:
    settings = load_settings({"ECARD_HOST": "192.0.2.7", "ECARD_PORT": "9001"})
    assert settings.public_url == "http://192.0.2.7:9001"


def test_the_defaults_advertise_the_default_address() -> None:
    assert load_settings({}).public_url == "http://127.0.0.1:8000"
    assert Settings().public_url == "http://127.0.0.1:8000"  # built directly, too


def test_an_explicit_public_url_wins() -> None:
    settings = load_settings({"ECARD_PORT": "9000", "ECARD_PUBLIC_URL": "https://ecard.example.cn"})
    assert settings.public_url == "https://ecard.example.cn"


def test_a_public_url_from_the_config_file_wins(tmp_path) -> None:
    config = tmp_path / "ecard.toml"
    config.write_text('public_url = "https://ecard.zj.example"\nport = 9100\n')
    assert load_settings({"ECARD_CONFIG": str(config)}).public_url == "https://ecard.zj.example"


def test_production_refuses_to_start_without_an_explicit_public_url() -> None:
    with pytest.raises(SettingsError, match="ECARD_PUBLIC_URL: required when ECARD_ENV=prod"):
        load_settings({"ECARD_ENV": "prod", "ECARD_PORT": "9000"})
    with pytest.raises(SettingsError, match="ECARD_PUBLIC_URL"):
        load_settings({"ECARD_ENV": "prod", "ECARD_PUBLIC_URL": ""})


def test_production_starts_with_an_explicit_public_url() -> None:
    settings = load_settings({"ECARD_ENV": "prod", "ECARD_PUBLIC_URL": "https://ecard.example.cn"})
    assert settings.public_url == "https://ecard.example.cn"


def test_a_public_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(SettingsError, match="ECARD_PUBLIC_URL"):
        load_settings({"ECARD_PUBLIC_URL": "ecard.example.cn"})


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:9000"),
        ("localhost", "http://localhost:9000"),
        ("::1", "http://[::1]:9000"),
        ("[::1]", "http://[::1]:9000"),
        ("fd00::5", "http://[fd00::5]:9000"),
        ("0.0.0.0", "http://127.0.0.1:9000"),
        ("::", "http://127.0.0.1:9000"),
    ],
)
def test_the_served_url_of_a_bind_address(host: str, url: str) -> None:
    assert served_url(host, 9000) == url


def test_a_wildcard_bind_without_a_public_url_warns_the_operator(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="ecard.settings"):
        settings = load_settings({"ECARD_HOST": "0.0.0.0", "ECARD_PORT": "9000"})
    assert settings.public_url == "http://127.0.0.1:9000"
    assert "set ECARD_PUBLIC_URL" in caplog.text


def test_a_wildcard_bind_with_a_public_url_does_not_warn(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="ecard.settings"):
        load_settings({"ECARD_HOST": "0.0.0.0", "ECARD_PUBLIC_URL": "https://ecard.example.cn"})
    assert "ECARD_PUBLIC_URL" not in caplog.text


def test_ecard_serve_port_advertises_that_port_in_discovery(tmp_path) -> None:
    """``ecard serve --port N`` with no ``ECARD_PUBLIC_URL``: issuer and endpoints name port N."""
    port = free_port()
    environ = {key: value for key, value in os.environ.items() if not key.startswith("ECARD_")}
    environ |= {
        "ECARD_DATABASE_URL": f"sqlite:///{tmp_path}/ecard.db",
        "ECARD_KEYS_DIR": str(tmp_path / "keys"),
        "ECARD_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ecard.cli", "serve", "--port", str(port)],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        discovery = None
        deadline = time.monotonic() + 30
        while discovery is None and time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"ecard serve exited: {process.stderr.read().decode()[-2000:]}")
            try:
                response = httpx.get(f"{url}/.well-known/openid-configuration", timeout=1)
                if response.status_code == 200:
                    discovery = response.json()
            except httpx.TransportError:
                time.sleep(0.2)
        assert discovery is not None, "ecard serve did not answer within 30 s"
        assert discovery["issuer"] == url
        assert discovery["authorization_endpoint"].startswith(url + "/")
        assert discovery["token_endpoint"].startswith(url + "/")
        assert discovery["jwks_uri"].startswith(url + "/")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
