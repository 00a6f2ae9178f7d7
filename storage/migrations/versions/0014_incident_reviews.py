"""incident_reviews, incident_review_notes, incident_review_actions: post-incident reviews, the notes on
their timelines and their follow-up actions (CSI items); tickets.resolved_at indexed for the sweep that opens
a review for each P1 and P2 resolved

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'incident_reviews',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('service_id', sa.String(length=64), nullable=False),
        sa.Column('priority', sa.String(length=4), nullable=False),
        sa.Column('owner', sa.String(length=64), nullable=False),
        sa.Column('due', sa.Date(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('opened_by', sa.String(length=64), nullable=False),
        sa.Column('opened_at', sa.DateTime(), nullable=False),
        sa.Column('what_happened', sa.Text(), nullable=False),
        sa.Column('what_by', sa.String(length=64), nullable=True),
        sa.Column('what_at', sa.DateTime(), nullable=True),
        sa.Column('impact', sa.Text(), nullable=False),
        sa.Column('impact_by', sa.String(length=64), nullable=True),
        sa.Column('impact_at', sa.DateTime(), nullable=True),
        sa.Column('factors', sa.Text(), nullable=False),
        sa.Column('factors_by', sa.String(length=64), nullable=True),
        sa.Column('factors_at', sa.DateTime(), nullable=True),
        sa.Column('done_at', sa.DateTime(), nullable=True),
        sa.Column('done_by', sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('ticket_id'),
    )
    op.create_index('ix_incident_reviews_open', 'incident_reviews', ['state', 'due'])
    op.create_index('ix_incident_reviews_service_id', 'incident_reviews', ['service_id'])
    op.create_index('ix_incident_reviews_owner', 'incident_reviews', ['owner'])
    for part in ('what', 'impact', 'factors'):
        op.create_index(f'ix_incident_reviews_{part}_by', 'incident_reviews', [f'{part}_by'])
    op.create_table(
        'incident_review_notes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('review_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('person_id', sa.String(length=64), nullable=False),
        sa.Column('written_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['review_id'], ['incident_reviews.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_incident_review_notes_review', 'incident_review_notes', ['review_id', 'at'])
    op.create_index('ix_incident_review_notes_person_id', 'incident_review_notes', ['person_id'])
    op.create_table(
        'incident_review_actions',
        sa.Column('review_id', sa.Integer(), nullable=False),
        sa.Column('csi_item_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['review_id'], ['incident_reviews.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['csi_item_id'], ['csi_items.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('review_id', 'csi_item_id'),
        sa.UniqueConstraint('csi_item_id'),
    )
    # The sweep looks for tickets resolved in the last days among every ticket ever imported.
    op.create_index('ix_tickets_resolved', 'tickets', ['resolved_at'])


def downgrade() -> None:
    op.drop_index('ix_tickets_resolved', table_name='tickets')
    op.drop_table('incident_review_actions')
    op.drop_index('ix_incident_review_notes_person_id', table_name='incident_review_notes')
    op.drop_index('ix_incident_review_notes_review', table_name='incident_review_notes')
    op.drop_table('incident_review_notes')
    for part in ('what', 'impact', 'factors'):
        op.drop_index(f'ix_incident_reviews_{part}_by', table_name='incident_reviews')
    op.drop_index('ix_incident_reviews_owner', table_name='incident_reviews')
    op.drop_index('ix_incident_reviews_service_id', table_name='incident_reviews')
    op.drop_index('ix_incident_reviews_open', table_name='incident_reviews')
    op.drop_table('incident_reviews')
