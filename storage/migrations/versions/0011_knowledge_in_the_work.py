"""kb_ticket_links: the articles that helped with a ticket; kb_articles.review_stage: how far a due review's
asking has gone; outages.runbook: the runbook an alert named; catalogue_reviews and catalogue_confirmations:
when each service's catalogue entry is next confirmed by its owner, and the answers given

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'kb_ticket_links',
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('article_id', sa.Integer(), nullable=False),
        sa.Column('person_id', sa.String(length=64), nullable=True),
        sa.Column('via', sa.String(length=16), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['article_id'], ['kb_articles.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('ticket_id', 'article_id'),
    )
    op.create_index('ix_kb_ticket_links_article_id', 'kb_ticket_links', ['article_id'])
    op.create_index('ix_kb_ticket_links_person_id', 'kb_ticket_links', ['person_id'])
    # Plain ALTER TABLE ADD COLUMN: a batch copy of kb_articles would drop SQLite's full-text triggers.
    op.add_column('kb_articles', sa.Column('review_stage', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('outages', sa.Column('runbook', sa.String(length=500), nullable=True))
    op.create_table(
        'catalogue_reviews',
        sa.Column('service_id', sa.String(length=64), nullable=False),
        sa.Column('due_at', sa.DateTime(), nullable=False),
        sa.Column('stage', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('confirmed_at', sa.DateTime(), nullable=True),
        sa.Column('confirmed_by', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('service_id'),
    )
    op.create_table(
        'catalogue_confirmations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('service_id', sa.String(length=64), nullable=False),
        sa.Column('person_id', sa.String(length=64), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_catalogue_confirmations_service_id', 'catalogue_confirmations', ['service_id'])
    op.create_index('ix_catalogue_confirmations_person_id', 'catalogue_confirmations', ['person_id'])


def downgrade() -> None:
    op.drop_index('ix_catalogue_confirmations_person_id', table_name='catalogue_confirmations')
    op.drop_index('ix_catalogue_confirmations_service_id', table_name='catalogue_confirmations')
    op.drop_table('catalogue_confirmations')
    op.drop_table('catalogue_reviews')
    op.drop_column('outages', 'runbook')
    op.drop_column('kb_articles', 'review_stage')
    op.drop_index('ix_kb_ticket_links_person_id', table_name='kb_ticket_links')
    op.drop_index('ix_kb_ticket_links_article_id', table_name='kb_ticket_links')
    op.drop_table('kb_ticket_links')
