"""Reference data: the canonical grid and variables, truth sources (GFS, ERA5, climatology), caches."""
