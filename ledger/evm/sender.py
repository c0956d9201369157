"""Who sends the anchoring transactions: the node's unlocked account (development nodes) or an
account whose key the platform holds, signing locally (:class:`LocalSigner`, production).

A production node (Besu, GoQuorum) holds no keys, so :class:`LocalSigner` builds every transaction
itself:

- **chain id** (EIP-155) read from the node once per signer and put in every signature;
- **nonce** = the node's ``pending`` transaction count of the account, read before each send, so
  a restarted process (or another worker taking over) continues where the account is, not where
  a memory says.  Sends are serialised by the anchor outbox (one pass at a time), which is what
  makes "read the pending count, then send" safe;
- **fees** by :data:`GasMode`: ``free`` (legacy transaction, ``gasPrice`` 0: a permissioned Besu
  network with ``--min-gas-price=0``), ``legacy`` (``eth_gasPrice``), ``eip1559`` (the node's
  priority fee and twice the latest base fee), ``auto`` (``eip1559`` when the latest block has a
  base fee, else ``legacy``);
- **stuck transactions** (still in the pool ``replace_after`` seconds after this signer first saw
  them) are replaced: same nonce, same call, fees raised by ``fee_bump`` (at least the node's
  current fees), never above ``max_fee_wei``.  A free (zero-price) transaction cannot be outbid,
  so it is left to the network.

The private key is only ever held by the ``LocalAccount``; nothing here logs or returns it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Literal

from eth_account.signers.local import LocalAccount
from web3 import AsyncWeb3

GasMode = Literal["auto", "free", "legacy", "eip1559"]
GAS_MODES: tuple[GasMode, ...] = ("auto", "free", "legacy", "eip1559")
#: gas limit used when the node cannot estimate a call because earlier transactions of the same
#: account are still in the pool (``anchor(n + 1)`` reverts against a state without ``n``); the
#: contract's ``anchor`` uses well under 100k gas
FALLBACK_GAS_LIMIT = 200_000
logger = logging.getLogger("ledger.anchor")


class NodeAccount:
    """The node's own (unlocked) account sends: development nodes such as anvil only."""

    local = False

    def __init__(self, address: str) -> None:
        self.address = AsyncWeb3.to_checksum_address(address)

    async def transact(self, w3: AsyncWeb3[Any], call: Any, *, in_flight: bool = False) -> str:
        tx_hash = await call.transact({"from": self.address})
        hex_hash: str = tx_hash.to_0x_hex()
        return hex_hash


