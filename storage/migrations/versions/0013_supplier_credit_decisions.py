"""credit_decisions: a month's service credits of an underpinning contract, marked claimed or waived

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'credit_decisions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('supplier', sa.String(length=64), nullable=False),
        sa.Column('agreement_id', sa.String(length=64), nullable=False),
        sa.Column('month', sa.String(length=7), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('amount', sa.String(length=32), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('decided_by', sa.String(length=64), nullable=False),
        sa.Column('decided_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('agreement_id', 'month'),
    )
    op.create_index('ix_credit_decisions_supplier', 'credit_decisions', ['supplier'])
    op.create_index('ix_credit_decisions_decided_by', 'credit_decisions', ['decided_by'])


def downgrade() -> None:
    op.drop_index('ix_credit_decisions_decided_by', table_name='credit_decisions')
    op.drop_index('ix_credit_decisions_supplier', table_name='credit_decisions')
    op.drop_table('credit_decisions')
