"""audit appends sealed at commit on PostgreSQL: audit_pending and its deferred trigger

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 16:40:00
"""
import sqlalchemy as sa
from alembic import op

import domain.db

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

EVENT_COLUMNS = (
    "at, actor_id, username, roles, client_ip, peer_ip, user_agent, request_id, operation, "
    "action, target_type, target_id, outcome, code, details"
)


def upgrade() -> None:
    op.create_table('audit_pending',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', domain.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('username', sa.String(length=64), nullable=True),
    sa.Column('roles', sa.Text(), nullable=False),
    sa.Column('client_ip', sa.String(length=64), nullable=True),
    sa.Column('peer_ip', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=512), nullable=True),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('operation', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target_type', sa.String(length=64), nullable=True),
    sa.Column('target_id', sa.String(length=64), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=True),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('digest_head', sa.Text(), nullable=False),
    sa.Column('digest_tail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_pending'))
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    # hash(n) = SHA-256(prev_hash ‖ canonical JSON of event n), as domain/audit/chain.py
    # computes it; the app sends the JSON around the sequence number, which only the head
    # knows. Deferred row triggers fire at COMMIT in insertion order, so a transaction's events
    # keep their order, and the head is locked only while the commit completes.
    op.execute(f"""
        CREATE FUNCTION ordergate_audit_seal() RETURNS trigger AS $$
        DECLARE
          next_seq bigint;
          prev text;
        BEGIN
          UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash
            INTO next_seq, prev;
          INSERT INTO audit_events (seq, {EVENT_COLUMNS}, prev_hash, hash)
          VALUES (
            next_seq, NEW.at, NEW.actor_id, NEW.username, NEW.roles, NEW.client_ip,
            NEW.peer_ip, NEW.user_agent, NEW.request_id, NEW.operation, NEW.action,
            NEW.target_type, NEW.target_id, NEW.outcome, NEW.code, NEW.details, prev,
            encode(sha256(convert_to(
              prev || NEW.digest_head || next_seq::text || NEW.digest_tail, 'UTF8'
            )), 'hex')
          );
          DELETE FROM audit_pending WHERE id = NEW.id;
          RETURN NULL;
        END $$ LANGUAGE plpgsql
    """)
    op.execute(
        "CREATE CONSTRAINT TRIGGER audit_pending_seal AFTER INSERT ON audit_pending "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ordergate_audit_seal()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_pending_seal ON audit_pending")
        op.execute("DROP FUNCTION ordergate_audit_seal()")
    op.drop_table('audit_pending')
