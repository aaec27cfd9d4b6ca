"""Switch-over: copy a Gaia v2.9.x validator database's weather history into this project's tables.

Why: weights are the mean of the round vectors of the last 15 days, so a validator that starts empty
pays for two weeks as if every miner had scored 0 on the days before the switch. Importing Gaia's own
round vectors keeps the window continuous: on the first day, ``stats/weights.py`` computes the same
weights from the imported rounds as ``compute_weights`` does from Gaia's ``score_table`` rows.

Idempotent: every row is inserted on its natural key with ``ON CONFLICT DO NOTHING`` and every value
comes from the source (no ``now()``), so a second import changes nothing. A round this project
already created itself (same ``gfs_init_time_utc``, a different ``run_initiation_time``) is left
alone with everything under it: this project's own data wins and the report counts the round as
skipped. An imported round is recognised by carrying Gaia's ``run_initiation_time``. The whole
import is one target transaction (all or nothing).

Mapping (Gaia column -> this project's column; "-" = not kept; constants in quotes):

=====================================  ==================================================================
Gaia                                   weather-dagster
=====================================  ==================================================================
node_table.uid/hotkey/coldkey/ip/port  miners.uid/hotkey/coldkey/ip ('' if NULL), port (0 if NULL); kept
                                       so weights zero the same address-less uids as Gaia did
node_table.stake, last_updated         miners.stake (0 if NULL), updated_at
node_table.incentive/trust/vtrust/...  -
runs.gfs_init_time_utc                 weather_forecast_runs.gfs_init_time_utc (the natural key; of two Gaia
                                       runs for one init time, the one with a round vector, else the latest)
runs.run_initiation_time               run_initiation_time, created_at, updated_at
runs.status                            status: completed -> completed, failure words -> error, else
                                       expired (imported rounds are history, never resumed here)
runs.completion_time                   completed_at
runs.error_message                     error_message; a status other than completed is kept there
                                       as "gaia status '<status>'"
(none)                                 previous_step_time_utc = init - round.previous_step_offset_hours,
                                       test_mode = false, miner_count = the run's Gaia responses
runs.target_forecast_time_utc,         -
gfs_input_metadata,
final_scoring_attempted_time
responses.run_id/miner_uid/hotkey      weather_miner_responses.run_id (mapped)/miner_uid/miner_hotkey
responses.status                       status by the furthest stage reached (gaia_source.response_status);
                                       failed rows get failure_category 'gaia_import'
responses.job_id, kerchunk_json_url    job_id, zarr_store_url (Gaia keeps the miner's store URL there)
responses.frozen_manifest_files        frozen_manifest
responses.verification_hash_claimed,   verification_hash_claimed, manifest_frozen_at, response_time
manifest_frozen_at, response_time      (response_time also created_at, updated_at)
responses.inference_started_at,        inference_started_at, inference_completed_at
inference_completed_at
responses.day1/era5_scoring_           day1_scored_at, era5_scored_at
completed_at
responses.retry_count (NULL -> 0),     retry_count, next_retry_time, error_message
next_retry_time, error_message
responses.kerchunk_json_retrieved,     -
verification_hash_computed/passed,
input_hash_*, last_polled_time,
job_accepted_at, total_pipeline_...
scores.response_id/run_id (mapped)     weather_miner_scores.response_id/run_id
scores.miner_uid/hotkey, score_type    miner_uid/miner_hotkey, score_type verbatim (day1_qc_score,
                                       era5_rmse_2t_24h, ...: never mixed with this project's day1/era5)
scores.lead_hours (NULL -> 0)          lead_hours
scores.variable_level (NULL -> '')     variable
scores.score (NaN -> NULL), metrics    score, metrics (+ gaia_error_message when Gaia recorded one)
scores.valid_time_utc,                 valid_time_utc, calculation_time; scoring_profile 'reference'
calculation_time                       (Gaia's key also has valid_time_utc: of rows differing only
                                       there, the latest calculation is kept)
stats.run_id (mapped; NULL -> skipped) weather_forecast_stats.run_id
stats.miner_uid/hotkey,                miner_uid/miner_hotkey, forecast_init_time, miner_rank
forecast_init_time, miner_rank
stats.forecast_status                  forecast_status (gaia_source.stats_status)
stats.current_forecast_stage/status    current_forecast_stage / current_forecast_status (NULL if not
                                       a step status here)
stats.last_error_message,              last_error_message, retries_remaining, next_scheduled_retry
retries_remaining, next_...retry
stats.forecast_score_initial, era5_    same names (NaN -> NULL)
combined_score, era5_completeness,
overall_forecast_score, avg_rmse,
avg_acc, avg_skill_score
stats.forecast_inference_duration_s    forecast_inference_time; hosting_status, hosting_latency_ms
stats.created_at, updated_at           created_at, updated_at; scoring_profile 'reference'
stats.era5_score_24h..240h,            - (the per-lead scores are in weather_miner_scores)
forecast_error_msg, forecast_type,
forecast_input_sources, validator_hk
score_table (task_name 'weather',      weather_round_scores, one row per uid with a finite value:
task_id weather_scores_<run>_<init>    run_id (mapped), miner_uid, score = uid_<n>_score,
or initial_/final_weather_scores_<run>) miner_hotkey = the uid's response in that run (else node_table,
                                       else ''), overall_score = stats.overall_forecast_score,
                                       winner_bonus 0 (Gaia does not record it), computed_at = created_at
(a run with both task_id forms)        the weather_scores_ row (Gaia's window would count both rows)
score_table 'final_weather_scores',    - (belong to no round; counted as skipped)
other tasks
=====================================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from weather_dagster.db import gaia_rows
from weather_dagster.db import gaia_source as g
from weather_dagster.db.engine import make_engine
from weather_dagster.db.schema import (
    forecast_runs,
    forecast_stats,
    miner_responses,
    miner_scores,
    miners,
    round_scores,
)
from weather_dagster.db.upsert import insert_for
from weather_dagster.settings import Settings

BATCH = 2000
TARGETS = (miners, forecast_runs, miner_responses, miner_scores, forecast_stats, round_scores)


@dataclass
class TableReport:
    read: int = 0
    inserted: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


@dataclass
class ImportReport:
    tables: dict[str, TableReport] = field(default_factory=lambda: {t.name: TableReport() for t in TARGETS})

    def lines(self) -> list[str]:
        out = []
        for name, t in self.tables.items():
            skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(t.skipped.items()))
            out.append(f"{name}: read {t.read}, inserted {t.inserted}" + (f", skipped: {skipped}" if skipped else ""))
        return out


def import_reference(
    source_url: str, target: sa.Engine, settings: Settings, *, since: datetime | None = None
) -> ImportReport:
    """Copy the Gaia database at ``source_url`` into ``target`` (already migrated); returns the counts."""
    try:
        source = make_engine(source_url)
    except sa.exc.ArgumentError as exc:
        raise g.ImportReferenceError(f"not a database URL: {exc}") from exc
    shown = source.url.render_as_string(hide_password=True)
    try:
        try:
            with source.connect():
                pass
        except sa.exc.DBAPIError as exc:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise g.ImportReferenceError(f"cannot connect to the Gaia database {shown}: {reason}") from exc
        g.check_schema(source)
        report = ImportReport()
        with _snapshot(source) as src, target.begin() as dst:
            before = {t.name: _count(dst, t) for t in TARGETS}
            _Copy(src, dst, settings, since, report).run()
            for t in TARGETS:
                report.tables[t.name].inserted = _count(dst, t) - before[t.name]
        return report
    finally:
        source.dispose()


def _snapshot(source: sa.Engine) -> sa.Connection:
    """On PostgreSQL, one read-only REPEATABLE READ transaction: a Gaia validator still running cannot
    make the tables disagree between queries, and the importer cannot write to Gaia's database."""
    conn = source.connect()
    if source.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    return conn


