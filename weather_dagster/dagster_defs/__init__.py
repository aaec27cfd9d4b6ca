"""The thin Dagster layer: resources, assets, checks, sensors and schedules over the plain modules."""
