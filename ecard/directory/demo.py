"""``seed_demo(platform)``: a realistic directory for ``ecard demo init``.

This deployment's province gets filed applications and institutions with registered terminals,
written through the services operators use.  A second province (Shanghai, or Zhejiang when this
deployment is Shanghai) arrives as a peer's snapshot feed would bring it, through the same
``apply_feed`` rules a pulled feed passes (its entries are marked with their province); a real
deployment gets it by ``ecard directory pull`` from that province's platform.
"""

from __future__ import annotations

import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ecard.directory import catalogue as cat
from ecard.directory.schemas import (
    ApplicationEntry,
    ApplicationIn,
    DirectoryFeed,
    InstitutionEntry,
    InstitutionIn,
    OpeningHours,
    TerminalLink,
)
from ecard.directory.service import DirectoryService
from ecard.offline.es256 import public_jwk
from ecard.platform import Platform
from ecard.registry.tables import ApiClient

ACTOR = "system:demo"
WEEKDAYS = OpeningHours(days=[1, 2, 3, 4, 5], opens="08:30", closes="17:00")
EVERY_DAY = OpeningHours(days=[1, 2, 3, 4, 5, 6, 7], opens="09:00", closes="21:00")


def with_check(body: str) -> str:
    """A 统一社会信用代码 from its first 17 characters (demo codes, not real organisations)."""
    return body + cat.uscc_check_character(body)


#: (key, uscc body, zh, en, kind, address zh, address en, county, lat, lon, scenarios, media,
#: and this deployment's terminal there (its media; None: none installed yet) or, for the
#: second province, how many live terminals its feed says it has)
PLACES: dict[str, list[tuple[Any, ...]]] = {
    "330000": [
        (
            "hz-hall",
            "11330100MB0000001",
            "杭州市社会保险服务中心",
            "Hangzhou Social Insurance Service Centre",
            "service_hall",
            "杭州市上城区解放东路18号",
            "18 Jiefang East Rd, Shangcheng, Hangzhou",
            "330102",
            30.2450,
            120.2100,
            ["hrss", "government"],
            ["chip_card", "qr_code"],
            ["chip_card", "qr_code", "nfc_hce"],
        ),
        (
            "hz-first",
            "12330000MB0000002",
            "杭州市第一人民医院",
            "Hangzhou First People's Hospital",
            "hospital",
            "杭州市上城区浣纱路261号",
            "261 Huansha Rd, Shangcheng, Hangzhou",
            "330102",
            30.2520,
            120.1700,
            ["medical"],
            ["chip_card", "qr_code", "nfc_hce"],
            ["chip_card", "qr_code"],
        ),
        (
            "hz-pharmacy",
            "91330106MB0000003",
            "杭州西湖大药房",
            "West Lake Pharmacy",
            "pharmacy",
            "杭州市西湖区文三路100号",
            "100 Wensan Rd, Xihu, Hangzhou",
            "330106",
            30.2780,
            120.1400,
            ["medical"],
            ["chip_card", "qr_code"],
            ["qr_code"],
        ),
        (
            "hz-library",
            "12330000MB0000004",
            "浙江图书馆",
            "Zhejiang Library",
            "library",
            "杭州市西湖区曙光路73号",
            "73 Shuguang Rd, Xihu, Hangzhou",
            "330106",
            30.2750,
            120.1450,
            ["culture"],
            ["chip_card", "qr_code"],
            ["chip_card", "qr_code"],
        ),
        (
            "hz-metro",
            "91330100MB0000005",
            "杭州地铁龙翔桥站",
            "Hangzhou Metro Longxiangqiao Station",
            "transport",
            "杭州市上城区延安路",
            "Yan'an Rd, Shangcheng, Hangzhou",
            "330102",
            30.2600,
            120.1650,
            ["transport"],
            ["qr_code", "nfc_hce"],
            ["qr_code", "nfc_hce"],
        ),
        (
            "hz-lingyin",
            "12330100MB0000006",
            "灵隐景区",
            "Lingyin Scenic Area",
            "scenic_spot",
            "杭州市西湖区法云弄1号",
            "1 Fayun Lane, Xihu, Hangzhou",
            "330106",
            30.2400,
            120.1000,
            ["tourism", "culture"],
            ["chip_card", "qr_code"],
            None,
        ),
        (
            "nb-hall",
            "11330200MB0000007",
            "宁波市人力资源和社会保障服务中心",
            "Ningbo HRSS Service Centre",
            "service_hall",
            "宁波市鄞州区宁穿路1901号",
            "1901 Ningchuan Rd, Yinzhou, Ningbo",
            "330212",
            29.8700,
            121.5900,
            ["hrss"],
            ["chip_card", "qr_code"],
            ["chip_card", "qr_code"],
        ),
    ],
    "310000": [
        (
            "sh-hall",
            "11310000MB0000011",
            "上海市社保卡服务中心",
            "Shanghai Social Security Card Service Centre",
            "service_hall",
            "上海市黄浦区中山南一路555号",
            "555 S. Zhongshan No.1 Rd, Huangpu",
            "310101",
            31.2000,
            121.4900,
            ["hrss", "government"],
            ["chip_card", "qr_code"],
            2,
        ),
        (
            "sh-ruijin",
            "12310000MB0000012",
            "上海交通大学医学院附属瑞金医院",
            "Ruijin Hospital",
            "hospital",
            "上海市黄浦区瑞金二路197号",
            "197 Ruijin No.2 Rd, Huangpu",
            "310101",
            31.2130,
            121.4690,
            ["medical"],
            ["chip_card", "qr_code", "nfc_hce"],
            6,
        ),
        (
            "sh-museum",
            "12310000MB0000013",
            "上海博物馆",
            "Shanghai Museum",
            "museum",
            "上海市黄浦区人民大道201号",
            "201 People's Avenue, Huangpu",
            "310101",
            31.2280,
            121.4750,
            ["culture", "tourism"],
            ["qr_code"],
            1,
        ),
        (
            "sh-metro",
            "91310000MB0000014",
            "上海地铁人民广场站",
            "Shanghai Metro People's Square",
            "transport",
            "上海市黄浦区人民广场",
            "People's Square, Huangpu",
            "310101",
            31.2330,
            121.4750,
            ["transport"],
            ["qr_code", "nfc_hce"],
            4,
        ),
        (
            "sh-pudong",
            "91310115MB0000015",
            "浦东新区益丰大药房",
            "Pudong Yifeng Pharmacy",
            "pharmacy",
            "上海市浦东新区张杨路500号",
            "500 Zhangyang Rd, Pudong",
            "310115",
            31.2300,
            121.5250,
            ["medical"],
            ["chip_card"],
            1,
        ),
    ],
}

