"""Field truth: the answer a farmer was told (a species or a group), and the chance an identified answer was drawn
for a blind audit (null: not an audit item).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("answer", sa.String(64)))
        batch.add_column(sa.Column("audit_rate", sa.Float))
        batch.create_index("ix_submissions_answer", ["answer"])
    # identified answers already stored name their answer in the stored response (issue 22: a species or a group)
    submissions = sa.table("submissions", sa.column("id", sa.String), sa.column("decision", sa.String),
                           sa.column("response", sa.JSON), sa.column("answer", sa.String))  # fmt: skip
    connection = op.get_bind()
    last = ""
    while True:
        rows = connection.execute(sa.select(submissions.c.id, submissions.c.response)
                                  .where(submissions.c.decision == "identified", submissions.c.id > last)
                                  .order_by(submissions.c.id).limit(BATCH)).all()  # fmt: skip
        if not rows:
            break
        for submission_id, response in rows:
            answer = ((response or {}).get("species") or {}).get("id")
            if answer:
                connection.execute(submissions.update().where(submissions.c.id == submission_id).values(answer=answer))
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_index("ix_submissions_answer")
        batch.drop_column("audit_rate")
        batch.drop_column("answer")
