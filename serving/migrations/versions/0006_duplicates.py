"""Duplicate photos: each photo's perceptual hash, and the earlier submission a submission repeats.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("phash", sa.String(16)))
        batch.create_index("ix_photos_phash", ["phash"])
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("duplicate_of", sa.String(32)))
        batch.create_index("ix_submissions_duplicate_of", ["duplicate_of"])


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_index("ix_submissions_duplicate_of")
        batch.drop_column("duplicate_of")
    with op.batch_alter_table("photos") as batch:
        batch.drop_index("ix_photos_phash")
        batch.drop_column("phash")
