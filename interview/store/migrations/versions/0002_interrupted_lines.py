"""Interrupted lines: why an interviewer line was cut, and the whole line it was meant to be.

Revision 0002, after 0001. Both columns are nullable: every existing line was heard whole. The
enum is a plain VARCHAR(16) like the others (interview.store.tables.enum_column).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("interview_turns", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "interruption",
                sa.Enum("barge_in", "withdrawn", name="interruption", native_enum=False, length=16),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("planned_text", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("interview_turns", schema=None) as batch_op:
        batch_op.drop_column("planned_text")
        batch_op.drop_column("interruption")
