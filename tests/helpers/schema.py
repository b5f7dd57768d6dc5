"""States that look written by an older reconciler: a schema version set back, the columns
it did not have dropped (upgrade and read-only tests, on both backends)."""

from __future__ import annotations

import sqlite3


def set_schema_version(location: str, version: str) -> None:
    if "://" in location:
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute(
                "UPDATE reconciler_meta SET value = %s WHERE key = 'schema_version'", (version,)
            )
    else:
        with sqlite3.connect(location) as conn:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))


def downgrade_to_version(location: str, version: int) -> None:
    """Make a store look like one written by an older schema: before 5, history rows name no
    lineage; before 4, users carry no indexed conference ID and enabled flag; in 1, not even
    their file."""
    drops = (["conference_id", "enabled"] if version < 4 else []) + ["file"] * (version == 1)
    prefix = "reconciler_" if "://" in location else ""
    statements = [f"ALTER TABLE {prefix}history DROP COLUMN lineage"] * (version < 5)
    if drops and not prefix:
        statements += ["DROP INDEX users_file", "DROP INDEX users_conference_id"]
    statements += [f"ALTER TABLE {prefix}users DROP COLUMN {column}" for column in drops]
    if prefix:
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            for statement in statements:  # a column's indexes go with it
                conn.execute(statement)
    else:
        with sqlite3.connect(location) as conn:
            for statement in statements:
                conn.execute(statement)
    set_schema_version(location, str(version))


def forget_source_files(location: str) -> None:
    """What an upgraded (schema 1) or migrated state looks like: file hashes, no user files."""
    if "://" in location:
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute("UPDATE reconciler_users SET file = NULL")
    else:
        with sqlite3.connect(location) as conn:
            conn.execute("UPDATE users SET file = NULL")
