"""The figures an operator reads after a round, built from plain data (``report.py`` queries it).

Every miner keeps one look in every plot and every round: its uid picks a colour from 20 and a
marker from 13. 20 and 13 are coprime, so uids 0..259 (a subnet has at most 256) all get different
(colour, marker) pairs, and neighbouring uids differ in both. The leaderboard colours each bar by
the miner's outcome (scored, or its failure category) and says in a legend which reason each colour
stands for, with how many miners it covers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import matplotlib

matplotlib.use("Agg")  # no display here, and no GUI backend in worker processes
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

# tab20 reordered (dark shades, then light) so that neighbouring uids get different hues.
_TAB20 = colormaps["tab20"].colors
MINER_COLOURS: tuple[tuple[float, float, float], ...] = tuple(_TAB20[0::2]) + tuple(_TAB20[1::2])
MINER_MARKERS: tuple[str, ...] = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "p", "h", "8")
SCORED = "scored"
SCORED_COLOUR = "tab:green"
# Outcome colours other than green, taken in order of first appearance in the leaderboard.
_OUTCOME_COLOURS = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive")
_OUTCOME_COLOURS += tuple(colormaps["Dark2"].colors)


def miner_style(uid: int) -> tuple[tuple[float, float, float], str]:
    """(colour, marker) of one miner, the same in every plot and round."""
    return MINER_COLOURS[uid % len(MINER_COLOURS)], MINER_MARKERS[uid % len(MINER_MARKERS)]


def score_by_lead_figure(lead_scores: Mapping[int, Mapping[int, float]]) -> Figure:
    """One line per miner: its ERA5 score at each lead scored so far."""
    fig = Figure(figsize=(10, 5))
    ax = fig.subplots()
    for uid, leads in sorted(lead_scores.items()):
        colour, marker = miner_style(uid)
        xs = sorted(leads)
        ax.plot(xs, [leads[x] for x in xs], color=colour, marker=marker, markersize=5, label=f"uid {uid}")
    ax.set(xlabel="lead (h)", ylabel="ERA5 lead score", title="ERA5 score by lead", ylim=(0, 1))
    if lead_scores:
        ncol = max(1, -(-len(lead_scores) // 32))  # at most 32 rows of legend per column
        ax.legend(fontsize=6, ncol=ncol, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


@dataclass(frozen=True)
class LeaderboardRow:
    uid: int
    status: str
    overall: float | None
    failure_category: str | None


def outcome(row: LeaderboardRow) -> str:
    """What the leaderboard says about a miner: its failure category, scored, or the state it is in."""
    if row.failure_category:
        return row.failure_category
    if row.overall is not None and row.overall > 0:
        return SCORED
    return row.status


def outcome_colours(outcomes: Iterable[str]) -> dict[str, str | tuple[float, ...]]:
    """A colour per outcome: green for scored, the others in order of first appearance."""
    colours: dict[str, str | tuple[float, ...]] = {}
    others = iter(_OUTCOME_COLOURS)
    for name in outcomes:
        if name not in colours:
            colours[name] = SCORED_COLOUR if name == SCORED else next(others, "black")
    return colours


def leaderboard_figure(rows: list[LeaderboardRow]) -> Figure:
    """Bars of the overall score, best first; a miner without score shows a pale bar in its reason's colour."""
    fig = Figure(figsize=(9, max(3.0, 0.3 * len(rows) + 1.5)))
    ax = fig.subplots()
    ordered = rows[::-1]  # barh draws bottom-up: the best miner on top
    outcomes = [outcome(r) for r in rows]
    colours = outcome_colours(outcomes)
    for r in ordered:
        name = outcome(r)
        score = r.overall or 0.0
        label = f"uid {r.uid}"
        if score > 0:
            ax.barh(label, score, color=colours[name])
        else:  # nothing to measure: a full-width pale bar so the reason's colour is seen
            ax.barh(label, 1.0, color=colours[name], alpha=0.25, hatch="//", edgecolor=colours[name])
    counts = Counter(outcomes)
    handles = [Patch(facecolor=colours[n], label=f"{n} ({counts[n]})") for n in colours]
    if handles:
        ax.legend(handles=handles, title="outcome", fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set(xlabel="overall score", title="Leaderboard", xlim=(0, 1))
    return fig


STEP_COLOURS = {"query": "tab:blue", "poll": "tab:cyan", "manifest": "tab:purple", "day1": "tab:orange"}


def timeline_figure(spans: list[tuple[int, str, datetime, datetime, str]]) -> Figure:
    """One bar per step attempt, per miner, on a shared clock starting at the first step."""
    fig = Figure(figsize=(10, max(3.0, 0.3 * len({s[0] for s in spans}) + 1)))
    ax = fig.subplots()
    if spans:
        origin = min(s[2] for s in spans)
        for uid, name, start, end, status in spans:
            left = (start - origin).total_seconds()
            width = max((end - start).total_seconds(), 0.2)
            colour = "tab:red" if status == "failed" else STEP_COLOURS.get(name, "tab:green")
            ax.barh(f"uid {uid}", width, left=left, color=colour, edgecolor="black", linewidth=0.3)
    legend = [Patch(color=c, label=n) for n, c in STEP_COLOURS.items()]
    legend += [Patch(color="tab:green", label="era5"), Patch(color="tab:red", label="failed")]
    ax.legend(handles=legend, fontsize=7, loc="lower right")
    ax.set(xlabel="seconds since the first step", title="Miner state timeline (one bar per step attempt)")
    return fig
