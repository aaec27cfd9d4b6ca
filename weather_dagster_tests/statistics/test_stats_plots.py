"""The plots a person reads: one look per miner in score-by-lead, a legend of reasons in the leaderboard."""

from __future__ import annotations

from matplotlib.colors import to_rgba

from weather_dagster.stats.plots import (
    SCORED,
    LeaderboardRow,
    leaderboard_figure,
    miner_style,
    outcome,
    score_by_lead_figure,
)


def test_every_miner_of_a_full_subnet_has_its_own_colour_and_marker() -> None:
    leads = {uid: {24: 0.5 + uid / 1000, 48: 0.4} for uid in range(256)}
    ax = score_by_lead_figure(leads).axes[0]
    lines = ax.get_lines()
    assert len(lines) == 256
    looks = {(to_rgba(line.get_color()), line.get_marker()) for line in lines}
    assert len(looks) == 256  # no two miners share both colour and marker
    by_uid = {int(line.get_label().split()[1]): (to_rgba(line.get_color()), line.get_marker()) for line in lines}
    for uid in range(255):  # neighbours differ in colour and in marker
        assert by_uid[uid][0] != by_uid[uid + 1][0] and by_uid[uid][1] != by_uid[uid + 1][1]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"uid {u}" for u in range(256)]


def test_a_miner_looks_the_same_in_every_round() -> None:
    first = score_by_lead_figure({7: {24: 0.6}, 9: {24: 0.5}}).axes[0].get_lines()
    second = score_by_lead_figure({3: {24: 0.6}, 7: {48: 0.5}}).axes[0].get_lines()
    look = {line.get_label(): (to_rgba(line.get_color()), line.get_marker()) for line in [*first, *second]}
    assert look["uid 7"] == (to_rgba(miner_style(7)[0]), miner_style(7)[1])
    assert [line.get_label() for line in second] == ["uid 3", "uid 7"]
    assert (to_rgba(second[1].get_color()), second[1].get_marker()) == look["uid 7"]


def test_leaderboard_legend_names_every_failure_reason_with_its_colour_and_count() -> None:
    rows = [
        LeaderboardRow(3, "era5_scored", 0.71, None),
        LeaderboardRow(1, "era5_scored", 0.52, None),
        LeaderboardRow(5, "failed", None, "unreachable"),
        LeaderboardRow(6, "failed", 0.0, "invalid_data"),
        LeaderboardRow(8, "failed", None, "unreachable"),
        LeaderboardRow(9, "forecast_ready", None, None),
    ]
    ax = leaderboard_figure(rows).axes[0]
    legend = ax.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["scored (2)", "unreachable (2)", "invalid_data (1)", "forecast_ready (1)"]
    legend_colour = {
        t.get_text().split(" (")[0]: to_rgba(h.get_facecolor(), 1.0)
        for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }
    assert len(set(legend_colour.values())) == len(legend_colour)  # one colour per reason
    # Each miner's bar (drawn bottom-up: the best miner on top) is in its reason's colour.
    bars = ax.patches
    assert len(bars) == len(rows)
    for row, bar in zip(rows[::-1], bars, strict=True):
        assert to_rgba(bar.get_facecolor(), 1.0) == legend_colour[outcome(row)]
    assert outcome(rows[0]) == SCORED and bars[-1].get_width() == 0.71
    assert bars[0].get_width() == 1.0 and bars[0].get_alpha() == 0.25  # no score: pale full bar
