"""When a submission was first decided (approved or rejected), kept through undos and late disputes: an audit item
once decided has had its answer shown, so no later verdict on it is blind (``audits.blind_to``). Items decided now
start with their decision time; one decided and reopened before this migration cannot be told and stays unmarked.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("first_decided_at", sa.DateTime(timezone=True)))
    decided = sa.table("submissions", sa.column("first_decided_at", sa.DateTime), sa.column("reviewed_at", sa.DateTime))
    op.get_bind().execute(decided.update().where(decided.c.reviewed_at.is_not(None))
                          .values(first_decided_at=decided.c.reviewed_at))  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("first_decided_at")
