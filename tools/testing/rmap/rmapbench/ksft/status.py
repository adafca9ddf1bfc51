"""Exit statuses, in one place.

A test program exits as kselftest expects (tools/testing/selftests/
kselftest.h): 0 pass, 1 fail, 4 skip. The runner of the 6.x kernels maps any
other status to `not ok ... # exit=N`, so the programs use only those three,
plus 2 for a command line refused before anything is set up, and 128+N when
signal N ended them (after the system was restored).

The host commands (run_tests.sh, rmapbench ...) add their own.
"""

KSFT_PASS = 0
KSFT_FAIL = 1
KSFT_SKIP = 4

EXIT_FAILED = KSFT_FAIL  # a host command: some case failed
EXIT_USAGE = 2  # a bad command line or input: one line on stderr, nothing done
EXIT_GUEST = 3  # the guest did not boot, panicked or timed out
EXIT_KERNEL = 5  # no kernel could be had (fetch or image)
EXIT_REGRESSION = 6  # compare/ab: a significant regression beyond --max-regression
EXIT_INTERNAL = 7  # an unexpected internal error: one line, rerun with -v for the traceback
# A result file is damaged (truncated, not numbers), partial (its run was
# killed or interrupted, or is still running), or a gate cannot be evaluated
# on the results given (no case in common, no samples): nothing concluded.
EXIT_RESULTS = 8
EXIT_SIGNAL = 128  # 128 + N: signal N ended the command (the system restored first)
EXIT_TIMEOUT = 124  # timeout(1)'s status, which runner.sh reports as TIMEOUT
