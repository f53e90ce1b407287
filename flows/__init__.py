"""Prefect flows: wiring only. Each task calls one core function; I/O tasks retry."""
