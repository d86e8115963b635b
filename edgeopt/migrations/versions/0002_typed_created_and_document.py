"""`created` becomes a timezone-aware timestamp and `document` JSON (JSONB on PostgreSQL); device and bundle
get the indexes that history's filters use.

Every row is converted in Python, the same way on both databases: a `created` that is not ISO 8601 (only a
hand-made row could have one) becomes the time of this upgrade rather than stopping it; a document that is
not JSON is kept as a JSON string.

Revision ID: 0002
Revises: 0001
"""
import datetime
import json

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _created(text, now: datetime.datetime) -> datetime.datetime:
    """UTC, stored as such on SQLite (it keeps no zone), as timestamptz on PostgreSQL."""
    text = str(text)
    try:   # "Z" as UTC: Python 3.10's fromisoformat reads only "+00:00" (a migration keeps its own code)
        when = datetime.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        when = now
    when = when.replace(tzinfo=datetime.timezone.utc) if when.tzinfo is None else when
    return when.astimezone(datetime.timezone.utc)


def _document(text):
    """NaN and infinities (json.dumps wrote them; JSONB refuses them) become null, as edgeopt.store writes them now."""
    try:
        return json.loads(text, parse_constant=lambda _name: None)
    except ValueError:
        return text.replace("\x00", "")


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    op.add_column("results", sa.Column("created_at", sa.DateTime(timezone=True)))
    op.add_column("results", sa.Column("document_json", JSON))
    table = sa.table("results", sa.column("id", sa.Integer), sa.column("created", sa.String),
                     sa.column("document", sa.Text), sa.column("created_at", sa.DateTime(timezone=True)),
                     sa.column("document_json", JSON))
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = [{"row_id": r.id, "at": _created(r.created, now), "doc": _document(r.document)}
            for r in bind.execute(sa.select(table.c.id, table.c.created, table.c.document))]
    for row in rows:
        if sqlite:
            row["at"] = row["at"].replace(tzinfo=None)  # UTC wall time, as edgeopt.store.UtcDateTime writes it
    if rows:
        bind.execute(table.update().where(table.c.id == sa.bindparam("row_id"))
                     .values(created_at=sa.bindparam("at"), document_json=sa.bindparam("doc")), rows)
    with op.batch_alter_table("results") as batch:
        batch.drop_column("created")
        batch.drop_column("document")
        batch.alter_column("created_at", new_column_name="created", nullable=False,
                           existing_type=sa.DateTime(timezone=True))
        batch.alter_column("document_json", new_column_name="document", nullable=False, existing_type=JSON)
        batch.create_index("ix_results_device", ["device"])
        batch.create_index("ix_results_bundle", ["bundle"])


def downgrade() -> None:
    raise NotImplementedError("edgeopt does not downgrade a results store: restore a copy made before the upgrade")
