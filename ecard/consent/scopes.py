"""The catalogue of data scopes a relying party may ask for (精准授权), and of purpose codes.

Pure data: each scope names, in Chinese and English, the exact fields it releases, so the holder
approves fields, not vague categories, and the data API can release nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    id: str
    zh: str
    en: str
    fields: tuple[str, ...]


SCOPES: dict[str, Scope] = {
    scope.id: scope
    for scope in (
        Scope(
            "identity.basic",
            "基本身份信息",
            "Basic identity",
            ("name", "gender", "birth_date", "identity_number"),
        ),
        Scope(
            "card.status",
            "社保卡状态",
            "Social security card status",
            ("card_number_masked", "card_status", "issuer_region", "expiry_date"),
        ),
        Scope(
            "insurance.enrollment",
            "参保状态",
            "Social insurance enrollment",
            ("insurance_type", "status", "region", "since"),
        ),
        Scope(
            "employment.status",
            "就业状态",
            "Employment status",
            ("status", "employer", "since"),
        ),
        Scope(
            "benefit.payments",
            "待遇发放",
            "Benefit payments",
            ("benefit_type", "period", "amount_fen", "paid_on"),
        ),
    )
}

#: Why a relying party asks; ``other`` needs a purpose text that says more than the code.
PURPOSES: dict[str, tuple[str, str]] = {
    "employment_verification": ("就业与劳动关系核验", "Employment verification"),
    "loan_application": ("贷款申请审核", "Loan application"),
    "insurance_underwriting": ("商业保险核保", "Insurance underwriting"),
    "benefit_application": ("社保待遇申领", "Benefit application"),
    "medical_service": ("医疗服务", "Medical service"),
    "other": ("其他（见用途说明）", "Other (see the purpose text)"),
}

MIN_DURATION_SECONDS = 3600  # an hour: shorter grants expire before a human process completes
MAX_DURATION_SECONDS = 365 * 86_400  # a year: longer needs a fresh consent (PIPL: limited period)
REQUEST_TTL_SECONDS = 7 * 86_400  # an unanswered request lapses after a week


def unknown_scopes(requested: list[str]) -> list[str]:
    return [scope for scope in requested if scope not in SCOPES]
