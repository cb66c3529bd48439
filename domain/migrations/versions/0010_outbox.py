"""transactional outbox: outbox_events and outbox_head, seq given at commit on PostgreSQL

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 18:00:00
"""
import sqlalchemy as sa
from alembic import op

import domain.db

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outbox_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_outbox_head_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_head'))
    )
    op.execute("INSERT INTO outbox_head (id, seq) VALUES (1, 0)")
    op.create_table('outbox_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('aggregate_type', sa.String(length=32), nullable=False),
    sa.Column('aggregate_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('at', domain.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_outbox_events_event_id')),
    sa.UniqueConstraint('seq', name=op.f('uq_outbox_events_seq'))
    )
    op.create_index('ix_outbox_events_aggregate', 'outbox_events', ['aggregate_type', 'aggregate_id', 'version'])
    if op.get_bind().dialect.name != "postgresql":
        return
    # Committers take their numbers inside COMMIT, in the order they commit: no gaps, and a
    # reader resuming after a seq never misses a transaction that committed after it read.
    op.execute("""
        CREATE FUNCTION ordergate_outbox_number() RETURNS trigger AS $$
        DECLARE
          next_seq bigint;
        BEGIN
          UPDATE outbox_head SET seq = seq + 1 WHERE id = 1 RETURNING seq INTO next_seq;
          UPDATE outbox_events SET seq = next_seq WHERE id = NEW.id;
          RETURN NULL;
        END $$ LANGUAGE plpgsql
    """)
    op.execute(
        "CREATE CONSTRAINT TRIGGER outbox_events_number AFTER INSERT ON outbox_events "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ordergate_outbox_number()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER outbox_events_number ON outbox_events")
        op.execute("DROP FUNCTION ordergate_outbox_number()")
    op.drop_index('ix_outbox_events_aggregate', table_name='outbox_events')
    op.drop_table('outbox_events')
    op.drop_table('outbox_head')
