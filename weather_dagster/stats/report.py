"""What an operator looks at after a round: a ranked table and PNG plots, read from the tables.

The queries are here; the figures are built from plain data in ``plots.py``.

Used by ``make demo`` and attached to the ``subnet_snapshot`` materialization, so the terminal and
the Dagster UI show the same thing.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from weather_dagster.db.schema import forecast_stats, forecast_steps, miner_responses, miner_scores
from weather_dagster.stats.plots import LeaderboardRow, leaderboard_figure, score_by_lead_figure, timeline_figure


@dataclass(frozen=True)
class RankedMiner:
    uid: int
    hotkey: str
    status: str
    day1: float | None
    era5: float | None
    completeness: float | None
    overall: float | None
    rank: int | None
    reason: str
    failure_category: str | None = None


def ranked_miners(engine: sa.Engine, run_id: int) -> list[RankedMiner]:
    s, r = forecast_stats.c, miner_responses.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                s.miner_uid,
                s.miner_hotkey,
                r.status,
                s.forecast_score_initial,
                s.era5_combined_score,
                s.era5_completeness,
                s.overall_forecast_score,
                s.miner_rank,
                r.failure_category,
                r.error_message,
            )
            .join(
                miner_responses,
                sa.and_(r.run_id == s.run_id, r.miner_uid == s.miner_uid, r.miner_hotkey == s.miner_hotkey),
            )
            .where(s.run_id == run_id)
        ).all()
    miners = [
        RankedMiner(
            x.miner_uid,
            x.miner_hotkey,
            x.status,
            x.forecast_score_initial,
            x.era5_combined_score,
            x.era5_completeness,
            x.overall_forecast_score,
            x.miner_rank,
            (x.failure_category or "") + (f": {x.error_message}" if x.error_message else ""),
            x.failure_category,
        )
        for x in rows
    ]
    return sorted(miners, key=lambda m: (-(m.overall or 0.0), m.uid))


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def ranked_table(miners: list[RankedMiner], width: int = 60) -> str:
    header = f"{'#':>3} {'uid':>4} {'status':<14} {'day1':>7} {'era5':>7} {'done':>5} {'overall':>8}  reason"
    lines = [header, "-" * len(header)]
    for position, m in enumerate(miners, start=1):
        lines.append(
            f"{position:>3} {m.uid:>4} {m.status:<14} {_fmt(m.day1):>7} {_fmt(m.era5):>7} "
            f"{_fmt(m.completeness, '.0%'):>5} {_fmt(m.overall):>8}  {m.reason[:width]}"
        )
    return "\n".join(lines)


def lead_scores(engine: sa.Engine, run_id: int) -> dict[int, dict[int, float]]:
    sc = miner_scores.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(sc.miner_uid, sc.lead_hours, sc.score).where(
                sc.run_id == run_id, sc.score_type == "era5", sc.variable == "", sc.score.is_not(None)
            )
        ).all()
    result: dict[int, dict[int, float]] = {}
    for uid, lead, score in rows:
        result.setdefault(uid, {})[lead] = score
    return result


def step_spans(engine: sa.Engine, run_id: int) -> list[tuple[int, str, datetime, datetime, str]]:
    st = forecast_steps.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(st.miner_uid, st.step_name, st.started_at, st.completed_at, st.updated_at, st.status).where(
                st.run_id == run_id, st.miner_uid >= 0, st.started_at.is_not(None)
            )
        ).all()
    return [(r.miner_uid, r.step_name, r.started_at, r.completed_at or r.updated_at, r.status) for r in rows]


def write_plots(engine: sa.Engine, run_id: int, out_dir: Path) -> list[Path]:
    """Score by lead per miner, the leaderboard and the miner state timeline, as PNG files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [LeaderboardRow(m.uid, m.status, m.overall, m.failure_category) for m in ranked_miners(engine, run_id)]
    figures = {
        "score_by_lead": score_by_lead_figure(lead_scores(engine, run_id)),
        "leaderboard": leaderboard_figure(rows),
        "miner_timeline": timeline_figure(step_spans(engine, run_id)),
    }
    paths = []
    for name, fig in figures.items():
        paths.append(out_dir / f"{name}.png")
        fig.savefig(paths[-1], dpi=90, bbox_inches="tight")
    return paths


def png_markdown(path: Path) -> str:
    """A PNG as an inline markdown image (a data URI), for asset metadata shown in the Dagster UI."""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"![{path.stem}](data:image/png;base64,{encoded})"
