"""``scripts/ensure_services.sh``: ``make test``'s services are found, or it stops with the one command.

The stop path runs the script with a PATH holding only a shell and the core tools it uses, no
PostgreSQL directory and no apt-get: nothing can be found or installed, so it must name every missing
package in one install command, at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from weather_dagster_tests.support.services import REPO

SCRIPT = REPO / "scripts" / "ensure_services.sh"


def _bare_path(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "env", "id"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    return bin_dir


def test_missing_services_stop_at_once_with_the_one_command(tmp_path: Path) -> None:
    bin_dir = _bare_path(tmp_path)
    env = {"PATH": str(bin_dir), "PG_BIN_GLOB": str(tmp_path / "no-postgres" / "*")}
    done = subprocess.run([str(bin_dir / "bash"), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done.stderr
    prefix = "" if os.getuid() == 0 else "sudo "
    assert f"  {prefix}apt-get install -y postgresql redis-server chromium\n" in done.stderr
    assert "installing" not in done.stderr  # no apt-get on this PATH: nothing was attempted


def test_one_missing_service_is_the_only_package_named(tmp_path: Path) -> None:
    bin_dir = _bare_path(tmp_path)
    for tool in ("initdb", "pg_ctl", "chromium"):  # stand-ins that exist, so only redis is missing
        (bin_dir / tool).write_text("#!/bin/sh\n")
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": str(bin_dir), "PG_BIN_GLOB": str(tmp_path / "none"), "ENSURE_SERVICES_INSTALL": "no"}
    done = subprocess.run([str(bin_dir / "bash"), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done.stderr
    assert "apt-get install -y redis-server\n" in done.stderr


def test_this_machine_has_every_service() -> None:
    env = {**os.environ, "ENSURE_SERVICES_INSTALL": "no"}
    done = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (0, "")
