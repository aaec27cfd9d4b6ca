"""Reference data: the canonical grid and variables, truth sources (GFS, ERA5, climatology), caches.

``sqlite3`` is imported here on purpose, before anything can import ``eccodes``: the eccodes wheel
bundles an old libsqlite3 (3.26, no ``RETURNING``), and whichever copy is loaded first serves the
whole process. Loaded after eccodes, SQLAlchemy's SQLite inserts with ``RETURNING`` fail.
"""

import sqlite3  # noqa: F401  (load the system SQLite before eccodes' bundled one)
