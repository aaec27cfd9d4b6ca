"""The weight vector: the 15-day mean of round vectors through the reference normalisation.

Steps (SPEC section 8 "Weights"; defaults reproduce the reference):
1. mean of each uid's round vector over the rounds of the window (a uid missing from a round counts 0);
2. zero for uids without a valid address; coldkeys owning >= 3 hotkeys are down-weighted by
   ``1 - (n - 3) x 0.8 / 7`` (0 from 10 hotkeys on) when ``coldkey_penalty_enabled``;
3. ``norm = w / max(w)``; nothing positive: all weight to ``fallback_uid``;
4. ``M`` = 80th percentile (linear) of the distinct positive norms (all positive norms when fewer
   than 3 distinct);
5. ``sig = a + (k - a) / (1 + Q exp(-b (norm - M)))^(1/v)`` on the positive norms (a uid with no
   score gets no weight: the sigmoid of 0 is tiny but not 0, and paying non-participants is not the
   intent), ``w' = sig + 0.01 norm``; if the coefficient of variation of the positive ``w'`` is below
   0.03, ``w' = w' x norm^1.3``; normalise to sum 1;
6. with ``burn_enabled``: miners share ``1 - burn_share`` and ``burn_uid`` gets ``burn_share`` on top.

Publishing is pluggable (:class:`WeightPublisher`); the default writes ``weather_weight_sets`` and
``weather_weights``. Setting weights on chain is another publisher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
import sqlalchemy as sa

from weather_dagster.db.schema import forecast_runs, miners, round_scores, weight_sets, weights
from weather_dagster.db.upsert import insert_for
from weather_dagster.settings import ScoringSettings

N_UIDS = 256


@dataclass
class WeightVector:
    weights: dict[int, float]
    mean_scores: dict[int, float]
    details: dict[str, Any] = field(default_factory=dict)


def coldkey_factor(n_hotkeys: int, settings: ScoringSettings) -> float:
    lo, zero = settings.coldkey_penalty_min_hotkeys, settings.coldkey_penalty_zero_at
    if n_hotkeys < lo:
        return 1.0
    if n_hotkeys >= zero:
        return 0.0
    return max(0.0, 1.0 - (n_hotkeys - lo) * settings.coldkey_penalty_max_reduction / (zero - lo))


def normalise(mean_scores: np.ndarray, settings: ScoringSettings) -> tuple[np.ndarray, dict[str, Any]]:
    """Steps 3-5 on a 256-vector of (already address- and coldkey-adjusted) mean scores."""
    w = np.clip(np.asarray(mean_scores, dtype=np.float64), 0.0, None)
    out = np.zeros_like(w)
    top = float(w.max()) if w.size else 0.0
    if top <= 0.0:
        out[settings.fallback_uid] = 1.0
        return out, {"fallback": True}
    norm = w / top
    positive = norm > 0
    distinct = np.unique(norm[positive])
    pool = distinct if distinct.size >= 3 else norm[positive]
    m = float(np.percentile(pool, settings.sigmoid_percentile, method="linear"))
    a, k, q, b, v = settings.sigmoid_a, settings.sigmoid_k, settings.sigmoid_q, settings.sigmoid_b, settings.sigmoid_v
    with np.errstate(over="ignore"):
        sig = a + (k - a) / np.power(1.0 + q * np.exp(-b * (norm - m)), 1.0 / v)
    shaped = np.where(positive, sig + settings.linear_norm_share * norm, 0.0)
    values = shaped[positive]
    cv = float(values.std() / values.mean()) if values.mean() > 0 else 0.0
    low_cv = cv < settings.min_coefficient_of_variation
    if low_cv:
        shaped = shaped * np.power(norm, settings.low_cv_exponent)
    total = shaped.sum()
    if total <= 0:
        out[settings.fallback_uid] = 1.0
        return out, {"fallback": True}
    return shaped / total, {"fallback": False, "percentile_m": m, "cv": cv, "low_cv_sharpened": low_cv}


def compute_weights(
    round_vectors: Sequence[Mapping[int, float]],
    settings: ScoringSettings,
    *,
    valid_address: Mapping[int, bool] | None = None,
    coldkeys: Mapping[int, str] | None = None,
    burn_uid: int | None = None,
) -> WeightVector:
    sums = np.zeros(N_UIDS)
    for vector in round_vectors:
        for uid, score in vector.items():
            sums[uid] += score
    mean = sums / len(round_vectors) if round_vectors else sums
    adjusted = mean.copy()
    if valid_address is not None:
        for uid in range(N_UIDS):
            # A uid with no node row is not checked by the reference (``if node_info:``), so it keeps its score.
            if not valid_address.get(uid, True):
                adjusted[uid] = 0.0
    # As deployed the node query has no coldkey column, so the penalty never applies (reference).
    if settings.coldkey_penalty_enabled and coldkeys and not settings.quirks.coldkey_penalty_inert:
        owners: dict[str, list[int]] = {}
        for uid, coldkey in coldkeys.items():
            if coldkey:
                owners.setdefault(coldkey, []).append(uid)
        for uids in owners.values():
            factor = coldkey_factor(len(uids), settings)
            for uid in uids:
                adjusted[uid] *= factor
    shaped, details = normalise(adjusted, settings)
    if settings.burn_enabled:
        burn_to = settings.burn_uid if burn_uid is None else burn_uid
        shaped = shaped * (1.0 - settings.burn_share)
        shaped[burn_to] += settings.burn_share
        details["burn_uid"] = burn_to
    details.update(
        rounds=len(round_vectors),
        burn=settings.burn_enabled,
        window_days=settings.weights_window_days,
        scoring_profile=settings.profile,
    )
    return WeightVector(
        {uid: float(shaped[uid]) for uid in range(N_UIDS)}, {uid: float(mean[uid]) for uid in range(N_UIDS)}, details
    )


def valid_address(ip: str | None, port: int | None) -> bool:
    """The reference zeroes uids whose ip is None, "" or "0" (``validator.py`` ~5323).

    "0.0.0.0" is accepted there (it is neither), and the port is not looked at: doing otherwise would
    pay different uids than the rest of the subnet, so this follows the reference in both profiles.
    """
    return not (ip is None or str(ip).strip() in ("", "0"))


def load_window(conn: sa.Connection, until: datetime, settings: ScoringSettings) -> list[dict[int, float]]:
    """Round vectors of the rounds initialised in (until - window, until]."""
    start = until - timedelta(days=settings.weights_window_days)
    rows = conn.execute(
        sa.select(round_scores.c.run_id, round_scores.c.miner_uid, round_scores.c.score)
        .join(forecast_runs, forecast_runs.c.id == round_scores.c.run_id)
        .where(forecast_runs.c.gfs_init_time_utc > start, forecast_runs.c.gfs_init_time_utc <= until)
    ).all()
    vectors: dict[int, dict[int, float]] = {}
    for run_id, uid, score in rows:
        vectors.setdefault(run_id, {})[uid] = score
    return [vectors[k] for k in sorted(vectors)]


def weights_for(conn: sa.Connection, until: datetime, settings: ScoringSettings) -> WeightVector:
    metagraph = conn.execute(
        sa.select(miners.c.uid, miners.c.ip, miners.c.port, miners.c.coldkey, miners.c.hotkey)
    ).all()
    burn_uid = next((uid for uid, _ip, _port, _ck, hotkey in metagraph if hotkey == settings.burn_hotkey), None)
    return compute_weights(
        load_window(conn, until, settings),
        settings,
        valid_address={uid: valid_address(ip, port) for uid, ip, port, _ck, _hk in metagraph},
        coldkeys={uid: ck for uid, _ip, _port, ck, _hk in metagraph},
        burn_uid=burn_uid,
    )


class WeightPublisher(Protocol):
    name: str

    def publish(self, vector: WeightVector, computed_for: datetime, now: datetime) -> None: ...


class DatabaseWeightPublisher:
    """Default publisher: one ``weather_weight_sets`` row per computed_for, one weight row per uid."""

    name = "database"

    def __init__(self, database) -> None:
        self.database = database  # anything with ``.engine`` (a ``Database``): resolved only when publishing

    def publish(self, vector: WeightVector, computed_for: datetime, now: datetime) -> None:
        with self.database.engine.begin() as conn:
            stmt = insert_for(conn, weight_sets).values(
                computed_for=computed_for,
                window_days=int(vector.details.get("window_days", 0)),
                publisher=self.name,
                published_at=now,
                details=vector.details,
                created_at=now,
            )
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["computed_for"]))
            set_id = conn.execute(
                sa.select(weight_sets.c.id).where(weight_sets.c.computed_for == computed_for)
            ).scalar_one()
            for uid, weight in sorted(vector.weights.items()):
                row = insert_for(conn, weights).values(
                    weight_set_id=set_id, miner_uid=uid, mean_score=vector.mean_scores.get(uid, 0.0), weight=weight
                )
                conn.execute(
                    row.on_conflict_do_update(
                        index_elements=["weight_set_id", "miner_uid"],
                        set_={"mean_score": row.excluded.mean_score, "weight": row.excluded.weight},
                        where=sa.or_(
                            weights.c.weight.is_distinct_from(row.excluded.weight),
                            weights.c.mean_score.is_distinct_from(row.excluded.mean_score),
                        ),
                    )
                )
