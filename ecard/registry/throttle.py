"""Operator login throttling: per (account, address) exponential backoff, a coarse per-address
limit, and a loose per-account ceiling for addresses the account has never logged in from.

Why this shape (docs/operators.md, "Operator accounts"):
- A per-account counter alone lets anyone keep any operator — an admin included — locked out by
  sending wrong passwords.  Failures are therefore counted per (account, address): a guesser's
  failures slow down only that guesser, and the owner logging in from another address is
  unaffected.
- Each (account, address) pair gets :data:`FREE_ATTEMPTS` attempts, then must wait
  :func:`backoff_delay` before each next one: 1 s, 2 s, 4 s … up to :data:`MAX_DELAY`.  The
  attempt is counted when it is admitted, before the password is checked (one atomic
  compare-and-set on the shared store), so parallel attempts cannot slip past the count; a
  successful login clears the pair.  A pair's count is forgotten :data:`PAIR_MEMORY` seconds
  after its last attempt.
- Every address also has a coarse limit on all its login attempts (:data:`ADDRESS_LIMIT` per
  :data:`ADDRESS_WINDOW`), whatever the accounts.
- Against guessing distributed over many addresses, attempts on one account from addresses it has
  not logged in from successfully in :data:`KNOWN_ADDRESS_TTL` share a loose ceiling
  (:data:`ACCOUNT_LIMIT` per :data:`ACCOUNT_WINDOW`).  An address the operator has used before is
  never held by that ceiling, so a botnet can delay the account only at addresses it never used.

IPv6 addresses count per /64 (one subscriber's allocation); IPv4 addresses one by one.  Nothing
here touches the database: the state is in the ephemeral store, shared by all workers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time

from ecard.store.ephemeral import EphemeralStore

FREE_ATTEMPTS = 5
BASE_DELAY = 1.0
MAX_DELAY = 900.0
PAIR_MEMORY = 86_400.0
ADDRESS_WINDOW, ADDRESS_LIMIT = 300, 50
ACCOUNT_WINDOW, ACCOUNT_LIMIT = 3600, 100
KNOWN_ADDRESS_TTL = 30 * 86_400.0
_CAS_ROUNDS = 16

#: The clock of the backoff (tests move it); the store keeps the TTLs by its own.
clock = time.time


def backoff_delay(attempts: int) -> float:
    """Seconds a pair must wait before its next attempt after ``attempts`` attempts in a row
    without success: none for the first :data:`FREE_ATTEMPTS`, then doubling from
    :data:`BASE_DELAY` up to :data:`MAX_DELAY`."""
    if attempts < FREE_ATTEMPTS:
        return 0.0
    return min(BASE_DELAY * 2.0 ** min(attempts - FREE_ATTEMPTS, 32), MAX_DELAY)


def address_of(client_ip: str) -> str:
    """The unit an address is counted in: the IPv4 address, or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip[:40] or "-"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _account(username: str) -> str:
    return hashlib.sha256(username.encode()).hexdigest()[:32]


def _pair_key(username: str, address: str) -> str:
    return f"login-pair:{_account(username)}:{address}"


def _decode(value: bytes | None) -> tuple[int, float]:
    if value is None:
        return 0, 0.0
    try:
        attempts, not_before = value.split(b" ")
        return int(attempts), float(not_before)
    except ValueError:  # unreadable: start again rather than lock the pair out
        return 0, 0.0


async def admit(store: EphemeralStore, username: str, client_ip: str) -> float | None:
    """Count one login attempt; None when it may go ahead, else the seconds to wait.

    Order: the address's coarse limit, the pair's backoff, then — for addresses new to the
    account — the account's ceiling."""
    address = address_of(client_ip)
    decision = await store.hit(f"login-ip:{address}", ADDRESS_WINDOW, ADDRESS_LIMIT)
    if not decision.allowed:
        return decision.retry_after
    wait = await _admit_pair(store, _pair_key(username, address))
    if wait is not None:
        return wait
    if await store.get(f"login-known:{_account(username)}:{address}") is None:
        decision = await store.hit(
            f"login-acct:{_account(username)}", ACCOUNT_WINDOW, ACCOUNT_LIMIT
        )
        if not decision.allowed:
            return decision.retry_after
    return None


async def _admit_pair(store: EphemeralStore, key: str) -> float | None:
    for _ in range(_CAS_ROUNDS):
        current = await store.get(key)
        attempts, not_before = _decode(current)
        now = clock()
        if now < not_before:
            return not_before - now
        attempts += 1
        new = f"{attempts} {now + backoff_delay(attempts)!r}".encode()
        if current is None:
            written = await store.put_if_absent(key, new, PAIR_MEMORY)
        else:
            written = await store.compare_and_set(key, current, new, PAIR_MEMORY)
        if written:
            return None
    return BASE_DELAY  # this many attempts racing for one pair: refuse this one


async def succeeded(store: EphemeralStore, username: str, client_ip: str) -> None:
    """A correct password from this address: clear the pair and remember the address."""
    address = address_of(client_ip)
    await store.delete(_pair_key(username, address))
    await store.put(f"login-known:{_account(username)}:{address}", b"1", KNOWN_ADDRESS_TTL)
