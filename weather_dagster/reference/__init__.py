"""Reference data: the canonical grid and variables, truth sources (GFS, ERA5, climatology), caches.

eccodes bundles native libraries that must load after the system SQLite and psycopg2's; the package
``weather_dagster/__init__.py`` fixes that order for every entry point.
"""
