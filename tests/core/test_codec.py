"""The payload codec: AES-256-GCM, key ids in metadata, rotation, and the full data converter."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError

from core.codec import (
    ENCODING,
    KEY_ID,
    REFUSED,
    EncryptionCodec,
    PayloadKeyUnknown,
    PayloadNotEncrypted,
)
from core.settings import Settings
from core.temporal import data_converter
from domain.program_terms import ProgramTerms
from domain.records import Actor, Record, Snapshot
from workflows.messages import BpjsTiming, EnrollmentInput, PersonData

NIK = "1603011505850001"
K1 = b"1" * 32
K2 = b"2" * 32


def _payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


def _enrollment_input() -> EnrollmentInput:
    return EnrollmentInput(
        enrollment_id="E-0001",
        program=ProgramTerms(
            code="BPU-2026",
            period_start=dt.date(2026, 1, 1),
            period_end=dt.date(2026, 12, 31),
            renewal_lead_days=30,
            successor=None,
        ),
        person=PersonData(
            nik=NIK,
            full_name="Siti Aminah",
            birth_date=dt.date(1985, 5, 15),
            gender="F",
            phone="081234567890",
        ),
        person_key="pk-1",
        village_code="1603012001",
        district_code="160301",
        category="guru_ngaji",
        declared_income_idr=1_000_000,
        premium_idr=16_800,
        nominated_by=Actor(name="kades", role="village_head", village_code="1603012001"),
        bpjs=BpjsTiming(call_timeout_s=15.0, max_backoff_s=120.0),
    )


def _record() -> Record:
    at = dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.UTC)
    return Record(
        snapshot=Snapshot(
            enrollment_id="enr_0001",
            program_code="BPU-2026",
            workflow_id="enr_0001",
            run_id="run-1",
            run_started_at=at,
            seq=2,
            state="verified",
            person_key="pk-1",
            nik_masked="160301********01",
            full_name="Siti Aminah",
            birth_date=dt.date(1985, 5, 15),
            gender="P",
            phone="081234567890",
            village_code="16.03.01.2011",
            district_code="16.03.01",
            category="guru_ngaji",
            declared_income_idr=1_000_000,
            premium_idr=16_800,
            funding_source=None,
            kpj_number=None,
            coverage_start=None,
            coverage_end=None,
            nominated_by="kades",
            nominated_at=at,
            updated_at=at + dt.timedelta(hours=1),
        ),
        action="verified",
        actor=Actor(name="dpmd-verifier", role="dpmd_verifier"),
        state_before="nominated",
        reason="documents complete",
    )


async def test_encode_decode_roundtrip() -> None:
    codec = EncryptionCodec(key_id="k1", keys={"k1": K1})
    originals = [_payload(f"person {NIK}"), _payload("second"), Payload()]
    encoded = await codec.encode(originals)
    assert len(encoded) == 3
    assert await codec.decode(encoded) == originals


async def test_encode_hides_plaintext() -> None:
    codec = EncryptionCodec(key_id="k1", keys={"k1": K1})
    original = _payload(f"person {NIK}")
    [encoded] = await codec.encode([original])
    assert NIK.encode() not in encoded.data
    assert NIK.encode() not in encoded.SerializeToString()
    assert b"json/plain" not in encoded.SerializeToString()  # the inner metadata too
    assert encoded.metadata["encoding"] == ENCODING == b"binary/encrypted"
    assert encoded.metadata[KEY_ID] == b"k1"
    assert set(encoded.metadata) == {"encoding", KEY_ID}


async def test_none_is_left_as_is_and_everything_else_is_sealed(tmp_path: Path) -> None:
    converter = data_converter(Settings(data_dir=tmp_path))
    none, empty, zero = await converter.encode([None, "", 0])
    assert none.metadata["encoding"] == b"binary/null" and none.data == b""
    assert empty.metadata["encoding"] == zero.metadata["encoding"] == ENCODING
    assert await converter.decode([none, empty, zero], [type(None), str, int]) == [None, "", 0]


async def test_encode_fresh_nonce() -> None:
    codec = EncryptionCodec(key_id="k1", keys={"k1": K1})
    original = _payload(NIK)
    first, second = await codec.encode([original, original])
    assert first.data != second.data


async def test_decode_unknown_key_raises() -> None:
    [encoded] = await EncryptionCodec(key_id="k1", keys={"k1": K1}).encode([_payload(NIK)])
    other = EncryptionCodec(key_id="k2", keys={"k2": K2})
    with pytest.raises(PayloadKeyUnknown, match="k1"):
        await other.decode([encoded])


async def test_decode_wrong_key_same_id_fails() -> None:
    [encoded] = await EncryptionCodec(key_id="k1", keys={"k1": K1}).encode([_payload(NIK)])
    impostor = EncryptionCodec(key_id="k1", keys={"k1": K2})
    with pytest.raises(InvalidTag):
        await impostor.decode([encoded])


async def test_decode_tampered_fails() -> None:
    codec = EncryptionCodec(key_id="k1", keys={"k1": K1})
    [encoded] = await codec.encode([_payload(NIK)])
    data = bytearray(encoded.data)
    data[-1] ^= 0x01
    tampered = Payload(metadata=dict(encoded.metadata), data=bytes(data))
    with pytest.raises(InvalidTag):
        await codec.decode([tampered])


async def test_decode_refuses_a_plain_payload() -> None:
    """rentan sends every payload sealed: a plain one was typed in elsewhere (a UI, a CLI)."""
    codec = EncryptionCodec(key_id="k1", keys={"k1": K1})
    with pytest.raises(PayloadNotEncrypted):
        codec.decrypt(_payload("not encrypted"))
    # Decoded in a batch, it becomes a value nothing can read: its step is refused, not the
    # whole activation.
    (refused,) = await codec.decode([_payload("not encrypted")])
    assert refused.metadata["encoding"] == REFUSED and not refused.data
    with pytest.raises(Exception, match="refused-plain"):
        DataConverter.default.payload_converter.from_payloads([refused])
    null = Payload(metadata={"encoding": b"binary/null"})
    assert await codec.decode([null]) == [null]  # None carries nothing


async def test_rotate_key_old_payloads_readable() -> None:
    old = EncryptionCodec(key_id="k1", keys={"k1": K1})
    rotated = EncryptionCodec(key_id="k2", keys={"k1": K1, "k2": K2})
    original = _payload(f"person {NIK}")

    [by_k1] = await old.encode([original])
    assert await rotated.decode([by_k1]) == [original]

    [by_k2] = await rotated.encode([original])
    assert by_k2.metadata[KEY_ID] == b"k2"
    assert await rotated.decode([by_k2]) == [original]
    with pytest.raises(PayloadKeyUnknown):
        await old.decode([by_k2])  # a process still on the old keys cannot read new payloads


def test_codec_current_key_must_exist() -> None:
    with pytest.raises(ValueError, match="k3"):
        EncryptionCodec(key_id="k3", keys={"k1": K1})


async def test_data_converter_encrypts_messages(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, payload_key_id="k7")
    converter = data_converter(settings)
    value = _enrollment_input()

    payloads = await converter.encode([value])
    assert len(payloads) == 1
    raw = payloads[0].SerializeToString()
    assert NIK.encode() not in raw
    assert b"Siti Aminah" not in raw
    assert payloads[0].metadata["encoding"] == b"binary/encrypted"
    assert payloads[0].metadata[KEY_ID] == b"k7"

    [decoded] = await converter.decode(payloads, [EnrollmentInput])
    assert decoded == value
    assert decoded.person.nik == NIK
    assert decoded.person.birth_date == dt.date(1985, 5, 15)

    # Another process of the same embedded stack (same data_dir) reads it with the same key.
    again = data_converter(Settings(data_dir=tmp_path, payload_key_id="k7"))
    assert await again.decode(payloads, [EnrollmentInput]) == [value]


async def test_data_converter_encrypts_records(tmp_path: Path) -> None:
    """A record (what the ``records`` query answers and the recording activities take) holds
    the person's name, birth date and phone: sealed too, and read back whole."""
    converter = data_converter(Settings(data_dir=tmp_path))
    record = _record()
    payloads = await converter.encode([[record]])
    raw = payloads[0].SerializeToString()
    assert b"Siti Aminah" not in raw
    assert b"081234567890" not in raw
    assert b"1985-05-15" not in raw
    assert await converter.decode(payloads, [list[Record]]) == [[record]]


