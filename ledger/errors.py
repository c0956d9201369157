"""Typed ledger errors, each with a stable ``code`` that callers can map to responses."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every ledger failure; ``code`` is stable, the message is for humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class WriterRejected(LedgerError):
    """The writer is unknown, withdrawn, or its signature does not hold (codes ``writer.*``)."""


class InvalidEntry(LedgerError):
    """An entry, batch or leaf is malformed (codes ``entry.*``)."""


class InvalidProof(LedgerError):
    """A Merkle proof, receipt, tree head or history does not verify (codes ``proof.*``,
    ``receipt.*``, ``block.*``, ``history.*``)."""


class NotFound(LedgerError):
    """No such entry, block or tree size (codes ``notfound.*``)."""


class NotYetSealed(LedgerError):
    """The entry exists but no sealed block covers it yet; retry after the next seal."""

    def __init__(self, message: str) -> None:
        super().__init__("entry.not_sealed", message)


class Unavailable(LedgerError):
    """The stored log lacks what the answer needs (e.g. Merkle tiles): an operator must repair it
    (codes ``ledger.*``); the audit names what is missing."""


class AnchorError(LedgerError):
    """The chain refused or could not be reached (codes ``anchor.*``)."""
