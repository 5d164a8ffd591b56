"""The accurate transcript: each candidate turn says which pass its text comes from, keeps the
live draft and the accurate pass's word timings; answer audio is kept until its pass is done.

Revision 0005, after 0004. Frozen like the others: types are spelled out here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("interview_turns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transcription", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("transcription_note", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("draft_text", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("words", sa.JSON(), nullable=True))

    op.create_table(
        "interview_answer_audio",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("turn_index", sa.Integer(), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("offset_ms", sa.Integer(), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("audio", sa.LargeBinary(), nullable=True),
        sa.Column("live_text", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_until", TIMESTAMP, nullable=True),
        sa.Column("deadline_at", TIMESTAMP, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("accurate_text", sa.Text(), nullable=True),
        sa.Column("words", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["session_id"], ["interview_sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id", "turn_index", "segment", name="uq_answer_audio_segment"),
    )
    op.create_index(
        "ix_interview_answer_audio_session_id", "interview_answer_audio", ["session_id"]
    )
    op.create_index("ix_interview_answer_audio_state", "interview_answer_audio", ["state"])


def downgrade() -> None:
    op.drop_table("interview_answer_audio")
    with op.batch_alter_table("interview_turns", schema=None) as batch_op:
        batch_op.drop_column("words")
        batch_op.drop_column("draft_text")
        batch_op.drop_column("transcription_note")
        batch_op.drop_column("transcription")
