"""Anomaly and congestion models, their evaluation and promotion, and MLflow tracking."""
