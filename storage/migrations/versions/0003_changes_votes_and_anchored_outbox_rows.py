"""changes votes and anchored outbox rows

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=True),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=True),
    sa.Column('risk', sa.String(length=16), nullable=False),
    sa.Column('impact', sa.String(length=16), nullable=False),
    sa.Column('planned_start', sa.DateTime(), nullable=False),
    sa.Column('planned_end', sa.DateTime(), nullable=False),
    sa.Column('actual_start', sa.DateTime(), nullable=True),
    sa.Column('actual_end', sa.DateTime(), nullable=True),
    sa.Column('requester', sa.String(length=64), nullable=True),
    sa.Column('implementer', sa.String(length=64), nullable=True),
    sa.Column('implementation_plan', sa.Text(), nullable=False),
    sa.Column('backout_plan', sa.Text(), nullable=False),
    sa.Column('test_plan', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=True),
    sa.Column('approvals_needed', sa.Integer(), nullable=False),
    sa.Column('override', sa.JSON(), nullable=True),
    sa.Column('prompts_sent', sa.JSON(), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=True),
    sa.Column('announcements', sa.JSON(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('state_since', sa.DateTime(), nullable=True),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'external_id')
    )
    with op.batch_alter_table('changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_changes_due_at'), ['due_at'], unique=False)
        batch_op.create_index('ix_changes_state', ['state', 'planned_start'], unique=False)
        batch_op.create_index('ix_changes_window', ['planned_start'], unique=False)
        batch_op.create_index('ix_changes_done', ['actual_end'], unique=False)

    op.create_table('change_services',
    sa.Column('change_id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.String(length=64), nullable=False),
    sa.Column('planned_start', sa.DateTime(), nullable=False),
    sa.Column('planned_end', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['change_id'], ['changes.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('change_id', 'service_id')
    )
    with op.batch_alter_table('change_services', schema=None) as batch_op:
        batch_op.create_index('ix_change_services_window', ['service_id', 'planned_start', 'planned_end'], unique=False)

    op.create_table('change_votes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('change_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('via', sa.String(length=32), nullable=False),
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('withdrawn_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['change_id'], ['changes.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('change_votes', schema=None) as batch_op:
        batch_op.create_index('ix_change_votes_change', ['change_id', 'withdrawn_at'], unique=False)

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('anchor_key', sa.String(length=256), nullable=True))
        batch_op.create_index(batch_op.f('ix_outbox_anchor_key'), ['anchor_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_platform_message_id'), ['platform_message_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_platform_message_id'))
        batch_op.drop_index(batch_op.f('ix_outbox_anchor_key'))
        batch_op.drop_column('anchor_key')

    with op.batch_alter_table('change_votes', schema=None) as batch_op:
        batch_op.drop_index('ix_change_votes_change')

    op.drop_table('change_votes')
    with op.batch_alter_table('change_services', schema=None) as batch_op:
        batch_op.drop_index('ix_change_services_window')

    op.drop_table('change_services')
    with op.batch_alter_table('changes', schema=None) as batch_op:
        batch_op.drop_index('ix_changes_window')
        batch_op.drop_index('ix_changes_done')
        batch_op.drop_index('ix_changes_state')
        batch_op.drop_index(batch_op.f('ix_changes_due_at'))

    op.drop_table('changes')
