"""``weather-dagster explain``: why a miner has (no) score yet, and what a round is waiting for.

Everything is read from the product's tables (the step log, the responses, the stats and score rows)
and judged by the same rules the validator applies: ``core.retry`` for attempts and backoff,
``orchestration.readiness`` for when an ERA5 lead may be scored. Error text is shown only after the
sanitiser (``core.errors``), since it may hold what a miner or a URL carried.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from weather_dagster.core.errors import sanitize_error
from weather_dagster.core.retry import RetryPolicy
from weather_dagster.core.states import StepName, StepStatus
from weather_dagster.db.schema import forecast_stats, forecast_steps, miner_responses, miner_scores, round_scores
from weather_dagster.db.types import utcnow
from weather_dagster.operator.rounds import find_response, find_round
from weather_dagster.orchestration.readiness import era5_due_time
from weather_dagster.settings import Settings

# Categories the retry policy never retries (core.retry._NO_RETRY, by the error classes' categories).
NEVER_RETRIED = {"invalid_data", "manifest", "safety", "rejected", "miner_failed"}
STEP_ORDER = [StepName.QUERY, StepName.POLL, StepName.MANIFEST, StepName.DAY1, StepName.ERA5]
SOURCE_NAMES = {"arco": "ARCO", "cds": "CDS"}


def _t(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}Z"


def _hour(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H}Z"


def clean_message(text: str | None, limit: int = 300) -> str | None:
    """The sanitised, one-line form of a stored error message."""
    if not text:
        return None
    message = " ".join(sanitize_error(str(text))["message"].split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _attempts(row: sa.Row) -> int:
    """Attempts made so far: ``retry_count`` counts the finished ones, a running or passed step adds its own."""
    if row.status in (StepStatus.SUCCEEDED.value, StepStatus.IN_PROGRESS.value):
        return row.retry_count + 1
    return row.retry_count


def published_text(published: Mapping[str, datetime | None] | None) -> str:
    if published is None:
        return "the ERA5 sources were not asked (the next sensor tick asks them)"
    parts = [
        f"{SOURCE_NAMES.get(name, name)} " + (f"has published up to {_hour(stop)}" if stop else "did not answer")
        for name, stop in published.items()
    ]
    return "; ".join(parts) or "no ERA5 source is configured"


def era5_rule(
    init_time: datetime,
    lead: int,
    settings: Settings,
    now: datetime,
    published: Mapping[str, datetime | None] | None,
) -> str:
    """The readiness rule of one lead in words: what it waits for, and what the sources have."""
    valid = init_time + timedelta(hours=lead)
    due = era5_due_time(init_time, lead, settings)
    if now < due:
        return f"lead {lead} h waits for the clock: ERA5 valid {_hour(valid)} is expected at {_t(due)}"
    stops = [stop for stop in (published or {}).values() if stop is not None]
    if stops and max(stops) >= valid:
        return f"lead {lead} h: ERA5 valid {_hour(valid)} is published ({published_text(published)}); scored next"
    return f"lead {lead} h waits for ERA5 valid {_hour(valid)}; {published_text(published)}"


@dataclass(frozen=True)
class StepLine:
    step: str
    status: str
    attempts: int
    max_attempts: int
    last_error: str | None
    next_at: datetime | None
    rule: str

    def line(self) -> str:
        text = f"  {self.step:<12} {self.status:<18} attempts {self.attempts}/{self.max_attempts}"
        if self.status == StepStatus.SUCCEEDED.value:
            return f"{text}  ({self.rule})"
        if self.next_at is not None:
            text += f"  next {_t(self.next_at)}"
        text += f"\n      rule: {self.rule}"
        if self.last_error:
            text += f"\n      last error: {self.last_error}"
        return text


def step_line(
    row: sa.Row,
    policy: RetryPolicy,
    settings: Settings,
    init_time: datetime,
    now: datetime,
    published: Mapping[str, datetime | None] | None,
) -> StepLine:
    """One step row, with the rule that decides what happens to it next."""
    name = StepName(row.step_name)
    max_attempts = policy.attempts_for(name)
    attempts = _attempts(row)
    error = row.error_json or {}
    category = error.get("category")
    status = row.status
    label = f"{name}:{row.lead_hours}h" if row.lead_hours else str(name)
    if status == StepStatus.SUCCEEDED.value:
        rule = f"done at {_t(row.completed_at)}"
    elif status == StepStatus.FAILED.value:
        if category in NEVER_RETRIED:
            rule = f"failed for good: {category} errors are never retried"
        else:
            rule = f"failed for good: {attempts} of {max_attempts} attempts used"
    elif status == StepStatus.IN_PROGRESS.value:
        # A run that dies is marked failed (run monitoring) and step_failure_sensor retries its steps.
        lease = "; if its run dies, step_failure_sensor schedules the next attempt"
        if row.lease_expires_at:
            lease = f"; if its worker dies it is claimed again after {_t(row.lease_expires_at)}"
        rule = f"attempt {attempts} running since {_t(row.started_at)} (Dagster run {row.dagster_run_id or '-'}){lease}"
    elif name is StepName.ERA5:
        rule = era5_rule(init_time, row.lead_hours, settings, now, published)
    elif status == StepStatus.RETRY_SCHEDULED.value:
        when = "now (overdue)" if row.next_retry_time and row.next_retry_time <= now else _t(row.next_retry_time)
        rule = f"attempt {attempts + 1} of {max_attempts} after a {category or 'transient'} error, due {when}"
    elif status == StepStatus.WAITING_FOR_TRUTH.value:
        waiting_for = (row.context or {}).get("waiting_for", "-")
        rule = f"waits for truth ({waiting_for}); checked again {_t(row.next_retry_time)}"
    else:
        due = _t(row.next_retry_time) if row.next_retry_time else "now"
        rule = f"pending, due {due}: the next sensor tick claims it"
    last_error = clean_message(error.get("message")) if status != StepStatus.SUCCEEDED.value else None
    if last_error and category:
        last_error = f"[{category}] {last_error}"
    next_at = row.next_retry_time if status not in (StepStatus.SUCCEEDED.value, StepStatus.FAILED.value) else None
    return StepLine(label, status, attempts, max_attempts, last_error, next_at, rule)


@dataclass
class MinerExplanation:
    round_date: date
    run_id: int
    round_status: str
    uid: int
    hotkey: str
    status: str
    reason: str | None
    stage: str | None
    steps: list[StepLine] = field(default_factory=list)
    scores: list[str] = field(default_factory=list)
    next_up: str = ""
    missing_leads: list[int] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"round {self.round_date} 00Z (run {self.run_id}): {self.round_status}",
            f"miner uid {self.uid} ({self.hotkey}): {self.status}" + (f" - {self.reason}" if self.reason else ""),
            f"  stage: {self.stage or '-'}",
            "steps:",
            *(step.line() for step in self.steps),
            *([_missing_line(self.missing_leads)] if self.missing_leads else []),
            f"next: {self.next_up}",
            "scores:" if self.scores else "scores: none yet",
            *(f"  {line}" for line in self.scores),
        ]
        return out


def _score_lines(conn: sa.Connection, run_id: int, uid: int) -> list[str]:
    s = miner_scores.c
    rows = conn.execute(
        sa.select(s.score_type, s.lead_hours, s.variable, s.score)
        .where(s.run_id == run_id, s.miner_uid == uid)
        .order_by(s.score_type, s.lead_hours, s.variable)
    ).all()
    lines = []
    per_variable = Counter((r.score_type, r.lead_hours) for r in rows if r.variable)
    for r in rows:
        if r.variable:
            continue
        value = "-" if r.score is None else f"{r.score:.4f}"
        lead = f" {r.lead_hours} h" if r.score_type != "day1" or r.lead_hours else ""
        extra = per_variable.get((r.score_type, r.lead_hours))
        lines.append(f"{r.score_type}{lead}: {value}" + (f" ({extra} variable rows)" if extra else ""))
    total = conn.execute(
        sa.select(round_scores.c.score, round_scores.c.overall_score).where(
            round_scores.c.run_id == run_id, round_scores.c.miner_uid == uid
        )
    ).first()
    stats = conn.execute(
        sa.select(forecast_stats.c.overall_forecast_score, forecast_stats.c.miner_rank).where(
            forecast_stats.c.run_id == run_id, forecast_stats.c.miner_uid == uid
        )
    ).first()
    if total is not None:
        lines.append(f"round score: {total.score:.4f} (overall {total.overall_score})")
    if stats is not None and stats.overall_forecast_score is not None:
        lines.append(f"overall forecast score: {stats.overall_forecast_score:.4f}, rank {stats.miner_rank}")
    return lines


def _missing_line(leads: list[int]) -> str:
    hours = ", ".join(str(lead) for lead in leads)
    return (
        f"  era5 {hours} h: no step yet (each is seeded by the round sensor once Day1 has scored and the lead is due)"
    )


# The round sensor starts Day1 for a ready forecast with no Day1 step yet (orchestration.due._due_day1).
DAY1_DUE = "due now: the forecast is ready and has no Day1 step; the next round_sensor tick requests it"


def _next_up(response_status: str, steps: list[StepLine], missing_leads: list[int], first_missing_rule: str) -> str:
    if response_status in ("era5_scored", "failed", "cancelled"):
        return f"nothing: the forecast is {response_status}"
    if response_status == "forecast_ready" and not any(s.step == StepName.DAY1.value for s in steps):
        return f"day1: {DAY1_DUE}"
    open_steps = [s for s in steps if s.status not in (StepStatus.SUCCEEDED.value, StepStatus.FAILED.value)]
    if open_steps:
        first = min(open_steps, key=lambda s: (s.next_at is not None, s.next_at or datetime.min))
        return f"{first.step}: {first.rule}"
    if missing_leads and response_status in ("day1_scored", "era5_scoring"):
        return f"era5:{missing_leads[0]}h: {first_missing_rule}"
    if missing_leads:
        return f"ERA5 leads {missing_leads} are seeded once Day1 has scored"
    return "nothing open: the round's next sensor tick settles this forecast"


def explain_miner(
    engine: sa.Engine,
    settings: Settings,
    round_date: date,
    uid: int,
    *,
    now: datetime | None = None,
    published: Mapping[str, datetime | None] | None = None,
) -> MinerExplanation:
    """Everything about one miner's forecast in one round; ``published`` is the ERA5 sources' reach."""
    now = now or utcnow()
    policy = RetryPolicy.from_settings(settings)
    with engine.connect() as conn:
        run = find_round(conn, round_date)
        response = find_response(conn, run.id, uid)
        stats = conn.execute(
            sa.select(forecast_stats).where(forecast_stats.c.run_id == run.id, forecast_stats.c.miner_uid == uid)
        ).first()
        rows = conn.execute(
            sa.select(forecast_steps).where(forecast_steps.c.run_id == run.id, forecast_steps.c.miner_uid == uid)
        ).all()
        scores = _score_lines(conn, run.id, uid)
    order = {name.value: i for i, name in enumerate(STEP_ORDER)}
    rows = sorted(rows, key=lambda r: (order.get(r.step_name, 99), r.lead_hours, r.substep))
    steps = [step_line(r, policy, settings, run.gfs_init_time_utc, now, published) for r in rows]
    seeded = {r.lead_hours for r in rows if r.step_name == StepName.ERA5.value}
    missing = [lead for lead in settings.scoring.era5_lead_hours if lead not in seeded]
    # A Day1-scored forecast's next lead has no step until it is ready: the readiness rule says when.
    first_rule = era5_rule(run.gfs_init_time_utc, missing[0], settings, now, published) if missing else ""
    reason = None
    if response.failure_category or response.error_message:
        reason = f"{response.failure_category or 'error'}: {clean_message(response.error_message) or '-'}"
    stage = None
    if stats is not None and stats.current_forecast_stage:
        stage = f"{stats.current_forecast_stage} {stats.current_forecast_status or ''}".strip()
    return MinerExplanation(
        round_date,
        run.id,
        run.status,
        uid,
        response.miner_hotkey,
        response.status,
        reason,
        stage,
        steps,
        scores,
        _next_up(response.status, steps, missing, first_rule),
        missing if response.status not in ("failed", "cancelled") else [],
    )


@dataclass
class RoundExplanation:
    round_date: date
    run_id: int
    status: str
    counts: dict[str, int]
    reasons: list[tuple[str, int]]

    def lines(self) -> list[str]:
        total = sum(self.counts.values())
        out = [f"round {self.round_date} 00Z (run {self.run_id}): {self.status}; {total} miners"]
        out += [f"  {status:<18} {count}" for status, count in sorted(self.counts.items())]
        out.append("most common reasons a miner is not (yet) scored:" if self.reasons else "every miner is scored")
        out += [f"  {count:>3} x {reason}" for reason, count in self.reasons]
        return out


def _reason_key(text: str) -> str:
    """Group reasons that differ only in numbers (ports, uids, sizes)."""
    return re.sub(r"\d+", "N", text)


def _open_steps(conn: sa.Connection, run_id: int) -> dict[int, sa.Row]:
    """Each miner's next open step (earliest due first): what an in-flight forecast waits on."""
    st = forecast_steps.c
    rows = conn.execute(
        sa.select(st.miner_uid, st.step_name, st.lead_hours, st.status, st.next_retry_time)
        .where(
            st.run_id == run_id,
            st.miner_uid >= 0,
            st.status.notin_([StepStatus.SUCCEEDED.value, StepStatus.FAILED.value]),
        )
        .order_by(st.next_retry_time.asc().nulls_first(), st.lead_hours)
    ).all()
    first: dict[int, sa.Row] = {}
    for row in rows:
        first.setdefault(row.miner_uid, row)
    return first


