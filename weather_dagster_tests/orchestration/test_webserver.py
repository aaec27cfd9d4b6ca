"""``dagster-webserver`` with this repository's workspace answers the GraphQL API on loopback.

The query lists whatever the code location holds (asset keys, jobs, sensors, schedules), so it keeps
working as assets, sensors and the schedule are added; it asserts the location loaded without error.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx

from weather_dagster_tests.support.services import (
    REPO,
    VENV_BIN,
    clean_env,
    free_port,
    instance_home,
    sqlite_instance_yaml,
    stop_group,
    wait_for,
)

LOCATION_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message }
          ... on RepositoryLocation {
            repositories {
              name
              assetNodes { assetKey { path } }
              jobs { name }
              sensors { name }
              schedules { name }
            }
          }
        }
      }
    }
  }
}
"""


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_webserver_serves_the_code_location(tmp_path: Path) -> None:
    home = instance_home(tmp_path, sqlite_instance_yaml(tmp_path / "dagster_home"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "webserver.log"
    cmd = [str(VENV_BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=clean_env(tmp_path, DAGSTER_HOME=str(home)),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: _answers(f"{base}/server_info"), 90, "dagster-webserver", proc)
        response = httpx.post(f"{base}/graphql", json={"query": LOCATION_QUERY}, timeout=60)
        response.raise_for_status()
        body = response.json()
    finally:
        stop_group(proc, first=signal.SIGINT, grace_s=10)

    assert "errors" not in body, body
    workspace = body["data"]["workspaceOrError"]
    assert workspace["__typename"] == "Workspace", workspace
    entries = {entry["name"]: entry for entry in workspace["locationEntries"]}
    assert set(entries) == {"weather_dagster"}, log_path.read_text()[-3000:]
    entry = entries["weather_dagster"]
    assert entry["loadStatus"] == "LOADED"
    location = entry["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location
    (repository,) = location["repositories"]
    # Whatever the location defines by now is listed; every name comes back well formed.
    asset_keys = ["/".join(node["assetKey"]["path"]) for node in repository["assetNodes"]]
    assert all(asset_keys) and len(set(asset_keys)) == len(asset_keys)
    for kind in ("jobs", "sensors", "schedules"):
        assert all(item["name"] for item in repository[kind]), kind
    assert "__ASSET_JOB" in {job["name"] for job in repository["jobs"]} or not asset_keys
