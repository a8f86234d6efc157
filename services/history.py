"""One enrollment's timeline: the audit log merged with the decoded Temporal histories of every
run of its workflow (a renewal continues as new, and a person nominated again after a rejection
or withdrawal gets a new run of the same workflow, so an enrollment spans several runs).

The audit log says who decided what and why; Temporal's history says what the engine did
(timers, registration attempts, retries) and when. Payloads are decoded with the same
encrypting converter the workers use, so actors of Updates show in clear to an authorized
reader and nowhere else.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from models.tables import AuditEvent, Enrollment

MAX_RUNS = 100  # a century of quarterly renewals


@dataclass(frozen=True)
class TimelineEvent:
    time: dt.datetime
    source: Literal["audit", "temporal"]
    action: str
    actor: str | None = None
    actor_id: str | None = None
    role: str | None = None
    reason: str | None = None
    state_before: str | None = None
    state_after: str | None = None
    program: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class Timeline:
    enrollment_id: str
    workflow_id: str
    run_ids: list[str]
    events: list[TimelineEvent]


# Engine events worth showing to a person; the rest (workflow tasks, markers' plumbing) is noise.
SHOWN = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: "workflow_started",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "update_accepted",
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activity_scheduled",
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_completed",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_failed",
    EventType.EVENT_TYPE_TIMER_STARTED: "timer_started",
    EventType.EVENT_TYPE_TIMER_FIRED: "timer_fired",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continued_as_new",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: "workflow_completed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: "workflow_failed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: "workflow_terminated",
}


async def build_history(client: Client, engine: Engine, row: Enrollment) -> Timeline:
    with Session(engine) as session:
        ids = list(
            session.exec(select(Enrollment.id).where(Enrollment.workflow_id == row.workflow_id))
        )
        programs = dict(
            session.exec(
                select(Enrollment.id, Enrollment.program_code).where(col(Enrollment.id).in_(ids))
            ).all()
        )
        audit_rows = session.exec(
            select(AuditEvent)
            .where(col(AuditEvent.enrollment_id).in_(ids))
            .order_by(col(AuditEvent.id))
        ).all()
    events = [
        TimelineEvent(
            time=_utc(a.occurred_at),
            source="audit",
            action=a.action,
            actor=a.actor,
            actor_id=a.actor_id or None,
            role=a.role,
            reason=a.reason or None,
            state_before=a.state_before,
            state_after=a.state_after,
            program=programs.get(a.enrollment_id or ""),
            run_id=a.run_id,
        )
        for a in audit_rows
    ]
    # Every run of this workflow that recorded a step, oldest first, and the current one (it may
    # not have recorded any yet).
    first_seen: dict[str, dt.datetime] = {}
    for a in audit_rows:
        if a.run_id and a.workflow_id == row.workflow_id:
            first_seen[a.run_id] = min(first_seen.get(a.run_id, a.occurred_at), a.occurred_at)
    run_ids = sorted(first_seen, key=first_seen.__getitem__)[-MAX_RUNS:]
    current = (await client.get_workflow_handle(row.workflow_id).describe()).run_id
    if current and current not in run_ids:
        run_ids.append(current)
    for run_id in run_ids:
        handle = client.get_workflow_handle(row.workflow_id, run_id=run_id)
        async for event in handle.fetch_history_events():
            shown = await _engine_event(client, event, run_id)
            if shown is not None:
                events.append(shown)
    events.sort(key=lambda e: (e.time, e.source != "temporal"))
    return Timeline(row.id, row.workflow_id, run_ids, events)


async def _engine_event(client: Client, event: HistoryEvent, run_id: str) -> TimelineEvent | None:
    action = SHOWN.get(event.event_type)
    if action is None:
        return None
    time = event.event_time.ToDatetime(tzinfo=dt.UTC)
    actor = actor_id = role = reason = None
    if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        action = f"{action}:{event.activity_task_scheduled_event_attributes.activity_type.name}"
    elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
        failure = event.activity_task_failed_event_attributes.failure
        decoded = await _decode_failure(client, failure)
        reason = decoded
    elif event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
        timeout = event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        reason = f"fires after {timeout}"
    elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
        request = event.workflow_execution_update_accepted_event_attributes.accepted_request
        action = f"{action}:{request.input.name}"
        arg = await _decode_first(client, request.input.args.payloads)
        who = arg.get("actor") if isinstance(arg, dict) else None
        if isinstance(who, dict):
            actor, role, actor_id = who.get("name"), who.get("role"), who.get("id") or None
    return TimelineEvent(
        time=time,
        source="temporal",
        action=action,
        actor=actor,
        actor_id=actor_id,
        role=role,
        reason=reason,
        run_id=run_id,
    )


async def _decode_first(client: Client, payloads: Any) -> Any:
    if not payloads:
        return None
    try:
        values = await client.data_converter.decode(list(payloads)[:1], [dict])
    except Exception:  # a payload written by an older key or type: show the event without it
        return None
    return values[0] if values else None


async def _decode_failure(client: Client, failure: Any) -> str | None:
    try:
        error = await client.data_converter.decode_failure(failure)
    except Exception:
        return None
    cause = error.__cause__ or error
    return str(cause)[:300]


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
