"""The results table as edgeopt 0.1 made it (metadata.create_all, no alembic_version).

A store made by that version already has the table: this revision then checks it is edgeopt's and leaves it
as it is, so the next revision upgrades it in place with its rows.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

from edgeopt.errors import BadInput

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

COLUMNS = ("id", "created", "run_id", "bundle", "bundle_sha256", "device", "status", "p50_ms", "p90_ms", "p99_ms",
           "peak_rss_mb", "power_w", "top1", "error", "path", "document")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if inspector.has_table("results"):
        missing = set(COLUMNS) - {c["name"] for c in inspector.get_columns("results")}
        if missing:
            raise BadInput(f"its table `results` was not made by edgeopt (it has no column {', '.join(sorted(missing))})")
        return
    op.create_table(
        "results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("run_id", sa.String(80)),
        sa.Column("bundle", sa.String(200)),
        sa.Column("bundle_sha256", sa.String(64)),
        sa.Column("device", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("p50_ms", sa.Float), sa.Column("p90_ms", sa.Float), sa.Column("p99_ms", sa.Float),
        sa.Column("peak_rss_mb", sa.Float), sa.Column("power_w", sa.Float), sa.Column("top1", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("path", sa.Text),
        sa.Column("document", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("results")
