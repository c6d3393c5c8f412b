"""Blind answers: a review given on an audit item while the model's answer was hidden from its officer is marked,
and only those count in the precision estimate (a verdict given after the reveal, or changed by an undo, does not).

Reviews stored before are marked as the old rules drew them, where the audit log shows it: each officer's first
review of each audit item, if the item was still open (waiting or disputed) just before it; a first review of an
item already decided was given with its answer on show. An officer who undid and relabelled after the reveal is
counted by their first answer.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("blind", sa.Boolean, nullable=False, server_default=sa.false()))
    reviews = sa.table("reviews", sa.column("id", sa.Integer), sa.column("submission_id", sa.String),
                       sa.column("user_id", sa.Integer), sa.column("blind", sa.Boolean))  # fmt: skip
    submissions = sa.table("submissions", sa.column("id", sa.String), sa.column("audit_rate", sa.Float))
    first = (sa.select(sa.func.min(reviews.c.id)).select_from(reviews.join(submissions, submissions.c.id == reviews.c.submission_id))
             .where(submissions.c.audit_rate.is_not(None)).group_by(reviews.c.submission_id, reviews.c.user_id))  # fmt: skip
    ids = [row[0] for row in op.get_bind().execute(first)]
    log = sa.table("audit_log", sa.column("review_id", sa.Integer), sa.column("before", sa.JSON))
    open_before: set[int] = set()
    for start in range(0, len(ids), 1000):
        entries = op.get_bind().execute(sa.select(log.c.review_id, log.c.before)
                                        .where(log.c.review_id.in_(ids[start : start + 1000])))  # fmt: skip
        open_before |= {
            rid for rid, before in entries if (before or {}).get("status") in ("pending_review", "disputed")
        }
    ids = [i for i in ids if i in open_before]
    for start in range(0, len(ids), 1000):
        op.get_bind().execute(reviews.update().where(reviews.c.id.in_(ids[start : start + 1000])).values(blind=True))


def downgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("blind")
