"""The signed monthly report (数据回流), pure: signed and opened like the trust list and the
directory feed (a compact ES256 JWS by the platform root key, ``ecard.offline.documents``), and the
rules a receiver checks, one refusal per rule."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from ecard.offline.documents import open_document, sign_document
from ecard.statistics.release import MIN_K
from ecard.statistics.schemas import MonthlyReport

REPORT_TYPE = "ecard-statistics-report+json"


class ReportRefused(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def sign_report(report: MonthlyReport, root_private_key: ec.EllipticCurvePrivateKey) -> str:
    return sign_document(report, REPORT_TYPE, root_private_key)


def open_report(token: str, root_public_key: ec.EllipticCurvePublicKey) -> MonthlyReport:
    """The report if the token is one signed by the key, else ``OfflineError`` (bad signature,
    wrong type, malformed)."""
    return open_document(token, REPORT_TYPE, MonthlyReport, root_public_key)


def check_report(report: MonthlyReport, *, province: str | None = None) -> None:
    """After the signature: 1. it is of the expected province; 2. its threshold is at least 10;
    3. no cell is below its threshold (a report that breaks the release rules is not taken)."""
    if province is not None and report.province != province:
        raise ReportRefused("wrong_province", f"report of {report.province}, not {province}")
    if report.k < MIN_K:
        raise ReportRefused("threshold_too_low", f"k = {report.k}")
    for table in report.tables:
        for cell in table.cells:
            if cell.events < report.k or (cell.cards is not None and cell.cards < report.k):
                raise ReportRefused("cell_below_threshold", f"a cell of {table.group_by}")
