"""A loopback server speaking the CDS retrieve API to the unchanged ``cdsapi`` client (tests only; ERA5 GRIB).

The exchange, as ``cdsapi`` 0.7.x (through ``ecmwf-datastores-client``) makes it:

- ``GET  <api>/catalogue/v1/collections/<dataset>``: the collection; ``extent.temporal.interval``
  ends at the newest published valid time (the adapter's availability probe);
- ``GET  <api>/retrieve/v1/processes/<dataset>``: the process description;
- ``POST <api>/retrieve/v1/processes/<dataset>/execution`` with ``{"inputs": request}`` and the key in
  the ``PRIVATE-TOKEN`` header: a job, with a ``monitor`` link;
- ``GET  <api>/retrieve/v1/jobs/<id>``: its status (``accepted`` on the first poll, then
  ``successful``, or ``failed`` when the data is not published);
- ``GET  <api>/retrieve/v1/jobs/<id>/results``: the asset (``href``, ``file:size``), or a 400 with the
  error for a failed job;
- ``HEAD``/``GET`` of the asset: the GRIB file (ECMWF GRIB1, like ERA5 from the CDS), built from the
  synthetic atmosphere.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import eccodes
import numpy as np

from weather_dagster.reference.grid import Grid
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.reference.synthetic.grib import grid_keys
from weather_dagster.reference.variables import VARIABLES

# ECMWF parameter ids (GRIB1 table 128) by CDS variable name.
PARAM_IDS = {
    "2m_temperature": 167,
    "10m_u_component_of_wind": 165,
    "10m_v_component_of_wind": 166,
    "mean_sea_level_pressure": 151,
    "temperature": 130,
    "u_component_of_wind": 131,
    "v_component_of_wind": 132,
    "specific_humidity": 133,
    "geopotential": 129,
}
BY_CDS_NAME = {v.era5_name: v for v in VARIABLES.values()}


def encode_era5(atmosphere: SyntheticAtmosphere, cds_name: str, level: int | None, valid: datetime) -> bytes:
    """One ECMWF GRIB1 message of the synthetic truth (north-to-south rows, 16-bit simple packing)."""
    grid = atmosphere.grid
    spec = BY_CDS_NAME[cds_name]
    handle = eccodes.codes_grib_new_from_samples("regular_ll_pl_grib1" if level else "regular_ll_sfc_grib1")
    try:
        for key, value in (
            ("centre", 98),
            ("table2Version", 128),
            ("indicatorOfParameter", PARAM_IDS[cds_name]),
            *grid_keys(grid),
            ("dataDate", int(valid.strftime("%Y%m%d"))),
            ("dataTime", valid.hour * 100),
            ("stepRange", "0"),
        ):
            eccodes.codes_set(handle, key, value)
        if level:
            eccodes.codes_set(handle, "typeOfLevel", "isobaricInhPa")
            eccodes.codes_set(handle, "level", level)
        else:
            eccodes.codes_set(handle, "typeOfLevel", "surface")
        eccodes.codes_set(handle, "bitsPerValue", 16)
        values = atmosphere.field(spec.name, level, valid)
        eccodes.codes_set_values(handle, np.asarray(values, dtype=np.float64).ravel())
        return eccodes.codes_get_message(handle)
    finally:
        eccodes.codes_release(handle)


def build_grib(atmosphere: SyntheticAtmosphere, request: dict[str, Any]) -> bytes:
    """The GRIB file a CDS request asks for (every date x time x variable [x level])."""
    levels = [int(x) for x in request.get("pressure_level", [])] or [None]
    out = bytearray()
    for date in request["date"]:
        for hhmm in request["time"]:
            valid = datetime.strptime(f"{date} {hhmm}", "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
            for name in request["variable"]:
                for level in levels:
                    out += encode_era5(atmosphere, name, level, valid)
    return bytes(out)


@dataclass
class Job:
    dataset: str
    request: dict[str, Any]
    status: str = "accepted"
    polls: int = 0
    body: bytes = b""
    error: str = ""


@dataclass
class CdsState:
    atmosphere: SyntheticAtmosphere
    key: str
    published_until: datetime
    start: datetime = datetime(1940, 1, 1, tzinfo=UTC)
    accepted_polls: int = 1  # status polls answered "accepted" before the job is done (each costs the client ~1 s)
    jobs: dict[str, Job] = field(default_factory=dict)
    log: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def retrieved(self) -> list[tuple[str, dict[str, Any]]]:
        """(dataset, request) of every job submitted."""
        return [(p.split("/")[-2], body["inputs"]) for m, p, body in self.log if m == "POST" and body]


class _Handler(BaseHTTPRequestHandler):
    server: CdsServer

    def log_message(self, *args: object) -> None:  # quiet
        return

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _api(self, path: str) -> str:
        base = urlsplit(self.server.api_url).path
        return path[len(base) :] if path.startswith(base) else path

    def _authorised(self) -> bool:
        state = self.server.state
        with state.lock:
            state.headers_seen.append(dict(self.headers.items()))
        if self.headers.get("PRIVATE-TOKEN") != state.key:
            self._json(401, {"title": "Authentication failed", "detail": "operation requires a valid API key"})
            return False
        return True

    def do_HEAD(self) -> None:
        self._download(head=True)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        state = self.server.state
        with state.lock:
            state.log.append(("GET", path, None))
        if path.startswith("/download/"):
            return self._download(head=False)
        api = self._api(path)
        parts = api.strip("/").split("/")
        if parts == ["catalogue", "v1", "messages"]:
            return self._json(200, {"messages": []})
        if parts[:3] == ["catalogue", "v1", "collections"] and len(parts) == 4:
            interval = [[state.start.isoformat(), state.published_until.isoformat()]]
            return self._json(200, {"id": parts[3], "extent": {"temporal": {"interval": interval}}, "links": []})
        if parts[:3] == ["retrieve", "v1", "processes"] and len(parts) == 4:
            return self._json(200, {"id": parts[3], "links": []})
        if parts[:3] == ["retrieve", "v1", "jobs"] and len(parts) in (4, 5):
            if not self._authorised():
                return None
            with state.lock:
                job = state.jobs.get(parts[3])
            if job is None:
                return self._json(404, {"title": "job not found"})
            if len(parts) == 4:
                return self._status(parts[3], job)
            if job.status == "failed":
                return self._json(400, {"title": "The job has failed", "traceback": job.error})
            href = f"/download/{parts[3]}.grib"
            asset = {"href": href, "file:size": len(job.body), "type": "application/x-grib"}
            return self._json(200, {"asset": {"value": asset}})
        return self._json(404, {"title": f"no route {api}"})

    def _status(self, job_id: str, job: Job) -> None:
        with self.server.state.lock:
            job.polls += 1
            if job.status == "accepted" and job.polls > self.server.state.accepted_polls:
                job.status = "failed" if job.error else "successful"
            status = job.status
        self._json(200, {"jobID": job_id, "processID": job.dataset, "status": status, "metadata": {}, "links": []})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        state = self.server.state
        with state.lock:
            state.log.append(("POST", path, body))
        parts = self._api(path).strip("/").split("/")
        if not (parts[:3] == ["retrieve", "v1", "processes"] and len(parts) == 5 and parts[4] == "execution"):
            return self._json(404, {"title": "no route"})
        if not self._authorised():
            return None
        request = body.get("inputs", {})
        job = Job(parts[3], request)
        times = [
            datetime.strptime(f"{d} {t}", "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
            for d in request.get("date", [])
            for t in request.get("time", [])
        ]
        if not times or max(times) > state.published_until:
            job.error = "None of the data you have requested is available yet, please revise the period requested."
        else:
            job.body = build_grib(state.atmosphere, request)
        job_id = uuid.uuid4().hex
        with state.lock:
            state.jobs[job_id] = job
        monitor = f"{self.server.api_url}/retrieve/v1/jobs/{job_id}"
        self._json(201, {"jobID": job_id, "status": "accepted", "links": [{"rel": "monitor", "href": monitor}]})

    def _download(self, head: bool) -> None:
        job_id = urlsplit(self.path).path.rsplit("/", 1)[-1].removesuffix(".grib")
        with self.server.state.lock:
            job = self.server.state.jobs.get(job_id)
        if job is None or job.status != "successful":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-grib")
        self.send_header("Content-Length", str(len(job.body)))
        self.end_headers()
        if not head:
            self.wfile.write(job.body)


class CdsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, grid: Grid, key: str, published_until: datetime) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = CdsState(SyntheticAtmosphere(grid), key, published_until)
        self._thread: threading.Thread | None = None

    @property
    def api_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/api"

    def __enter__(self) -> CdsServer:
        self._thread = threading.Thread(target=self.serve_forever, name="synthetic-cds", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        if self._thread:
            self._thread.join(timeout=5)