#: (filing name, zh, en, operator zh, operator en, scenarios, media, regions (prefix), url path)
SERVICES: list[tuple[Any, ...]] = [
    (
        "掌上12333",
        "掌上12333",
        "12333 on the phone",
        "人力资源和社会保障厅",
        "Department of Human Resources and Social Security",
        ["hrss", "government"],
        ["scan_login", "consent", "qr_code"],
        ["0000"],
        "/12333",
    ),
    (
        "医保码就医",
        "医保电子凭证就医",
        "Pay at hospitals with the e-card",
        "医疗保障局",
        "Healthcare Security Administration",
        ["medical"],
        ["qr_code", "chip_card"],
        ["0100", "0200"],
        "/medical",
    ),
    (
        "一卡通出行",
        "一卡通乘车",
        "Ride with the card",
        "交通运输厅",
        "Department of Transport",
        ["transport"],
        ["qr_code", "nfc_hce"],
        ["0000"],
        "/transport",
    ),
    (
        "文旅一卡通",
        "文旅一卡通",
        "Culture and tourism pass",
        "文化和旅游厅",
        "Department of Culture and Tourism",
        ["culture", "tourism"],
        ["qr_code", "scan_login"],
        ["0100"],
        "/culture",
    ),
    (
        "惠民补贴查询",
        "惠民惠农补贴查询",
        "Subsidy payments",
        "财政厅",
        "Department of Finance",
        ["subsidy", "finance"],
        ["scan_login", "consent"],
        ["0000"],
        "/subsidy",
    ),
]


def _institution(place: tuple[Any, ...], terminals: list[TerminalLink]) -> InstitutionIn:
    key, body, zh, en, kind, addr_zh, addr_en, county, lat, lon, scenarios, media, _ = place
    return InstitutionIn(
        key=key,
        uscc=with_check(body),
        name_zh=zh,
        name_en=en,
        kind=kind,
        address_zh=addr_zh,
        address_en=addr_en,
        region=county,
        lat=lat,
        lon=lon,
        hours=[EVERY_DAY if kind in ("pharmacy", "transport", "scenic_spot") else WEEKDAYS],
        scenarios=scenarios,
        media=media,
        terminals=terminals,
    )


