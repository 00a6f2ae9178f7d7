"""the knowledge library: articles, their versions, alerts and reviews, and the full-text index

Revision ID: 0009
Revises: 0008

The index is the store's own full-text engine: on SQLite an FTS5 table over the published articles' columns
(external content, so the text is stored once) kept in step by triggers, ranked by bm25 with the title,
tags and alerts weighing more than the body; on PostgreSQL a generated tsvector column with a GIN index of
the published ones. Either way it changes in the same transaction as the article.
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# The indexed columns, in the order of the FTS5 table, and their weights in its bm25 rank.
INDEXED = ('title', 'body', 'symptom', 'workaround', 'cause', 'tags', 'alerts')
BM25_WEIGHTS = '8.0, 1.0, 3.0, 2.0, 2.0, 4.0, 4.0'

POSTGRES_DOCUMENT = (
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(tags::text, '') || ' ' "
    "|| coalesce(alerts::text, '')), 'B') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(symptom, '') || ' ' || coalesce(workaround, '') || ' ' "
    "|| coalesce(cause, '')), 'C') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(body, '')), 'D')")


def upgrade() -> None:
    op.create_table('kb_articles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('symptom', sa.Text(), nullable=False),
    sa.Column('workaround', sa.Text(), nullable=False),
    sa.Column('cause', sa.Text(), nullable=False),
    sa.Column('fixed_by', sa.String(length=64), nullable=False),
    sa.Column('services', sa.JSON(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('alerts', sa.JSON(), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=True),
    sa.Column('review_days', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=500), nullable=True),
    sa.Column('source_hash', sa.String(length=64), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('published_at', sa.DateTime(), nullable=True),
    sa.Column('retired_at', sa.DateTime(), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(), nullable=True),
    sa.Column('next_review_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source')
    )
    with op.batch_alter_table('kb_articles', schema=None) as batch_op:
        batch_op.create_index('ix_kb_articles_review', ['state', 'next_review_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_kb_articles_created_by'), ['created_by'], unique=False)

    op.create_table('kb_article_alerts',
    sa.Column('article_id', sa.Integer(), nullable=False),
    sa.Column('alert', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['article_id'], ['kb_articles.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('article_id', 'alert')
    )
    with op.batch_alter_table('kb_article_alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_kb_article_alerts_alert'), ['alert'], unique=False)

    op.create_table('kb_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('article_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('author', sa.String(length=64), nullable=True),
    sa.Column('via', sa.String(length=16), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('changed', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['article_id'], ['kb_articles.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('article_id', 'version')
    )
    with op.batch_alter_table('kb_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_kb_versions_author'), ['author'], unique=False)

    op.create_table('kb_reviews',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('article_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['article_id'], ['kb_articles.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('kb_reviews', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_kb_reviews_article_id'), ['article_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_kb_reviews_person_id'), ['person_id'], unique=False)

    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"ALTER TABLE kb_articles ADD COLUMN search tsvector "
                   f"GENERATED ALWAYS AS ({POSTGRES_DOCUMENT}) STORED")
        # Only published articles are searched: the index holds only them.
        op.execute("CREATE INDEX ix_kb_articles_search ON kb_articles USING gin (search) WHERE state = 'published'")
        return
    # The index holds published articles only, so a search needs no look at the articles to leave the others
    # out, and the engine can rank and cut to the first few by itself (ORDER BY rank LIMIT n).
    columns = ', '.join(INDEXED)
    new = ', '.join(f'new.{c}' for c in INDEXED)
    old = ', '.join(f'old.{c}' for c in INDEXED)
    op.execute(f"CREATE VIRTUAL TABLE kb_search USING fts5({columns}, content='kb_articles', content_rowid='id', "
               "tokenize='porter unicode61 remove_diacritics 2')")
    op.execute(f"INSERT INTO kb_search(kb_search, rank) VALUES ('rank', 'bm25({BM25_WEIGHTS})')")
    op.execute(f"CREATE TRIGGER kb_search_insert AFTER INSERT ON kb_articles WHEN new.state = 'published' BEGIN "
               f"INSERT INTO kb_search(rowid, {columns}) VALUES (new.id, {new}); END")
    op.execute(f"CREATE TRIGGER kb_search_delete AFTER DELETE ON kb_articles WHEN old.state = 'published' BEGIN "
               f"INSERT INTO kb_search(kb_search, rowid, {columns}) VALUES ('delete', old.id, {old}); END")
    op.execute(f"CREATE TRIGGER kb_search_update AFTER UPDATE OF {columns}, state ON kb_articles BEGIN "
               f"INSERT INTO kb_search(kb_search, rowid, {columns}) SELECT 'delete', old.id, {old} "
               "WHERE old.state = 'published'; "
               f"INSERT INTO kb_search(rowid, {columns}) SELECT new.id, {new} WHERE new.state = 'published'; END")


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        for trigger in ('kb_search_insert', 'kb_search_delete', 'kb_search_update'):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS kb_search")
    op.drop_table('kb_reviews')
    op.drop_table('kb_versions')
    op.drop_table('kb_article_alerts')
    op.drop_table('kb_articles')
