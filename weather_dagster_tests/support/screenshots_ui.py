"""Headless-Chromium screenshots of the Dagster UI on a demo's instance, run on demand.

    python -m weather_dagster_tests.support.screenshots_ui --demo out/demo --out /tmp/shots [--uid 11]

It serves the demo's instance with ``dagster-webserver`` only (read-only viewing: no daemon, so nothing
runs), on 127.0.0.1 and a free port, and saves the asset graph, one ``miner_forecast`` partition page
and ``subnet_snapshot`` with its plots. Each page's rendered DOM is checked for the text it must show
first, so a blank or still-loading page is an error, not a silent empty picture. Everything it starts,
it stops.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import sqlalchemy as sa

from weather_dagster.db.schema import forecast_runs
from weather_dagster.demo import REPO, Processes, _bin
from weather_dagster.operator.demo_env import demo_paths, demo_process_env
from weather_dagster.operator.rounds import find_round
from weather_dagster_tests.support.services import free_port

HOST = "127.0.0.1"
WINDOW = "1600,1100"
RENDER_BUDGET_MS = 20000
GROUPS = "/locations/weather_dagster/asset-groups"
GROUP_ASSETS = {"reference": "era5_truth", "miners": "miner_forecast", "scoring": "subnet_snapshot"}


@dataclass(frozen=True)
class Page:
    name: str
    path: str
    must_show: str  # text the rendered page holds once its data has loaded
    window: str = WINDOW  # taller for pages whose content (plots) runs below the fold


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no Chromium found: run scripts/ensure_services.sh (or apt-get install -y chromium)")


def _browser(args: list[str], profile: Path, timeout_s: float, window: str = WINDOW) -> subprocess.CompletedProcess:
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",  # root in containers; the pages are our own, on loopback
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={window}",
        f"--virtual-time-budget={RENDER_BUDGET_MS}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)


def rendered_dom(url: str, profile: Path, timeout_s: float = 120) -> str:
    return _browser(["--dump-dom", url], profile, timeout_s).stdout


def screenshot(url: str, path: Path, profile: Path, timeout_s: float = 120, window: str = WINDOW) -> Path:
    done = _browser([f"--screenshot={path}", url], profile, timeout_s, window)
    if not path.exists() or path.stat().st_size < 10_000:
        raise RuntimeError(f"no screenshot of {url}: {done.stderr[-1500:]}")
    return path


def shoot(base_url: str, pages: list[Page], out_dir: Path) -> list[Path]:
    """Screenshot each page after checking its DOM shows ``must_show`` (retried while the UI loads)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # The UI greets a loopback user with a "join the community" dialog until told it was seen; the
    # flag is kept on the instance, so the pictures show the pages, not the dialog.
    httpx.post(f"{base_url}/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=30).raise_for_status()
    saved = []
    with tempfile.TemporaryDirectory(prefix="wd-chromium-") as profile:
        for page in pages:
            url = base_url + page.path
            for _ in range(3):
                if page.must_show in rendered_dom(url, Path(profile)):
                    break
            else:
                raise RuntimeError(f"{url} never showed {page.must_show!r}")
            saved.append(screenshot(url, out_dir / f"{page.name}.png", Path(profile), window=page.window))
    return saved


def wait_answers(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


def demo_pages(date: str, uids: list[int]) -> list[Page]:
    partitions = [
        Page(
            f"miner_forecast_{date}_uid{uid}",
            f"/assets/miner_forecast?view=partitions&partition={quote(f'{date}|{uid}')}",
            f"{date}|{uid}",
        )
        for uid in uids
    ]
    return [
        Page("asset_graph", "/asset-groups", "scoring"),
        *(Page(f"asset_graph_{group}", f"{GROUPS}/{group}/lineage", asset) for group, asset in GROUP_ASSETS.items()),
        *partitions,
        *(
            Page(
                f"era5_score_{date}_uid{uid}",
                f"/assets/era5_score?view=partitions&partition={quote(f'{date}|{uid}')}",
                "leads",
                "1600,1800",
            )
            for uid in uids[:1]
        ),
        Page("subnet_snapshot", f"/assets/subnet_snapshot?partition={date}", "leaderboard", "1600,4600"),
    ]


def shoot_demo(demo_dir: Path, out_dir: Path, uids: list[int], port: int | None = None) -> list[Path]:
    from weather_dagster.db.engine import make_engine
    from weather_dagster.operator.demo_env import demo_settings

    demo_paths(demo_dir)
    engine = make_engine(demo_settings(demo_dir).resolved_database_url)
    try:
        with engine.connect() as conn:
            latest = conn.execute(sa.select(sa.func.max(forecast_runs.c.gfs_init_time_utc))).scalar()
            if latest is None:
                raise RuntimeError(f"the demo in {demo_dir} has no round yet")
            date = find_round(conn, latest.date()).gfs_init_time_utc.strftime("%Y-%m-%d")
    finally:
        engine.dispose()
    port = port or free_port()
    cmd = [_bin("dagster-webserver"), "-h", HOST, "-p", str(port), "-w", str(REPO / "workspace.yaml")]
    procs = Processes()
    try:
        proc = procs.start("webserver", cmd, demo_process_env(demo_dir), out_dir / "webserver.log")
        base = f"http://{HOST}:{port}"
        wait_answers(f"{base}/server_info", proc, 180)
        saved = shoot(base, demo_pages(date, uids), out_dir)
        charts = [f"chart_{name}" for name in ("score_by_lead", "leaderboard", "miner_timeline")]
        return saved + shoot_charts(f"{base}/assets/subnet_snapshot?partition={date}", charts, out_dir)
    finally:
        procs.stop_all()


# -- charts: the snapshot's plots are Markdown metadata the UI shows behind a "[Show Markdown]" button --

_CLICK_CHART = """(() => {
  const row = [...document.querySelectorAll('tr')].find(r => r.innerText.includes('%s'));
  const link = row && row.querySelectorAll('td')[2] && row.querySelectorAll('td')[2].querySelector('a');
  if (!link) return false;
  link.click();
  return true;
})()"""
_CHART_SHOWN = "[...document.querySelectorAll('[role=dialog] img')].some(i => i.naturalWidth > 0)"


class _Cdp:
    """Just enough of the Chrome DevTools Protocol to click a button and capture the page."""

    def __init__(self, ws_url: str) -> None:
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=60)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                return message.get("result", {})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True).get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return True
            time.sleep(0.5)
        return False


