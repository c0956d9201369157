"""The operator console over HTTP (``docs/console.md``): sign-in through the operator login service
and its throttling, the session cookie, form tokens on every POST, each page per role (masked
fields, no action for a role without the permission, forged actions refused), the audit of every
read, and bad input answered with a page, never a 500."""

from __future__ import annotations

import json
import re
import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from ecard.console import session as console_session
from ecard.partners import schemas as partner_schemas
from ecard.partners.service import PartnerService
from ecard.registry.tables import AuditEvent, Card
from tests.conftest import OPERATOR_PASSWORD
from tests.console.conftest import Browser, OpenBrowser, csrf_of
from tests.helpers import World, platform_of

EMBEDDED = pytest.mark.parametrize("settings", ["embedded"], indirect=True)


def assert_console_page(response: httpx.Response, status: int = 200) -> str:
    """A console page: HTML, the strict CSP, no inline script or style."""
    assert response.status_code == status, response.text[:800]
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ):
        assert directive in csp, csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    html = response.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert " style=" not in html and "<style" not in html, "inline style"
    return html


def problem_code(html: str) -> str | None:
    found = re.search(r'id="problem" data-code="([a-z_]+)"', html)
    return found.group(1) if found else None


async def card_status(card_id: str) -> str:
    row = await Card.select(Card.status).where(Card.id == card_id).first()
    return row["status"]


async def audit_rows(action: str, actor_id: str | None = None) -> list[dict[str, Any]]:
    query = AuditEvent.select().where(AuditEvent.action == action)
    if actor_id is not None:
        query = query.where(AuditEvent.actor_id == actor_id)
    return await query.order_by(AuditEvent.id)


# --- signing in and out ---------------------------------------------------------------------


