"""tickets, clocks, notices and outages

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('fingerprint', sa.String(length=128), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'fingerprint')
    )
    with op.batch_alter_table('outages', schema=None) as batch_op:
        batch_op.create_index('ix_outages_service', ['service_id', 'started_at'], unique=False)

    op.create_table('settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('tickets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=True),
    sa.Column('service_id', sa.String(length=64), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('priority', sa.String(length=4), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('assignment_group', sa.String(length=128), nullable=True),
    sa.Column('supplier', sa.String(length=64), nullable=True),
    sa.Column('opened_at', sa.DateTime(), nullable=False),
    sa.Column('responded_at', sa.DateTime(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(), nullable=True),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('opened_by', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'external_id')
    )
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.create_index('ix_tickets_open', ['service_id', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_tickets_service_id'), ['service_id'], unique=False)

    op.create_table('sla_clocks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('agreement_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('metric', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.String(length=4), nullable=False),
    sa.Column('target_seconds', sa.Double(), nullable=False),
    sa.Column('elapsed_seconds', sa.Double(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('breached', sa.Boolean(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=True),
    sa.Column('stopped_at', sa.DateTime(), nullable=True),
    sa.Column('computed_at', sa.DateTime(), nullable=False),
    sa.Column('next_check_at', sa.DateTime(), nullable=True),
    sa.Column('notified_level', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ticket_id', 'agreement_id', 'metric')
    )
    with op.batch_alter_table('sla_clocks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sla_clocks_agreement_id'), ['agreement_id'], unique=False)
        batch_op.create_index('ix_sla_clocks_due', ['next_check_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sla_clocks_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('ticket_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=128), nullable=True),
    sa.Column('person_id', sa.String(length=64), nullable=True),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ticket_events', schema=None) as batch_op:
        batch_op.create_index('ix_ticket_events_ticket', ['ticket_id', 'at', 'id'], unique=False)

    op.create_table('clock_notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('clock_id', sa.Integer(), nullable=False),
    sa.Column('level', sa.Double(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('acknowledged_by', sa.String(length=64), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['clock_id'], ['sla_clocks.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('clock_id', 'level')
    )


def downgrade() -> None:
    op.drop_table('clock_notices')
    with op.batch_alter_table('ticket_events', schema=None) as batch_op:
        batch_op.drop_index('ix_ticket_events_ticket')

    op.drop_table('ticket_events')
    with op.batch_alter_table('sla_clocks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sla_clocks_ticket_id'))
        batch_op.drop_index('ix_sla_clocks_due')
        batch_op.drop_index(batch_op.f('ix_sla_clocks_agreement_id'))

    op.drop_table('sla_clocks')
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tickets_service_id'))
        batch_op.drop_index('ix_tickets_open')

    op.drop_table('tickets')
    op.drop_table('settings')
    with op.batch_alter_table('outages', schema=None) as batch_op:
        batch_op.drop_index('ix_outages_service')

    op.drop_table('outages')
