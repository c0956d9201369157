"""Who is really asking, behind a reverse proxy: the client address, scheme and host a trusted
proxy reports in ``Forwarded`` (RFC 7239) or ``X-Forwarded-For`` / ``-Proto`` / ``-Host``.

Pure: no I/O, no framework.  :func:`forwarded` answers for one request, from its immediate peer
and its headers; :func:`ecard.edge.behind_proxy` applies the answer to an ASGI scope.

The rules (``docs/deployment.md``):

- The headers are read only when the immediate peer is one of ``ECARD_TRUSTED_PROXIES``
  (addresses or CIDR networks); from anyone else they are ignored entirely.
- The hops they list are walked right to left (the rightmost was added by the peer), skipping
  trusted proxies; the first hop that is not a trusted proxy is the client.  Hops further left
  were written by that client and are never read, so a spoofed leftmost entry changes nothing.
- A hop that is not an IP address (``unknown``, an RFC 7239 obfuscated identifier such as
  ``_hidden``, or anything malformed) ends the walk: it is not trusted, and the client is
  reported as that identifier (obfuscated ones, whose grammar is strict) or ``unknown``.
- ``X-Forwarded-For`` wins over ``Forwarded`` when both are present (most proxies and load
  balancers set only ``X-Forwarded-For``, so a client could otherwise smuggle in a ``Forwarded``
  header they pass through untouched); scheme and host come from the same family as the address.
- A scheme other than ``http``/``https`` and a host that is not a valid ``host[:port]`` are
  ignored; nothing the headers carry ever raises.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from typing import NamedTuple

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: What the client is called when the hop that names it is not an address.
UNKNOWN = "unknown"

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]{1,63}")
_PORT = re.compile(r"[0-9]{1,5}")
_REG_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_SCHEMES = {"http", "https"}


class TrustedProxies:
    """The set of ``ECARD_TRUSTED_PROXIES``: addresses and networks whose forwarding headers are
    believed.  Empty (the default) believes no one."""

    __slots__ = ("_cached", "networks")

    def __init__(self, networks: Iterable[IPNetwork] = ()) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(networks)
        # peers repeat (the proxy's few addresses); hops in headers do not: bounded memo
        self._cached = functools.lru_cache(maxsize=1024)(self._contains)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({', '.join(map(str, self.networks))})"

    def __contains__(self, address: object) -> bool:
        if not self.networks:
            return False
        if isinstance(address, str):
            parsed = ip(address)
            return parsed is not None and self._cached(parsed)
        if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return self._cached(_plain(address))
        return False

    def _contains(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)


def parse_trusted_proxies(text: str | Iterable[str]) -> TrustedProxies:
    """``"10.0.0.1, 10.1.0.0/16, ::1"`` (or a list of entries) as :class:`TrustedProxies`;
    raises ``ValueError`` naming the entry that is neither an address nor a network."""
    entries = text.split(",") if isinstance(text, str) else list(text)
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or CIDR network (e.g. 10.0.0.1 or 10.0.0.0/8)"
            ) from None
    return TrustedProxies(networks)


class Forwarded(NamedTuple):
    """What a trusted proxy says about the request: the client ``(host, port)`` (port 0 when not
    told), the scheme (``http``/``https``) and the ``Host`` the client asked for; each None when
    the headers do not say it (or say it badly)."""

    client: tuple[str, int] | None
    scheme: str | None
    host: str | None


def forwarded(
    peer: str | None, headers: Iterable[tuple[bytes, bytes]], trusted: TrustedProxies
) -> Forwarded | None:
    """What the forwarding headers of a request from ``peer`` say, or None when they are not to be
    read (``peer`` is not a trusted proxy) or say nothing.  ``headers`` are ASGI's (lower-case
    names, bytes).  Never raises on header content."""
    if not trusted or peer is None or peer not in trusted:
        return None
    xff: list[str] = []
    xf_proto: list[str] = []
    xf_host: list[str] = []
    rfc7239: list[str] = []
    for name, value in headers:
        if name == b"x-forwarded-for":
            xff.append(value.decode("latin-1"))
        elif name == b"forwarded":
            rfc7239.append(value.decode("latin-1"))
        elif name == b"x-forwarded-proto":
            xf_proto.append(value.decode("latin-1"))
        elif name == b"x-forwarded-host":
            xf_host.append(value.decode("latin-1"))
    if xff:
        return _from_x_forwarded(xff, xf_proto, xf_host, trusted)
    if rfc7239:
        return _from_forwarded(rfc7239, trusted)
    return None


# --- X-Forwarded-* ----------------------------------------------------------------------------


def _from_x_forwarded(
    xff: list[str], protos: list[str], hosts: list[str], trusted: TrustedProxies
) -> Forwarded | None:
    hops = [hop.strip() for line in xff for hop in line.split(",")]
    hops = [hop for hop in hops if hop]
    if not hops:
        return None
    index = _client_index([_xff_node(hop) for hop in hops], trusted)
    skipped = len(hops) - 1 - index  # trusted proxies between the client and the peer
    node = _xff_node(hops[index])
    scheme = _pick(protos, skipped)
    host = _pick(hosts, skipped)
    return Forwarded(
        client=node,
        scheme=scheme.lower() if scheme and scheme.lower() in _SCHEMES else None,
        host=host if host and valid_host(host) else None,
    )


def _xff_node(hop: str) -> tuple[str, int]:
    """An ``X-Forwarded-For`` hop: an address, optionally with a port (``1.2.3.4:80``,
    ``[2001:db8::1]:80``); anything else is ``unknown``."""
    address = ip(hop)
    if address is not None:
        return str(address), 0
    node = _node(hop)
    return node if ip(node[0]) is not None else (UNKNOWN, 0)


def _pick(lines: list[str], from_right: int) -> str | None:
    """The ``X-Forwarded-Proto``/``-Host`` value written by the proxy that saw the client: the
    ``from_right``-th from the right when each proxy appended one, else the outermost given."""
    values = [v.strip() for line in lines for v in line.split(",")]
    values = [v for v in values if v]
    if not values:
        return None
    return values[max(len(values) - 1 - from_right, 0)]


# --- Forwarded (RFC 7239) ---------------------------------------------------------------------


def _from_forwarded(lines: list[str], trusted: TrustedProxies) -> Forwarded | None:
    elements = [element for line in lines for element in _elements(line)]
    if not elements:
        return None
    nodes = [_node(element["for"]) if "for" in element else (UNKNOWN, 0) for element in elements]
    index = _client_index(nodes, trusted)
    element = elements[index]
    proto = element.get("proto", "").lower()
    host = element.get("host")
    return Forwarded(
        client=nodes[index],
        scheme=proto if proto in _SCHEMES else None,
        host=host if host and valid_host(host) else None,
    )


def _elements(line: str) -> list[dict[str, str]]:
    """The forwarded-elements of one header line, each as {lower-case name: value}.  An element
    that does not parse becomes an empty one (a hop with no ``for``: unknown); an unterminated
    quoted string ends the line (it cannot swallow other header lines: each is parsed alone)."""
    elements: list[dict[str, str]] = []
    pairs: dict[str, str] = {}
    broken = False
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t;":
            i += 1
            continue
        if c == ",":
            elements.append({} if broken else pairs)
            pairs, broken = {}, False
            i += 1
            continue
        match = _TOKEN.match(line, i)
        if not match or match.end() >= n or line[match.end()] != "=":
            broken = True
            i = _skip_to_separator(line, i)
            continue
        name = match.group().lower()
        i = match.end() + 1
        if i < n and line[i] == '"':
            value, i = _quoted(line, i)
            if value is None:  # unterminated
                broken = True
                break
        else:
            token = _TOKEN.match(line, i)
            if not token:
                broken = True
                i = _skip_to_separator(line, i)
                continue
            value, i = token.group(), token.end()
        if name in pairs:  # RFC 7239 §4: a parameter occurs at most once per element
            broken = True
        pairs[name] = value
    elements.append({} if broken else pairs)
    return elements


def _skip_to_separator(line: str, i: int) -> int:
    """The index of the next ``;`` or ``,`` outside a quoted string (or the end)."""
    n = len(line)
    while i < n and line[i] not in ";,":
        if line[i] == '"':
            _, after = _quoted(line, i)
            if after >= n:
                return n
            i = after
            continue
        i += 1
    return i


def _quoted(line: str, i: int) -> tuple[str | None, int]:
    """The quoted-string starting at ``line[i] == '"'``: (its unescaped text, index after it), or
    (None, len(line)) when it is not terminated."""
    out: list[str] = []
    i += 1
    n = len(line)
    while i < n:
        c = line[i]
        if c == "\\" and i + 1 < n:
            out.append(line[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    return None, n


def _node(text: str) -> tuple[str, int]:
    """An RFC 7239 node (``192.0.2.1``, ``"[2001:db8::1]:4711"``, ``unknown``, ``_hidden:_port``)
    as (host, port): the host an address, an obfuscated identifier or ``unknown``; the port 0
    when absent or obfuscated."""
    if text.startswith("["):
        end = text.find("]")
        name, rest = text[1:end], text[end + 1 :]
        if end < 0 or ":" not in name or rest and not rest.startswith(":"):
            return UNKNOWN, 0
        port_text = rest[1:]
        address = ip(name)
        if address is None:
            return UNKNOWN, 0
    else:
        if text.count(":") > 1:
            return UNKNOWN, 0  # an IPv6 node must be bracketed
        name, _, port_text = text.partition(":")
        address = ip(name)
    port = int(port_text) if _PORT.fullmatch(port_text) and int(port_text) <= 65535 else 0
    if address is not None:
        return str(address), port
    if _OBFUSCATED.fullmatch(name):
        return name, port
    return UNKNOWN, 0


# --- both ---------------------------------------------------------------------------------------


def _client_index(nodes: list[tuple[str, int]], trusted: TrustedProxies) -> int:
    """Right to left, the first hop that is not a trusted proxy (an address in the set); the
    leftmost hop when every one is."""
    for index in range(len(nodes) - 1, -1, -1):
        if nodes[index][0] not in trusted:
            return index
    return 0


def ip(text: str) -> IPAddress | None:
    """``text`` as an address (IPv4-mapped IPv6 as IPv4, an IPv6 zone dropped: it is free text),
    or None."""
    if not text or len(text) > 64:
        return None
    try:
        return _plain(ipaddress.ip_address(text.partition("%")[0]))
    except ValueError:
        return None


def _plain(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def valid_host(host: str) -> bool:
    """A ``Host`` header value: a DNS name, an IPv4 address or a bracketed IPv6 address, with an
    optional port."""
    return split_host(host) is not None


def split_host(host: str) -> tuple[str, int | None] | None:
    """``host[:port]`` as (host, port or None), or None when it is not a valid ``Host``."""
    if not host or len(host) > 260:
        return None
    port: int | None = None
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        name, rest = host[1:end], host[end + 1 :]
        address = ip(name)
        if address is None or ":" not in name:
            return None
    else:
        name, sep, rest = host.partition(":")
        rest = sep + rest
        if not (_REG_NAME.fullmatch(name) or ip(name) is not None and "." in name):
            return None
    if rest:
        if (
            not rest.startswith(":")
            or not _PORT.fullmatch(rest[1:])
            or not 0 < int(rest[1:]) <= 65535
        ):
            return None
        port = int(rest[1:])
    return name, port


__all__ = [
    "UNKNOWN",
    "Forwarded",
    "TrustedProxies",
    "forwarded",
    "parse_trusted_proxies",
    "split_host",
    "valid_host",
]
