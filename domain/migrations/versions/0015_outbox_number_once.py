"""outbox numbering: a transaction's events numbered in one statement at commit

The deferred trigger of 0010 ran two single-row UPDATEs per event inside COMMIT while holding
the outbox head, so a batch of 500 ingested orders (1,500 events) held every other committer
for 3,000 statements. Now the first firing of a committing transaction numbers all of its
events at once (ordered by id, as before) and the other firings find their row numbered.
Only the committing transaction's own events are unnumbered and visible to it: others' are
either committed (numbered) or invisible.

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
    op.execute("""
        CREATE OR REPLACE FUNCTION ordergate_outbox_number() RETURNS trigger AS $$
        DECLARE
          n bigint;
          base bigint;
        BEGIN
          PERFORM 1 FROM outbox_events WHERE id = NEW.id AND seq IS NULL;
          IF NOT FOUND THEN
            RETURN NULL;  -- numbered by this transaction's first firing
          END IF;
          SELECT count(*) INTO n FROM outbox_events WHERE seq IS NULL;
          UPDATE outbox_head SET seq = seq + n WHERE id = 1 RETURNING seq - n INTO base;
          UPDATE outbox_events e SET seq = base + t.rn
            FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn
                    FROM outbox_events WHERE seq IS NULL) t
           WHERE e.id = t.id;
          RETURN NULL;
        END $$ LANGUAGE plpgsql
    """)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("""
        CREATE OR REPLACE FUNCTION ordergate_outbox_number() RETURNS trigger AS $$
        DECLARE
          next_seq bigint;
        BEGIN
          UPDATE outbox_head SET seq = seq + 1 WHERE id = 1 RETURNING seq INTO next_seq;
          UPDATE outbox_events SET seq = next_seq WHERE id = NEW.id;
          RETURN NULL;
        END $$ LANGUAGE plpgsql
    """)
