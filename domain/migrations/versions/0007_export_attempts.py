"""export production attempts, interrupted downloads

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 11:40:00
"""
from alembic import op
import sqlalchemy as sa
import domain.db


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('export_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('next_attempt_at', domain.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('failure_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('download_attempts', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('export_requests', schema=None) as batch_op:
        batch_op.drop_column('download_attempts')
        batch_op.drop_column('failure_reason')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')
