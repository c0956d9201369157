"""``ecard keys ...`` against the pkcs11 provider, as an operator runs it (docs/operations.md,
"Keys in an HSM"): each command is the real CLI in a process of its own."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, ObjectClass

from ecard.cli import build_parser
from ecard.store.keyfiles import load_keyring
from tests.keys.conftest import SoftHsm, ecard_command

ROOT = Path(__file__).resolve().parents[2]


def private_key_present(softhsm: SoftHsm, key_id: str) -> bool:
    token = pkcs11.lib(softhsm.module).get_token(token_label=softhsm.token_label)
    try:
        session = token.open(user_pin=softhsm.pin)
    except pkcs11.exceptions.UserAlreadyLoggedIn:  # this process's provider is logged in
        session = token.open()
    with session:
        return bool(
            list(
                session.get_objects(
                    {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: bytes.fromhex(key_id)}
                )
            )
        )


@pytest.fixture()
def operator_env(softhsm: SoftHsm, tmp_path: Path) -> dict[str, str]:
    return {**softhsm.environ(), "ECARD_KEYS_DIR": str(tmp_path / "keys")}


def run(*args: str, env: dict[str, str], cwd: Path) -> str:
    done = ecard_command(*args, env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_init_rotate_withdraw_in_the_token(
    operator_env: dict[str, str], softhsm: SoftHsm, tmp_path: Path
) -> None:
    # a region no other test of this process gives card master keys to (the token is shared)
    init = ("keys", "init", "--region", "540000", "--card-masters")
    out = run(*init, env=operator_env, cwd=tmp_path)
    assert "pkcs11 provider" in out and "card master keys of 540000: generated" in out
    keys_dir = Path(operator_env["ECARD_KEYS_DIR"])
    ring = load_keyring(keys_dir)
    assert all(k.private_pem is None and k.token_object for k in ring.keys)
    assert "PRIVATE KEY" not in (keys_dir / "keyring.json").read_text()
    check = run("keys", "check", env=operator_env, cwd=tmp_path)
    assert check.count("signs (pkcs11)") == 2

    first = ring.signing_key("540000")
    run("keys", "rotate", "540000", env=operator_env, cwd=tmp_path)
    ring = load_keyring(keys_dir)
    second = ring.signing_key("540000")
    assert second.kid != first.kid and ring.find(first.kid).status == "retired"
    assert first.token_object and second.token_object
    # the retired key is verify-only but its private half stays until its window ends
    assert private_key_present(softhsm, first.token_object.id)

    out = run("keys", "withdraw", "--", first.kid, env=operator_env, cwd=tmp_path)
    assert f"destroyed the private key of {first.kid}" in out
    assert not private_key_present(softhsm, first.token_object.id)
    out = run("keys", "withdraw", "--", second.kid, env=operator_env, cwd=tmp_path)
    ring = load_keyring(keys_dir)
    third = ring.signing_key("540000")  # the region got a new signer, made in the token
    assert third.kid not in (first.kid, second.kid) and third.token_object
    assert private_key_present(softhsm, third.token_object.id)
    assert not private_key_present(softhsm, second.token_object.id)
    listing = run("keys", "list", env=operator_env, cwd=tmp_path)
    assert re.search(rf"{second.kid}\s+issuer\s+540000\s+withdrawn", listing)

    run("keys", "add-region", "110000", env=operator_env, cwd=tmp_path)
    assert load_keyring(keys_dir).signing_key("110000").token_object is not None


@pytest.mark.parametrize(
    ("change", "said"),
    [
        # (an unknown label or module: test_provider.py, in this process)
        ({"ECARD_PKCS11_PIN": "99999999"}, "refused ECARD_PKCS11_PIN"),
        ({"ECARD_PKCS11_PIN": ""}, "needs ECARD_PKCS11_PIN"),
    ],
)
def test_an_unusable_token_is_one_readable_line(
    operator_env: dict[str, str], tmp_path: Path, change: dict[str, str], said: str
) -> None:
    done = ecard_command("keys", "init", env=operator_env | change, cwd=tmp_path)
    assert done.returncode == 2
    assert said in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    for pin in ("99999999", operator_env["ECARD_PKCS11_PIN"]):
        assert pin not in done.stderr + done.stdout
    assert not (Path(operator_env["ECARD_KEYS_DIR"]) / "keyring.json").exists()


def test_a_file_keyring_cannot_be_checked_through_the_token(
    operator_env: dict[str, str], tmp_path: Path
) -> None:
    file_env = {**operator_env, "ECARD_KEY_PROVIDER": "file"}
    run("keys", "init", env=file_env, cwd=tmp_path)
    done = ecard_command("keys", "check", env=operator_env, cwd=tmp_path)
    assert done.returncode == 2 and "file key" in done.stderr and "Traceback" not in done.stderr


def test_the_documented_commands_run() -> None:
    """Every command of docs/operations.md "Keys in an HSM" runs (here: its --help)."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("## Keys in an HSM", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\s*(ecard keys [a-z-]+)", section, flags=re.MULTILINE)
    assert {
        "ecard keys init",
        "ecard keys check",
        "ecard keys rotate",
        "ecard keys withdraw",
    } <= set(commands)
    for command in sorted(set(commands)):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
            build_parser().parse_args([*command.split()[1:], "--help"])
        assert exited.value.code == 0 and "usage: " + command in out.getvalue(), command
    assert (
        "scripts/install_softhsm.sh" in section and (ROOT / "scripts/install_softhsm.sh").exists()
    )