def _count(conn: sa.Connection, table: sa.Table) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _batches(rows: Iterable[dict[str, Any]], size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Copy:
    """One import: source ids are mapped to target ids table by table, parents before children."""

    def __init__(
        self, src: sa.Connection, dst: sa.Connection, settings: Settings, since: datetime | None, report: ImportReport
    ) -> None:
        self.src, self.dst, self.settings, self.since, self.report = src, dst, settings, since, report
        self.run_ids: dict[int, int] = {}  # Gaia run id -> target run id (imported rounds only)
        self.response_ids: dict[int, tuple[int, int]] = {}  # Gaia response id -> target (response id, run id)
        self.response_hotkeys: dict[tuple[int, int], str] = {}  # (target run, uid) -> hotkey
        self.node_hotkeys: dict[int, str] = {}
        self.overall: dict[tuple[int, int], float | None] = {}  # (target run, uid) -> overall score

    def run(self) -> None:
        self.copy_miners()
        self.copy_runs()
        self.copy_responses()
        self.copy_scores()
        self.copy_stats()
        self.copy_round_vectors()

    def _insert(self, table: sa.Table, rows: Iterable[dict[str, Any]]) -> None:
        # RETURNING makes SQLAlchemy send each batch as multi-row VALUES pages ("insertmanyvalues"), which
        # it does not do for a bare ON CONFLICT insert: psycopg2 would then make one round trip per row.
        stmt = insert_for(self.dst, table).on_conflict_do_nothing().returning(*table.primary_key.columns)
        for batch in _batches(rows):
            self.dst.execute(stmt, batch).all()

    def _stream(self, query: sa.Select) -> Iterator[sa.Row]:
        yield from self.src.execution_options(stream_results=True, yield_per=BATCH).execute(query)

    def copy_miners(self) -> None:
        report = self.report.tables[miners.name]

        def rows() -> Iterator[dict[str, Any]]:
            for row in self._stream(sa.select(*g.node_table.c)):
                report.read += 1
                if row.uid is None or not 0 <= row.uid < g.N_UIDS:
                    report.skip("uid outside 0-255")
                    continue
                if row.hotkey:
                    self.node_hotkeys[row.uid] = row.hotkey
                yield gaia_rows.miner(row)

        self._insert(miners, rows())

    def copy_runs(self) -> None:
        report = self.report.tables[forecast_runs.name]
        r, resp, t = g.runs.c, g.responses.c, forecast_runs.c
        counts = dict(self.src.execute(sa.select(resp.run_id, sa.func.count()).group_by(resp.run_id)).all())
        existing = dict(self.dst.execute(sa.select(t.gfs_init_time_utc, t.run_initiation_time)).all())
        query = sa.select(*g.runs.c)
        if self.since is not None:
            query = query.where(r.gfs_init_time_utc >= self.since)
        # Two Gaia runs for one init time (a restarted round): keep the one with a round vector, else the latest.
        task_ids = self.src.execute(sa.select(g.score_table.c.task_id).where(g.score_table.c.task_name == "weather"))
        with_vector = {parsed[0] for parsed in map(g.vector_run_id, task_ids.scalars()) if parsed}
        ordered = sorted(self.src.execute(query), key=lambda row: (row.id not in with_vector, -row.id))
        offset = timedelta(hours=self.settings.round.previous_step_offset_hours)
        pending: dict[datetime, int] = {}
        rows = []
        for row in ordered:
            report.read += 1
            init = g.utc(row.gfs_init_time_utc)
            if init in existing and existing[init] != g.utc(row.run_initiation_time):
                report.skip("rounds this project already has")
                continue
            if init in pending:
                report.skip("other Gaia runs of the same init time")
                continue
            pending[init] = row.id
            rows.append(gaia_rows.run(row, counts.get(row.id, 0), offset))
        self._insert(forecast_runs, sorted(rows, key=lambda row: row["gfs_init_time_utc"]))  # ids in time order
        found = self.dst.execute(sa.select(t.gfs_init_time_utc, t.id)).all()
        self.run_ids = {pending[init]: run_id for init, run_id in found if init in pending}

    def copy_responses(self) -> None:
        report = self.report.tables[miner_responses.name]
        c = g.responses.c
        keys: dict[int, tuple[int, int, str]] = {}

        def rows() -> Iterator[dict[str, Any]]:
            for row in self._stream(sa.select(*c).order_by(c.id)):
                report.read += 1
                run_id = self.run_ids.get(row.run_id)
                if run_id is None:
                    report.skip("outside the imported rounds")
                    continue
                if not 0 <= row.miner_uid < g.N_UIDS:
                    report.skip("uid outside 0-255")
                    continue
                out = gaia_rows.response(row, run_id)
                keys[row.id] = (run_id, row.miner_uid, out["miner_hotkey"])
                self.response_hotkeys[(run_id, row.miner_uid)] = out["miner_hotkey"]
                yield out

        self._insert(miner_responses, rows())
        r = miner_responses.c
        imported = set(self.run_ids.values())
        target = {
            (run_id, uid, hotkey): rid
            for rid, run_id, uid, hotkey in self.dst.execute(
                sa.select(r.id, r.run_id, r.miner_uid, r.miner_hotkey).where(r.run_id.in_(imported))
            )
        }
        self.response_ids = {src_id: (target[key], key[0]) for src_id, key in keys.items() if key in target}

    def copy_scores(self) -> None:
        report = self.report.tables[miner_scores.name]
        c = g.scores.c
        query = sa.select(*c).order_by(c.response_id, c.calculation_time.desc(), c.id.desc())

        def rows() -> Iterator[dict[str, Any]]:
            current, seen = None, set()
            for row in self._stream(query):
                report.read += 1
                if row.response_id not in self.response_ids:
                    report.skip("outside the imported responses")
                    continue
                response_id, run_id = self.response_ids[row.response_id]
                if response_id != current:
                    current, seen = response_id, set()
                key = gaia_rows.score_key(row)
                if key in seen:
                    report.skip("older calculations of the same score")
                    continue
                seen.add(key)
                yield gaia_rows.score(row, response_id, run_id)

        self._insert(miner_scores, rows())

    def copy_stats(self) -> None:
        report = self.report.tables[forecast_stats.name]
        c = g.stats.c
        seen: set[tuple[int, int, str]] = set()

        def rows() -> Iterator[dict[str, Any]]:
            for row in self._stream(sa.select(*c).order_by(c.updated_at.desc(), c.id.desc())):
                report.read += 1
                run_id = self.run_ids.get(row.run_id) if row.run_id is not None else None
                if run_id is None:
                    report.skip("outside the imported rounds")
                    continue
                out = gaia_rows.stats(row, run_id)
                key = (run_id, row.miner_uid, out["miner_hotkey"])
                if key in seen:
                    report.skip("older rows for the same miner and round")
                    continue
                seen.add(key)
                self.overall[(run_id, row.miner_uid)] = out["overall_forecast_score"]
                yield out

        self._insert(forecast_stats, rows())

    def copy_round_vectors(self) -> None:
        report = self.report.tables[round_scores.name]
        c = g.score_table.c
        best: dict[int, tuple[int, sa.Row]] = {}
        for row in self._stream(sa.select(*c).where(c.task_name == "weather")):
            parsed = g.vector_run_id(row.task_id)
            if parsed is None:
                report.skip("score_table rows of no round")
                continue
            source_run, preference = parsed
            if source_run not in self.run_ids:
                report.skip("score_table rows outside the imported rounds")
                continue
            if source_run in best:
                report.skip("superseded score_table rows")  # the row kept is the preferred task_id form
                if best[source_run][0] <= preference:
                    continue
            best[source_run] = (preference, row)
        rows = []
        for source_run, (_pref, row) in sorted(best.items()):
            run_id = self.run_ids[source_run]
            for uid, column in enumerate(g.UID_COLUMNS):
                report.read += 1
                value = g.finite(row._mapping[column])
                if value is None:
                    report.skip("NULL or NaN uid scores")
                    continue
                hotkey = self.response_hotkeys.get((run_id, uid)) or self.node_hotkeys.get(uid, "")
                rows.append(gaia_rows.round_score(run_id, uid, value, hotkey, self.overall.get((run_id, uid)), row))
        self._insert(round_scores, rows)
