"""Backup and restore of the embedded stack, as an operator does it after losing ``var/``:
the restored Temporal and projection agree (``rentan reconcile --check`` finds 0 differences)
and hold every enrollment the backup did."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.rentan.test_up import settings_of, stack_env, start, stop, wait_ready  # noqa: F401

pytestmark = pytest.mark.stack
VILLAGE = "16.03.01.2011"


def rentan(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rentan", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def enroll_three(api: str, keys: dict[str, str], program: str) -> list[str]:
    def auth(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[role]}"}

    with httpx.Client(base_url=api, timeout=30) as http:
        made = http.post(
            "/v1/programs",
            json={
                "code": program,
                "name": "backup test",
                "period_start": time.strftime("%Y-%m-01"),
                "period_end": f"{int(time.strftime('%Y')) + 1}-12-31",
                "funding_sources": [
                    {"code": "APBD", "name": "APBD", "ceiling_idr": 10**9, "categories": ["linmas"]}
                ],
            },
            headers=auth("admin"),
        )
        assert made.status_code == 201, made.text
        workers = [
            {
                "nik": f"16030115058500{n:02d}",
                "full_name": f"Warga Cadangan {n}",
                "birth_date": "1985-05-15",
                "gender": "L",
                "category": "linmas",
            }
            for n in (71, 72, 73)
        ]
        listed = http.post(
            f"/v1/programs/{program}/nominations",
            json={"village_code": VILLAGE, "workers": workers},
            headers=auth("village_operator"),
        )
        assert listed.status_code == 200 and not listed.json()["rejected"], listed.text
        verified = http.post(
            f"/v1/programs/{program}/verifications",
            json={"village_code": VILLAGE, "approve": True},
            headers=auth("dpmd_verifier"),
        )
        assert verified.status_code == 200, verified.text
        funded = http.post(
            f"/v1/programs/{program}/budget-approvals",
            json={"village_code": VILLAGE, "funding_source": "APBD"},
            headers=auth("budget_officer"),
        )
        assert funded.status_code == 200, funded.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            page = http.get(
                "/v1/enrollments", params={"program": program}, headers=auth("auditor")
            ).json()
            if [e["state"] for e in page["items"]] == ["active"] * 3:
                return sorted(e["id"] for e in page["items"])
            time.sleep(0.5)
    pytest.fail(f"not all active: {page}")


def test_a_backup_restored_into_an_empty_var_reconciles_to_zero(
    stack_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = settings_of(stack_env)
    api = f"http://127.0.0.1:{settings.api_port}"
    log = tmp_path / "up.log"
    up = start([sys.executable, "-m", "rentan", "up"], stack_env, log)
    try:
        wait_ready(f"{api}/readyz", up, log)
        keys = json.loads((settings.data_dir / "dev-keys.json").read_text())["keys"]
        ids = enroll_three(api, keys, "BACKUP-TEST")
        refused = rentan(stack_env, "backup", "--to", str(tmp_path / "too-soon"))
        assert refused.returncode == 1 and "stop `rentan up` first" in refused.stderr
    finally:
        assert stop(up) == 0, log.read_text()[-3000:]

    taken = rentan(stack_env, "backup", "--to", str(tmp_path / "backup"))
    assert taken.returncode == 0, taken.stderr
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert set(manifest["files"]) == {"temporal.db", "rentan.db"}
    # The keys stay out of the backup: only their fingerprints, to match them on restore.
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == [
        "manifest.json",
        "rentan.db",
        "temporal.db",
    ]

    # The disaster: both databases lost (the keys kept, as README says to).
    for path in settings.data_dir.iterdir():
        if path.name.startswith(("temporal.db", "rentan.db")):
            path.unlink()
    restored = rentan(stack_env, "restore", "--from", str(tmp_path / "backup"))
    assert restored.returncode == 0, restored.stderr

    log = tmp_path / "up-again.log"
    again = start([sys.executable, "-m", "rentan", "up"], stack_env, log)
    try:
        wait_ready(f"{api}/readyz", again, log)
        check = rentan(stack_env, "reconcile", "--check", "--program", "BACKUP-TEST")
        assert check.returncode == 0, check.stdout + check.stderr
        assert "0 differences" in check.stdout
        with httpx.Client(base_url=api, timeout=10) as http:
            page = http.get(
                "/v1/enrollments",
                params={"program": "BACKUP-TEST"},
                headers={"Authorization": f"Bearer {keys['auditor']}"},
            ).json()
        assert sorted(e["id"] for e in page["items"]) == ids
        assert {e["state"] for e in page["items"]} == {"active"}
    finally:
        assert stop(again) == 0, log.read_text()[-3000:]