async def _filing(platform: Platform, kind: str, name: str) -> str:
    from ecard.registry import schemas
    from ecard.registry.service import AccessService

    row = await ApiClient.select(ApiClient.id).where(ApiClient.name == name).first()
    if row is not None:
        return str(row["id"])
    view = await AccessService(platform).create_client(
        schemas.ClientCreate(kind=kind, name=name, entitlements=["card_status"]),
        ACTOR,  # type: ignore[arg-type]
    )
    return str(view.id)


async def _terminal(platform: Platform, place: tuple[Any, ...], province: str) -> str:
    from ecard.codes.service import CodeService
    from ecard.terminal.schemas import TerminalCreate
    from ecard.terminal.service import TerminalService

    name = f"演示终端 {place[0]}"
    row = await ApiClient.select(ApiClient.id).where(ApiClient.name == name).first()
    if row is not None:
        return str(row["id"])
    key = ec.generate_private_key(ec.SECP256R1())
    view = await TerminalService(platform, CodeService(platform)).register(
        TerminalCreate(
            name=name,
            institution=place[2],
            terminal_kind=place[4]
            if place[4] in ("hospital", "pharmacy", "service_hall", "transport")
            else "other",
            address=place[5],
            region=province,
            public_jwk=public_jwk(key.public_key()),
        ),
        ACTOR,  # type: ignore[arg-type]
    )
    return str(view.id)


async def seed_demo(platform: Platform) -> dict[str, int]:
    """Fill the directory (idempotent: entries are keyed); returns how many entries per
    province."""
    service = DirectoryService(platform)
    own = platform.settings.region_code
    own_places = [
        (p[0], p[1][:2] + own[:2] + p[1][4:], *p[2:7], own[:2] + p[7][2:], *p[8:])
        for p in PLACES["330000"]
    ]  # Zhejiang's places, renumbered into this province when it is another
    for place in own_places:
        links = []
        if place[12] is not None:
            links = [TerminalLink(id=await _terminal(platform, place, own), media=list(place[12]))]
        data = _institution(place, links)
        entry_id = f"{own}-{place[0]}"
        from ecard.directory.tables import DirectoryInstitution

        if await DirectoryInstitution.exists().where(DirectoryInstitution.id == entry_id):
            await service.update_institution(entry_id, data, ACTOR)
        else:
            await service.create_institution(data, ACTOR)
    for _, zh, en, op_zh, op_en, scenarios, media, regions, path in SERVICES:
        client_id = await _filing(platform, "verifier", f"{zh} ({own})")
        await service.put_application(
            client_id,
            ApplicationIn(
                name_zh=zh,
                name_en=en,
                operator_zh=op_zh,
                operator_en=op_en,
                scenarios=scenarios,
                media=media,
                regions=[own[:2] + suffix for suffix in regions],
                entry_url=f"https://service.example.cn{path}",
            ),
            ACTOR,
        )
    second = "310000" if own != "310000" else "330000"
    count = await _seed_second(service, second)
    return {own: len(own_places) + len(SERVICES), second: count}


async def _seed_second(service: DirectoryService, province: str) -> int:
    """The second province, as its snapshot feed brings it (see the module's docstring)."""
    places = PLACES[province]
    version = 1
    institutions = [
        InstitutionEntry(
            id=f"{province}-{p[0]}",
            province=province,
            uscc=with_check(p[1]),
            name_zh=p[2],
            name_en=p[3],
            kind=p[4],
            address_zh=p[5],
            address_en=p[6],
            region=p[7],
            lat=p[8],
            lon=p[9],
            hours=[WEEKDAYS],
            scenarios=p[10],
            media=p[11] if p[12] else [],
            terminals=p[12] if isinstance(p[12], int) else (1 if p[12] else 0),
            version=version,
        )
        for p in places
    ]
    applications = [
        ApplicationEntry(
            id=f"{province}-demo{n}",
            province=province,
            name_zh=zh,
            name_en=en,
            operator_zh=op_zh,
            operator_en=op_en,
            fields=cat.fields_of(scenarios),
            scenarios=scenarios,
            media=media,
            regions=[province[:2] + r for r in regions],
            entry_url=f"https://service.example.cn/{province}{path}",
            version=version,
        )
        for n, (_, zh, en, op_zh, op_en, scenarios, media, regions, path) in enumerate(SERVICES)
    ]
    feed = DirectoryFeed(
        publisher=province,
        provinces=[province],
        version=version,
        since=0,
        issued_at=int(time.time()),
        applications=applications,
        institutions=institutions,
        tombstones=[],
    )
    url = f"demo:{province}"
    state = await service.peer_state(url)
    if state is not None and int(state["version"]) >= version:
        return len(applications) + len(institutions)
    return await service.apply_feed(url, [province], feed, asked_since=0)
