"""schema of version 0.2

Revision ID: 0201
Revises:
Create Date: 2026-12-07 20:26:42.601266
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0201"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_key", sqlmodel.sql.sqltypes.AutoString(length=160), nullable=False),
        sa.Column("occurred_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("actor_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("enrollment_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("state_before", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=True),
        sa.Column("state_after", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("prev_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_key"),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_action"), ["action"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_audit_event_enrollment_id"), ["enrollment_id"], unique=False
        )

    op.create_table(
        "district",
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "period_claim",
        sa.Column("program_code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("person_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("claimed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("program_code", "person_key"),
    )
    op.create_table(
        "program",
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("max_age", sa.Integer(), nullable=False),
        sa.Column("renewal_lead_days", sa.Integer(), nullable=False),
        sa.Column("successor", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("verification_reminder_days", sa.Integer(), nullable=False),
        sa.Column("verification_deadline_days", sa.Integer(), nullable=False),
        sa.Column("verification_expiry_days", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "fundingsource",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("program_code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("ceiling_idr", sa.BigInteger(), nullable=False),
        sa.Column("categories", sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_code"],
            ["program.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("program_code", "code"),
    )
    with op.batch_alter_table("fundingsource", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fundingsource_program_code"), ["program_code"], unique=False
        )

    op.create_table(
        "village",
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=13), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("district_code", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("is_kelurahan", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["district_code"],
            ["district.code"],
        ),
        sa.PrimaryKeyConstraint("code"),
    )
    with op.batch_alter_table("village", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_village_district_code"), ["district_code"], unique=False
        )

    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("village_code", sqlmodel.sql.sqltypes.AutoString(length=13), nullable=True),
        sa.Column("key_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("prefix", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["village_code"],
            ["village.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_table(
        "commitment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("approval_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("program_code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("enrollment_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("funding_source_id", sa.Integer(), nullable=False),
        sa.Column("amount_idr", sa.BigInteger(), nullable=False),
        sa.Column("committed_by", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("committed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("released_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("released_by", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("release_reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["funding_source_id"],
            ["fundingsource.id"],
        ),
        sa.ForeignKeyConstraint(
            ["program_code"],
            ["program.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("approval_id", "enrollment_id", name="uq_commitment_approval"),
    )
    with op.batch_alter_table("commitment", schema=None) as batch_op:
        batch_op.create_index(
            "ix_commitment_source_open", ["funding_source_id", "released_at"], unique=False
        )
        batch_op.create_index(
            "uq_commitment_open",
            ["program_code", "enrollment_id"],
            unique=True,
            sqlite_where=sa.text("released_at IS NULL"),
            postgresql_where=sa.text("released_at IS NULL"),
        )

    op.create_table(
        "enrollment",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("program_code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("run_started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("person_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("nik_masked", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("full_name", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column(
            "birth_date_sealed", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False
        ),
        sa.Column("gender", sqlmodel.sql.sqltypes.AutoString(length=1), nullable=False),
        sa.Column("phone", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("village_code", sqlmodel.sql.sqltypes.AutoString(length=13), nullable=False),
        sa.Column("district_code", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("declared_income_idr", sa.BigInteger(), nullable=False),
        sa.Column("premium_idr", sa.BigInteger(), nullable=False),
        sa.Column("funding_source", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("kpj_number", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("coverage_start", sa.Date(), nullable=True),
        sa.Column("coverage_end", sa.Date(), nullable=True),
        sa.Column("nominated_by", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("nominated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("attention", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["district_code"],
            ["district.code"],
        ),
        sa.ForeignKeyConstraint(
            ["program_code"],
            ["program.code"],
        ),
        sa.ForeignKeyConstraint(
            ["village_code"],
            ["village.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("enrollment", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_enrollment_district_code"), ["district_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_enrollment_person_key"), ["person_key"], unique=False)
        batch_op.create_index(
            "ix_enrollment_program_state", ["program_code", "state"], unique=False
        )
        batch_op.create_index(
            "ix_enrollment_program_village", ["program_code", "village_code"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_enrollment_workflow_id"), ["workflow_id"], unique=False
        )

    op.create_table(
        "nomination_conflict",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("program_code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("enrollment_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("nik_masked", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("held_by_village", sqlmodel.sql.sqltypes.AutoString(length=13), nullable=False),
        sa.Column(
            "nominated_by_village", sqlmodel.sql.sqltypes.AutoString(length=13), nullable=False
        ),
        sa.Column("nominated_by", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("batch_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("occurred_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("resolved_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("resolved_by", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("resolution", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.ForeignKeyConstraint(["held_by_village"], ["village.code"]),
        sa.ForeignKeyConstraint(["nominated_by_village"], ["village.code"]),
        sa.ForeignKeyConstraint(["program_code"], ["program.code"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("batch_id", "enrollment_id"),
    )
    with op.batch_alter_table("nomination_conflict", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_nomination_conflict_program_code"), ["program_code"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("nomination_conflict", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nomination_conflict_program_code"))

    op.drop_table("nomination_conflict")
    with op.batch_alter_table("enrollment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrollment_workflow_id"))
        batch_op.drop_index("ix_enrollment_program_village")
        batch_op.drop_index("ix_enrollment_program_state")
        batch_op.drop_index(batch_op.f("ix_enrollment_person_key"))
        batch_op.drop_index(batch_op.f("ix_enrollment_district_code"))

    op.drop_table("enrollment")
    with op.batch_alter_table("commitment", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_commitment_open",
            sqlite_where=sa.text("released_at IS NULL"),
            postgresql_where=sa.text("released_at IS NULL"),
        )
        batch_op.drop_index("ix_commitment_source_open")

    op.drop_table("commitment")
    op.drop_table("api_key")
    with op.batch_alter_table("village", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_village_district_code"))

    op.drop_table("village")
    with op.batch_alter_table("fundingsource", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fundingsource_program_code"))

    op.drop_table("fundingsource")
    op.drop_table("program")
    op.drop_table("period_claim")
    op.drop_table("district")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_enrollment_id"))
        batch_op.drop_index(batch_op.f("ix_audit_event_action"))

    op.drop_table("audit_event")
