"""The forwarding headers (RFC 7239 ``Forwarded``, ``X-Forwarded-For``/``-Proto``/``-Host``) are
believed only from ``ECARD_TRUSTED_PROXIES``, walked right to left, and never raise."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ecard.edge import behind_proxy
from ecard.proxy import UNKNOWN, Forwarded, forwarded, ip, parse_trusted_proxies, valid_host
from ecard.settings import SettingsError, load_settings

TRUSTED = parse_trusted_proxies("127.0.0.1, 10.0.0.0/8, ::1")
NAMES = [b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"host"]

#: header text as granian hands it over (latin-1), with the characters that matter in the grammars
header_text = st.text(
    alphabet=st.sampled_from(list(' \t,;="\\[]:._-/%abcfhinoprstuwxyzFORW0123456789\x00\xe9')),
    max_size=80,
) | st.text(alphabet=st.characters(max_codepoint=255), max_size=80)
addresses = st.ip_addresses().map(str)
headers = st.lists(
    st.tuples(st.sampled_from(NAMES), header_text.map(lambda t: t.encode("latin-1"))), max_size=6
)


def h(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode("latin-1")) for name, value in pairs]


def _well_formed(said: Forwarded | None) -> None:
    if said is None:
        return
    if said.client is not None:
        host, port = said.client
        assert 0 <= port <= 65535
        assert (
            host == UNKNOWN
            or re.fullmatch(r"_[A-Za-z0-9._-]{1,63}", host)
            or ipaddress.ip_address(host)
        )
        assert "%" not in host  # an IPv6 zone is free text: dropped
    assert said.scheme in {None, "http", "https"}
    assert said.host is None or valid_host(said.host)


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(peer=st.sampled_from(["127.0.0.1", "10.9.8.7", "::1", "::ffff:127.0.0.1"]), headers=headers)
@example(
    peer="127.0.0.1", headers=[(b"forwarded", b'for="[::1'), (b"x-forwarded-host", b"[::1]:99999")]
)
@example(peer="127.0.0.1", headers=[(b"forwarded", b'for="\\'), (b"forwarded", b"for=;for==,,;")])
@example(peer="::1", headers=[(b"x-forwarded-for", b"[zz]:1, 1.2.3.4:, :80, [::1]x")])
@example(peer="127.0.0.1", headers=[(b"x-forwarded-for", b"fe80::1%<script>")])
@example(peer="127.0.0.1", headers=[(b"forwarded", b'for="[fe80::1%25<b>]:80"')])
def test_arbitrary_header_text_never_raises_and_gives_only_sane_values(peer, headers) -> None:
    _well_formed(forwarded(peer, headers, TRUSTED))


@settings(max_examples=300, deadline=None)
@given(peer=addresses.filter(lambda a: a not in TRUSTED), headers=headers)
def test_headers_from_an_untrusted_peer_are_ignored(peer, headers) -> None:
    assert forwarded(peer, headers, TRUSTED) is None
    scope: Any = {
        "type": "http",
        "client": (peer, 5000),
        "scheme": "http",
        "server": ("10.0.0.5", 8000),
        "headers": headers,
    }
    before = {**scope, "headers": list(headers)}
    behind_proxy(scope, TRUSTED)
    assert scope == before


@settings(max_examples=300, deadline=None)
@given(
    spoofed=header_text,
    client=addresses.filter(lambda a: a not in TRUSTED),
    proxies=st.lists(st.sampled_from(["10.0.0.2", "10.1.2.3"]), max_size=3),
)
@example(spoofed="6.6.6.6", client="203.0.113.9", proxies=[])
@example(spoofed="127.0.0.1, 10.0.0.1", client="203.0.113.9", proxies=["10.0.0.2"])
def test_spoofed_leftmost_x_forwarded_for_entries_are_ignored(spoofed, client, proxies) -> None:
    """The client sends any X-Forwarded-For; each proxy appends the address it saw."""
    value = ", ".join([spoofed, client, *proxies])
    said = forwarded("127.0.0.1", h(("x-forwarded-for", value)), TRUSTED)
    assert said is not None and said.client == (str(ip(client)), 0)  # IPv4-mapped IPv6 as IPv4


@settings(max_examples=300, deadline=None)
@given(
    spoofed=header_text,
    client=addresses.filter(lambda a: a not in TRUSTED),
    same_line=st.booleans(),
)
@example(spoofed='for=6.6.6.6;x="', client="203.0.113.9", same_line=True)
@example(spoofed="for=6.6.6.6", client="203.0.113.9", same_line=True)
def test_spoofed_forwarded_elements_never_name_the_client(spoofed, client, same_line) -> None:
    """The client sends any Forwarded; the proxy appends its element (in the same line, or as a
    header line of its own).  The client is the real one, or ``unknown`` when the client's text
    was broken enough to spoil the line (an unterminated quoted string) — never a spoofed one."""
    address = ipaddress.ip_address(client)
    node = (
        f'"[{address}]:4711"' if address.version == 6 else f'"{address}:4711"'
    )  # ":" needs quoting
    element = f"for={node};proto=https;host=ecard.example.cn"
    lines = (
        [("forwarded", f"{spoofed}, {element}")]
        if same_line
        else [("forwarded", spoofed), ("forwarded", element)]
    )
    said = forwarded("127.0.0.1", h(*lines), TRUSTED)
    assert said is not None
    if same_line and said.client == (UNKNOWN, 0):
        return
    assert said == Forwarded((str(ip(client)), 4711), "https", "ecard.example.cn")


# --- examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "client"),
    [
        ('for="[2001:db8:cafe::17]:4711"', ("2001:db8:cafe::17", 4711)),
        ("for=192.0.2.60;proto=http;by=203.0.113.43", ("192.0.2.60", 0)),
        ("For=192.0.2.43, for=198.51.100.17", ("198.51.100.17", 0)),
        ("for=198.51.100.17, for=10.0.0.3", ("198.51.100.17", 0)),  # a trusted hop is skipped
        ("for=_hidden, for=_SEVKISEK", ("_SEVKISEK", 0)),  # obfuscated identifiers stay opaque
        ('for="_gazonk:_4711"', ("_gazonk", 0)),
        ("for=unknown", (UNKNOWN, 0)),
        (
            "for=192.0.2.43:47011",
            (UNKNOWN, 0),
        ),  # ":" is not a token character: the node must be quoted
        ("for=2001:db8::1", (UNKNOWN, 0)),  # an IPv6 node must be quoted and bracketed
        ('for="[1.2.3.4]"', (UNKNOWN, 0)),
        ("for=<script>", (UNKNOWN, 0)),
        ("proto=https", (UNKNOWN, 0)),  # the hop does not say who it was
        ("for=10.0.0.1, for=10.0.0.2", ("10.0.0.1", 0)),  # all trusted: the leftmost
        ('for="[::ffff:198.51.100.7]"', ("198.51.100.7", 0)),
    ],
)
def test_forwarded_for(value, client) -> None:
    said = forwarded("127.0.0.1", h(("forwarded", value)), TRUSTED)
    assert said is not None and said.client == client


def test_scheme_and_host_come_from_the_clients_element() -> None:
    said = forwarded(
        "127.0.0.1",
        h(
            (
                "forwarded",
                (
                    'for=192.0.2.1;proto=HTTPS;host="ecard.example.cn:8443", '
                    "for=10.0.0.2;proto=http;host=inner"
                ),
            )
        ),
        TRUSTED,
    )
    assert said == Forwarded(("192.0.2.1", 0), "https", "ecard.example.cn:8443")
    odd = forwarded(
        "127.0.0.1", h(("forwarded", 'for=192.0.2.1;proto=gopher;host="evil.example/x"')), TRUSTED
    )
    assert odd == Forwarded(("192.0.2.1", 0), None, None)


def test_x_forwarded_for_wins_and_brings_its_own_scheme_and_host() -> None:
    headers = h(
        ("forwarded", "for=6.6.6.6;proto=https;host=spoofed.example"),
        ("x-forwarded-for", "6.6.6.6, 198.51.100.2:51000, 10.0.0.2"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "ecard.example.cn"),
    )
    assert forwarded("127.0.0.1", headers, TRUSTED) == Forwarded(
        ("198.51.100.2", 51000), "https", "ecard.example.cn"
    )
    appended = h(
        ("x-forwarded-for", "198.51.100.2, 10.0.0.2"), ("x-forwarded-proto", "https, http")
    )
    assert forwarded("127.0.0.1", appended, TRUSTED) == Forwarded(
        ("198.51.100.2", 0), "https", None
    )


def test_no_trusted_proxies_trusts_no_one() -> None:
    assert (
        forwarded("127.0.0.1", h(("x-forwarded-for", "1.2.3.4")), parse_trusted_proxies("")) is None
    )
    assert forwarded(None, h(("x-forwarded-for", "1.2.3.4")), TRUSTED) is None
    assert forwarded("127.0.0.1", h(("x-forwarded-for", " , ")), TRUSTED) is None


def test_the_scope_gets_the_real_client_scheme_and_host() -> None:
    scope: Any = {
        "type": "http",
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "headers": h(
            ("host", "127.0.0.1:8000"),
            ("x-forwarded-for", "6.6.6.6, 203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "ecard.example.cn"),
        ),
    }
    behind_proxy(scope, TRUSTED)
    assert scope["client"] == ("203.0.113.9", 0) and scope["scheme"] == "https"
    assert scope["server"] == ("ecard.example.cn", 443)
    assert [v for n, v in scope["headers"] if n == b"host"] == [b"ecard.example.cn"]
    assert scope["state"]["proxy_peer"] == ("127.0.0.1", 40000)


@pytest.mark.parametrize("value", ["nginx", "10.0.0.0/33", "1.2.3.4.5", "127.0.0.1;10.0.0.1"])
def test_a_bad_trusted_proxy_names_the_setting(value) -> None:
    with pytest.raises(SettingsError, match="ECARD_TRUSTED_PROXIES"):
        load_settings({"ECARD_TRUSTED_PROXIES": value})
    assert load_settings({"ECARD_TRUSTED_PROXIES": " 127.0.0.1 , 10.0.0.0/8,::1 "}).trusted_proxies