async def test_data_converter_other_key_cannot_read(tmp_path: Path) -> None:
    payloads = await data_converter(Settings(data_dir=tmp_path / "a")).encode([_enrollment_input()])
    stranger = data_converter(Settings(data_dir=tmp_path / "b"))
    with pytest.raises(InvalidTag):
        await stranger.decode(payloads, [EnrollmentInput])


async def test_data_converter_encrypts_failures(tmp_path: Path) -> None:
    converter = data_converter(Settings(data_dir=tmp_path))
    failure = Failure()
    error = ApplicationError(f"BPJS refused {NIK}: Siti Aminah", type="InvalidParticipant")
    await converter.encode_failure(error, failure)

    raw = failure.SerializeToString()
    assert NIK.encode() not in raw
    assert b"Siti Aminah" not in raw
    assert failure.message == "Encoded failure"
    assert failure.encoded_attributes.metadata["encoding"] == b"binary/encrypted"

    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError)
    assert NIK in decoded.message
    assert decoded.type == "InvalidParticipant"


async def test_data_converter_uses_configured_key(tmp_path: Path) -> None:
    key = os.urandom(32)
    settings = Settings(
        data_dir=tmp_path, payload_key=base64.b64encode(key).decode(), payload_key_id="prod-1"
    )
    [payload] = await data_converter(settings).encode([_enrollment_input()])
    [inner] = await EncryptionCodec(key_id="prod-1", keys={"prod-1": key}).decode([payload])
    assert NIK.encode() in inner.data  # the configured key, not a generated one, sealed it
    assert not (tmp_path / "payload-key").exists()
