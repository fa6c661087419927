"""Crowd task server: Flask app, database, assignment, worker/api/admin blueprints, MTurk adapter."""
