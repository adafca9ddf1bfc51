#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Run the installed rmap kselftest collection (run_kselftest.sh -c rmap) and
# report to LAVA: one test case per program with its result (pass, fail, or
# skip), and each selected metric of its --results file (PROG.result.txt,
# docs/json.md) as a measurement with its units. Without lava-test-case on
# PATH the same lines are printed. Everything lands in OUTPUT: rmap.ktap (the
# runner's KTAP), results/ (the programs' result files), result.txt.
set -eu

usage() {
	echo "usage: $0 [-p KSELFTEST_PATH] [-t 'PROG.py ...'] [-a RMAP_ARGS] [-m METRICS] [-o OUTPUT]" >&2
	exit 2
}

KSELFTEST_PATH=/opt/kselftests/default-in-kernel
TESTS=""
ARGS=""
METRICS='_walks_p(50|99)$'
OUTPUT="$(pwd)/output"
while getopts "p:t:a:m:o:h" opt; do
	case "$opt" in
	p) KSELFTEST_PATH=$OPTARG ;;
	t) TESTS=$OPTARG ;;
	a) ARGS=$OPTARG ;;
	m) METRICS=$OPTARG ;;
	o) OUTPUT=$OPTARG ;;
	*) usage ;;
	esac
done

list="$KSELFTEST_PATH/kselftest-list.txt"
if [ ! -x "$KSELFTEST_PATH/run_kselftest.sh" ] || ! grep -q '^rmap:' "$list" 2>/dev/null; then
	echo "rmap.sh: no rmap collection in $KSELFTEST_PATH: make -C tools/testing/selftests install" \
		"and make -C tools/testing/rmap install, both with INSTALL_PATH=$KSELFTEST_PATH" >&2
	exit 1
fi

# runner.sh appends each program's output to /dev/stdout; on a bare
# devtmpfs without that link it would land in a file of that name.
if [ ! -e /dev/stdout ] && ! ln -s /proc/self/fd/1 /dev/stdout 2>/dev/null; then
	echo "rmap.sh: no /dev/stdout: the programs' output will miss from rmap.ktap" >&2
fi

# OUTPUT is made anew; an earlier run's (only what this script writes
# there) is replaced, anything else is refused rather than removed.
if [ -z "$OUTPUT" ]; then
	echo "rmap.sh: -o needs a directory" >&2
	exit 2
fi
if [ -e "$OUTPUT" ] || [ -L "$OUTPUT" ]; then
	if [ -L "$OUTPUT" ] || [ ! -d "$OUTPUT" ]; then
		echo "rmap.sh: $OUTPUT is not a directory this script made; give a new one with -o" >&2
		exit 2
	fi
	for entry in "$OUTPUT"/* "$OUTPUT"/.[!.]* "$OUTPUT"/..?*; do
		[ -e "$entry" ] || [ -L "$entry" ] || continue
		case "${entry##*/}" in
		rmap.ktap | results | result.txt) ;;
		*)
			echo "rmap.sh: $OUTPUT holds ${entry##*/}, which this script did not write;" \
				"give a new directory with -o" >&2
			exit 2
			;;
		esac
	done
	rm -rf "$OUTPUT"
fi
mkdir -p "$OUTPUT/results"
RESULT_FILE="$OUTPUT/result.txt"
: >"$RESULT_FILE"

if [ -n "$TESTS" ]; then
	programs=$TESTS
else
	programs=$(sed -n 's/^rmap://p' "$list")
fi
selection=""
for prog in $programs; do
	selection="$selection -t rmap:$prog"
done

RMAP_ARGS="$ARGS --results $OUTPUT/results"
export RMAP_ARGS
# Through a pipe: runner.sh appends lines to /dev/stdout, which would write
# over a file opened without O_APPEND.
# shellcheck disable=SC2086 # one word per option
"$KSELFTEST_PATH/run_kselftest.sh" $selection 2>&1 | tee "$OUTPUT/rmap.ktap"

for prog in $programs; do
	stem=${prog%.py}
	name=$(echo "$stem" | sed 's/[^A-Za-z0-9][^A-Za-z0-9]*/_/g')
	line=$(grep -E "^(not )?ok [0-9]+ selftests: rmap: $prog( |\$)" "$OUTPUT/rmap.ktap" || true)
	case "$line" in
	"") result=fail ;; # never ran: the runner refused or died
	"not ok"*) result=fail ;;
	*"# SKIP"*) result=skip ;;
	*) result=pass ;;
	esac
	echo "$name $result" >>"$RESULT_FILE"
	measured="$OUTPUT/results/$stem.result.txt"
	if [ -r "$measured" ]; then
		awk -v re="$METRICS" 'NF == 4 && $1 ~ re' "$measured" >>"$RESULT_FILE"
	fi
done

echo "rmap.sh: $RESULT_FILE" >&2
while read -r name result measurement units; do
	if ! command -v lava-test-case >/dev/null 2>&1; then
		echo "$name $result${measurement:+ $measurement $units}"
	elif [ -n "$measurement" ]; then
		lava-test-case "$name" --result "$result" --measurement "$measurement" --units "$units"
	else
		lava-test-case "$name" --result "$result"
	fi
done <"$RESULT_FILE"
