"""The codec endpoint the Temporal UI uses: auditors decode payloads, nobody else can."""

from __future__ import annotations

import base64

from temporalio.api.common.v1 import Payload

from core.temporal import data_converter
from tests.api.conftest import Api


async def test_auditor_decodes_what_the_workers_encrypted(api: Api) -> None:
    converter = data_converter(api.settings)
    (sealed,) = await converter.encode(["1603015505850003 Siti Aminah"])
    body = {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in sealed.metadata.items()},
                "data": base64.b64encode(sealed.data).decode(),
            }
        ]
    }
    assert b"1603015505850003" not in sealed.data
    answer = await api.http.post("/codec/decode", json=body, headers=api.auth("auditor"))
    assert answer.status_code == 200, answer.text
    (plain,) = answer.json()["payloads"]
    assert base64.b64decode(plain["data"]) == b'"1603015505850003 Siti Aminah"'

    for role in ("dpmd_verifier", "village_operator", "admin"):
        refused = await api.http.post("/codec/decode", json=body, headers=api.auth(role))
        assert refused.status_code == 403
    assert (await api.http.post("/codec/decode", json=body)).status_code == 401


async def test_codec_encode_round_trips_and_rejects_garbage(api: Api) -> None:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    body = {
        "payloads": [
            {
                "metadata": {"encoding": base64.b64encode(plain.metadata["encoding"]).decode()},
                "data": base64.b64encode(plain.data).decode(),
            }
        ]
    }
    encoded = await api.http.post("/codec/encode", json=body, headers=api.auth("auditor"))
    assert encoded.status_code == 200
    sealed = encoded.json()
    assert base64.b64decode(sealed["payloads"][0]["data"]) != b'"x"'
    decoded = await api.http.post("/codec/decode", json=sealed, headers=api.auth("auditor"))
    assert base64.b64decode(decoded.json()["payloads"][0]["data"]) == b'"x"'
    bad = await api.http.post(
        "/codec/decode", json={"payloads": "not a list"}, headers=api.auth("auditor")
    )
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("application/problem+json")
