"""weather-dagster: the validator of a Bittensor weather subnet, rebuilt as a Dagster project.

Pipeline folders: ``reference`` (truth data) -> ``miners`` (forecasts) -> ``scoring`` -> ``stats``;
``core`` and ``db`` hold the state model every stage writes through; ``dagster_defs`` is the thin
Dagster layer on top.
"""

__version__ = "0.1.0"
