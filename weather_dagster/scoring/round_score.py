"""The round score of one miner and the per-round score vector (SPEC section 8, "Round score").

overall = 0.95 x (sum of lead scores / number of leads) + 0.05 x Day1 pass, clamped to [0, 1]. Lead
scores are in [0, 1] and only added, so the overall score never falls as leads arrive.
The round vector is that clamp of overall; once any miner of the round has an ERA5 lead, the top
scorer with score >= 0.7 gets +0.05 (split between at most 2 tied winners; more ties get nothing),
and the vector is clipped to [0, 1.1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from weather_dagster.settings import ScoringSettings

# ``corrected`` treats scores within this as tied; the reference compares floats exactly.
TIE_TOLERANCE = 1e-12


def era5_combined(lead_scores: Mapping[int, float], settings: ScoringSettings) -> tuple[float, float]:
    """(sum of the finite lead scores / number of leads, completeness = leads scored / leads)."""
    n = len(settings.era5_lead_hours)
    scores = [s for lead, s in lead_scores.items() if lead in settings.era5_lead_hours and math.isfinite(s)]
    return sum(scores) / n, len(scores) / n


def overall_score(lead_scores: Mapping[int, float], day1_passed: bool, settings: ScoringSettings) -> float:
    combined, _ = era5_combined(lead_scores, settings)
    value = settings.round_era5_weight * combined + settings.round_day1_weight * (1.0 if day1_passed else 0.0)
    return min(1.0, max(0.0, value))


@dataclass(frozen=True)
class RoundEntry:
    overall: float
    has_era5: bool


def round_vector(entries: Mapping[int, RoundEntry], settings: ScoringSettings) -> dict[int, tuple[float, float]]:
    """uid -> (vector score, winner bonus included in it)."""
    base = {uid: min(1.0, max(0.0, e.overall if math.isfinite(e.overall) else 0.0)) for uid, e in entries.items()}
    bonus = dict.fromkeys(base, 0.0)
    if base and any(e.has_era5 for e in entries.values()):
        top = max(base.values())
        tolerance = 0.0 if settings.quirks.exact_winner_ties else TIE_TOLERANCE
        winners = [uid for uid, s in base.items() if abs(s - top) <= tolerance]
        if top >= settings.winner_min_score and len(winners) <= settings.winner_max_ties:
            for uid in winners:
                bonus[uid] = settings.winner_bonus / len(winners)
    return {uid: (min(settings.round_vector_clip, max(0.0, base[uid] + bonus[uid])), bonus[uid]) for uid in base}
