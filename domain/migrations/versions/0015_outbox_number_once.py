"""outbox numbering by the writer: each event row written once, numbered as it is inserted

The deferred trigger of 0010 ran two single-row UPDATEs per event inside COMMIT while holding
the outbox head: a batch of 500 ingested orders (1,500 events) wrote every event twice and
held the other committers for 3,000 statements. The events are now inserted, numbered, by the
transaction's last statement before COMMIT, which claims the numbers from the head (and so
holds it until COMMIT: seq still follows commit order). See domain/events/service.py.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-26 23:10:00
"""
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER outbox_events_number ON outbox_events")
    op.execute("DROP FUNCTION ordergate_outbox_number()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
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
