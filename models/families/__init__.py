"""The model families: each module defining FAMILY (see cellpulse.models.family)."""
