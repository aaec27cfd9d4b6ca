"""Bad input an operator gives ends with a message saying what to do, and leaves no process behind.

Each case runs the real ``weather-dagster`` command in a subprocess with a bounded timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from weather_dagster.operator.demo_env import demo_lock
from weather_dagster_tests.support.services import VENV_BIN, clean_env, free_port

CLI = str(VENV_BIN / "weather-dagster")


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _refused(done: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit status 2, one message naming what to do, no traceback."""
    assert done.returncode == 2, (done.returncode, done.stdout[-1000:], done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    for needle in needles:
        assert needle in done.stderr, (needle, done.stderr[-2000:])


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes whose command line or environment names ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline or text in environ:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def test_a_wrong_weather_value_names_the_variable_and_its_range(tmp_path: Path) -> None:
    env = clean_env(tmp_path, WEATHER_HINDCAST_DAYS="fourteen")
    _refused(_run(["explain", "--round", "2026-11-18"], env), "WEATHER_HINDCAST_DAYS", "accepted: >= 0, <= 3650")


def test_an_unreachable_database_says_which_setting_to_check_and_hides_the_password(tmp_path: Path) -> None:
    url = f"postgresql://operator:hunter2@127.0.0.1:{free_port()}/weather"
    done = _run(["explain", "--round", "2026-11-18"], clean_env(tmp_path, WEATHER_DATABASE_URL=url))
    _refused(done, "cannot open the database", "Connection refused", "check WEATHER_DATABASE_URL")
    assert "hunter2" not in done.stderr + done.stdout


def test_a_database_without_tables_says_how_to_create_them(tmp_path: Path) -> None:
    env = clean_env(tmp_path, WEATHER_DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")
    _refused(_run(["explain", "--round", "2026-11-18", "--uid", "3"], env), "weather-dagster db upgrade")


def test_dagster_home_unset_says_what_to_export(tmp_path: Path) -> None:
    env = clean_env(tmp_path)  # no DAGSTER_* variable at all
    _refused(_run(["pools", "show"], env), "DAGSTER_HOME is not set: export DAGSTER_HOME=")


def test_ui_without_a_demo_says_to_run_the_demo_first(tmp_path: Path) -> None:
    done = _run(["ui", "--demo", str(tmp_path / "nowhere"), "--port", str(free_port())], clean_env(tmp_path))
    _refused(done, "no demo instance in", "run `make demo`")


def test_a_bad_round_date_says_the_format(tmp_path: Path) -> None:
    env = clean_env(tmp_path, WEATHER_DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")
    _refused(_run(["explain", "--round", "18/11/2026"], env), "give the round's init date as YYYY-MM-DD")


def test_a_second_demo_in_the_same_directory_is_refused_and_deletes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "daemon.log").write_text("the first demo's log")
    with demo_lock(out):  # the first demo, holding its out dir
        done = _run(["demo", "--out", str(out), "--miners", "2"], clean_env(tmp_path), timeout=60)
    _refused(done, f"a demo is already running in {out} (pid {os.getpid()})", "--out OTHER_DIR")
    assert (out / "daemon.log").read_text() == "the first demo's log"
    assert _processes_mentioning(str(tmp_path)) == []


def test_sigint_in_the_middle_of_the_demo_stops_everything_it_started(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    log = tmp_path / "demo.out"
    cmd = [CLI, "demo", "--out", str(out), "--miners", "2", "--grid", "5", "--hindcast-days", "14"]
    with log.open("w") as handle:
        proc = subprocess.Popen(cmd, env=clean_env(tmp_path), stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        # Mid-run: data server and fleet are up and the daemon is starting.
        while "Dagster daemon" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        assert _processes_mentioning(str(out)), "the demo's servers should be running now"
        proc.send_signal(signal.SIGINT)
        returncode = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert returncode == 130, text[-3000:]
    assert "interrupted: every process the demo started is stopped" in text and "Traceback" not in text
    assert _processes_mentioning(str(tmp_path)) == []
