#!/usr/bin/env bash
# tests/model/run.sh OUTDIR - verify tests/model/stack.pml with Spin.
#
# Runs, each in its own folder under OUTDIR (nothing is written to the
# source tree: the model is copied, pan and any trail stay in OUTDIR):
#   tagged        exhaustive search, must finish with 0 errors;
#   notag         tag removed (-DNOTAG): must find an error (a stale pop
#                 sees its old head again and reports a corrupt link);
#   notag-owner   tag removed and that report treated as the C code does
#                 (-DCORRUPT_RETURNS: alloc fails): must find a block on
#                 the free list that has an owner (classic ABA);
#   tag2          a 2-bit tag that may wrap in the run: must find an error,
#                 as the LFP_TAG_BITS=2 control of the C tests must fail.
# Prints states explored and, for each counterexample, the interleaving.
# Exit 0 only if tagged is clean and every other variant fails.
set -u
out=${1:?usage: run.sh OUTDIR}
src=$(cd "$(dirname "$0")" && pwd)/stack.pml
cc=${CC:-cc}
# COLLAPSE keeps the ~24M states of the tagged run near 1 GB.
pan_cflags="-O2 -w -DSAFETY -DCOLLAPSE -DMEMLIM=3072"
fail=0

# run NAME EXPECT(clean|error) SPIN_DEFINES PAN_EXTRA_CFLAGS
run() {
	local name=$1 expect=$2 defs=$3 extra=$4 dir="$out/$1" log rc
	rm -rf "$dir" && mkdir -p "$dir" && cp "$src" "$dir/stack.pml" || return 1
	log="$dir/pan.log"
	if ! (cd "$dir" && spin $defs -a stack.pml >spin.log 2>&1 &&
	      $cc $pan_cflags $extra -o pan pan.c >cc.log 2>&1); then
		echo "model $name: spin/cc failed"; cat "$dir"/spin.log "$dir"/cc.log 2>/dev/null
		return 1
	fi
	local t0=$(date +%s%N)
	(cd "$dir" && ./pan -m200000 >pan.log 2>&1); rc=$?
	local ms=$((($(date +%s%N) - t0) / 1000000))
	local states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$log" | head -1)
	local errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$log" | head -1)
	printf 'model %-12s spin %-30s states stored %-9s errors %-2s %d.%ds\n' \
		"$name" "${defs:--}" "${states:-?}" "${errors:-?}" $((ms / 1000)) $((ms % 1000 / 100))
	if grep -qE 'out of memory|MEMLIM bound|max search depth too small|pan: error' "$log"; then
		echo "model $name: search did not complete:"; grep -E 'memory|MEMLIM|depth|error' "$log"
		return 1
	fi
	if [ "$expect" = clean ]; then
		if [ "$rc" -ne 0 ] || [ "${errors:-x}" != 0 ] || grep -q 'Search not completed' "$log"; then
			echo "model $name: expected a clean exhaustive search"; grep -vE '^Depth=' "$log"
			[ -e "$dir/stack.pml.trail" ] && (cd "$dir" && spin $defs -t stack.pml)
			return 1
		fi
		return 0
	fi
	if [ "${errors:-0}" = 0 ] || [ ! -e "$dir/stack.pml.trail" ]; then
		echo "model $name: expected a counterexample, found none"
		return 1
	fi
	echo "  counterexample ($(grep -m1 -o 'assertion violated.*' "$log")):"
	(cd "$dir" && spin $defs -t stack.pml) | sed -n 's/^ *\(P[0-9].*\)/    \1/p'
	return 0
}

run tagged      clean ""                             ""      || fail=1
run notag       error "-DNOTAG"                      "-DBFS" || fail=1
run notag-owner error "-DNOTAG -DCORRUPT_RETURNS"    "-DBFS" || fail=1
run tag2        error "-DTAGBITS=2 -DTAG_MAY_WRAP"   "-DBFS" || fail=1
[ "$fail" = 0 ] && echo "model: tagged stack verified; every tag-less variant gave a counterexample"
exit $fail