async def test_sign_in_sets_a_strict_session_cookie_and_sign_out_ends_it(
    browser: OpenBrowser, client: httpx.AsyncClient
) -> None:
    page = await browser(None)
    from ecard.registry.service import AccessService

    username = f"registry_admin-{uuid.uuid4().hex[:6]}"
    await AccessService(platform_of(client)).create_operator(
        username, OPERATOR_PASSWORD, "registry_admin"
    )
    form = await page.get("/console/login")
    assert_console_page(form)
    pre = form.headers["set-cookie"].lower()
    assert "httponly" in pre and "samesite=strict" in pre and "path=/console" in pre
    signed = await page.http.post(
        "/console/login",
        data={"_csrf": csrf_of(form.text), "username": username, "password": OPERATOR_PASSWORD},
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/console/"
    cookies = [c.lower() for c in signed.headers.get_list("set-cookie")]
    session = next(c for c in cookies if c.startswith(console_session.SESSION_COOKIE + "="))
    assert "ecop_" in session
    assert "httponly" in session and "samesite=strict" in session and "path=/console" in session
    assert "secure" not in session  # the public URL is http here
    assert "max-age=28800" in session  # the operator token's lifetime
    token = page.http.cookies.get(console_session.SESSION_COOKIE)
    # the cookie is an operator token of the login service: the API takes it too
    api = await client.get("/operator/v1/cards", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 200

    home = assert_console_page(await page.get("/console/"))
    assert username in home
    out = await page.post("/console/logout", {"_csrf": csrf_of(home)})
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert "max-age=0" in out.headers["set-cookie"].lower()
    # the token itself is ended, not only the cookie
    api = await client.get("/operator/v1/cards", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 401
    page.http.cookies.set(console_session.SESSION_COOKIE, token, path="/console")
    again = await page.get("/console/")
    assert again.status_code == 303 and again.headers["location"] == "/console/login"


def test_the_session_cookie_is_secure_behind_an_https_public_url() -> None:
    platform: Any = SimpleNamespace(
        settings=SimpleNamespace(public_url="https://ecard.example.gov.cn", operator_token_ttl=600)
    )
    cookie = console_session.session_cookie(platform, "ecop_x")
    assert cookie.secure and cookie.httponly and cookie.samesite == "strict"
    assert cookie.path == "/console" and cookie.max_age == 600


@EMBEDDED
async def test_wrong_passwords_are_throttled_as_at_the_api(
    browser: OpenBrowser, client: httpx.AsyncClient
) -> None:
    page = await browser("admin")
    stranger = await browser(None)
    username = page.username
    for _ in range(5):
        refused = await stranger.sign_in(username, "wrong password")
        html = assert_console_page(refused, 401)
        assert problem_code(html) == "invalid_credentials"
        assert username in html  # the form keeps the name typed, never the password
        assert "wrong password" not in html
    # the sixth attempt from this address waits, even with the right password
    held = await stranger.sign_in(username)
    html = assert_console_page(held, 429)
    assert problem_code(html) == "rate_limited"
    assert int(held.headers["retry-after"]) >= 1
    rows = await audit_rows("operator.login.refused")
    assert rows and all(r["actor_kind"] == "address" for r in rows)
    # the owner from another address is not held (failures count per account and address)
    elsewhere = Browser(
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=client.app, client=("198.51.100.7", 4321)),
            base_url="http://testserver.local",
        )
    )
    try:
        assert (await elsewhere.sign_in(username)).status_code == 303
    finally:
        await elsewhere.http.aclose()


@EMBEDDED
async def test_pages_need_a_session_and_an_api_token_does_not_open_them(
    browser: OpenBrowser, world: World
) -> None:
    page = await browser(None)
    for path in ("/console/", "/console/persons", "/console/audit", "/console/ledger"):
        response = await page.get(path, headers=world.op("admin"))
        assert response.status_code == 303, path
        assert response.headers["location"] == "/console/login"
    # a forged session cookie is no session either
    page.http.cookies.set(console_session.SESSION_COOKIE, "ecop_forged", path="/console")
    assert (await page.get("/console/persons")).status_code == 303


@EMBEDDED
async def test_the_login_form_needs_its_own_token(browser: OpenBrowser) -> None:
    admin = await browser("admin")
    stranger = await browser(None)
    # no pre-session cookie (a form posted from another site)
    forged = await stranger.http.post(
        "/console/login",
        data={"_csrf": "x", "username": admin.username, "password": OPERATOR_PASSWORD},
    )
    assert problem_code(assert_console_page(forged, 403)) == "console_csrf_failed"
    await stranger.get("/console/login")  # now with a pre-session cookie, but a wrong token
    forged = await stranger.http.post(
        "/console/login",
        data={"_csrf": "0" * 64, "username": admin.username, "password": OPERATOR_PASSWORD},
    )
    assert problem_code(assert_console_page(forged, 403)) == "console_csrf_failed"
    assert console_session.SESSION_COOKIE not in stranger.http.cookies


# --- persons and cards ---------------------------------------------------------------------


async def test_an_admin_reports_a_card_lost_after_confirming(
    browser: OpenBrowser, world: World
) -> None:
    admin = await browser("admin")
    holder = await world.person_with_card("欧阳小明")
    found = assert_console_page(
        await admin.get("/console/persons", params={"identity_number": holder["identity_number"]})
    )
    assert "欧阳小明" in found and holder["identity_number"] in found
    person = assert_console_page(await admin.get(f"/console/persons/{holder['person_id']}"))
    assert holder["card_number"] in person
    card = assert_console_page(await admin.get(f"/console/cards/{holder['card_id']}"))
    assert 'id="card-actions"' in card and 'data-to="lost"' in card
    confirm = assert_console_page(
        await admin.get(f"/console/cards/{holder['card_id']}/confirm", params={"to": "lost"})
    )
    assert 'id="confirm-action"' in confirm
    assert await card_status(holder["card_id"]) == "active"  # nothing happens before the POST
    version = re.search(r'name="expected_version" value="(\d+)"', confirm)
    assert version
    form = {"to": "lost", "expected_version": version.group(1), "reason": "窗口挂失"}
    done = await admin.post(f"/console/cards/{holder['card_id']}/status", form)
    assert done.status_code == 303
    assert done.headers["location"] == f"/console/cards/{holder['card_id']}?done=status"
    assert await card_status(holder["card_id"]) == "lost"
    after = assert_console_page(await admin.get(done.headers["location"]))
    assert 'id="notice"' in after and 'data-status="lost"' in after
    assert "窗口挂失" in after  # the history shows the move with its reason
    assert 'data-to="active"' in after  # 解挂 is offered now
    # the same form again (a double submission) is refused with a page, the card unchanged
    replay = await admin.post(f"/console/cards/{holder['card_id']}/status", form)
    assert 400 <= replay.status_code < 500
    assert problem_code(assert_console_page(replay, replay.status_code))
    assert await card_status(holder["card_id"]) == "lost"


async def test_a_readonly_operator_sees_masked_data_and_no_action(
    browser: OpenBrowser, world: World
) -> None:
    readonly = await browser("readonly")
    holder = await world.person_with_card("欧阳小明")
    search = assert_console_page(
        await readonly.get("/console/persons", params={"region": "330000"})
    )
    assert 'id="identity_number"' not in search and 'id="masked-note"' in search
    assert "欧**明" in search and "欧阳小明" not in search
    assert holder["identity_number"][:6] + "*" * 12 in search
    assert holder["identity_number"] not in search
    person = assert_console_page(await readonly.get(f"/console/persons/{holder['person_id']}"))
    assert "欧阳小明" not in person and holder["identity_number"] not in person
    assert 'data-field="birth_date"' not in person and 'data-field="ethnicity"' not in person
    assert holder["card_number"] not in person and holder["card_number"][-4:] in person
    card = assert_console_page(await readonly.get(f"/console/cards/{holder['card_id']}"))
    assert 'id="card-actions"' not in card and "confirm?to=" not in card
    assert 'data-field="chip_serial"' not in card
    # the reads went through the audited services, masked fields named as such
    reads = await audit_rows("person.read")
    assert reads and '"name": "masked"' in reads[-1]["detail"]
    assert await audit_rows("card.history.read")

    # what a readonly operator may not do is refused, however it is asked for
    exact = await readonly.get("/console/persons", params={"name": "欧阳小明"})
    assert problem_code(assert_console_page(exact, 403)) == "forbidden"
    assert await audit_rows("person.search.refused")
    confirm = await readonly.get(
        f"/console/cards/{holder['card_id']}/confirm", params={"to": "lost"}
    )
    assert problem_code(assert_console_page(confirm, 403)) == "forbidden"
    forged = await readonly.post(
        f"/console/cards/{holder['card_id']}/status", {"to": "lost", "reason": "forged"}
    )
    assert problem_code(assert_console_page(forged, 403)) == "forbidden"
    assert await card_status(holder["card_id"]) == "active"
    for path in ("/console/audit", "/console/ledger", "/console/terminals/new"):
        assert problem_code(assert_console_page(await readonly.get(path), 403)) == "forbidden"
    home = assert_console_page(await readonly.get("/console/"))
    assert 'id="nav-audit"' not in home and 'id="nav-statistics"' in home


@EMBEDDED
async def test_every_post_needs_the_form_token_of_its_own_session(
    browser: OpenBrowser, world: World
) -> None:
    admin = await browser("admin")
    other = await browser("admin")
    holder = await world.person_with_card()
    path = f"/console/cards/{holder['card_id']}/status"
    form = {"to": "lost", "reason": "csrf"}
    for token in ("", "0" * 64, other.csrf):
        refused = await admin.post(path, form, csrf=token)
        assert problem_code(assert_console_page(refused, 403)) == "console_csrf_failed"
    no_field = await admin.http.post(path, data=form)
    assert problem_code(assert_console_page(no_field, 403)) == "console_csrf_failed"
    as_json = await admin.http.post(path, json={**form, "_csrf": admin.csrf})
    assert problem_code(assert_console_page(as_json, 403)) == "console_csrf_failed"
    cross_site = await admin.http.post(
        path, data={**form, "_csrf": admin.csrf}, headers={"Origin": "https://evil.example"}
    )
    assert problem_code(assert_console_page(cross_site, 403)) == "console_csrf_failed"
    logout = await admin.post("/console/logout", {}, csrf="")
    assert problem_code(assert_console_page(logout, 403)) == "console_csrf_failed"
    assert await card_status(holder["card_id"]) == "active"
    # with its own token the same form works
    assert (await admin.post(path, form)).status_code == 303
    assert await card_status(holder["card_id"]) == "lost"


# --- filings ---------------------------------------------------------------------------------


async def file_one(world: World, name: str | None = None) -> str:
    filed = await PartnerService(platform_of(world.client)).file(
        partner_schemas.FilingCreate(
            name=name or f"城市服务-{uuid.uuid4().hex[:6]}",
            organisation="杭州市大数据局",
            capabilities=partner_schemas.Capabilities(channel=partner_schemas.NoSettings()),
        ),
        "operator:test",
    )
    return filed.id


async def test_filings_queue_steps_and_credential_rotation(
    browser: OpenBrowser, world: World
) -> None:
    admin = await browser("admin")
    filing_id = await file_one(world, "城市服务测试")
    queue = assert_console_page(await admin.get("/console/filings", params={"status": "submitted"}))
    assert f'data-id="{filing_id}"' in queue and "城市服务测试" in queue
    page = assert_console_page(await admin.get(f"/console/filings/{filing_id}"))
    assert 'data-step="assess"' in page and 'data-step="approve"' not in page
    confirm = assert_console_page(
        await admin.get(f"/console/filings/{filing_id}/confirm", params={"step": "assess"})
    )
    assert 'id="confirm-action"' in confirm
    for step in ("assess", "security_test", "approve"):
        done = await admin.post(
            f"/console/filings/{filing_id}/steps", {"step": step, "reason": f"{step} ok"}
        )
        assert done.status_code == 303, done.text[:500]
    page = assert_console_page(await admin.get(f"/console/filings/{filing_id}"))
    assert 'data-status="approved"' in page and "approve ok" in page
    # a step the workflow does not allow now: a page, not a 500
    refused = await admin.post(f"/console/filings/{filing_id}/steps", {"step": "resume"})
    assert problem_code(assert_console_page(refused, refused.status_code)) is not None
    assert 400 <= refused.status_code < 500

    rotated = await admin.post(
        f"/console/filings/{filing_id}/credentials",
        {"kind": "secret", "overlap_seconds": "60", "reason": "rotation"},
    )
    html = assert_console_page(rotated, 201)
    secret = re.search(r'id="secret-value" class="mono">([^<]+)<', html)
    assert secret and len(secret.group(1)) > 20
    again = assert_console_page(await admin.get(f"/console/filings/{filing_id}"))
    assert secret.group(1) not in again  # shown once
    assert 'data-state="overlap"' in again and 'data-state="current"' in again
    assert await audit_rows("credential.add")


async def test_filings_for_a_role_without_clients_manage(
    browser: OpenBrowser, world: World
) -> None:
    auditor = await browser("auditor")
    filing_id = await file_one(world)
    page = assert_console_page(await auditor.get(f"/console/filings/{filing_id}"))
    assert 'id="filing-actions"' not in page and 'id="credentials"' not in page
    forged = await auditor.post(f"/console/filings/{filing_id}/steps", {"step": "assess"})
    assert problem_code(assert_console_page(forged, 403)) == "forbidden"
    forged = await auditor.post(f"/console/filings/{filing_id}/credentials", {"kind": "secret"})
    assert problem_code(assert_console_page(forged, 403)) == "forbidden"
    assert (await PartnerService(platform_of(world.client)).get(filing_id)).status == "submitted"


# --- terminals, institutions, packages -----------------------------------------------------


def terminal_jwk() -> str:
    from cryptography.hazmat.primitives.asymmetric import ec

    from ecard.offline.es256 import public_jwk

    return json.dumps(public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))


