"""The worker's writer of records, and the local activities enrollment workflows call with it.

``Recording.write`` is how every record a worker holds reaches the projection: a single step's
and the workflow's own steps (``record_steps``, a local activity), a batch's (one transaction
for the whole batch, ``activities.batch_steps``) and the activation (``activities.bpjs``). All
of them go through one group-committing writer (models/writer.py) and ``models.recorder``; each
call's writes land together, committed before it returns. Each record's lag (from its step to
its write) is exported as the ``rentan_projection_lag`` histogram.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.common import MetricHistogramTimedelta

from core.sealing import Sealer
from domain.nik import enrollment_id_for
from domain.premium import period_premium
from domain.records import Commitment, Record
from models import audit_chain, claims, ledger
from models.conflicts import Conflict
from models.conflicts import record as record_conflicts
from models.recorder import write_records
from models.tables import Program
from models.writer import GroupCommitWriter
from workflows.messages import (
    OPEN_RENEWAL,
    RECORD_STEPS,
    PeriodRelease,
    RecordBatch,
    RenewalOpening,
    RenewalTerms,
)

LAG_METRIC = "rentan_projection_lag"


class Recording:
    def __init__(self, engine: Engine, sealer: Sealer) -> None:
        self.engine = engine
        self.sealer = sealer
        # Each transaction takes the audit chain's lock first (PostgreSQL): two workers'
        # batches then never hold a funding source and the chain in opposite orders.
        self.writer = GroupCommitWriter(engine, on_begin=audit_chain.lock_chain)

    async def write(
        self,
        records: Sequence[Record],
        *,
        releases: Sequence[Commitment] = (),
        unclaim: PeriodRelease | None = None,
        refusals: Sequence[audit_chain.AuditEntry] = (),
        conflicts: Sequence[Conflict] = (),
    ) -> None:
        """Write records, with the commitments their steps release, the claim they give up,
        the refused attempts to audit and the nomination conflicts for DPMD: one
        transaction."""
        reason = f"{records[0].action}: {records[0].reason}".rstrip(": ") if records else ""

        def work(session: Session) -> None:
            write_records(session, records, self.sealer)
            now = dt.datetime.now(dt.UTC)
            for commitment in releases:
                ledger.release(session, commitment, by="rentan", reason=reason, at=now)
            if unclaim is not None:
                claims.unclaim(
                    session,
                    program_code=unclaim.program_code,
                    person_key=unclaim.person_key,
                    workflow_id=unclaim.workflow_id,
                )
            for entry in refusals:
                audit_chain.append(session, entry)
            record_conflicts(session, conflicts)

        await self.writer.run(work)
        observe_lag(records)

    @activity.defn(name=RECORD_STEPS)
    async def record_steps(self, batch: RecordBatch) -> None:
        await self.write(batch.records, releases=batch.releases, unclaim=batch.unclaim)

    @activity.defn(name=OPEN_RENEWAL)
    async def open_renewal(self, opening: RenewalOpening) -> RenewalTerms:
        """Claim the successor period for this person, so nobody nominates them there too."""

        def work(session: Session) -> RenewalTerms:
            successor = session.get(Program, opening.successor) if opening.successor else None
            if successor is None:
                return RenewalTerms(None, None, refusal="the program has no successor")
            next_id = enrollment_id_for(opening.person_key, successor.code)
            holders = claims.claim(
                session,
                program_code=successor.code,
                wanted=[(opening.person_key, opening.workflow_id)],
            )
            if holders[opening.person_key] != opening.workflow_id:
                refusal = f"already nominated for {successor.code} as enrollment {next_id}"
                return RenewalTerms(None, None, refusal=refusal)
            premium = period_premium(
                opening.declared_income_idr, successor.period_start, successor.period_end
            )
            return RenewalTerms(next_id, successor.terms(), premium)

        return await self.writer.run(work)


_histograms: dict[tuple[str, str], MetricHistogramTimedelta] = {}


def observe_lag(records: Sequence[Record]) -> None:
    """How long each record took from its step to the projection (inside an activity only)."""
    if not records or not activity.in_activity():
        return
    # One histogram per task queue and activity type (the attributes it carries), made once.
    info = activity.info()
    kind = (info.task_queue, info.activity_type)
    histogram = _histograms.get(kind)
    if histogram is None:
        histogram = _histograms[kind] = activity.metric_meter().create_histogram_timedelta(
            LAG_METRIC, "time from an enrollment's step to its record in the projection", "ms"
        )
    now = dt.datetime.now(dt.UTC)
    for record in records:
        histogram.record(max(now - record.snapshot.updated_at, dt.timedelta(0)))
