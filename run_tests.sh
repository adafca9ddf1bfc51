#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Front door of the rmap walk latency suite: runs tools/testing/rmap here
# when this machine can time rmap walks, otherwise (or with --vm) in a QEMU
# guest with a stock or given kernel. ./run_tests.sh --help for options.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
suite="$here/tools/testing/rmap"
# The project's virtual environment (make setup) when there is one.
if [ -z "${PYTHON:-}" ] && [ -x "$here/.venv/bin/python" ]; then
	PYTHON="$here/.venv/bin/python"
fi
python=${PYTHON:-python3}

if ! command -v "$python" >/dev/null 2>&1; then
	echo "run_tests.sh: error: $python not found (set PYTHON)" >&2
	exit 2
fi
# command -v takes any existing path; exec would fail with 126 and the shell's words.
case $python in
*/*)
	if [ -d "$python" ] || [ ! -x "$python" ]; then
		echo "run_tests.sh: error: PYTHON=$python is not an executable file" >&2
		exit 2
	fi
	;;
esac

PYTHONPATH="$suite${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
exec "$python" -m rmapbench run "$@"
