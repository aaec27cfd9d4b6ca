"""What an operator looks at after a round: a ranked table and PNG plots, read from the tables.

Used by ``make demo`` and attached to the ``subnet_snapshot`` materialization, so the terminal and
the Dagster UI show the same thing.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display here, and no GUI backend in worker processes
import matplotlib.pyplot as plt
import sqlalchemy as sa

from weather_dagster.db.schema import forecast_stats, forecast_steps, miner_responses, miner_scores


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
    paths = []

    fig, ax = plt.subplots(figsize=(9, 5))
    for uid, leads in sorted(lead_scores(engine, run_id).items()):
        xs = sorted(leads)
        ax.plot(xs, [leads[x] for x in xs], marker="o", label=f"uid {uid}")
    ax.set(xlabel="lead (h)", ylabel="ERA5 lead score", title="ERA5 score by lead", ylim=(0, 1))
    ax.legend(fontsize=7, ncol=2)
    paths.append(out_dir / "score_by_lead.png")
    fig.savefig(paths[-1], dpi=90, bbox_inches="tight")
    plt.close(fig)

    miners = ranked_miners(engine, run_id)
    fig, ax = plt.subplots(figsize=(9, max(3, 0.3 * len(miners) + 1)))
    labels = [f"uid {m.uid} ({m.status})" for m in miners][::-1]
    values = [m.overall or 0.0 for m in miners][::-1]
    ax.barh(labels, values, color=["tab:green" if v > 0 else "tab:red" for v in values])
    ax.set(xlabel="overall score", title="Leaderboard", xlim=(0, 1))
    paths.append(out_dir / "leaderboard.png")
    fig.savefig(paths[-1], dpi=90, bbox_inches="tight")
    plt.close(fig)

    spans = step_spans(engine, run_id)
    fig, ax = plt.subplots(figsize=(10, max(3, 0.3 * len({s[0] for s in spans}) + 1)))
    colours = {"query": "tab:blue", "poll": "tab:cyan", "manifest": "tab:purple", "day1": "tab:orange"}
    if spans:
        origin = min(s[2] for s in spans)
        for uid, name, start, end, status in spans:
            left = (start - origin).total_seconds()
            width = max((end - start).total_seconds(), 0.2)
            colour = "tab:red" if status == "failed" else colours.get(name, "tab:green")
            ax.barh(f"uid {uid}", width, left=left, color=colour, edgecolor="black", linewidth=0.3)
    from matplotlib.patches import Patch

    legend = [Patch(color=c, label=n) for n, c in colours.items()]
    legend += [Patch(color="tab:green", label="era5"), Patch(color="tab:red", label="failed")]
    ax.legend(handles=legend, fontsize=7, loc="lower right")
    ax.set(xlabel="seconds since the first step", title="Miner state timeline (one bar per step attempt)")
    paths.append(out_dir / "miner_timeline.png")
    fig.savefig(paths[-1], dpi=90, bbox_inches="tight")
    plt.close(fig)
    return paths


def png_markdown(path: Path) -> str:
    """A PNG as an inline markdown image (a data URI), for asset metadata shown in the Dagster UI."""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"![{path.stem}](data:image/png;base64,{encoded})"
