"""What the console's pages say, in zh-CN and en, and which card actions an operator may offer
(pure: no I/O).  The actions come from the one table of card moves,
:data:`ecard.registry.lifecycle.TRANSITIONS`; nothing here decides what is allowed."""

from __future__ import annotations

from dataclasses import dataclass

from ecard.registry.lifecycle import TRANSITIONS, CardStatus

#: key -> (zh-CN, en)
TEXT: dict[str, tuple[str, str]] = {
    "console": ("电子社保卡运营控制台", "E-card operator console"),
    "home": ("首页", "Home"),
    "persons": ("持卡人与卡", "Persons & cards"),
    "filings": ("应用备案", "Filings"),
    "terminals": ("终端", "Terminals"),
    "institutions": ("用卡机构", "Institutions"),
    "packages": ("离线包版本", "Offline package"),
    "audit": ("审计日志", "Audit trail"),
    "ledger": ("账本审计", "Ledger audit"),
    "statistics": ("统计", "Statistics"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "username": ("账号", "Username"),
    "password": ("密码", "Password"),
    "role": ("角色", "Role"),
    "search": ("查询", "Search"),
    "reset": ("清除", "Clear"),
    "identity_number": ("身份证号", "Identity number"),
    "name": ("姓名", "Name"),
    "gender": ("性别", "Gender"),
    "ethnicity": ("民族", "Ethnicity"),
    "birth_date": ("出生日期", "Birth date"),
    "region": ("地区", "Region"),
    "created_at": ("创建时间", "Created"),
    "card_number": ("社保卡号", "Card number"),
    "chip_serial": ("芯片序列号", "Chip serial"),
    "identification_code": ("卡识别码", "Card identification code"),
    "issue_date": ("发卡日期", "Issued"),
    "expiry_date": ("有效期至", "Expires"),
    "status": ("状态", "Status"),
    "status_version": ("状态版本", "Status version"),
    "cards": ("社保卡", "Cards"),
    "history": ("状态历史", "Status history"),
    "actions": ("操作", "Actions"),
    "reason": ("原因", "Reason"),
    "actor": ("操作人", "Actor"),
    "at": ("时间", "Time"),
    "from_status": ("原状态", "From"),
    "to_status": ("新状态", "To"),
    "confirm": ("确认", "Confirm"),
    "cancel": ("取消", "Cancel"),
    "confirm_question": ("请确认是否执行以下操作", "Please confirm this action"),
    "masked_note": (
        "您的角色只能看到脱敏信息；按身份证号或姓名精确查询需要 pii:full 权限。",
        "Your role sees masked data only; exact search by identity number or name needs pii:full.",
    ),
    "no_results": ("没有符合条件的记录", "Nothing matches"),
    "total": ("共", "Total"),
    "previous": ("上一页", "Previous"),
    "next": ("下一页", "Next"),
    "details": ("详情", "Details"),
    "done": ("操作已完成", "Done"),
    "filing_queue": ("备案队列", "Filing queue"),
    "all": ("全部", "All"),
    "organisation": ("运营单位", "Organisation"),
    "capabilities": ("能力", "Capabilities"),
    "regions": ("服务地区", "Regions"),
    "entitlements": ("数据权限", "Entitlements"),
    "steps": ("流程记录", "Workflow steps"),
    "step": ("步骤", "Step"),
    "next_steps": ("可执行的步骤", "Steps available"),
    "credentials": ("凭据", "Credentials"),
    "rotate_secret": ("轮换密钥", "Rotate secret"),
    "add_key": ("登记新公钥", "Add public key"),
    "public_jwk": ("公钥（JWK）", "Public key (JWK)"),
    "overlap_seconds": ("旧凭据宽限期（秒）", "Overlap of earlier ones (seconds)"),
    "end": ("立即作废", "End now"),
    "copy": ("复制", "Copy"),
    "kind": ("类型", "Kind"),
    "state": ("状态", "State"),
    "not_after": ("失效时间", "Not after"),
    "new_secret": ("新的客户端密钥（仅显示这一次）", "New client secret (shown this once)"),
    "new_secret_note": (
        "请立即复制并安全地交给备案单位；离开本页后无法再次查看。",
        "Copy it now and hand it over securely: it cannot be shown again.",
    ),
    "register": ("登记", "Register"),
    "register_terminal": ("登记终端", "Register a terminal"),
    "institution": ("所属机构", "Institution"),
    "terminal_kind": ("终端类型", "Terminal kind"),
    "address": ("地址", "Address"),
    "disable": ("停用", "Disable"),
    "enable": ("启用", "Enable"),
    "reconciliation": ("对账与异常", "Reconciliation and anomalies"),
    "records": ("脱机记录", "Offline records"),
    "accepted": ("受理", "Accepted"),
    "refused": ("拒绝", "Refused"),
    "last_counter": ("最后计数器", "Last counter"),
    "gaps": ("计数缺口", "Counter gaps"),
    "anomalies": ("异常", "Anomalies"),
    "counter": ("计数器", "Counter"),
    "reference": ("引用", "Reference"),
    "found_at": ("发现时间", "Found"),
    "register_institution": ("登记机构", "Register an institution"),
    "uscc": ("统一社会信用代码", "Unified social credit code"),
    "name_zh": ("中文名称", "Name (Chinese)"),
    "name_en": ("英文名称", "Name (English)"),
    "address_zh": ("中文地址", "Address (Chinese)"),
    "address_en": ("英文地址", "Address (English)"),
    "lat": ("纬度", "Latitude"),
    "lon": ("经度", "Longitude"),
    "scenarios": ("场景", "Scenarios"),
    "media": ("用卡方式", "Media"),
    "terminal_ids": ("终端编号（逗号分隔）", "Terminal ids (comma separated)"),
    "package_version": ("离线包版本", "Package version"),
    "issued_at": ("签发时间", "Issued at"),
    "trust_list_version": ("信任列表版本", "Trust list version"),
    "revocation_list_version": ("黑名单版本", "Revocation list version"),
    "revoked_cards": ("芯片黑名单卡数", "Cards on the chip blacklist"),
    "revoked_pseudonyms": ("黑名单条目数", "Revocation list entries"),
    "max_offline_seconds": ("最长脱机时间（秒）", "Longest offline period (s)"),
    "max_offline_acceptances": ("脱机受理次数上限", "Offline acceptances before sync"),
    "accepted_kinds": ("脱机受理类型", "Accepted offline"),
    "issuers": ("发卡机构密钥", "Issuer keys"),
    "actor_filter": ("操作人（如 operator:…）", "Actor (e.g. operator:…)"),
    "subject": ("对象编号", "Subject id"),
    "action": ("动作", "Action"),
    "since": ("起始日期", "From date"),
    "until": ("截止日期", "To date"),
    "target": ("对象", "Target"),
    "detail": ("详情", "Detail"),
    "verify_ledger": ("完整核验账本与锚定", "Verify the whole log and its anchors"),
    "entries": ("条目", "Entries"),
    "blocks": ("区块", "Blocks"),
    "anchors_confirmed": ("已确认锚定", "Anchors confirmed"),
    "anchors_pending": ("待确认锚定", "Anchors pending"),
    "problems": ("问题", "Problems"),
    "chain_checked": ("已对照链上记录", "Checked against the chain"),
    "ledger_ok": ("账本完整，未发现篡改", "The log is intact: no tampering found"),
    "ledger_bad": ("账本核验发现问题", "The audit found problems"),
    "anchors": ("锚定记录", "Anchors"),
    "block": ("区块号", "Block"),
    "tree_size": ("树大小", "Tree size"),
    "tx_hash": ("交易哈希", "Transaction"),
    "confirmations": ("确认数", "Confirmations"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "welcome": ("欢迎", "Welcome"),
    "new_card": ("新卡信息", "The new card"),
    "stock_card_id": ("或：库存卡编号", "or: a stock card's id"),
    "note": ("备注", "Note"),
    "replacement_reason": ("补换原因", "Why"),
    "error": ("出错了", "Something went wrong"),
    "back": ("返回", "Back"),
    "page_not_allowed": ("您的角色无权查看此页", "Your role may not see this page"),
    "language": ("English", "中文"),
    "home_intro": (
        "从左侧菜单选择要处理的业务。所有查看个人信息的操作都会记入审计日志。",
        "Choose a task from the menu. Every view of personal data is recorded in the audit trail.",
    ),
    "sign_in_intro": (
        "使用运营人员账号登录。多次输错密码后需等待一段时间再试。",
        "Sign in with your operator account. After repeated wrong passwords, wait before retrying.",
    ),
    "retry_after": ("请在以下秒数后重试：", "Retry after seconds:"),
}

STATUS: dict[str, tuple[str, str]] = {
    "produced": ("已制卡", "produced"),
    "in_stock": ("库存", "in stock"),
    "issued": ("已发放", "issued"),
    "active": ("正常", "active"),
    "lost_temporary": ("临时挂失", "temporarily lost"),
    "lost": ("正式挂失", "lost"),
    "frozen": ("冻结", "frozen"),
    "replacement_pending": ("补换中", "replacement pending"),
    "replaced": ("已补换", "replaced"),
    "cancelled": ("已注销", "cancelled"),
    "deceased": ("死亡", "deceased"),
    # filings
    "submitted": ("已提交", "submitted"),
    "assessed": ("可行性评估通过", "assessed"),
    "security_tested": ("安全测试通过", "security tested"),
    "approved": ("已批准", "approved"),
    "live": ("已上线", "live"),
    "suspended": ("已暂停", "suspended"),
    "rejected": ("已驳回", "rejected"),
    # terminals, credentials, anchors
    "disabled": ("已停用", "disabled"),
    "current": ("当前", "current"),
    "overlap": ("宽限期", "overlap"),
    "ended": ("已作废", "ended"),
    "pending": ("待发送", "pending"),
    "sent": ("已发送", "sent"),
    "confirmed": ("已确认", "confirmed"),
    "conflict": ("冲突", "conflict"),
}

STEP: dict[str, tuple[str, str]] = {
    "submit": ("提交备案", "Filed"),
    "assess": ("可行性评估通过", "Pass the feasibility assessment"),
    "security_test": ("安全测试通过", "Pass the security test"),
    "approve": ("批准", "Approve"),
    "go_live": ("上线", "Go live"),
    "suspend": ("暂停", "Suspend"),
    "resume": ("恢复", "Resume"),
    "reject": ("驳回", "Reject"),
}

ROLE: dict[str, tuple[str, str]] = {
    "admin": ("管理员", "administrator"),
    "registry_admin": ("持卡库管理员", "registry administrator"),
    "auditor": ("审计员", "auditor"),
    "readonly": ("只读", "read-only"),
}

REPLACEMENT_REASON: dict[str, tuple[str, str]] = {
    "lost": ("丢失补领", "lost"),
    "damaged": ("损坏换领", "damaged"),
    "expired": ("到期换领", "expired"),
    "name_changed": ("姓名变更", "name changed"),
    "number_changed": ("证件号码变更", "number changed"),
    "other": ("其他", "other"),
}


@dataclass(frozen=True)
class CardAction:
    """One move an operator may make on a card now: where it leads and what it is called."""

    to: str
    zh: str
    en: str
    #: the operation that makes it: ``status`` (a status change), ``replacement_request`` or
    #: ``replace`` (the replacement operations, which take more than a reason)
    operation: str
    #: a move that cannot be undone (注销, 死亡)
    final: bool = False


def _action_name(current: CardStatus, target: CardStatus) -> tuple[str, str]:
    if target == CardStatus.ACTIVE:
        if current in (CardStatus.LOST, CardStatus.LOST_TEMPORARY):
            return "解挂", "Undo the loss (解挂)"
        if current == CardStatus.FROZEN:
            return "解冻", "Unfreeze"
        return "启用", "Activate"
    names = {
        CardStatus.LOST_TEMPORARY: ("临时挂失", "Report lost, temporarily (临时挂失)"),
        CardStatus.LOST: ("挂失", "Report lost (挂失)"),
        CardStatus.FROZEN: ("冻结", "Freeze"),
        CardStatus.REPLACEMENT_PENDING: ("申请补换卡", "Request a replacement (补换)"),
        CardStatus.REPLACED: ("补换新卡", "Replace with a new card"),
        CardStatus.CANCELLED: ("注销", "Cancel the card (注销)"),
        CardStatus.DECEASED: ("登记死亡", "Record the holder's death"),
        CardStatus.IN_STOCK: ("入库", "Put in stock"),
        CardStatus.ISSUED: ("发放", "Hand over"),
    }
    return names.get(target, (str(target), str(target)))


def card_actions(status: str) -> list[CardAction]:
    """The moves an operator may make from ``status``, by the lifecycle's table."""
    try:
        current = CardStatus(status)
    except ValueError:
        return []
    actions = []
    for target, actors in TRANSITIONS[current].items():
        if "operator" not in actors:
            continue
        zh, en = _action_name(current, target)
        operation = {
            CardStatus.REPLACEMENT_PENDING: "replacement_request",
            CardStatus.REPLACED: "replace",
        }.get(target, "status")
        actions.append(
            CardAction(
                to=str(target),
                zh=zh,
                en=en,
                operation=operation,
                final=target in (CardStatus.CANCELLED, CardStatus.DECEASED),
            )
        )
    return actions


def card_action(status: str, to: str) -> CardAction | None:
    return next((a for a in card_actions(status) if a.to == to), None)


class Translator:
    """``t(key)``, ``status(code)`` … in one language, for the templates."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._i = 1 if lang == "en" else 0

    def __call__(self, key: str) -> str:
        pair = TEXT.get(key)
        return pair[self._i] if pair else key

    def _of(self, table: dict[str, tuple[str, str]], code: str | None) -> str:
        if code is None:
            return "—"
        pair = table.get(code)
        return pair[self._i] if pair else code

    def status(self, code: str | None) -> str:
        return self._of(STATUS, code)

    def step(self, code: str) -> str:
        return self._of(STEP, code)

    def role(self, code: str) -> str:
        return self._of(ROLE, code)

    def replacement_reason(self, code: str) -> str:
        return self._of(REPLACEMENT_REASON, code)

    def pick(self, zh: str, en: str) -> str:
        return en if self._i else zh
