"""Hardening: a report's evaluation retried in the background, rate-limit counters shared by
every instance, and an index for the retention sweep.

Revision 0004, after 0003. Frozen like the others: types are spelled out here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("interview_reports", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("evaluation_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("evaluation_due_at", TIMESTAMP, nullable=True))
        batch_op.create_index("ix_interview_reports_evaluation_due_at", ["evaluation_due_at"])

    with op.batch_alter_table("interview_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_interview_sessions_ended_at", ["ended_at"])

    op.create_table(
        "interview_rate_limits",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_interview_rate_limits_expires_at", "interview_rate_limits", ["expires_at"])


def downgrade() -> None:
    op.drop_table("interview_rate_limits")
    with op.batch_alter_table("interview_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_interview_sessions_ended_at")
    with op.batch_alter_table("interview_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_interview_reports_evaluation_due_at")
        batch_op.drop_column("evaluation_due_at")
        batch_op.drop_column("evaluation_attempts")
