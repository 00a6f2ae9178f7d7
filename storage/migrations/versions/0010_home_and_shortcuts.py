"""tickets and changes: the chat message they were raised from; home_views: who opened svcbot's home, and
what it last showed them

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('tickets', 'changes'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('permalink', sa.String(length=1000), nullable=True))
    op.create_table(
        'home_views',
        sa.Column('platform', sa.String(length=16), nullable=False),
        sa.Column('external_id', sa.String(length=128), nullable=False),
        sa.Column('person_id', sa.String(length=64), nullable=False),
        sa.Column('opened_at', sa.DateTime(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=True),
        sa.Column('published_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('platform', 'external_id'),
    )
    op.create_index('ix_home_views_person_id', 'home_views', ['person_id'])


def downgrade() -> None:
    op.drop_index('ix_home_views_person_id', table_name='home_views')
    op.drop_table('home_views')
    for table in ('changes', 'tickets'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('permalink')
