"""Talking to miners without trusting them (SPEC sections 4-6).

- ``keys``: the validator hotkey (wallet file or seed) and fiber's signed headers.
- ``fiber_client.FiberClient``: handshake, encrypted calls, per-miner key cache, in-flight limit.
- ``protocol``: endpoint paths, request payloads, response models and status sets.
- ``perimeter``: registered-address-only URLs, private hosts refused unless allow-listed, no
  redirects, byte caps and whole-body deadlines.
- ``manifest``: verify a signed manifest and freeze it once.
- ``reader``: ``VerifiedStore`` (a Zarr store checked key by key against the frozen manifest, usable
  by ``xarray.open_zarr``) and ``VerifiedForecast`` (a ``ForecastSource``).
- ``opening.open_verified_forecast(settings, engine, run_id, miner_uid, miner_hotkey)``: what scoring
  calls to read a frozen forecast.
- ``metagraph``: the miner set (JSON file or the demo fleet's) and the ``miners`` table.
- ``lifecycle``: seed a round, then query / poll / freeze / open every miner, each outcome recorded
  on its own (``advance_round``, ``advance_until_waiting``, ``run_until_settled``).
- ``demo``: the demo fleet (``weather-dagster miners serve --count N``).
"""
