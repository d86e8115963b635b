"""The results history: one row per result, behind SQLAlchemy Core. An SQLite file by default
(results/edgeopt.db), any SQLAlchemy URL (PostgreSQL for a team) by --store or $EDGEOPT_STORE."""
from __future__ import annotations

import json
import os
import pathlib

import sqlalchemy as sa

from .errors import BadInput

metadata = sa.MetaData()
results_table = sa.Table(
    "results", metadata,
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


def default_url(results_dir) -> str:
    return os.environ.get("EDGEOPT_STORE") or f"sqlite:///{pathlib.Path(results_dir) / 'edgeopt.db'}"


class Store:
    def __init__(self, url: str):
        try:
            if url.startswith("sqlite:///"):
                pathlib.Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(url)
            metadata.create_all(self.engine)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, sa.exc.OperationalError) as e:
            raise BadInput(f"results store {url!r} is not usable: {str(e).splitlines()[0]}") from None

    def add(self, doc: dict, run_id: str | None = None) -> None:
        bundle, lat = doc.get("bundle") or {}, doc.get("latency") or {}
        row = {"created": doc.get("created", ""), "run_id": run_id, "bundle": bundle.get("name"),
               "bundle_sha256": bundle.get("manifest_sha256"), "device": (doc.get("device") or {}).get("name", "?"),
               "status": doc.get("status", "failed"), "p50_ms": lat.get("p50_ms"), "p90_ms": lat.get("p90_ms"),
               "p99_ms": lat.get("p99_ms"), "peak_rss_mb": (doc.get("memory") or {}).get("peak_rss_mb"),
               "power_w": (doc.get("power") or {}).get("mean_w"), "top1": (doc.get("accuracy") or {}).get("top1"),
               "error": (doc.get("error") or {}).get("message"), "path": doc.get("_path"),
               "document": json.dumps({k: v for k, v in doc.items() if not k.startswith("_")})}
        with self.engine.begin() as conn:
            conn.execute(results_table.insert().values(**row))

    def history(self, device: str | None = None, bundle: str | None = None, limit: int = 50) -> list:
        query = sa.select(*[c for c in results_table.c if c.name != "document"]).order_by(results_table.c.id.desc())
        if device:
            query = query.where(results_table.c.device == device)
        if bundle:
            query = query.where(results_table.c.bundle == bundle)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.limit(limit))]

    def close(self):
        self.engine.dispose()

    def last_good(self, bundle: str, device: str, before: str) -> dict | None:
        """The newest `ok` result of `bundle` on `device` created before `before` (an ISO time), as its
        document with `_path`, or None: the regression gate's baseline when CI keeps no files."""
        t = results_table.c
        query = (sa.select(t.id, t.path, t.document)
                 .where(t.bundle == bundle, t.device == device, t.status == "ok", t.created < before)
                 .order_by(t.created.desc(), t.id.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        try:
            doc = json.loads(row.document)
        except ValueError:
            raise BadInput(f"results store row {row.id} ({bundle}@{device}) holds no valid JSON document") from None
        doc["_path"] = f"results store row {row.id}"  # row.path is the latest file, since overwritten
        return doc
