"""weather-dagster: the validator of a Bittensor weather subnet, rebuilt as a Dagster project.

Pipeline folders: ``reference`` (truth data) -> ``miners`` (forecasts) -> ``scoring`` -> ``stats``;
``core`` and ``db`` hold the state model every stage writes through; ``orchestration`` decides what
runs when; ``dagster_defs`` is the thin Dagster layer on top.
"""

# Load order of native libraries, decided once for every entry point (CLI, Dagster, tests): the
# eccodes wheel bundles its own old libsqlite3 (3.26, no RETURNING) and libraries that clash with
# psycopg2's libpq at interpreter exit (a segfault after any PostgreSQL connection). Whichever copy
# loads first serves the process, so the system SQLite and psycopg2 are loaded before eccodes can be.
import sqlite3  # noqa: F401

import psycopg2  # noqa: F401

__version__ = "0.1.0"
