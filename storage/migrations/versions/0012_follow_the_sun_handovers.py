"""handovers: the open work a group hands to the next at the end of its shift, who took it over and when,
and when it went to the service managers

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'handovers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('from_group', sa.String(length=64), nullable=False),
        sa.Column('to_group', sa.String(length=64), nullable=False),
        sa.Column('shift_end', sa.DateTime(), nullable=False),
        sa.Column('posted_at', sa.DateTime(), nullable=False),
        sa.Column('tickets', sa.JSON(), nullable=False),
        sa.Column('due_at', sa.DateTime(), nullable=True),
        sa.Column('taken_by', sa.String(length=64), nullable=True),
        sa.Column('taken_at', sa.DateTime(), nullable=True),
        sa.Column('taken_tickets', sa.JSON(), nullable=False),
        sa.Column('escalated_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('from_group', 'shift_end'),
    )
    op.create_index('ix_handovers_to_group', 'handovers', ['to_group'])
    op.create_index('ix_handovers_due_at', 'handovers', ['due_at'])
    op.create_index('ix_handovers_taken_by', 'handovers', ['taken_by'])


def downgrade() -> None:
    op.drop_index('ix_handovers_taken_by', table_name='handovers')
    op.drop_index('ix_handovers_due_at', table_name='handovers')
    op.drop_index('ix_handovers_to_group', table_name='handovers')
    op.drop_table('handovers')