async def test_terminal_registration_and_reconciliation(browser: OpenBrowser, world: World) -> None:
    admin = await browser("admin")
    form = {
        "name": "挂号机 3 号",
        "institution": "杭州市第一人民医院",
        "terminal_kind": "hospital",
        "address": "浣纱路 261 号",
        "region": "330000",
        "public_jwk": "{not json",
        "entitlements": "card_status",
    }
    bad = await admin.post("/console/terminals", form)
    html = assert_console_page(bad, 400)
    assert problem_code(html) == "validation_failed" and "杭州市第一人民医院" in html
    made = await admin.post("/console/terminals", {**form, "public_jwk": terminal_jwk()})
    assert made.status_code == 303, made.text[:500]
    page = assert_console_page(await admin.get(made.headers["location"]))
    assert "挂号机 3 号" in page and 'id="reconciliation"' in page
    listed = assert_console_page(await admin.get("/console/terminals", params={"region": "330000"}))
    assert "挂号机 3 号" in listed
    terminal_id = made.headers["location"].split("/")[-1].split("?")[0]
    off = await admin.post(
        f"/console/terminals/{terminal_id}/status", {"status": "disabled", "reason": "维修"}
    )
    assert off.status_code == 303
    status_page = assert_console_page(await admin.get(off.headers["location"]))
    assert 'id="terminal-status" data-status="disabled"' in status_page
    readonly = await browser("readonly")
    seen = assert_console_page(await readonly.get(f"/console/terminals/{terminal_id}"))
    assert 'id="reconciliation"' not in seen and 'id="terminal-status-form"' not in seen


