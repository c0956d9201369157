"""The error catalogue: every failure a client can see, with a stable code, an HTTP status and a
message in zh-CN and en, returned as RFC 9457 ``application/problem+json``.

Services raise :class:`AppError` with a catalogue code; the exception handlers here turn it (and
every framework error: unknown route, wrong method, malformed JSON, oversized body) into a problem
response.  Nothing else in the code base builds error responses.
"""

from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from ecard.edge import SECURITY_HEADER_STRINGS

log = logging.getLogger("ecard.errors")

PROBLEM_JSON = "application/problem+json"


class ErrorSpec(NamedTuple):
    status: int
    zh: str
    en: str
    #: OAuth 2.0 / OIDC errors also carry RFC 6749 ``error`` and ``error_description`` members, so
    #: standard client libraries read them while other clients read the problem document.
    oauth: bool = False


CATALOGUE: dict[str, ErrorSpec] = {
    # generic request problems
    "not_found": ErrorSpec(404, "请求的资源不存在", "The requested resource does not exist"),
    "method_not_allowed": ErrorSpec(
        405, "不支持该请求方法", "This method is not allowed on this resource"
    ),
    "malformed_request": ErrorSpec(
        400, "请求格式错误", "The request body or parameters are malformed"
    ),
    "body_too_deep": ErrorSpec(
        400, "请求体嵌套层级过深", "The JSON request body is nested too deeply"
    ),
    "validation_failed": ErrorSpec(400, "请求参数校验失败", "The request failed validation"),
    "body_too_large": ErrorSpec(413, "请求体过大", "The request body is too large"),
    "unsupported_media_type": ErrorSpec(415, "不支持的内容类型", "Unsupported content type"),
    "rate_limited": ErrorSpec(429, "请求过于频繁，请稍后再试", "Too many requests; retry later"),
    "idempotency_conflict": ErrorSpec(
        409,
        "幂等键已用于不同的请求",
        "The Idempotency-Key was already used for a different request",
    ),
    "internal_error": ErrorSpec(500, "服务内部错误", "Internal server error"),
    "store_unavailable": ErrorSpec(
        503, "临时存储不可用，请稍后重试", "The ephemeral store is unavailable; retry later"
    ),
    "database_unavailable": ErrorSpec(
        503, "数据库不可用，请稍后重试", "The database is unavailable; retry later"
    ),
    "key_provider_unavailable": ErrorSpec(
        503,
        "密钥服务（密码机）暂不可用，请稍后重试",
        "The key store (HSM) is unavailable; retry later",
    ),
    # authentication and authorization
    "unauthenticated": ErrorSpec(401, "需要身份认证", "Authentication is required"),
    "invalid_credentials": ErrorSpec(401, "凭据无效", "The credentials are invalid"),
    "token_invalid": ErrorSpec(
        401, "令牌无效、已过期或已撤销", "The token is invalid, expired or revoked"
    ),
    # holder sessions bound to a device key (DPoP, RFC 9449; docs/holder-sessions.md)
    "invalid_dpop_proof": ErrorSpec(
        401,
        "设备密钥证明（DPoP）缺失或无效",
        "The DPoP proof is missing, invalid, replayed or from another key",
        oauth=True,
    ),
    "use_dpop_nonce": ErrorSpec(
        401,
        "请使用服务端下发的 DPoP-Nonce 重新生成证明",
        "Make the DPoP proof again with the server's DPoP-Nonce",
        oauth=True,
    ),
    "dpop_required": ErrorSpec(
        400,
        "本省要求会话绑定设备密钥，请提供 dpop_jkt",
        "This platform requires device-bound sessions: send dpop_jkt",
    ),
    "session_not_found": ErrorSpec(
        404, "会话不存在或已结束", "No such live session of this holder"
    ),
    "forbidden": ErrorSpec(403, "无权执行该操作", "You are not allowed to do this"),
    # registry
    "invalid_identity_number": ErrorSpec(
        400,
        "身份证号码格式或校验位错误",
        "The identity number is malformed or its check digit is wrong",
    ),
    "invalid_region_code": ErrorSpec(400, "行政区划代码无效", "Unknown administrative region code"),
    "person_exists": ErrorSpec(
        409, "该人员已存在", "A person with this identity number already exists"
    ),
    "person_not_found": ErrorSpec(404, "人员不存在", "No such person"),
    "card_exists": ErrorSpec(409, "该卡号已存在", "A card with this number already exists"),
    "card_not_found": ErrorSpec(404, "社保卡不存在", "No such card"),
    "card_already_active": ErrorSpec(
        409, "该人员已有在用社保卡", "The person already holds an active card in this region"
    ),
    "invalid_status_transition": ErrorSpec(
        409, "不允许的卡状态变更", "This card status change is not allowed"
    ),
    "status_changed_concurrently": ErrorSpec(
        409,
        "卡状态已被他人修改，请刷新后重试",
        "The card status was changed concurrently; reload and retry",
    ),
    "card_not_active": ErrorSpec(403, "社保卡状态异常，不可使用", "The card is not active"),
    "card_expired": ErrorSpec(
        403, "社保卡已过有效期，请换领新卡", "The card has expired; it must be renewed"
    ),
    "loss_is_formal": ErrorSpec(
        409,
        "社保卡已正式挂失，请到服务网点解挂或补卡",
        "The loss is formal: undo it or replace the card at an outlet",
    ),
    "replacement_not_requested": ErrorSpec(
        409, "请先提交补换卡申请", "Request a replacement for this card first"
    ),
    "stock_card_invalid": ErrorSpec(
        409, "库存卡不属于该持卡人或状态不符", "The stock card is not this person's or not in stock"
    ),
    "card_batch_invalid": ErrorSpec(
        400,
        "批次中有不合格的卡，整批未写入",
        "Some cards of the batch are invalid; nothing was written",
    ),
    "card_batch_not_found": ErrorSpec(404, "库存卡批次不存在", "No such card batch"),
    "death_records_invalid": ErrorSpec(
        400, "死亡人员文件格式错误", "The death records file is malformed (its header or encoding)"
    ),
    "death_records_too_large": ErrorSpec(
        413,
        "死亡人员文件过大，请分批导入",
        "The death records file has too many bytes or rows; split it",
    ),
    "identity_mismatch": ErrorSpec(
        403,
        "姓名、身份证号与卡号不匹配",
        "Name, identity number and card number do not match an active card",
    ),
    "ecard_not_found": ErrorSpec(404, "电子社保卡不存在", "No such e-card"),
    "ecard_not_active": ErrorSpec(
        403, "电子社保卡已解绑或不可用", "The e-card is unbound or not active"
    ),
    "channel_not_found": ErrorSpec(404, "渠道不存在", "No such channel"),
    "channel_exists": ErrorSpec(409, "渠道已存在", "A channel with this name already exists"),
    "channel_region_not_served": ErrorSpec(
        403, "该渠道未开通此地区的服务", "This channel does not serve the card's region"
    ),
    "operator_exists": ErrorSpec(409, "操作员已存在", "An operator with this name already exists"),
    # the trusted front door: 实人 evidence and the 电子社保卡密码 (docs/front-door.md)
    "evidence_required": ErrorSpec(
        400,
        "签发须提供渠道的实人核验凭证",
        "Issuing needs the channel's live-person evidence (evidence)",
    ),
    "evidence_invalid": ErrorSpec(
        400,
        "实人核验凭证无效、过期或已使用",
        "The live-person evidence is malformed, not genuine, stale, reused or not this applicant's",
    ),
    "evidence_method_not_accepted": ErrorSpec(
        400,
        "本省不接受该实人核验方式",
        "The card's province does not accept this live-person check method",
    ),
    "evidence_key_missing": ErrorSpec(
        403,
        "渠道未登记签名公钥，不能签发",
        "The channel has no usable registered key to sign evidence: it cannot issue",
    ),
    "password_required": ErrorSpec(
        400,
        "此操作需要输入电子社保卡密码",
        "This step needs the holder's e-card password (password)",
    ),
    "password_not_set": ErrorSpec(
        409, "尚未设置电子社保卡密码", "The holder has not set an e-card password yet"
    ),
    "password_already_set": ErrorSpec(
        409,
        "电子社保卡密码已设置，如需更改请通过实人核验重置",
        "The e-card password is set; reset it through a live-person check",
    ),
    "password_too_weak": ErrorSpec(
        400,
        "密码过于简单（重复、连续数字或出生日期）",
        "The password is trivial (one digit repeated, a run, or the birth date)",
    ),
    "password_invalid": ErrorSpec(403, "电子社保卡密码错误", "The e-card password is wrong"),
    "password_locked": ErrorSpec(
        429,
        "密码错误次数过多，已暂时锁定",
        "Too many wrong passwords: locked; retry after Retry-After seconds",
    ),
    # OAuth 2.0 / OpenID Connect (RFC 6749 §5.2, RFC 8628 §3.5, RFC 6750 §3.1)
    "invalid_request": ErrorSpec(
        400, "请求参数缺失或无效", "The request is missing a parameter or is invalid", True
    ),
    "invalid_client": ErrorSpec(401, "客户端认证失败", "Client authentication failed", True),
    "invalid_grant": ErrorSpec(
        400,
        "授权码或刷新令牌无效、已过期或已使用",
        "The grant is invalid, expired or already used",
        True,
    ),
    "unauthorized_client": ErrorSpec(
        400, "该客户端无权使用此授权方式", "The client may not use this grant type", True
    ),
    "unsupported_grant_type": ErrorSpec(400, "不支持的授权类型", "Unsupported grant type", True),
    "unsupported_response_type": ErrorSpec(
        400, "不支持的响应类型", "Unsupported response type", True
    ),
    "invalid_scope": ErrorSpec(
        400,
        "请求的权限范围无效或超出备案范围",
        "The scope is invalid or beyond what the client may ask",
        True,
    ),
    "access_denied": ErrorSpec(403, "持卡人拒绝了授权", "The holder denied the request", True),
    "invalid_token": ErrorSpec(401, "访问令牌无效", "The access token is invalid", True),
    "invalid_authorization_details": ErrorSpec(  # RFC 9396 §5
        400,
        "授权详情（authorization_details）无效或超出备案范围",
        "The authorization_details are invalid or beyond what the client may ask",
        True,
    ),
    "insufficient_scope": ErrorSpec(
        403, "访问令牌的权限范围不足", "The access token's scope is insufficient", True
    ),
    "authorization_pending": ErrorSpec(
        400, "等待持卡人确认", "Waiting for the holder to approve", True
    ),
    "slow_down": ErrorSpec(400, "轮询过于频繁", "Polling too fast; slow down", True),
    # RFC 6749 has no code for a rate limit; temporarily_unavailable (§4.1.2.1) is what OAuth
    # clients know to retry, and Retry-After says when
    "temporarily_unavailable": ErrorSpec(
        429, "请求过于频繁，请稍后再试", "Too many requests; retry after Retry-After seconds", True
    ),
    "expired_token": ErrorSpec(400, "设备码已过期", "The device code has expired", True),
    "client_not_live": ErrorSpec(
        403, "该应用未完成备案或已停用", "This client is not filed, approved and live", True
    ),
    "login_session_not_found": ErrorSpec(
        404, "登录二维码不存在或已过期", "The login QR session does not exist or has expired"
    ),
    "login_session_answered": ErrorSpec(
        409, "该登录请求已处理", "This login session was already answered"
    ),
    "login_required": ErrorSpec(
        400,
        "需要持卡人扫码登录",
        "The holder must log in by scanning; prompt=none cannot be met",
        True,
    ),
    "request_not_supported": ErrorSpec(
        400, "不支持请求对象参数", "Request objects (request, request_uri) are not supported", True
    ),
    "invalid_redirect_uri": ErrorSpec(
        400, "回调地址与备案不一致", "The redirect URI does not exactly match a filed one", True
    ),
    "invalid_client_metadata": ErrorSpec(
        400, "应用备案信息无效", "The client filing is invalid", True
    ),
    "oidc_client_not_found": ErrorSpec(404, "应用不存在", "No such relying party"),
    "client_status_conflict": ErrorSpec(
        409, "应用备案状态不允许该操作", "The client's filing status does not allow this"
    ),
    # the application catalogue (docs/partners.md)
    "application_not_found": ErrorSpec(404, "备案应用不存在", "No such filed application"),
    "application_exists": ErrorSpec(
        409, "同名应用已备案", "An application with this name is already filed"
    ),
    "entitlement_unknown": ErrorSpec(
        400,
        "权限不在目录中（字段、授权范围、用途或登录范围）",
        "An entitlement is not in its catalogue (fields, scopes, purposes or login scopes)",
    ),
    "credential_not_found": ErrorSpec(
        404, "凭据不存在或已停用", "No such credential of this application, or it already ended"
    ),
    # codes and verification
    "code_signing_unavailable": ErrorSpec(
        503, "该地区暂无可用的签名密钥", "No active signing key for the card's region; retry later"
    ),
    "code_too_large": ErrorSpec(
        400, "二维码内容超出可编码范围", "The code does not fit in a QR symbol at this level"
    ),
    "revocation_version_not_found": ErrorSpec(
        404, "该版本的黑名单不存在", "No revocation list of this version exists"
    ),
    "peer_unavailable": ErrorSpec(
        503,
        "发卡地平台暂不可用，请稍后重试",
        "The issuing province's platform is unavailable; retry later",
    ),
    # consent and ledger
    "consent_scope_unknown": ErrorSpec(400, "请求的数据范围不存在", "Unknown data scope"),
    "consent_scope_not_allowed": ErrorSpec(
        403, "该应用未获准申请此数据范围", "This relying party may not ask for this data scope"
    ),
    "consent_purpose_unknown": ErrorSpec(
        400, "用途代码无效或用途说明不足", "Unknown purpose code, or the purpose text is missing"
    ),
    "consent_purpose_not_filed": ErrorSpec(
        403,
        "该应用备案的用途不含此用途",
        "This relying party is not filed for this purpose",
    ),
    "consent_duration_out_of_range": ErrorSpec(
        400, "授权期限超出允许范围", "The grant duration is outside the allowed range"
    ),
    "consent_not_found": ErrorSpec(
        404, "授权申请或授权不存在", "No such authorization request or grant"
    ),
    "consent_already_answered": ErrorSpec(
        409, "该授权申请已处理", "This authorization request was already answered"
    ),
    "consent_request_expired": ErrorSpec(
        409, "授权申请已过期", "This authorization request has lapsed"
    ),
    "consent_scopes_not_requested": ErrorSpec(
        400, "只能同意申请中的数据范围", "Only requested scopes can be approved"
    ),
    "consent_not_granted": ErrorSpec(
        403, "持卡人未同意该授权", "The holder has not granted this request"
    ),
    "consent_revoked": ErrorSpec(403, "授权已被持卡人撤销", "The holder revoked this grant"),
    "consent_expired": ErrorSpec(403, "授权已过期", "This grant has expired"),
    "consent_scope_not_granted": ErrorSpec(
        403, "授权不包含所请求的数据范围", "The grant does not cover the requested scopes"
    ),
    "authorization_not_found": ErrorSpec(
        404, "该登录或授权不存在", "No such login or grant of this holder"
    ),
    "consent_not_revocable": ErrorSpec(
        409, "该授权不在有效期内，无需撤销", "Only a live grant can be revoked"
    ),
    "ledger_entry_pending": ErrorSpec(
        409, "区块链存证尚未完成，请稍后重试", "The ledger entry is not sealed yet; retry shortly"
    ),
    "ledger_unavailable": ErrorSpec(
        503,
        "区块链存证暂不可用，请稍后重试",
        "The ledger cannot produce this proof now; retry later",
    ),
    "ledger_receipt_invalid": ErrorSpec(
        400, "存证回执无效或与账本不符", "The ledger receipt is malformed, not genuine or not kept"
    ),
    # the holder's timeline
    "timeline_cursor_invalid": ErrorSpec(
        400,
        "翻页游标无效，请从第一页重新查询",
        "The paging cursor is not one this service gave; start from the first page",
    ),
    # terminals
    "terminal_not_found": ErrorSpec(404, "终端不存在", "No such terminal"),
    "terminal_disabled": ErrorSpec(403, "终端已停用", "This terminal is disabled"),
    "terminal_signature_invalid": ErrorSpec(
        401,
        "终端请求签名无效",
        "The terminal request signature is missing, malformed or not the terminal's",
    ),
    "terminal_request_stale": ErrorSpec(
        401,
        "终端请求时间超出允许范围",
        "The terminal request time is too far from the platform clock",
    ),
    "terminal_request_replayed": ErrorSpec(
        401, "终端请求重放", "This signed terminal request was already used"
    ),
    "terminal_apdu_invalid": ErrorSpec(
        400,
        "终端转发的卡片应答格式错误",
        "A relayed card response (APDU, TLV or record) is malformed",
    ),
    "card_answer_refused": ErrorSpec(
        400, "卡片拒绝了该指令", "The card answered the relayed command with an error status word"
    ),
    "card_authentication_failed": ErrorSpec(
        403,
        "卡片认证失败，可能为伪卡",
        "Card authentication failed: the answer is not the genuine card's",
    ),
    "card_challenge_replayed": ErrorSpec(
        409, "卡片认证挑战数已使用", "This card challenge was already used"
    ),
    "card_not_on_chip": ErrorSpec(
        409,
        "该卡数据无法写入芯片卡模型",
        "This registry card's data does not fit the chip card model",
    ),
    "hce_device_key_invalid": ErrorSpec(
        400, "设备公钥无效", "The device public key is not a P-256 public JWK"
    ),
    "terminal_records_invalid": ErrorSpec(
        400, "脱机交易记录格式错误", "The uploaded offline records are malformed"
    ),
    # keys
    "key_not_found": ErrorSpec(404, "密钥不存在", "No such key"),
    "key_state_conflict": ErrorSpec(
        409, "密钥状态不允许该操作", "The key's state does not allow this"
    ),
    # partner webhooks
    "webhook_url_invalid": ErrorSpec(
        400,
        "回调地址无效（须为 https，且不含凭据或片段）",
        "The webhook URL is not allowed (https, no credentials, no fragment)",
    ),
    "webhook_not_configured": ErrorSpec(
        404, "该客户端未配置回调地址", "This client has no webhook endpoint"
    ),
    "webhook_delivery_not_found": ErrorSpec(404, "回调投递记录不存在", "No such webhook delivery"),
    "webhook_delivery_not_failed": ErrorSpec(
        409, "仅可重新投递已最终失败的回调", "Only a permanently failed delivery can be redelivered"
    ),
    # the service zone's directory (docs/directory.md)
    "invalid_uscc": ErrorSpec(
        400,
        "统一社会信用代码格式或校验码错误",
        "The unified social credit code is malformed or its check character is wrong",
    ),
    "directory_entry_invalid": ErrorSpec(
        400, "目录条目信息无效", "The directory entry is invalid (kind, hours …)"
    ),
    "directory_url_invalid": ErrorSpec(
        400,
        "线上入口须为 https 地址且不含凭据",
        "The entry URL must be https:// without credentials",
    ),
    "directory_scenario_unknown": ErrorSpec(400, "应用场景代码无效", "Unknown scenario code"),
    "directory_medium_unknown": ErrorSpec(400, "用卡介质代码无效", "Unknown medium code"),
    "directory_location_invalid": ErrorSpec(
        400,
        "位置参数无效（纬度、经度、半径）",
        "The location is invalid (lat and lon in China, a radius of 1 m to 50 km)",
    ),
    "directory_query_invalid": ErrorSpec(
        400, "目录查询参数无效", "A directory query parameter is invalid"
    ),
    "directory_foreign_province": ErrorSpec(
        400,
        "该省份的目录由其本省平台发布",
        "Entries of another province are published by that province's platform",
    ),
    "directory_filing_not_found": ErrorSpec(404, "应用备案不存在", "No such filed application"),
    "directory_application_not_found": ErrorSpec(
        404, "服务专区中没有该应用", "No such application in the directory"
    ),
    "directory_institution_not_found": ErrorSpec(
        404, "服务专区中没有该机构", "No such institution in the directory"
    ),
    "directory_terminal_invalid": ErrorSpec(
        400,
        "终端不存在或不属于该机构所在省份",
        "A linked terminal does not exist or is registered in another province",
    ),
    "directory_feed_since_invalid": ErrorSpec(
        400, "目录版本号超出已发布范围", "since is after the latest published directory version"
    ),
    # usage statistics (docs/statistics.md)
    "statistics_query_invalid": ErrorSpec(
        400,
        "统计查询参数无效（日期格式为 YYYY-MM-DD，起始不晚于截止）",
        "A statistics query parameter is invalid (dates are YYYY-MM-DD, since ≤ until)",
    ),
    "statistics_range_too_large": ErrorSpec(
        400, "统计查询的时间范围过大", "The statistics query covers too many days"
    ),
    "statistics_dimension_unknown": ErrorSpec(
        400, "统计分组维度无效", "Unknown or repeated statistics group-by dimension"
    ),
    "statistics_too_many_cells": ErrorSpec(
        400,
        "统计查询的分组单元过多，请缩小范围或减少维度",
        "The query would have too many cells; narrow the range or the dimensions",
    ),
    "statistics_epsilon_invalid": ErrorSpec(
        400, "隐私预算参数 epsilon 超出允许范围", "epsilon is outside the allowed range"
    ),
    "statistics_field_unknown": ErrorSpec(400, "一卡通领域代码无效", "Unknown 一卡通 field code"),
    "statistics_not_granted": ErrorSpec(
        403,
        "该部门未获授权查询用卡统计或该领域",
        "This department is not granted usage statistics (or this field)",
    ),
    "statistics_region_not_entitled": ErrorSpec(
        403, "该部门无权查询该地区的统计", "This department may not query this region"
    ),
    "statistics_budget_exhausted": ErrorSpec(
        403,
        "该部门在所查询月份的隐私预算已用尽",
        "The department's privacy budget for a month of this query is exhausted",
    ),
    "statistics_department_not_found": ErrorSpec(
        404, "没有该部门备案", "No department filing with this id"
    ),
    # the operator console (docs/console.md)
    "console_csrf_failed": ErrorSpec(
        403,
        "表单已失效或并非来自本控制台，请刷新页面后重试",
        "The form is stale or did not come from this console; reload the page and try again",
    ),
}


