"""Rate limit, request-size limit, loopback default and the ``api serve`` command (Ctrl-C stops it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from starlette.testclient import TestClient

from weather_dagster.api.app import create_app
from weather_dagster.api.limits import TokenBuckets
from weather_dagster.settings import SettingsError, load_settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sqlite_settings(tmp_path):
    from weather_dagster.db.engine import Database

    url = f"sqlite:///{tmp_path / 'weather.db'}"
    Database(url).engine.dispose()  # migrated, empty
    return load_settings(data_dir=tmp_path, database_url=url, api={"max_request_bytes": 64})


def test_token_bucket_refills_at_the_rate_and_per_client():
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3, max_clients=2, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # empty: the next token in 1 / rate seconds
    assert buckets.take("b") == 0.0  # another client has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0 and buckets.take("a") > 0.0
    clock.now += 100
    assert [buckets.take("a") for _ in range(4)][-1] > 0.0  # refill is capped at the burst
    buckets.take("c")  # a third client evicts the least recently seen ("b")
    assert set(buckets._buckets) == {"a", "c"}


def test_rate_limit_answers_429_with_retry_after(sqlite_settings):
    clock = Clock()
    buckets = TokenBuckets(rate=0.5, burst=2, max_clients=10, clock=clock)
    app = create_app(sqlite_settings, buckets=buckets)
    with TestClient(app) as client:
        codes = [client.get("/api/v1/rounds").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = client.get("/healthz")
        assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
        assert limited.json() == {"error": "rate limit exceeded"}
        clock.now += 2.0
        assert client.get("/healthz").status_code == 200
    app.state.engine.dispose()


def test_request_size_limit_for_declared_and_chunked_bodies(sqlite_settings):
    app = create_app(sqlite_settings)
    with TestClient(app) as client:
        big = client.request("GET", "/api/v1/rounds", content=b"x" * 65)
        assert big.status_code == 413 and big.json()["error"] == "request larger than 64 bytes"
        assert client.request("GET", "/api/v1/rounds", content=b"x" * 64).status_code == 200

        def chunks():
            for _ in range(10):
                yield b"y" * 10

        streamed = client.request("GET", "/api/v1/rounds", content=chunks())
        assert streamed.status_code == 413
        small = client.request("GET", "/api/v1/rounds", content=iter([b"y" * 10, b"z" * 10]))
        assert small.status_code == 200
    app.state.engine.dispose()


def test_api_settings_default_to_loopback_and_are_validated():
    settings = load_settings()
    assert settings.api.host == "127.0.0.1"
    with pytest.raises(SettingsError, match="WEATHER_API__PORT"):
        load_settings(api={"port": 70000})
    with pytest.raises(SettingsError, match="default_page_size"):
        load_settings(api={"default_page_size": 600, "max_page_size": 500})


def test_api_serve_binds_loopback_serves_and_stops_on_ctrl_c(sqlite_settings, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEATHER_")}
    env.update(WEATHER_DATABASE_URL=sqlite_settings.database_url, WEATHER_DATA_DIR=str(tmp_path), WEATHER_API__PORT="0")
    cmd = [sys.executable, "-m", "weather_dagster.cli", "api", "serve"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        while "API and page:" not in line:
            line = proc.stdout.readline()
            assert line, "api serve exited before printing its URL"
        assert "http://127.0.0.1:" in line, line
        url = line.split("page: ", 1)[1].split(" ", 1)[0]
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(url + "healthz", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        assert response.json() == {"status": "ok"}
        assert httpx.get(url, timeout=5).text.startswith("<!doctype html>")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_prints_the_page_url_and_takes_serve(capsys, sqlite_settings):
    import argparse

    from weather_dagster.api.demo import show_page
    from weather_dagster.demo import add_demo_command

    stopped = []
    show_page(sqlite_settings.database_url, serve=False, stop=lambda: stopped.append(True))
    assert "[demo] API and page: http://127.0.0.1:8090/" in capsys.readouterr().out and not stopped
    parser = argparse.ArgumentParser()
    add_demo_command(parser.add_subparsers())
    assert parser.parse_args(["demo", "--serve"]).serve is True
    assert parser.parse_args(["demo"]).serve is False
