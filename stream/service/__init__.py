"""The detector's HTTP service: app, routes, schemas, auth, uploads and WHIP ingest."""
