"""``rentan.bench.writes``: it writes each enrollment's four records as the worker does."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, col, select

from activities.audit import verify_chain
from models.db import make_engine
from models.tables import AuditEvent, Decision, Enrollment
from rentan.bench import writes


def test_prefill_writes_every_record_of_each_enrollment(tmp_path: Path) -> None:
    path = tmp_path / "projection.db"
    writes.prefill(path, 6)
    engine = make_engine(f"sqlite:///{path}")
    try:
        with Session(engine) as session:
            rows = session.exec(select(Enrollment)).all()
            assert len(rows) == 6
            assert {(r.state, r.seq, r.funding_source) for r in rows} == {("active", 5, "APBD")}
            assert all(r.kpj_number and r.coverage_end for r in rows)
            decisions = session.exec(
                select(Decision.action, func.count()).group_by(col(Decision.action))
            )
            assert dict(decisions.all()) == {"verified": 6, "budget_approved": 6}
            assert session.exec(select(func.count()).select_from(AuditEvent)).one() == 6 * 5
            check = verify_chain(session)
            assert check.ok and check.checked == 30
    finally:
        engine.dispose()


def test_run_reports_cpu_per_enrollment_for_each_repeat() -> None:
    result = writes.run(prefilled=4, enrollments=3, in_flight=2, repeats=2)
    runs = result["cpu_ms_per_enrollment"]
    assert isinstance(runs, list) and len(runs) == 2
    assert all(ms > 0 for ms in runs)
    assert min(runs) <= result["median_cpu_ms_per_enrollment"] <= max(runs)  # type: ignore[operator]