def explain_round(engine: sa.Engine, round_date: date) -> RoundExplanation:
    """Counts per miner state and the five most common reasons a forecast is not scored."""
    r = miner_responses.c
    with engine.connect() as conn:
        run = find_round(conn, round_date)
        rows = conn.execute(
            sa.select(r.miner_uid, r.status, r.failure_category, r.error_message).where(r.run_id == run.id)
        ).all()
        open_steps = _open_steps(conn, run.id)
    counts = Counter(row.status for row in rows)
    reasons: Counter[str] = Counter()
    example: dict[str, str] = {}  # reasons that differ only in numbers count as one, shown by its first text
    for row in rows:
        if row.status == "era5_scored":
            continue
        if row.status in ("failed", "cancelled"):
            reason = f"{row.status}: {row.failure_category or 'error'}: {clean_message(row.error_message, 120) or '-'}"
        elif (step := open_steps.get(row.miner_uid)) is not None:
            label = f"{step.step_name}:{step.lead_hours}h" if step.lead_hours else step.step_name
            reason = f"{row.status}: next {label} ({step.status})"
        elif row.status == "forecast_ready":
            reason = f"{row.status}: next day1 (due now)"
        elif row.status in ("day1_scored", "era5_scoring"):
            reason = f"{row.status}: next ERA5 lead not started (seeded when its truth is ready)"
        else:
            reason = f"{row.status}: no open step (the next sensor tick moves it on)"
        key = _reason_key(reason)
        example.setdefault(key, reason)
        reasons[key] += 1
    top = [(example[key], count) for key, count in reasons.most_common(5)]
    return RoundExplanation(round_date, run.id, run.status, dict(counts), top)
