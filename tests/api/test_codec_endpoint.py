"""The codec endpoint the Temporal UI uses: auditors decode payloads, nobody else can."""

from __future__ import annotations

import base64

from temporalio.api.common.v1 import Payload

from core.temporal import data_converter
from tests.api.conftest import Api


def payloads_json(*payloads: Payload) -> dict[str, object]:
    """Payloads in the protobuf JSON the Temporal UI sends."""
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


async def test_decode_by_auditor_reveals_what_the_workers_encrypted(api: Api) -> None:
    converter = data_converter(api.settings)
    (sealed,) = await converter.encode(["1603015505850003 Siti Aminah"])
    body = payloads_json(sealed)
    assert b"1603015505850003" not in sealed.data
    answer = await api.http.post("/codec/decode", json=body, headers=api.auth("auditor"))
    assert answer.status_code == 200, answer.text
    (plain,) = answer.json()["payloads"]
    assert base64.b64decode(plain["data"]) == b'"1603015505850003 Siti Aminah"'

    for role in ("dpmd_verifier", "village_operator", "budget_officer", "admin"):
        refused = await api.http.post("/codec/decode", json=body, headers=api.auth(role))
        assert refused.status_code == 403
    assert (await api.http.post("/codec/decode", json=body)).status_code == 401


async def test_encode_round_trips_and_garbage_is_400(api: Api) -> None:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    body = payloads_json(plain)
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


async def test_decode_of_a_payload_sealed_with_another_key_is_400(api: Api) -> None:
    other_key = base64.b64encode(b"o" * 32).decode()
    same_id = api.settings.model_copy(update={"payload_key": other_key})
    other_id = api.settings.model_copy(update={"payload_key": other_key, "payload_key_id": "k9"})
    for what, settings in (("same key id", same_id), ("unknown key id", other_id)):
        (sealed,) = await data_converter(settings).encode(["1603015505850003 Siti Aminah"])
        answer = await api.http.post(
            "/codec/decode", json=payloads_json(sealed), headers=api.auth("auditor")
        )
        assert answer.status_code == 400, (what, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "not encrypted with a key this server holds" in answer.json()["detail"], what
        assert "Siti" not in answer.text
