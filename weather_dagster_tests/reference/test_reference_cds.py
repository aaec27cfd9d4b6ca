"""The CDS ERA5 adapter against a loopback CDS retrieve API, through the unchanged ``cdsapi`` client,
and the ordered ERA5 sources (ARCO first, CDS once ARCO is late) filling the one cache."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from dagster import AssetCheckSeverity, DagsterInstance, materialize
from pydantic import SecretStr

from weather_dagster.core.errors import SourceError, TruthNotAvailable
from weather_dagster.dagster_defs.reference_assets import era5_truth
from weather_dagster.reference.canonical import field_of
from weather_dagster.reference.cds import PRESSURE_LEVELS, SINGLE_LEVELS, CdsEra5, read_cdsapirc
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.sources import ReferenceData
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.reference.variables import PRESSURE_LEVELS_HPA, VARIABLES
from weather_dagster.settings import load_settings
from weather_dagster_tests.support.cds_server import CdsServer
from weather_dagster_tests.support.cds_support import two_sources

GRID = Grid(5.0)
START = datetime(2025, 6, 1, tzinfo=UTC)
ALL = tuple(VARIABLES)


def test_cds_adapter_retrieves_through_the_unchanged_client_as_the_reference_asks() -> None:
    with CdsServer(GRID, "secret-key-1", published_until=START + timedelta(days=5)) as server:
        adapter = CdsEra5(server.api_url, SecretStr("secret-key-1"), GRID, poll_max_s=0.2, retry_max=2)
        ds = adapter.load(START + timedelta(days=3), ALL, PRESSURE_LEVELS_HPA)
        state = server.state
    truth = SyntheticAtmosphere(GRID)
    valid = START + timedelta(days=3)
    for name, spec in VARIABLES.items():
        for level in PRESSURE_LEVELS_HPA if spec.atmospheric else (None,):
            expected = truth.field(name, level, valid)
            step = (expected.max() - expected.min()) / 2**16  # 16-bit GRIB packing of the field's range
            assert np.abs(field_of(ds, name, level) - expected).max() <= step + 1e-6 * np.abs(expected).max()
    assert ds.attrs["truth_source"] == "cds"
    # The two requests the reference makes (datasets, product type, variables, levels, date, time, grid).
    retrieved = dict(state.retrieved())
    assert set(retrieved) == {SINGLE_LEVELS, PRESSURE_LEVELS}
    single, upper = retrieved[SINGLE_LEVELS], retrieved[PRESSURE_LEVELS]
    assert single["variable"] == [
        "2m_temperature",
        "10m_u_component_of_wind",
        "10m_v_component_of_wind",
        "mean_sea_level_pressure",
    ]
    assert upper["variable"] == [
        "temperature",
        "u_component_of_wind",
        "v_component_of_wind",
        "specific_humidity",
        "geopotential",
    ]
    assert upper["pressure_level"] == [str(x) for x in PRESSURE_LEVELS_HPA]
    for request in (single, upper):
        assert request["product_type"] == "reanalysis" and request["grid"] == "5/5"
        assert request["date"] == ["2025-06-04"] and request["time"] == ["00:00"]
        assert request["data_format"] == "grib"
    # The client polled each job (accepted, then successful) and downloaded the asset.
    job_polls = [p for m, p, _ in state.log if m == "GET" and "/retrieve/v1/jobs/" in p and not p.endswith("results")]
    assert len(job_polls) >= 4
    assert sum(1 for m, p, _ in state.log if p.startswith("/download/")) == 2
    assert all(h.get("PRIVATE-TOKEN") == "secret-key-1" for h in state.headers_seen)


def test_cds_probe_reads_the_catalogue_extent_and_unpublished_times_are_not_available() -> None:
    with CdsServer(GRID, "k", published_until=START + timedelta(days=2)) as server:
        adapter = CdsEra5(server.api_url, SecretStr("k"), GRID, poll_max_s=0.2, retry_max=2, probe_ttl_s=0)
        assert adapter.published_until() == START + timedelta(days=2)
        assert adapter.available(START + timedelta(days=2))
        assert not adapter.available(START + timedelta(days=2, hours=1))
        with pytest.raises(TruthNotAvailable):
            adapter.load(START + timedelta(days=3), ALL, PRESSURE_LEVELS_HPA)
        assert server.state.retrieved() == []  # the probe said no: no job queued
        # The catalogue runs ahead of the data (it happens): the failed job reads as "not yet".
        server.state.published_until = START + timedelta(days=9)
        adapter._stop = (0.0, START + timedelta(days=9))
        server.state.published_until = START + timedelta(days=2)
        adapter.probe_ttl_s = 1e9
        with pytest.raises(TruthNotAvailable):
            adapter.load(START + timedelta(days=4), ALL, PRESSURE_LEVELS_HPA)
        assert len(server.state.retrieved()) == 1


def test_a_wrong_key_is_a_source_error_that_never_shows_the_key(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with CdsServer(GRID, "the-right-key", published_until=START + timedelta(days=5)) as server:
        adapter = CdsEra5(server.api_url, SecretStr("wrong-key-abc123"), GRID, poll_max_s=0.2, retry_max=1)
        with pytest.raises(SourceError) as failure:
            adapter.load(START, ("2t",), ())
    assert "401" in str(failure.value) and "Authentication failed" in str(failure.value)
    assert "wrong-key-abc123" not in str(failure.value) + caplog.text
    assert "wrong-key-abc123" not in repr(adapter)
    with pytest.raises(SourceError, match="no CDS key"):
        CdsEra5("http://127.0.0.1:9/api", None, GRID).available(START)


def test_credentials_come_from_settings_or_the_standard_cdsapirc(tmp_path) -> None:
    rc = tmp_path / ".cdsapirc"
    rc.write_text("url: http://127.0.0.1:1/api\nkey: from-the-rc-file\n")
    assert read_cdsapirc(rc)[0] == "http://127.0.0.1:1/api"
    assert read_cdsapirc(tmp_path / "absent") == (None, None)
    from_rc = load_settings(data_dir=tmp_path, reference={"era5_sources": ["arco", "cds"], "cds_rc_path": str(rc)})
    adapter = CdsEra5.from_settings(from_rc.reference, GRID)
    assert adapter.url == "http://127.0.0.1:1/api" and adapter.key.get_secret_value() == "from-the-rc-file"
    explicit = load_settings(data_dir=tmp_path, reference={"cds_key": "from-settings", "cds_rc_path": str(rc)})
    assert CdsEra5.from_settings(explicit.reference, GRID).key.get_secret_value() == "from-settings"
    assert "from-settings" not in repr(explicit) and "from-settings" not in explicit.model_dump_json()


def test_source_order_arco_first_then_cds_once_arco_is_late_and_one_download(tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with two_sources(tmp_path / "src", GRID, START, 6, START + timedelta(days=2), START + timedelta(days=5)) as src:
        settings = load_settings(data_dir=tmp_path / "data", test_mode=True, reference=src.reference())
        valid = START + timedelta(days=4)
        # Before the fallback time (due + 24 h) only ARCO is asked, and it has not published it.
        early = ReferenceData(settings, clock=lambda: valid + timedelta(hours=23))
        assert list(early.era5_candidates(valid)) == ["arco"]
        assert not early.era5_available(valid)
        with pytest.raises(TruthNotAvailable):
            early.era5().field("2t", None, valid)
        assert src.cds.state.retrieved() == []
        late = ReferenceData(settings, clock=lambda: valid + timedelta(hours=25))
        assert list(late.era5_candidates(valid)) == ["arco", "cds"]
        assert late.era5_available(valid)
        assert late.era5_available(START + timedelta(days=1))  # ARCO still serves what it has
        # Eight workers at once: one CDS download (two jobs), everyone reads the same cache entry.
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: ReferenceData(settings, clock=late.clock).load_era5(valid), range(8)))
        assert sum(r.downloaded for r in results) == 1
        assert len(src.cds.state.retrieved()) == 2
        assert late.era5_truth_source(valid) == "cds"
        np.testing.assert_allclose(
            late.era5().field("t", 500, valid), SyntheticAtmosphere(GRID).field("t", 500, valid), atol=2e-3
        )
        assert late.era5().source_of(valid) == "cds"
        late.load_era5(START + timedelta(days=1))
        assert late.era5_truth_source(START + timedelta(days=1)) == "arco"
        assert len(src.cds.state.retrieved()) == 2
        lags = late.era5_lags()
        # ARCO's stop is a date: published through 23:00 of START + 2 d.
        assert lags == {"arco": pytest.approx(24 * 2 + 1 + 1), "cds": pytest.approx(1.0)}
    assert src.key not in caplog.text


def test_era5_truth_metadata_shows_the_source_and_each_lag_and_warns(tmp_path) -> None:
    with two_sources(tmp_path / "src", GRID, START, 6, START + timedelta(days=2), START + timedelta(days=5)) as src:
        settings = load_settings(
            data_dir=tmp_path / "data", test_mode=True, reference=src.reference(era5_lag_warn_hours=48.0)
        )
        now = START + timedelta(days=5, hours=6)
        resources = {"reference": ReferenceData(settings, clock=lambda: now), "settings": settings}
        result = materialize([era5_truth], partition_key="2025-06-05", resources=resources)
        meta = result.asset_materializations_for_node("era5_truth")[0].metadata
        assert meta["truth_source"].value == "cds"
        assert meta["lag_hours_arco"].value == pytest.approx(55.0)  # published through START + 2 d 23 h
        assert meta["lag_hours_cds"].value == pytest.approx(6.0)
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        lag = checks["source_lag"]
        assert not lag.passed and lag.severity == AssetCheckSeverity.WARN
        assert "arco (55.0)" in lag.metadata["late_sources"].value
        assert all(checks[name].passed for name in ("grid", "units_range", "no_nan"))
        # ARCO back on time: the same check passes.
        with DagsterInstance.ephemeral() as instance:
            resources["reference"] = ReferenceData(settings, clock=lambda: START + timedelta(days=3))
            again = materialize([era5_truth], partition_key="2025-06-02", resources=resources, instance=instance)
        meta = again.asset_materializations_for_node("era5_truth")[0].metadata
        assert meta["truth_source"].value == "arco"
        assert {c.check_name: c.passed for c in again.get_asset_check_evaluations()}["source_lag"]
