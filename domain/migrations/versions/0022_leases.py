"""leases: per webhook (deliveries claimed in short transactions) and per running job slot

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 18:10:00
"""
from alembic import op
import sqlalchemy as sa
import domain.db


revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('lease_until', domain.db.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('lease_until', domain.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column('attempts', sa.Integer(), server_default='1', nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.drop_column('attempts')
        batch_op.drop_column('lease_until')
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