class LocalSigner:
    """Signs transactions for ``account`` locally and sends them raw (see the module docstring)."""

    local = True

    def __init__(
        self,
        account: LocalAccount,
        *,
        gas: GasMode = "auto",
        replace_after: float = 120.0,
        fee_bump: float = 1.25,
        max_fee_wei: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if gas not in GAS_MODES:
            raise ValueError(f"unknown gas mode {gas!r}; expected one of {', '.join(GAS_MODES)}")
        if fee_bump < 1.1:  # geth and Besu refuse a replacement priced less than 10 % higher
            raise ValueError("fee_bump must be at least 1.1")
        self.account = account
        self.address = account.address
        self.gas = gas
        self.replace_after = replace_after
        self.fee_bump = fee_bump
        self.max_fee_wei = max_fee_wei
        self.clock = clock
        self._chain_id: int | None = None
        self._first_seen: dict[str, float] = {}
        self._blocked_since: float | None = None

    def __repr__(self) -> str:  # never the key
        return f"LocalSigner({self.address}, gas={self.gas!r})"

    async def chain_id(self, w3: AsyncWeb3[Any]) -> int:
        if self._chain_id is None:
            self._chain_id = int(await w3.eth.chain_id)
        return self._chain_id

    async def next_nonce(self, w3: AsyncWeb3[Any]) -> int:
        return int(await w3.eth.get_transaction_count(self.address, "pending"))

    async def in_flight(self, w3: AsyncWeb3[Any]) -> int:
        """How many of this account's transactions the node holds unmined (pending - latest)."""
        pending = await w3.eth.get_transaction_count(self.address, "pending")
        latest = await w3.eth.get_transaction_count(self.address, "latest")
        return max(0, int(pending) - int(latest))

    async def fees(self, w3: AsyncWeb3[Any]) -> dict[str, int]:
        """The fee fields of a new transaction under this signer's gas mode."""
        mode = self.gas
        if mode == "free":
            return {"gasPrice": 0}
        if mode in ("auto", "eip1559"):
            block = await w3.eth.get_block("latest")
            base = block.get("baseFeePerGas")
            if base is None and mode == "eip1559":
                raise ValueError("the chain has no base fee (pre-London): use gas mode legacy")
            if base is not None:
                try:
                    tip = int(await w3.eth.max_priority_fee)
                except (ValueError, NotImplementedError):  # a node without the method
                    tip = 0
                fees = {"maxFeePerGas": 2 * int(base) + tip, "maxPriorityFeePerGas": tip}
                return self._capped(fees)
        return self._capped({"gasPrice": int(await w3.eth.gas_price)})

    def _capped(self, fees: dict[str, int]) -> dict[str, int]:
        if self.max_fee_wei is None:
            return fees
        capped = {name: min(value, self.max_fee_wei) for name, value in fees.items()}
        if "maxPriorityFeePerGas" in capped:
            capped["maxPriorityFeePerGas"] = min(
                capped["maxPriorityFeePerGas"], capped["maxFeePerGas"]
            )
        return capped

    async def transact(self, w3: AsyncWeb3[Any], call: Any, *, in_flight: bool = False) -> str:
        """Sign and send ``call`` (a contract function call or constructor) with the next nonce;
        ``in_flight`` says earlier transactions of this account are still unmined (the estimate
        may then revert, and the fallback gas limit is used)."""
        nonce = await self.next_nonce(w3)
        try:
            gas = math.ceil(int(await call.estimate_gas({"from": self.address})) * 1.2)
        except Exception:
            if not in_flight:
                raise
            gas = FALLBACK_GAS_LIMIT
        tx = await call.build_transaction(
            {
                "from": self.address,
                "nonce": nonce,
                "gas": gas,
                "chainId": await self.chain_id(w3),
                **(await self.fees(w3)),
            }
        )
        return await self._send(w3, tx)

    async def _send(self, w3: AsyncWeb3[Any], tx: dict[str, Any]) -> str:
        signed = self.account.sign_transaction(tx)
        tx_hash = (await w3.eth.send_raw_transaction(signed.raw_transaction)).to_0x_hex()
        self._first_seen[tx_hash] = self.clock()
        return tx_hash

    def due_for_replacement(self, tx_hash: str) -> bool:
        """True once ``tx_hash`` has been waiting ``replace_after`` seconds since this signer sent
        or first saw it (after a restart the wait starts again)."""
        now = self.clock()
        return now - self._first_seen.setdefault(tx_hash, now) >= self.replace_after

    def blocked_long_enough(self, blocked: bool) -> bool:
        """Track how long sending has waited for unrecorded in-flight transactions; True once
        that wait reached ``replace_after`` (then the signer sends after them anyway)."""
        if not blocked:
            self._blocked_since = None
            return False
        now = self.clock()
        if self._blocked_since is None:
            self._blocked_since = now
        return now - self._blocked_since >= self.replace_after

    async def replace(self, w3: AsyncWeb3[Any], tx_hash: str) -> str | None:
        """Send the same call with the same nonce and higher fees; None when it cannot be outbid
        (a zero price, the fee cap reached) or the node refuses it (e.g. the original was mined
        meanwhile: the caller then finds the original's receipt)."""
        old = await w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        if AsyncWeb3.to_checksum_address(old["from"]) != self.address:
            return None
        fresh = await self.fees(w3)
        tx: dict[str, Any] = {
            "from": self.address,
            "to": old["to"],
            "data": old["input"],
            "value": old["value"],
            "gas": old["gas"],
            "nonce": old["nonce"],
            "chainId": await self.chain_id(w3),
        }
        if old.get("maxFeePerGas") is not None:
            old_fee, old_tip = int(old["maxFeePerGas"]), int(old["maxPriorityFeePerGas"])
            fee = max(math.ceil(old_fee * self.fee_bump), fresh.get("maxFeePerGas", 0))
            tip = max(math.ceil(old_tip * self.fee_bump), fresh.get("maxPriorityFeePerGas", 0))
            if fee == 0 or (self.max_fee_wei is not None and fee > self.max_fee_wei):
                return None
            tx.update(maxFeePerGas=fee, maxPriorityFeePerGas=min(tip, fee))
        else:
            price = max(math.ceil(int(old["gasPrice"]) * self.fee_bump), fresh.get("gasPrice", 0))
            if price == 0 or (self.max_fee_wei is not None and price > self.max_fee_wei):
                return None
            tx["gasPrice"] = price
        try:
            new_hash = await self._send(w3, tx)
        except Exception as exc:  # noqa: BLE001 - nonce too low (the original was mined), underpriced
            logger.warning("replacing anchoring transaction %s refused: %s", tx_hash, exc)
            return None
        logger.warning(
            "anchoring transaction %s (nonce %d) was stuck; replaced by %s",
            tx_hash,
            old["nonce"],
            new_hash,
        )
        return new_hash
