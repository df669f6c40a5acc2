"""The benches' own PostgreSQL databases: a data-version marker kept as the database's comment, so a
bench rebuilds its data when the way it builds them changed, and reuses them otherwise."""

from __future__ import annotations

import json
import os

import psycopg
from psycopg import sql


def _maintenance() -> tuple[psycopg.Connection, str]:
    base, name = os.environ["DATABASE_URL"].rsplit("/", 1)
    return psycopg.connect(f"{base}/postgres", autocommit=True), name


def _sql(template: str, name: str, literal: str = "") -> sql.Composed:
    return sql.SQL(template).format(name=sql.Identifier(name), literal=sql.Literal(literal))


def database_marker() -> dict | None:
    """The data-version marker of the database named by DATABASE_URL, or None when there is no database."""
    conn, name = _maintenance()
    with conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
    if row is None:
        return None
    try:
        marker = json.loads(row[0] or "{}")
    except ValueError:
        marker = {}
    return marker if isinstance(marker, dict) else {}


def database_recreate() -> None:
    conn, name = _maintenance()
    with conn:
        conn.execute(_sql("DROP DATABASE IF EXISTS {name} WITH (FORCE)", name))
        conn.execute(_sql("CREATE DATABASE {name}", name))


def database_mark(marker: dict) -> None:
    conn, name = _maintenance()
    with conn:
        conn.execute(_sql("COMMENT ON DATABASE {name} IS {literal}", name, json.dumps(marker)))
