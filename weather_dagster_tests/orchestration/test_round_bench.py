"""The measurements ``bench_round`` relies on: score_batch's own CPU accounting, and the /proc sum
over a process session that still counts children after they exited."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from dagster import DagsterEventType, DagsterInstance

from weather_dagster.definitions import build_definitions
from weather_dagster_tests.benchmarks.bench_round import session_cpu_s
from weather_dagster_tests.scoring.test_scoring_dagster import GRID, PROFILES, scoring_settings, seed
from weather_dagster_tests.support.synthetic_scoring import SyntheticScoringInputs

__all__ = ["scoring_settings"]  # the fixture, re-used


def test_score_batch_reports_its_miners_and_the_cpu_inside_the_scoring_service(scoring_settings, database):
    init = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=12)
    inputs = SyntheticScoringInputs(GRID, profiles=PROFILES)
    run_id = seed(database.engine, init, inputs)
    defs = build_definitions(scoring_settings, database, scoring_inputs=inputs)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("miner", [str(uid) for uid in PROFILES])
    config = {"run_id": run_id, "date": init.strftime("%Y-%m-%d"), "kind": "day1", "uids": sorted(PROFILES)}
    result = defs.get_job_def("score_batch_job").execute_in_process(
        run_config={"ops": {"score_batch": {"config": config}}}, instance=instance
    )
    assert result.success
    outputs = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_OUTPUT]
    meta = {k: v.value for k, v in outputs[0].step_output_data.metadata.items()}
    assert meta["miners"] == len(PROFILES)
    # Every miner is accounted for; under the reference profile (as deployed) uid 3's extreme values
    # are not refused by Day1: it is scored, 0 (each variable fails sanity).
    assert meta["scored"] + meta["failed"] == len(PROFILES) and meta["scored"] >= 3
    assert 0.0 < meta["validator_cpu_s"] <= meta["op_cpu_s"]
    materialized = result.asset_materializations_for_node("score_batch")
    assert len(materialized) == meta["scored"]


def test_session_cpu_counts_a_child_that_already_exited():
    burn = "import time\nwhile time.process_time() < 0.3: pass"
    # The shell reaps the busy child, then waits: its CPU must show up through the shell's cutime.
    shell = subprocess.Popen(
        ["sh", "-c", f'"{sys.executable}" -c "{burn}"; echo done; sleep 30'],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert shell.stdout.readline().strip() == "done"
        total, kinds = session_cpu_s(shell.pid)
        assert total >= 0.25
        assert sum(kinds.values()) == pytest.approx(total)
        assert session_cpu_s(os.getsid(0))[0] > 0.0  # this test's own session is disjoint and busy too
    finally:
        shell.kill()
        shell.wait()
