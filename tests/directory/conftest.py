"""Fixtures of the service zone's tests: the API fixtures (both storage backends) and helpers to
file applications, register terminals and list institutions over HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.directory.catalogue import uscc_check_character
from ecard.offline.es256 import public_jwk


def uscc(body: str) -> str:
    return body + uscc_check_character(body)


async def register_terminal(http: httpx.AsyncClient, headers: dict, region: str = "330000") -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    response = await http.post(
        "/operator/v1/terminals/",
        json={
            "name": f"terminal-{uuid.uuid4().hex[:8]}",
            "institution": "测试医院",
            "terminal_kind": "hospital",
            "address": "测试路1号",
            "region": region,
            "public_jwk": public_jwk(key.public_key()),
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def set_terminal(http: httpx.AsyncClient, headers: dict, terminal: str, status: str) -> None:
    response = await http.post(
        f"/operator/v1/terminals/{terminal}/status",
        json={"status": status, "reason": "test"},
        headers=headers,
    )
    assert response.status_code == 200, response.text


def institution(key: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": key,
        "uscc": uscc("12330000MB00000" + f"{abs(hash(key)) % 100:02d}"),
        "name_zh": "杭州市第一人民医院",
        "name_en": "Hangzhou First People's Hospital",
        "kind": "hospital",
        "address_zh": "杭州市上城区浣纱路261号",
        "address_en": "261 Huansha Road",
        "region": "330102",
        "lat": 30.2520,
        "lon": 120.1700,
        "hours": [{"days": [1, 2, 3, 4, 5], "opens": "08:00", "closes": "17:30"}],
        "scenarios": ["medical"],
        "media": ["chip_card", "qr_code"],
        "terminals": [],
    }
    body.update(overrides)
    return body


def listing(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name_zh": "掌上12333",
        "name_en": "12333 Mobile",
        "operator_zh": "浙江省人力资源和社会保障厅",
        "operator_en": "Zhejiang HRSS Department",
        "scenarios": ["hrss", "government"],
        "media": ["scan_login", "consent"],
        "regions": ["330000"],
        "entry_url": "https://12333.example.cn/",
    }
    body.update(overrides)
    return body
