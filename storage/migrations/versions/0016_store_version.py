"""store_version: one row whose number the store's triggers move on with every write to service_status,
outages, people and identities, so that a replica may keep `status` and who asked in memory and check with one read
that they still hold

Revision ID: 0016
Revises: 0015
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = "0015"
branch_labels = None
depends_on = None

TABLES = ("service_status", "outages", "people", "identities")  # storage.models_answers.VERSIONED_TABLES, as of this revision
BUMP = "UPDATE store_version SET version = version + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        'store_version',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.execute("INSERT INTO store_version (id, version) VALUES (1, 0)")
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("CREATE FUNCTION svcbot_store_version_bump() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN {BUMP}; RETURN NULL; END $$")
        for table in TABLES:  # once a statement, however many rows it wrote
            op.execute(f"CREATE TRIGGER {table}_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION svcbot_store_version_bump()")
        return
    for table in TABLES:  # SQLite's triggers are by row only
        for what in ("insert", "update", "delete"):
            op.execute(f"CREATE TRIGGER {table}_version_{what} AFTER {what.upper()} ON {table} BEGIN {BUMP}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_version ON {table}")
        op.execute("DROP FUNCTION IF EXISTS svcbot_store_version_bump()")
    else:
        for table in TABLES:
            for what in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_version_{what}")
    op.drop_table('store_version')
