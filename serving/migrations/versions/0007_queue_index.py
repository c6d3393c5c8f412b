"""The review queue is filtered by status and ordered by time in the database: one index for both.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_submissions_status_created_at", "submissions", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_submissions_status_created_at", table_name="submissions")
