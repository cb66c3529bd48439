"""channel_snapshot_rows: the channels' views of their business days, for reconciliation

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-26 20:20:00
"""
import sqlalchemy as sa
from alembic import op

import domain.db

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('channel_snapshot_rows',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel_code', sa.String(length=32), nullable=False),
    sa.Column('business_day', sa.Date(), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('total_minor', sa.Integer(), nullable=False),
    sa.Column('channel_updated_at', domain.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', domain.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('submitted_by', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['channel_code'], ['channels.code'], name=op.f('fk_channel_snapshot_rows_channel_code_channels')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_channel_snapshot_rows')),
    sa.UniqueConstraint('channel_code', 'business_day', 'external_id', name=op.f('uq_channel_snapshot_rows_channel_code_business_day_external_id'))
    )
    op.create_index(
        'ix_channel_snapshot_rows_day', 'channel_snapshot_rows', ['channel_code', 'business_day']
    )


def downgrade() -> None:
    op.drop_index('ix_channel_snapshot_rows_day', table_name='channel_snapshot_rows')
    op.drop_table('channel_snapshot_rows')