class AppError(Exception):
    """A failure with a catalogue code; ``detail`` is extra, non-personal context for the client."""

    def __init__(
        self,
        code: str,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if code not in CATALOGUE:
            raise KeyError(f"error code {code!r} is not in the catalogue")
        super().__init__(detail or CATALOGUE[code].en)
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra or {}

    @property
    def status(self) -> int:
        return CATALOGUE[self.code].status


def rate_limited(retry_after: float, code: str = "rate_limited") -> AppError:
    """The one rate-limit refusal: 429 ``rate_limited`` (``temporarily_unavailable`` on OAuth
    endpoints) with ``Retry-After`` in whole seconds, rounded up, at least 1."""
    return AppError(code, headers={"Retry-After": str(max(1, math.ceil(retry_after - 1e-6)))})


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details, with the catalogue code and both languages' titles."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None
    error: str | None = None
    error_description: str | None = None


def preferred_language(accept_language: str | None) -> str:
    """``en`` when the client prefers English over Chinese, else ``zh-CN`` (the default)."""
    best_lang, best_q = "zh-CN", 0.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = "en" if tag.startswith("en") else "zh-CN" if tag.startswith("zh") else None
        if lang and q > best_q:
            best_lang, best_q = lang, q
    return best_lang


def problem_response(
    request: Request | None,
    code: str,
    detail: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> Response[Problem]:
    spec = CATALOGUE[code]
    lang = preferred_language(request.headers.get("accept-language") if request else None)
    problem = Problem(
        type=f"/problems/{code}",
        title=spec.zh if lang == "zh-CN" else spec.en,
        status=spec.status,
        code=code,
        detail=detail,
        instance=request.url.path if request else None,
        request_id=request.scope.get("state", {}).get("request_id") if request else None,
        errors=errors,
        error=code if spec.oauth else None,
        error_description=(detail or spec.en) if spec.oauth else None,
    )
    return Response(
        problem,
        status_code=spec.status,
        media_type=PROBLEM_JSON,
        headers={**SECURITY_HEADER_STRINGS, "Content-Language": lang, **(headers or {})},
    )


def _app_error_handler(request: Request, exc: AppError) -> Response[Problem]:
    return problem_response(
        request, exc.code, exc.detail, headers=exc.headers, errors=exc.extra.get("errors")
    )


_STATUS_CODES = {
    400: "malformed_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "database_unavailable",
}


def _http_exception_handler(request: Request, exc: HTTPException) -> Response[Problem]:
    if isinstance(exc, ValidationException):
        return _validation_problem(request, exc)
    if isinstance(exc, NotFoundException):
        return problem_response(request, "not_found")
    if isinstance(exc, MethodNotAllowedException):
        return problem_response(request, "method_not_allowed", headers=exc.headers)
    code = _STATUS_CODES.get(exc.status_code)
    if code is None:
        return _internal_error_handler(request, exc)
    return problem_response(request, code, headers=exc.headers)


def _validation_problem(request: Request, exc: ValidationException) -> Response[Problem]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    errors = [
        {
            "message": str(item.get("message", "")),
            "key": item.get("key"),
            "source": item.get("source"),
        }
        for item in extra
        if isinstance(item, dict)
    ]
    detail = str(exc.detail) if exc.detail else None
    malformed = detail is not None and "malformed" in detail.lower()
    code = "malformed_request" if malformed else "validation_failed"
    return problem_response(request, code, detail, errors=errors or None)


def _is_unstorable_text(exc: Exception) -> bool:
    """PostgreSQL refused text from the request (SQLSTATE 22021, a NUL byte; 22P05, a character
    the encoding lacks).  JSON bodies are checked before (``ecard.bodies``); this answers the same
    for what arrives another way (forms, query and path parameters)."""
    return getattr(exc, "sqlstate", None) in {"22021", "22P05"}


def _internal_error_handler(request: Request, exc: Exception) -> Response[Problem]:
    from ecard.crypto.provider import KeyProviderError
    from ecard.store.db import DatabaseUnavailable
    from ecard.store.ephemeral import StoreUnavailable

    if isinstance(exc, StoreUnavailable):
        return problem_response(request, "store_unavailable", headers={"Retry-After": "5"})
    if isinstance(exc, KeyProviderError):  # the HSM: unreachable, PIN refused, key missing
        log.error("key provider unavailable: %s", exc, extra={"path": request.url.path})
        return problem_response(request, "key_provider_unavailable", headers={"Retry-After": "5"})
    if isinstance(exc, DatabaseUnavailable):
        return problem_response(request, "database_unavailable", headers={"Retry-After": "5"})
    if _is_unstorable_text(exc):  # a NUL in a form field or parameter: the input is wrong, not us
        log.warning(
            "input text the database cannot store",
            extra={"path": request.url.path, "method": request.method},
        )
        return problem_response(
            request, "validation_failed", "text must not contain NUL (U+0000) characters"
        )
    log.error(
        "unhandled error",
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"path": request.url.path, "method": request.method},
    )
    return problem_response(request, "internal_error")


EXCEPTION_HANDLERS = {
    AppError: _app_error_handler,
    HTTPException: _http_exception_handler,
    HTTP_500_INTERNAL_SERVER_ERROR: _internal_error_handler,
    Exception: _internal_error_handler,
}


def exception_response(request: Request, exc: Exception) -> Response[Problem]:
    """The problem response Litestar's exception handling would give, for code outside it."""
    handler = next(
        EXCEPTION_HANDLERS[cls] for cls in type(exc).__mro__ if cls in EXCEPTION_HANDLERS
    )
    return handler(request, exc)  # type: ignore[operator]
