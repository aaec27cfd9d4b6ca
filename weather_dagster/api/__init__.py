"""The read-only HTTP API and page of issue 15 (Starlette on uvicorn, loopback by default)."""
