"""Analysis of result files: sweeps over scenario parameters, A/B comparisons
of kernels or settings with bootstrap intervals and rank tests, and reports.

Only the host runs this package (it needs numpy, scipy and matplotlib); the
guests only run the test programs and write their JSON.
"""
