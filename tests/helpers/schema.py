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
    """Make a store look like one written by an older schema: before 4, users carry no
    indexed conference ID and enabled flag; in 1, not even their file."""
    drops = ["conference_id", "enabled"] + ["file"] * (version == 1)
    if "://" in location:
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            for column in drops:  # its indexes go with it
                conn.execute(f"ALTER TABLE reconciler_users DROP COLUMN {column}")
    else:
        with sqlite3.connect(location) as conn:
            conn.execute("DROP INDEX users_file")
            conn.execute("DROP INDEX users_conference_id")
            for column in drops:
                conn.execute(f"ALTER TABLE users DROP COLUMN {column}")
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
