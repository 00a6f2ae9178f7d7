"""teams_conversations: the team's Microsoft 365 group id, to read a channel back through Graph

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('teams_conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('team_aad_group_id', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('teams_conversations', schema=None) as batch_op:
        batch_op.drop_column('team_aad_group_id')
