"""The page after a scored round, in headless Chromium: what it shows is asserted, and a screenshot kept.

The round is scored by real Dagster materializations (the scoring test's seeded round and synthetic
inputs); the API and page run under uvicorn on a loopback port, and Debian's ``chromium`` loads the
page twice: ``--dump-dom`` for the DOM after its scripts ran, ``--screenshot`` for the picture.
"""

from __future__ import annotations

import html.parser
import shutil
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa
import uvicorn
from dagster import DagsterInstance, materialize
from PIL import Image

from weather_dagster.api.app import create_app
from weather_dagster.dagster_defs.partitions import miner_round_key
from weather_dagster.dagster_defs.scoring_assets import day1_score, era5_score
from weather_dagster.dagster_defs.statistics import STATISTICS_ASSETS
from weather_dagster.db.schema import forecast_stats, forecast_steps, miner_scores
from weather_dagster.definitions import build_definitions
from weather_dagster.settings import load_settings
from weather_dagster_tests.scoring.test_scoring_dagster import GRID, PROFILES, seed
from weather_dagster_tests.support.synthetic_scoring import SyntheticScoringInputs

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SIZE = (1280, 900)


def scored_round(settings, database) -> int:
    init = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=12)
    date = init.strftime("%Y-%m-%d")
    inputs = SyntheticScoringInputs(GRID, profiles=PROFILES)
    run_id = seed(database.engine, init, inputs)
    resources = build_definitions(settings, database, scoring_inputs=inputs).resources
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("miner", [str(uid) for uid in PROFILES])
    for uid in PROFILES:
        key = miner_round_key(date, uid)
        assert materialize([day1_score, era5_score], partition_key=key, resources=resources, instance=instance).success
    for asset in STATISTICS_ASSETS:
        key = date if asset.partitions_def is not None else None
        assert materialize([asset], partition_key=key, resources=resources, instance=instance).success
    return run_id


class Serving:
    """uvicorn in a thread on a free loopback port; stopped by ``close``."""

    def __init__(self, app) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.server.install_signal_handlers = lambda: None  # not the main thread
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def chromium(url: str, *args: str) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
    cmd += [f"--window-size={SIZE[0]},{SIZE[1]}", "--virtual-time-budget=15000", *args, url]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class Dom(html.parser.HTMLParser):
    """The few things the page shows: leaderboard rows, lead bars, timeline items, texts by id."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.bars: list[dict] = []
        self.events: list[dict] = []
        self.text: dict[str, str] = {}
        self._open: list[str] = []
        self.state = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-uid" in a:
            self.rows.append(a)
        if tag == "rect" and "data-lead" in a:
            self.bars.append(a)
        if tag == "li" and "data-step" in a:
            self.events.append(a)
        if "id" in a:
            self._open.append(a["id"])
            self.text.setdefault(a["id"], "")
            if a["id"] == "state":
                self.state = a.get("data-state", "")

    def handle_endtag(self, tag):
        if tag in ("p", "span") and self._open:
            self._open.pop()

    def handle_data(self, data):
        for name in self._open[-1:]:
            self.text[name] += data


def test_page_shows_leaderboard_score_by_lead_and_timeline_after_a_scored_round(tmp_path, database, db_url):
    settings = load_settings(data_dir=tmp_path / "data", database_url=db_url, test_mode=True)
    run_id = scored_round(settings, database)
    with database.engine.connect() as conn:
        ranked = (
            conn.execute(
                sa.select(forecast_stats.c.miner_uid)
                .where(forecast_stats.c.run_id == run_id, forecast_stats.c.miner_rank.is_not(None))
                .order_by(forecast_stats.c.miner_rank, forecast_stats.c.miner_uid)
            )
            .scalars()
            .all()
        )
        top = ranked[0]
        leads = conn.execute(
            sa.select(miner_scores.c.lead_hours, miner_scores.c.score)
            .where(miner_scores.c.miner_uid == top, miner_scores.c.score_type == "era5", miner_scores.c.variable == "")
            .order_by(miner_scores.c.lead_hours)
        ).all()
        steps = conn.execute(
            sa.select(forecast_steps.c.step_name, forecast_steps.c.status)
            .where(forecast_steps.c.run_id == run_id, forecast_steps.c.miner_uid == top)
            .order_by(forecast_steps.c.id)
        ).all()
    assert top == 1 and len(leads) == 10 and steps

    serving = Serving(create_app(settings))
    try:
        dom = Dom()
        dom.feed(chromium(serving.url, "--dump-dom"))
        shot = tmp_path / "api_page.png"
        chromium(serving.url, f"--screenshot={shot}")
    finally:
        serving.close()

    assert dom.state == "ready", dom.text.get("state")
    assert f"Round {run_id}" in dom.text["round"]
    assert [int(r["data-uid"]) for r in dom.rows] == ranked  # the leaderboard, in rank order
    assert dom.rows[0].get("class") == "selected"
    assert [int(b["data-lead"]) for b in dom.bars] == [lead for lead, _ in leads]
    assert [float(b["data-score"]) for b in dom.bars] == [round(score, 4) for _, score in leads]
    assert "ERA5 leads scored: 10" in dom.text["day1"]
    assert [(e["data-step"], e["data-status"]) for e in dom.events] == [tuple(s) for s in steps]
    assert "uid 1" in dom.text["timeline-miner"]

    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[:2] == (SIZE[1], SIZE[0])
    # The header band is the page's dark blue, and the bar chart put its bar colour on the screen.
    assert tuple(image[20, 600]) == (0x1D, 0x35, 0x57)
    bar = np.all(image == (0x45, 0x7B, 0x9D), axis=-1)
    assert bar.sum() > 500
    Path(shot).replace(tmp_path / "api_page_checked.png")
