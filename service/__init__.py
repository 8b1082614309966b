"""The server process's wiring: ingest lease, REST API, health and metrics endpoints."""
