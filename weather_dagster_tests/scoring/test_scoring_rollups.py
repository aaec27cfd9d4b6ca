"""Round score, round vector with the winner bonus, ranks and the weight normalisation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weather_dagster.scoring.round_score import RoundEntry, era5_combined, overall_score, round_vector
from weather_dagster.settings import ScoringSettings
from weather_dagster.stats.ranks import competition_ranks
from weather_dagster.stats.weights import coldkey_factor, compute_weights, normalise, valid_address

S = ScoringSettings()
NO_BURN = S.model_copy(update={"burn_enabled": False})


def test_overall_score_golden():
    leads = {24: 0.8, 48: 0.6}
    assert overall_score(leads, True, S) == pytest.approx(0.95 * 1.4 / 10 + 0.05)
    assert overall_score({}, True, S) == pytest.approx(0.05)
    assert overall_score({24: math.nan, 36: 1.0}, False, S) == 0.0  # NaN and off-list leads ignored
    assert era5_combined(leads, S) == (pytest.approx(0.14), pytest.approx(0.2))
    all_perfect = dict.fromkeys(S.era5_lead_hours, 1.0)
    assert overall_score(all_perfect, True, S) == 1.0


@settings(max_examples=100, deadline=None)
@given(
    scores=st.lists(st.floats(0.0, 1.0), min_size=10, max_size=10),
    order=st.permutations(list(range(10))),
    day1_passed=st.booleans(),
)
def test_overall_score_never_falls_as_leads_arrive(scores, order, day1_passed):
    leads = S.era5_lead_hours
    arrived: dict[int, float] = {}
    previous = overall_score(arrived, day1_passed, S)
    for index in order:
        arrived[leads[index]] = scores[index]
        current = overall_score(arrived, day1_passed, S)
        assert current >= previous - 1e-15
        assert 0.0 <= current <= 1.0
        previous = current


def test_round_vector_winner_bonus_rules():
    entries = {1: RoundEntry(0.8, True), 2: RoundEntry(0.5, True), 3: RoundEntry(0.0, False)}
    vector = round_vector(entries, S)
    assert vector[1] == (pytest.approx(0.85), pytest.approx(0.05))
    assert vector[2] == (0.5, 0.0)
    tied = round_vector({1: RoundEntry(0.8, True), 2: RoundEntry(0.8, True)}, S)
    assert tied[1][1] == pytest.approx(0.025) and tied[2][1] == pytest.approx(0.025)
    three = round_vector({u: RoundEntry(0.8, True) for u in (1, 2, 3)}, S)
    assert all(bonus == 0.0 for _score, bonus in three.values())
    low = round_vector({1: RoundEntry(0.69, True)}, S)
    assert low[1] == (0.69, 0.0)
    day1_only = round_vector({1: RoundEntry(0.05, False), 2: RoundEntry(0.0, False)}, S)
    assert day1_only[1] == (0.05, 0.0)
    capped = round_vector({1: RoundEntry(1.0, True)}, S.model_copy(update={"winner_bonus": 0.5}))
    assert capped[1][0] == pytest.approx(1.1)  # clipped to [0, 1.1]


def test_competition_ranks():
    ranks = competition_ranks({(1, "a"): 0.5, (2, "b"): 0.9, (3, "c"): 0.5, (4, "d"): None, (5, "e"): 0.1})
    assert ranks == {(2, "b"): 1, (1, "a"): 2, (3, "c"): 2, (5, "e"): 4, (4, "d"): None}


def test_coldkey_factor():
    assert coldkey_factor(2, S) == 1.0 and coldkey_factor(3, S) == 1.0
    assert coldkey_factor(4, S) == pytest.approx(1 - 0.8 / 7)
    assert coldkey_factor(9, S) == pytest.approx(1 - 6 * 0.8 / 7)
    assert coldkey_factor(10, S) == 0.0 and coldkey_factor(40, S) == 0.0


def _sig(n: float, m: float) -> float:
    return 0.98 / (1 + 8 * math.exp(-70 * (n - m))) ** (1 / 0.3)


def test_weight_normalisation_golden_two_miners():
    vector = compute_weights([{1: 1.0, 2: 0.5}], NO_BURN, valid_address={1: True, 2: True})
    m = 0.5 + 0.8 * 0.5  # 80th percentile of [0.5, 1.0] (fewer than 3 distinct: all positives)
    w1, w2 = _sig(1.0, m) + 0.01, _sig(0.5, m) + 0.005
    assert vector.details["percentile_m"] == pytest.approx(m)
    assert vector.weights[1] == pytest.approx(w1 / (w1 + w2))
    assert vector.weights[2] == pytest.approx(w2 / (w1 + w2))
    assert vector.weights[1] == pytest.approx(0.99485, abs=1e-5)
    assert sum(vector.weights.values()) == pytest.approx(1.0)
    assert all(w == 0.0 for uid, w in vector.weights.items() if uid not in (1, 2))


def test_weights_mean_over_rounds_invalid_addresses_burn_and_fallback():
    rounds = [{1: 1.0, 2: 0.4}, {1: 0.5}]  # uid 2 missing from round 2 counts 0
    vector = compute_weights(rounds, S, valid_address={1: True, 2: True})
    assert vector.mean_scores[1] == pytest.approx(0.75) and vector.mean_scores[2] == pytest.approx(0.2)
    assert vector.weights[S.burn_uid] == pytest.approx(0.75)  # burn uid 0 had no score of its own
    assert sum(vector.weights.values()) == pytest.approx(1.0)
    no_address = compute_weights(rounds, NO_BURN, valid_address={1: False, 2: True})
    assert no_address.weights[1] == 0.0 and no_address.weights[2] == pytest.approx(1.0)
    nothing = compute_weights([{1: 0.0}], NO_BURN.model_copy(update={"fallback_uid": 7}), valid_address={1: True})
    assert nothing.weights[7] == 1.0 and nothing.details["fallback"]


def test_low_coefficient_of_variation_sharpens_and_coldkeys_are_penalised():
    w, details = normalise([0.0, 1.0, 1.0, 1.0], NO_BURN)
    assert details["low_cv_sharpened"] and w[1] == pytest.approx(1 / 3)
    coldkeys = {uid: "ck" for uid in range(1, 5)} | {5: "other"}
    vector = compute_weights(
        [dict.fromkeys(range(1, 6), 1.0)],
        NO_BURN.model_copy(update={"profile": "corrected"}),
        valid_address=dict.fromkeys(range(256), True),
        coldkeys=coldkeys,
    )
    assert vector.weights[1] < vector.weights[5]  # 4 hotkeys on one coldkey: x (1 - 0.8/7)


def test_valid_address_follows_the_reference():
    # validator.py ~5323: None, "" and "0" are no address; anything else (even 0.0.0.0) is one.
    assert valid_address("10.0.0.1", 8091) and valid_address("0.0.0.0", 8091) and valid_address("1.2.3.4", 0)
    assert not valid_address("", 8091) and not valid_address(None, 8091) and not valid_address("0", 8091)
    assert not valid_address(" 0 ", None)


def test_fallback_uid_is_252_and_a_uid_without_node_row_keeps_its_weight():
    nothing = compute_weights([{1: 0.0}], NO_BURN, valid_address={1: True})
    assert nothing.weights[252] == 1.0 and nothing.details["fallback"]
    unknown = compute_weights([{1: 1.0, 2: 0.5}], NO_BURN, valid_address={1: True})
    assert unknown.weights[2] > 0.0


def test_coldkey_penalty_is_inert_under_the_reference_profile():
    coldkeys = {uid: "ck" for uid in range(1, 5)} | {5: "other"}
    rounds = [dict.fromkeys(range(1, 6), 1.0)]
    everyone = dict.fromkeys(range(256), True)
    reference = compute_weights(rounds, NO_BURN, valid_address=everyone, coldkeys=coldkeys)
    assert reference.weights[1] == pytest.approx(reference.weights[5])
    corrected = compute_weights(
        rounds, NO_BURN.model_copy(update={"profile": "corrected"}), valid_address=everyone, coldkeys=coldkeys
    )
    assert corrected.weights[1] < corrected.weights[5]


def test_burn_goes_to_the_uid_of_the_burn_hotkey_when_the_metagraph_has_it():
    vector = compute_weights([{1: 1.0, 2: 0.5}], S, valid_address={1: True, 2: True}, burn_uid=42)
    assert vector.weights[42] == pytest.approx(0.75) and vector.details["burn_uid"] == 42
    assert compute_weights([{1: 1.0}], S).details["burn_uid"] == S.burn_uid
