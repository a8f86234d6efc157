"""load Muara Enim's districts and villages

Revision ID: 0202
Revises: 0201
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from domain.regions import regions

revision: str = "0202"
down_revision: str | None = "0201"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

district = sa.table("district", sa.column("code", sa.String), sa.column("name", sa.String))
village = sa.table(
    "village",
    sa.column("code", sa.String),
    sa.column("name", sa.String),
    sa.column("district_code", sa.String),
    sa.column("is_kelurahan", sa.Boolean),
)


def upgrade() -> None:
    data = regions()
    op.bulk_insert(district, [{"code": d.code, "name": d.name} for d in data.districts.values()])
    op.bulk_insert(
        village,
        [
            {
                "code": v.code,
                "name": v.name,
                "district_code": v.district_code,
                "is_kelurahan": v.is_kelurahan,
            }
            for v in data.villages.values()
        ],
    )


def downgrade() -> None:
    op.execute(village.delete())
    op.execute(district.delete())
