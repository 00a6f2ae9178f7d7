"""scheduled runs (digest and report slots) and report commentary

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('scheduled_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job', sa.String(length=120), nullable=False),
    sa.Column('slot_at', sa.DateTime(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('decided_at', sa.DateTime(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job', 'slot_at')
    )
    op.create_table('report_comments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('report_comments', schema=None) as batch_op:
        batch_op.create_index('ix_report_comments_scope', ['scope', 'month'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('report_comments', schema=None) as batch_op:
        batch_op.drop_index('ix_report_comments_scope')
    op.drop_table('report_comments')
    op.drop_table('scheduled_runs')
