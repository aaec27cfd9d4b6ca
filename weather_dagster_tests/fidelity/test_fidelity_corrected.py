"""The ``corrected`` profile against a plain float64 transcription of the intended formulas.

Same fixtures as the golden test (``fidelity/fixtures.py``). The transcription is deliberately naive:
float64 numpy, one field at a time, gaps (and the one-cell seam) filled with climatology, per-level
metrics from ``scoring_reference.numpy_metrics``, levels combined with the layer-thickness weights
(RMSE as the root of the weighted MSE), and the lead score of SPEC section 8.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from weather_dagster.reference.grid import CoordinateGrid, Grid
from weather_dagster.scoring.era5 import score_era5_lead_many
from weather_dagster.settings import ScoringSettings
from weather_dagster_tests.fidelity import fixtures as fx
from weather_dagster_tests.support.scoring_reference import numpy_metrics

SETTINGS = ScoringSettings(profile="corrected")
# Kinds on the truth grid that the corrected profile scores (coverage above 0.9985 after filling).
KINDS = ("clean", "biased", "noisy", "nan_inside_few", "nan_north", "nan_east", "constant", "climatology")
LEAD = fx.ERA5_LEADS[0]
COMPARED: list[int] = []


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fidelity-corrected")
    fx.generate(root)
    return root


def _load(root: Path, sub: str, var: str, level: int | None) -> np.ndarray:
    return np.load(root / f"{sub}/{var}{level or ''}.npy")


def _thickness(levels: tuple[int, ...]) -> dict[int, float]:
    p = np.asarray(levels, dtype=np.float64)
    edges = np.concatenate([[p[0]], (p[1:] + p[:-1]) / 2, [p[-1]]])
    t = np.diff(edges)
    return {int(lvl): float(w) for lvl, w in zip(levels, t / t.sum(), strict=True)}


def plain_lead(root: Path, kind: str) -> tuple[float, dict[str, tuple[float, float, float]]]:
    lat = fx.latitudes()
    w = np.cos(np.deg2rad(lat))
    w[np.isclose(np.abs(lat), 90.0)] = 0.0
    slot = fx.slot_of(LEAD)
    thickness = _thickness(fx.LEVELS)
    variables: dict[str, tuple[float, float, float]] = {}
    for var in fx.SURFACE + fx.ATMOSPHERIC:
        levels = [None] if var in fx.SURFACE else list(fx.LEVELS)
        per = {}
        for level in levels:
            o = _load(root, f"era5_truth/L{LEAD}", var, level).astype(np.float64)
            c = _load(root, f"clim/{slot}", var, level).astype(np.float64)
            f = _load(root, f"era5_miner/{kind}/L{LEAD}", var, level).astype(np.float64)
            f = np.where(np.isfinite(f), f, c)
            per[level] = numpy_metrics(f, o, c, c, w)
        if var in fx.SURFACE:
            m = per[None]
            variables[var] = (m["rmse"], m["acc"], m["skill"])
        else:
            mse = sum(thickness[lvl] * per[lvl]["mse"] for lvl in levels)
            acc = sum(thickness[lvl] * per[lvl]["acc"] for lvl in levels)
            skill = sum(thickness[lvl] * per[lvl]["skill"] for lvl in levels)
            variables[var] = (math.sqrt(mse), acc, skill)
    rmses = sorted(v[0] for v in variables.values())
    ref = rmses[len(rmses) // 2]
    # An undefined metric (a correlation of a field with no anomaly) is left out of its mean.
    skills = [min(1.0, max(0.0, v[2])) for v in variables.values() if not math.isnan(v[2])]
    accs = [(v[1] + 1) / 2 for v in variables.values() if math.isfinite(v[1])]
    terms = [1 / (1 + (v[0] / ref if ref > 0 else 1.0)) for v in variables.values()]
    score = 0.6 * (np.mean(skills) if skills else 0.0) + 0.3 * (np.mean(accs) if accs else 0.0) + 0.1 * np.mean(terms)
    return min(1.0, max(0.0, float(score))), variables


class _Source:
    def __init__(self, root: Path, sub: str, grid) -> None:
        self.root, self.sub, self.grid = root, sub, grid

    def field(self, variable, level_hpa, *_):
        return _load(self.root, self.sub, variable, level_hpa)


@pytest.mark.parametrize("kind", KINDS)
def test_corrected_profile_equals_the_plain_float64_formulas(kind: str, fixture_dir: Path) -> None:
    grid = Grid(fx.RESOLUTION)
    miner_grid = CoordinateGrid(*fx.miner_grid(kind))
    init = datetime.fromisoformat(fx.INIT_TIME).replace(tzinfo=UTC)
    slot = fx.slot_of(LEAD)

    class Clim(_Source):
        def field(self, variable, level_hpa, *_):
            return _load(self.root, f"clim/{slot}", variable, level_hpa)

    result = score_era5_lead_many(
        {0: _Source(fixture_dir, f"era5_miner/{kind}/L{LEAD}", miner_grid.canonical() or miner_grid)},
        _Source(fixture_dir, f"era5_truth/L{LEAD}", grid),
        Clim(fixture_dir, "", grid),
        init,
        LEAD,
        SETTINGS,
    )[0]
    score, variables = plain_lead(fixture_dir, kind)
    assert result.status == "scored", result.reason
    assert result.score == pytest.approx(score, rel=1e-6, abs=1e-9)
    count = 1
    for var, (rmse, acc, skill) in variables.items():
        got = result.variables[var]
        for name, mine, plain in (("rmse", got.rmse, rmse), ("acc", got.acc, acc), ("skill", got.skill, skill)):
            if math.isfinite(plain):
                assert mine == pytest.approx(plain, rel=1e-6, abs=1e-9), f"{var}.{name}"
                count += 1
    COMPARED.append(count)
    assert count >= 10  # the score and at least the nine RMSEs were compared
