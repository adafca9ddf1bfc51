"""A case as a pipeline of stages (pipeline.py: preflight, build,
sampling, judge, report, document), and what they use: the registry of
cases, measurement, cross-validation, visit counting, target matching and
statistics."""
