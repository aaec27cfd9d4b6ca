"""Small stand-in assets with the production pools, for the infrastructure tests.

The real round's assets come from other areas; these three have the same shape that matters to the
executor and the pools: two miner-HTTP steps that may not overlap (pool limit 1) feeding one scoring
step. Each records the process it ran in and when, so a test can tell where and in which order the
steps executed. The executor is the product's, built from the settings in the environment, so this
module loads under ``dagster job execute -m`` and inside a Celery worker alike.
"""

import os
import time

from dagster import AssetExecutionContext, Definitions, asset, define_asset_job

from weather_dagster.dagster_defs.executors import build_executor
from weather_dagster.dagster_defs.pools import MINER_HTTP_POOL, SCORING_POOL
from weather_dagster.settings import load_settings

JOB_NAME = "stand_in_round"
# Long enough that two unpooled steps started together would overlap; short enough for a fast suite.
STEP_SECONDS = 0.3


def _work(context: AssetExecutionContext) -> dict[str, float]:
    started = time.time()
    time.sleep(STEP_SECONDS)
    record = {"pid": os.getpid(), "started": started, "ended": time.time()}
    context.add_output_metadata({key: float(value) for key, value in record.items()})
    return record


@asset(pool=MINER_HTTP_POOL)
def miner_http_a(context: AssetExecutionContext) -> dict:
    return _work(context)


@asset(pool=MINER_HTTP_POOL)
def miner_http_b(context: AssetExecutionContext) -> dict:
    return _work(context)


@asset(pool=SCORING_POOL)
def scoring(context: AssetExecutionContext, miner_http_a: dict, miner_http_b: dict) -> dict:
    record = _work(context)
    record["upstream_pids"] = float(len({miner_http_a["pid"], miner_http_b["pid"]}))
    return record


STAND_IN_ASSETS = [miner_http_a, miner_http_b, scoring]
stand_in_job = define_asset_job(JOB_NAME, selection=STAND_IN_ASSETS)


def build_stand_in_definitions() -> Definitions:
    return Definitions(assets=STAND_IN_ASSETS, jobs=[stand_in_job], executor=build_executor(load_settings()))


defs = build_stand_in_definitions()
