"""The OpenAPI 3.1 description of the API, written out by hand (small, and exactly what is served)."""

from __future__ import annotations

from typing import Any

PAGE_PARAMS = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}, "description": "page size"},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "next_cursor of the last page"},
]


def _id(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}, "description": description}


RUN, UID = _id("run_id", "round id"), _id("uid", "miner uid (0..255)")


def _get(summary: str, params: list[dict[str, Any]], schema: str, paged: bool = False) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    body = (
        {
            "type": "object",
            "properties": {"items": {"type": "array", "items": ref}, "next_cursor": {"type": ["string", "null"]}},
        }
        if paged
        else ref
    )
    return {
        "get": {
            "summary": summary,
            "parameters": params + (PAGE_PARAMS if paged else []),
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": body}}},
                "400": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
                "429": {"$ref": "#/components/responses/Error"},
            },
        }
    }


def _obj(**props: str) -> dict[str, Any]:
    kinds = {"i": "integer", "n": "number", "s": "string", "b": "boolean", "o": "object", "a": "array"}
    return {"type": "object", "properties": {k: {"type": [kinds[v], "null"]} for k, v in props.items()}}


SCHEMAS = {
    "Round": _obj(
        run_id="i",
        gfs_init_time="s",
        status="s",
        miner_count="i",
        test_mode="b",
        started_at="s",
        completed_at="s",
        error="s",
    ),
    "RoundMiner": _obj(
        uid="i",
        hotkey="s",
        state="s",
        stage="s",
        stage_status="s",
        last_error="s",
        retries_remaining="i",
        next_retry="s",
        day1_score="n",
        era5_score="n",
        era5_completeness="n",
        overall_score="n",
        rank="i",
        scoring_profile="s",
        updated_at="s",
    ),
    "Event": _obj(
        id="i",
        at="s",
        hotkey="s",
        step="s",
        substep="s",
        lead_hours="i",
        status="s",
        started_at="s",
        completed_at="s",
        attempts="i",
        next_retry="s",
        latency_ms="n",
        error="o",
    ),
    "Score": _obj(
        hotkey="s", score_type="s", lead_hours="i", variable="s", score="n", valid_time="s", scoring_profile="s"
    ),
    "Snapshot": _obj(run_id="i", taken_at="s", summary="o"),
    "WeightSet": _obj(weight_set_id="i", computed_for="s", window_days="i", publisher="s", published_at="s"),
    "Weight": _obj(uid="i", mean_score="n", weight="n"),
    "Weights": _obj(weight_set_id="i", items="a", next_cursor="s"),
    "Receipt": _obj(
        receipt_id="i",
        run_id="i",
        uid="i",
        hotkey="s",
        kind="s",
        lead_hours="i",
        scoring_profile="s",
        receipt="o",
        receipt_sha256="s",
        signature="s",
        signer_ss58="s",
        created_at="s",
    ),
    "Error": _obj(error="s"),
}

PATHS = {
    "/api/v1/rounds": _get("rounds, newest first", [], "Round", paged=True),
    "/api/v1/rounds/{run_id}": _get("one round", [RUN], "Round"),
    "/api/v1/rounds/{run_id}/miners": _get(
        "a round's miners: state, stage, last error (sanitized), next retry, scores", [RUN], "RoundMiner", True
    ),
    "/api/v1/rounds/{run_id}/miners/{uid}/timeline": _get(
        "a miner's steps in the round, as events", [RUN, UID], "Event", True
    ),
    "/api/v1/rounds/{run_id}/miners/{uid}/scores": _get(
        "a miner's scores per type, lead and variable (variable null: the aggregate)", [RUN, UID], "Score", True
    ),
    "/api/v1/rounds/{run_id}/miners/{uid}/receipts": _get(
        "a miner's signed score receipts", [RUN, UID], "Receipt", True
    ),
    "/api/v1/receipts/{receipt_id}": _get("one receipt", [_id("receipt_id", "receipt id")], "Receipt"),
    "/api/v1/rounds/{run_id}/snapshot": _get("the subnet snapshot of a round", [RUN], "Snapshot"),
    "/api/v1/snapshot": _get("the latest round's subnet snapshot", [], "Snapshot"),
    "/api/v1/weights": _get("weight sets, newest first", [], "WeightSet", paged=True),
    "/api/v1/weights/latest": _get("the latest weight set, by uid", PAGE_PARAMS, "Weights"),
    "/api/v1/weights/{weight_set_id}": _get(
        "one weight set, by uid", [_id("weight_set_id", "weight set id"), *PAGE_PARAMS], "Weights"
    ),
    "/healthz": _get("liveness", [], "Error"),
}


def openapi_schema(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "weather-dagster validator API",
            "version": version,
            "description": "Read-only: rounds, miners, timelines, scores, snapshots, weights and receipts.",
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                "Error": {
                    "description": "error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            },
        },
    }
