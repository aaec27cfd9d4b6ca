"""The screenshot script renders the real Dagster UI in headless Chromium (here on an empty instance:
the asset graph needs no run), and refuses a page that never shows what it must."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from weather_dagster_tests.support.screenshots_ui import GROUPS, Page, shoot, wait_answers
from weather_dagster_tests.support.services import (
    REPO,
    VENV_BIN,
    clean_env,
    free_port,
    instance_home,
    sqlite_instance_yaml,
    stop_group,
)


def test_asset_graph_screenshot_of_the_code_location(tmp_path: Path) -> None:
    home = instance_home(tmp_path, sqlite_instance_yaml(tmp_path / "dagster_home"))
    port = free_port()
    cmd = [str(VENV_BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"]
    with open(tmp_path / "webserver.log", "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=clean_env(tmp_path, DAGSTER_HOME=str(home)),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_answers(f"{base}/server_info", proc, 120)
        page = Page("asset_graph", f"{GROUPS}/scoring/lineage", "subnet_snapshot")
        (png,) = shoot(base, [page], tmp_path / "shots")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        with pytest.raises(RuntimeError, match="never showed"):
            shoot(base, [Page("nothing", f"{GROUPS}/scoring/lineage", "no-such-asset-anywhere")], tmp_path / "shots")
    finally:
        stop_group(proc, first=signal.SIGINT, grace_s=10)
