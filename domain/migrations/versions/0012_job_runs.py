"""job_runs: scheduled job slots, claimed once across workers

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 18:30:00
"""
import sqlalchemy as sa
from alembic import op

import domain.db

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job', sa.String(length=64), nullable=False),
    sa.Column('slot', domain.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', domain.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', domain.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_runs')),
    sa.UniqueConstraint('job', 'slot', name=op.f('uq_job_runs_job_slot'))
    )


def downgrade() -> None:
    op.drop_table('job_runs')