@EMBEDDED
async def test_institutions_and_the_offline_package(browser: OpenBrowser) -> None:
    admin = await browser("admin")
    assert_console_page(await admin.get("/console/institutions/new"))
    bad = await admin.post("/console/institutions", {"uscc": "123", "name_zh": "某医院"})
    assert 400 <= bad.status_code < 500
    assert "某医院" in assert_console_page(bad, bad.status_code)
    package = assert_console_page(await admin.get("/console/packages"))
    assert re.search(r'id="trust-version">\d+<', package)
    assert re.search(r'id="revocation-version">\d+<', package)


# --- audit and ledger ------------------------------------------------------------------------


async def test_audit_trail_filters_and_the_ledger_audit(browser: OpenBrowser, world: World) -> None:
    auditor = await browser("auditor")
    holder = await world.person_with_card()
    trail = assert_console_page(
        await auditor.get(
            "/console/audit", params={"subject": holder["card_id"], "action": "card.create"}
        )
    )
    assert re.search(r'id="total">1<', trail) and 'data-action="card.create"' in trail
    today = assert_console_page(
        await auditor.get("/console/audit", params={"action": "card.create", "since": "2020-01-01"})
    )
    assert 'data-action="card.create"' in today
    future = assert_console_page(
        await auditor.get("/console/audit", params={"since": "2999-01-01"})
    )
    assert re.search(r'id="total">0<', future)
    actor = assert_console_page(
        await auditor.get("/console/audit", params={"actor": "operator:nobody"})
    )
    assert re.search(r'id="total">0<', actor)
    bad = await auditor.get("/console/audit", params={"since": "yesterday"})
    assert problem_code(assert_console_page(bad, 400)) == "validation_failed"
    ledger = assert_console_page(await auditor.get("/console/ledger", params={"verify": "1"}))
    assert 'data-ok="true"' in ledger


