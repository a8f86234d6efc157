"""The whole path over HTTP, on the real Temporal dev server with a real worker: an admin creates a
program, a village uploads its Excel list, DPMD verifies the village, the budget officer commits,
every worker becomes active, and an auditor reads each timeline and checks the audit chain.

The app connects to the dev server itself (no injected client), as it does when deployed."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from pathlib import Path
from typing import Any

import httpx
import openpyxl
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from core.settings import Settings
from domain.premium import period_premium
from models.db import make_engine
from services.keys import Role, create_key
from services.spreadsheets import build_template
from tests.conftest import test_settings
from tests.harness import VILLAGE, add_months, eventually, make_sim, nik, running_worker

WORKERS = 10
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CATEGORIES = ("perangkat_desa", "linmas", "guru_ngaji", "rt_rw", "bpd")


def village_sheet() -> bytes:
    """The template as a village fills it in: typed over the example row and below."""
    workbook = openpyxl.load_workbook(io.BytesIO(build_template()))
    sheet = workbook["Nominasi"]
    for index in range(WORKERS):
        female = index % 2 == 1
        values = [
            nik(3 + index, 4, 1980 + index, 500 + index, female=female),
            f"Pekerja Desa {index + 1}",
            dt.date(1980 + index, 4, 3 + index),
            "P" if female else "L",
            CATEGORIES[index % len(CATEGORIES)],
            f"0812000000{index:02d}",
            1_000_000,
        ]
        for column, value in enumerate(values, start=1):
            sheet.cell(row=2 + index, column=column, value=value)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


async def test_village_list_to_active_over_http(
    dev_server_env: WorkflowEnvironment, tmp_path: Path, db_url: str
) -> None:
    base = test_settings(tmp_path, db_url)
    target = dev_server_env.client.service_client.config.target_host
    settings = Settings(**{**base.model_dump(), "temporal_address": target})
    engine = make_engine(settings.resolved_database_url)
    keys = {
        role: create_key(
            engine,
            role=role,
            name=f"e2e-{role.value}",
            village_code=VILLAGE if role == Role.VILLAGE_OPERATOR else None,
        )
        for role in Role
    }

    def auth(role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[role]}"}

    code = f"E2E-{uuid.uuid4().hex[:6].upper()}"
    start = dt.date.today().replace(day=1)
    end = add_months(start, 3) - dt.timedelta(days=1)
    premium = period_premium(1_000_000, start, end)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rentan") as http,
        running_worker(dev_server_env.client, settings, engine, make_sim().adapter),
    ):
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text

        # 1. The admin creates the program.
        created = await http.post(
            "/v1/programs",
            json={
                "code": code,
                "name": "Perlindungan pekerja rentan desa",
                "period_start": start.isoformat(),
                "period_end": end.isoformat(),
                "funding_sources": [
                    {
                        "code": "APBD",
                        "name": "APBD Muara Enim",
                        "ceiling_idr": 50_000_000,
                        "categories": list(CATEGORIES),
                    }
                ],
            },
            headers=auth(Role.ADMIN),
        )
        assert created.status_code == 201, created.text

        # 2. The village uploads its Excel list.
        uploaded = await http.post(
            f"/v1/programs/{code}/nominations",
            data={"village_code": VILLAGE},
            files={"file": ("daftar-embawang.xlsx", village_sheet(), XLSX)},
            headers=auth(Role.VILLAGE_OPERATOR),
        )
        assert uploaded.status_code == 200, uploaded.text
        result = uploaded.json()
        assert result["rejected"] == [] and result["warnings"] == []
        assert [a["row"] for a in result["accepted"]] == list(range(2, 2 + WORKERS))
        ids = [a["enrollment_id"] for a in result["accepted"]]

        # 3. DPMD verifies the whole village.
        verified = await http.post(
            f"/v1/programs/{code}/verifications",
            json={"village_code": VILLAGE, "approve": True, "reason": "sesuai SK kepala desa"},
            headers=auth(Role.DPMD_VERIFIER),
        )
        assert verified.status_code == 200, verified.text
        results = verified.json()["results"]
        assert sorted(r["enrollment_id"] for r in results) == sorted(ids)
        assert all(r["ok"] and r["state"] == "verified" for r in results)

        # 4. The budget officer commits the village's premiums.
        funded = await http.post(
            f"/v1/programs/{code}/budget-approvals",
            json={"funding_source": "APBD", "village_code": VILLAGE, "reason": "APBD"},
            headers=auth(Role.BUDGET_OFFICER),
        )
        assert funded.status_code == 200, funded.text
        assert funded.json()["committed_idr"] == WORKERS * premium
        assert all(r["ok"] for r in funded.json()["results"])

        # 5. Registration at BPJS runs on its own; everyone becomes active.
        async def all_active() -> list[dict[str, Any]] | None:
            page = await http.get(
                "/v1/enrollments",
                params={"program": code, "state": "active", "limit": 100},
                headers=auth(Role.AUDITOR),
            )
            items: list[dict[str, Any]] = page.json()["items"]
            return items if len(items) == WORKERS else None

        active = await eventually(all_active, what="every enrollment active", timeout_s=60)
        for enrollment in active:
            assert enrollment["kpj_number"] and enrollment["funding_source"] == "APBD"
            assert enrollment["coverage_end"] == end.isoformat()

        # 6. The auditor reads each timeline and checks the audit chain.
        for enrollment_id in ids:
            answer = await http.get(
                f"/v1/enrollments/{enrollment_id}/history", headers=auth(Role.AUDITOR)
            )
            assert answer.status_code == 200, answer.text
            history: dict[str, Any] = answer.json()
            assert history["workflow_id"] == enrollment_id and len(history["run_ids"]) == 1
            actions = [e["action"] for e in history["events"]]
            for action in (
                "nominated",
                "verified",
                "budget_approved",
                "registration_started",
                "activated",
                "workflow_started",
            ):
                assert action in actions, (enrollment_id, action, actions)
            assert "activity_scheduled:register_participant" in actions
            assert "activity_completed" in actions
        chain = (await http.get("/v1/audit/verify", headers=auth(Role.AUDITOR))).json()
        assert chain["ok"] is True and chain["first_broken"] is None
        assert chain["checked"] == WORKERS * 5
        report = await http.get(
            "/v1/reports/coverage",
            params={"program": code, "group_by": "village"},
            headers=auth(Role.AUDITOR),
        )
        (line,) = report.json()["lines"]
        assert (line["key"], line["enrollments"], line["active"], line["premium_idr"]) == (
            VILLAGE,
            WORKERS,
            WORKERS,
            WORKERS * premium,
        )
    engine.dispose()
