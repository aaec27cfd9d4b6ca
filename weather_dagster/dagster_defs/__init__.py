"""The thin Dagster layer: one module per domain, each exporting its own ``Definitions``.

- ``reference_assets``: GFS / ERA5 / climatology assets, the ERA5 sensor, the ``reference`` resource.
- ``miner_assets``: ``forecast_round``, ``miner_forecast``, ``advance_miners_job``.
- ``scoring_assets`` (+ ``gates``, ``scoring_batch``): Day1 / ERA5 scores, the ERA5 gate, ``score_batch_job``.
- ``statistics``: ``subnet_snapshot``, ``miner_stats``, ``round_weights`` and their jobs.
- ``automation``: the round schedule, the sensors, ``round_status_job``.
- shared: ``partitions``, ``pools`` (pools and run tags), ``resources``, ``executors``.
``weather_dagster.definitions`` merges them (with ``chain.dagster_defs``) into the code location.
Decisions (run keys, batching, due work, readiness, round status) are plain functions in
``weather_dagster.orchestration``.
"""
