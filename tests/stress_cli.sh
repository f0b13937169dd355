#!/usr/bin/env bash
# tests/stress_cli.sh - lfpool-stress's argument errors: each bad command line
# must exit 2 with a message naming the problem on stderr and print nothing on
# stdout (so no SUMMARY is mistaken for a result). ST_BIN = the binary.
set -u
BIN=${ST_BIN:-build/lfpool-stress}
[ -x "$BIN" ] || { echo "stress_cli: $BIN not built"; exit 1; }
fails=0; n=0
out=$(mktemp); err=$(mktemp); trap 'rm -f "$out" "$err"' EXIT

# expect STATUS 'stderr substring' args...
expect() {
	local want=$1 msg=$2; shift 2
	n=$((n + 1))
	"$BIN" "$@" >"$out" 2>"$err"; local rc=$?
	if [ "$rc" -ne "$want" ]; then
		echo "FAIL: $BIN $*: exit $rc, expected $want"; sed 's/^/  stderr: /' "$err" | head -5; fails=$((fails + 1)); return
	fi
	if ! grep -qF -- "$msg" "$err"; then
		echo "FAIL: $BIN $*: stderr lacks '$msg'"; sed 's/^/  stderr: /' "$err" | head -5; fails=$((fails + 1)); return
	fi
	if [ "$want" -eq 2 ] && [ -s "$out" ]; then
		echo "FAIL: $BIN $*: printed on stdout for a usage error"; fails=$((fails + 1)); return
	fi
	echo "ok: $* -> $rc: $(grep -F -- "$msg" "$err" | head -1)"
}

expect 2 "--threads: 'abc' is not a thread count" --threads abc
expect 2 "--threads: '0' is not a thread count" --threads 0
expect 2 "--threads: '-3' is not a thread count" --threads -3
expect 2 "more than the 4096 threads" --threads 5000
expect 2 "--threads: '2y' is not a thread count" --threads 1,2y
expect 2 "unknown workload 'nope'" --workload hot,nope
expect 2 "unknown policy 'sideways'" --policy sideways
expect 2 "--duration: '-1' is not a number of seconds" --duration -1
expect 2 "--duration: 'soon' is not a number of seconds" --duration soon
expect 2 "--duration and --ops exclude each other" --duration 1 --ops 10
expect 2 "--ops: '0' is not an integer" --ops 0
expect 2 "--kill-every needs --procs" --kill-every 1
expect 2 "--block-size: '8' is not an integer in [16" --block-size 8
expect 2 "--batch: '0' is not an integer" --batch 0
expect 2 "--seed: '-5' must not be negative" --seed -5
expect 2 "--seed needs a value" --seed
expect 2 "unknown allocator 'ptmalloc9'" --compare glibc,ptmalloc9
expect 2 "unknown allocator 'nope'" --backend nope
expect 2 "unknown option '--bogus'" --bogus
expect 2 "unknown option '-x'" -x
expect 2 "unexpected argument 'hot'" hot
expect 2 "cannot both go to stdout" --json --csv
expect 2 "not a valid hwloc synthetic topology" --topology "pack:two core:x" --plan
expect 2 "no such XML file" --topology /nonexistent/machine.xml --plan
expect 2 "--procs: workload burst is not supported" --procs 2 --workload burst --duration 1
expect 2 "--procs runs one measurement" --procs 2 --compare glibc

# --help is not an error.
n=$((n + 1))
if "$BIN" --help >"$out" 2>"$err" && grep -q '^usage:' "$out" && grep -q -- '--kill-every' "$out"; then
	echo "ok: --help -> 0"
else
	echo "FAIL: --help"; fails=$((fails + 1))
fi
echo "stress_cli: $((n - fails)) of $n passed"
[ "$fails" -eq 0 ]
