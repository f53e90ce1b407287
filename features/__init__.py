"""Feature specs, the feature builder, and the targets (labels) models learn from."""