# --- languages and bad input -----------------------------------------------------------------


@EMBEDDED
async def test_english_by_parameter_remembered_or_by_accept_language(
    browser: OpenBrowser,
) -> None:
    admin = await browser("admin")
    zh = assert_console_page(await admin.get("/console/"))
    assert '<html lang="zh-CN">' in zh and "退出" in zh
    en = await admin.get("/console/", params={"lang": "en"})
    assert '<html lang="en">' in assert_console_page(en) and "Sign out" in en.text
    assert console_session.LANG_COOKIE in en.headers["set-cookie"]
    assert '<html lang="en">' in assert_console_page(await admin.get("/console/persons"))
    stranger = await browser(None)
    by_header = await stranger.get("/console/login", headers={"Accept-Language": "en-US"})
    assert "Sign in" in assert_console_page(by_header)


@EMBEDDED
async def test_bad_input_is_a_page_never_a_500(browser: OpenBrowser, world: World) -> None:
    admin = await browser("admin")
    holder = await world.person_with_card()
    card = holder["card_id"]
    cases = [
        ("GET", "/console/persons?identity_number=123", None),
        ("GET", "/console/persons?region=330000&page=abc", None),
        ("GET", "/console/persons?region=330000&page=0", None),
        ("GET", "/console/persons?name=a%00b", None),
        ("GET", "/console/persons?region=330000&region=110000", None),
        ("GET", "/console/persons/" + "x" * 200, None),
        ("GET", "/console/persons/nobody", None),
        ("GET", "/console/cards/nobody", None),
        ("GET", f"/console/cards/{card}/confirm?to=flying", None),
        ("GET", "/console/filings?status=pending_forever", None),
        ("GET", "/console/filings/nobody", None),
        ("GET", "/console/terminals?region=99", None),
        ("GET", "/console/terminals/nobody", None),
        ("GET", "/console/institutions?region=abc", None),
        ("GET", "/console/audit?page=99999999", None),
        ("POST", f"/console/cards/{card}/status", {"to": "flying", "reason": "x"}),
        ("POST", f"/console/cards/{card}/status", {"to": "lost", "reason": ""}),
        ("POST", f"/console/cards/{card}/status", {"to": "lost", "reason": "x" * 600}),
        (
            "POST",
            f"/console/cards/{card}/status",
            {"to": "lost", "reason": "x", "expected_version": "v"},
        ),
        ("POST", f"/console/cards/{card}/replacement-request", {"replacement_reason": "bored"}),
        ("POST", f"/console/cards/{card}/replace", {"card_number": "short"}),
        ("POST", "/console/filings/nobody/steps", {"step": "assess"}),
        ("POST", "/console/filings/nobody/credentials", {"kind": "secret"}),
        ("POST", "/console/filings/nobody/credentials/x/end", {}),
        ("POST", "/console/terminals/nobody/status", {"status": "disabled", "reason": "x"}),
        ("POST", "/console/terminals", {"name": "x" * 5000}),
    ]
    for method, path, form in cases:
        if method == "GET":
            response = await admin.get(path)
        else:
            response = await admin.post(path, form or {})
        assert 400 <= response.status_code < 500, (path, form, response.status_code)
        assert problem_code(assert_console_page(response, response.status_code)), (path, form)
    assert await card_status(card) == "active"


async def test_the_statistics_page_follows_statistics_read(browser: OpenBrowser) -> None:
    """The dashboard of ``ecard.statistics`` inside the console, for the roles holding
    ``statistics:read`` only; its range is checked like any other input."""
    readonly = await browser("readonly")
    page = assert_console_page(await readonly.get("/console/statistics"))
    assert 'id="dashboard"' in page and "用卡统计" in page
    assert "<script>" not in page.split('id="dashboard"', 1)[1]
    english = assert_console_page(await readonly.get("/console/statistics?days=7&lang=en"))
    assert "Card use statistics" in english
    for days in ("0", "367", "x", "30&days=31"):
        bad = await readonly.get(f"/console/statistics?days={days}")
        assert problem_code(assert_console_page(bad, 400)) == "validation_failed"
    registry_admin = await browser("registry_admin")
    refused = await registry_admin.get("/console/statistics")
    assert problem_code(assert_console_page(refused, 403)) == "forbidden"
    home = assert_console_page(await registry_admin.get("/console/"))
    assert 'id="nav-statistics"' not in home
