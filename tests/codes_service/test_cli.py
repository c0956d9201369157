"""``ecard verify CODE_OR_IMAGE`` against a real server's lists: code text, a QR image, an
e-license, lists from files with a pinned root key, revocation, and unusable input."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ecard.cli import main
from tests.live import LiveServer, _ok, new_channel, new_holder


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    live = LiveServer.start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def seeded(server: LiveServer) -> dict:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        login = _ok(
            http.post(
                "/operator/v1/login",
                json={"username": "admin", "password": "correct horse battery"},
            )
        )
    admin = {"Authorization": f"Bearer {login['access_token']}"}

    async def holder() -> tuple[str, str]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            channel = await new_channel(http, admin, "cli-app")
            return await new_holder(http, admin, channel)

    token, card_id = asyncio.run(holder())
    return {"admin": admin, "holder": {"Authorization": f"Bearer {token}"}, "card_id": card_id}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["verify", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def code_of(server: LiveServer, seeded: dict) -> str:
    return _ok(httpx.post(f"{server.url}/holder/v1/codes", headers=seeded["holder"]))["code"]


def test_a_code_verifies_with_the_servers_lists(server, seeded, capsys) -> None:
    status, out, _ = run(capsys, "--server", server.url, code_of(server, seeded))
    assert status == 0 and out.startswith("VALID") and "张*三" in out and "330000" in out
    status, out, _ = run(capsys, "--server", server.url, "--json", code_of(server, seeded))
    result = json.loads(out)
    assert (
        status == 0
        and result["valid"]
        and result["kind"] == "code"
        and result["claims"]["masked_name"] == "张*三"
    )
    assert "pseudonym" not in result["claims"]


def test_a_qr_image_is_decoded_and_verified(server, seeded, capsys, tmp_path: Path) -> None:
    image = httpx.get(
        f"{server.url}/holder/v1/codes/qr", params={"scale": 3}, headers=seeded["holder"]
    )
    assert image.status_code == 200
    (tmp_path / "code.png").write_bytes(image.content)
    status, out, _ = run(capsys, "--server", server.url, str(tmp_path / "code.png"))
    assert status == 0 and out.startswith("VALID")
    (tmp_path / "blank.png").write_bytes(
        httpx.get(
            f"{server.url}/holder/v1/codes/qr",
            params={"scale": 1, "border": 0},
            headers=seeded["holder"],
        ).content[:60]
    )
    status, _, err = run(capsys, "--server", server.url, str(tmp_path / "blank.png"))
    assert status == 2 and "not a readable image" in err


def test_files_and_a_pinned_root_key(server, seeded, capsys, tmp_path: Path, monkeypatch) -> None:
    for name, path in (
        ("root.jwk", "root-key"),
        ("trust.jws", "trust-list"),
        ("revoked.jws", "revocations"),
    ):
        (tmp_path / name).write_text(httpx.get(f"{server.url}/offline/v1/{path}").text)
    files = [
        "--root-key",
        str(tmp_path / "root.jwk"),
        "--trust-list",
        str(tmp_path / "trust.jws"),
        "--revocation-list",
        str(tmp_path / "revoked.jws"),
    ]
    code = code_of(server, seeded)
    assert run(capsys, *files, code)[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(code_of(server, seeded) + "\n"))
    status, out, _ = run(capsys, *files, "--json", "-")
    assert status == 0 and json.loads(out)["valid"]
    status, out, _ = run(capsys, *files, "--json", "https://example.com/")
    assert status == 1 and json.loads(out)["reason"] == "wrong_prefix"
    status, out, _ = run(capsys, *files, code[:-6])
    assert status == 1 and "malformed" in out
    # a root key that did not sign the lists
    (tmp_path / "other.jwk").write_text(
        json.dumps(
            {
                "kty": "EC",
                "crv": "P-256",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            }
        )
    )
    status, _, err = run(capsys, "--root-key", str(tmp_path / "other.jwk"), *files[2:], code)
    assert status == 2 and "refused" in err
    status, _, err = run(capsys, code)
    assert status == 2 and "--root-key" in err
    status, _, err = run(
        capsys, "--root-key", str(tmp_path / "missing.jwk"), "--server", server.url, code
    )
    assert status == 2 and "cannot read" in err


def test_an_elicense_and_a_revoked_card(server, seeded, capsys) -> None:
    token = _ok(httpx.get(f"{server.url}/holder/v1/elicense", headers=seeded["holder"]))["token"]
    code = code_of(server, seeded)
    status, out, _ = run(capsys, "--server", server.url, token)
    assert status == 0 and "elicense" not in out and "masked_id_number" in out
    _ok(
        httpx.post(
            f"{server.url}/operator/v1/cards/{seeded['card_id']}/status",
            headers=seeded["admin"],
            json={"status": "lost", "reason": "reported lost"},
        )
    )
    time.sleep(1.1)  # a worker re-reads the registry for the published list at most once a second
    status, out, _ = run(capsys, "--server", server.url, code)
    assert status == 1 and "revoked" in out
    status, out, _ = run(capsys, "--server", server.url, "--json", token)
    assert (
        status == 1
        and json.loads(out)["reason"] == "revoked"
        and json.loads(out)["kind"] == "elicense"
    )


def test_an_unreachable_server(capsys) -> None:
    status, _, err = run(capsys, "--server", "http://127.0.0.1:9", "EC1:")
    assert status == 2 and "cannot fetch" in err
