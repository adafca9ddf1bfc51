"""A case as a pipeline: the registry of cases, measurement, cross-validation,
visit counting, target matching and statistics."""
