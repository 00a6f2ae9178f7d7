"""problems, problem_incidents and problem_suggestions: problems with their known errors and fixes, the
incidents of each, and the incidents already suggested to a service owner as a cluster

Revision ID: 0015
Revises: 0014
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'problems',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('external_id', sa.String(length=128), nullable=True),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('services', sa.JSON(), nullable=False),
        sa.Column('owner', sa.String(length=64), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('symptom', sa.Text(), nullable=False),
        sa.Column('workaround', sa.Text(), nullable=False),
        sa.Column('cause', sa.Text(), nullable=False),
        sa.Column('article_id', sa.Integer(), nullable=True),
        sa.Column('fix_change_id', sa.Integer(), nullable=True),
        sa.Column('resolved_at', sa.DateTime(), nullable=True),
        sa.Column('reopened', sa.Integer(), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['article_id'], ['kb_articles.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['fix_change_id'], ['changes.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('source', 'external_id'),
    )
    op.create_index('ix_problems_state', 'problems', ['state', 'id'])
    op.create_index('ix_problems_owner', 'problems', ['owner'])
    op.create_index('ix_problems_created_by', 'problems', ['created_by'])
    op.create_table(
        'problem_incidents',
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('problem_id', sa.Integer(), nullable=False),
        sa.Column('person_id', sa.String(length=64), nullable=True),
        sa.Column('via', sa.String(length=16), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('workaround_told', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['problem_id'], ['problems.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('ticket_id'),
    )
    op.create_index('ix_problem_incidents_problem_id', 'problem_incidents', ['problem_id'])
    op.create_index('ix_problem_incidents_person_id', 'problem_incidents', ['person_id'])
    op.create_table(
        'problem_suggestions',
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('cluster', sa.Integer(), nullable=False),
        sa.Column('service_id', sa.String(length=64), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('ticket_id'),
    )
    op.create_index('ix_problem_suggestions_cluster', 'problem_suggestions', ['cluster'])


def downgrade() -> None:
    op.drop_index('ix_problem_suggestions_cluster', table_name='problem_suggestions')
    op.drop_table('problem_suggestions')
    op.drop_index('ix_problem_incidents_person_id', table_name='problem_incidents')
    op.drop_index('ix_problem_incidents_problem_id', table_name='problem_incidents')
    op.drop_table('problem_incidents')
    op.drop_index('ix_problems_created_by', table_name='problems')
    op.drop_index('ix_problems_owner', table_name='problems')
    op.drop_index('ix_problems_state', table_name='problems')
    op.drop_table('problems')