def shoot_charts(url: str, keys: list[str], out_dir: Path, timeout_s: float = 90) -> list[Path]:
    """Open ``url``, then for each metadata key click its "[Show Markdown]" and capture the chart dialog."""
    port = free_port()
    saved = []
    with tempfile.TemporaryDirectory(prefix="wd-chromium-") as profile:
        cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={port}"]
        cmd += [f"--user-data-dir={profile}", f"--window-size={WINDOW}", "about:blank"]
        browser = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_answers(f"http://{HOST}:{port}/json/version", browser, 60)
            target = next(t for t in httpx.get(f"http://{HOST}:{port}/json", timeout=10).json() if t["type"] == "page")
            cdp = _Cdp(target["webSocketDebuggerUrl"])
            for key in keys:
                cdp.call("Page.navigate", url=url)
                if not cdp.wait_for(f"document.body && document.body.innerText.includes('{key}')", timeout_s):
                    raise RuntimeError(f"{url} never showed {key!r}")
                if not cdp.evaluate(_CLICK_CHART % key) or not cdp.wait_for(_CHART_SHOWN, timeout_s):
                    raise RuntimeError(f"{url}: the chart {key!r} did not open")
                time.sleep(1.0)  # the dialog's opening animation
                shot = cdp.call("Page.captureScreenshot", format="png")
                path = out_dir / f"subnet_snapshot_{key}.png"
                path.write_bytes(base64.b64decode(shot["data"]))
                saved.append(path)
        finally:
            browser.terminate()
            try:
                browser.wait(timeout=10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default="out/demo")
    parser.add_argument("--out", default="out/shots")
    parser.add_argument("--uid", type=int, action="append", help="a miner whose partition page is shot (repeatable)")
    args = parser.parse_args(argv)
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in shoot_demo(Path(args.demo).resolve(), out_dir, args.uid or [0, 11]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
