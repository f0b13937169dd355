#!/usr/bin/env bash
# tests/docs_examples.sh BUILD CFLAGS... -- LIBS...
# The examples in README.md and the tutorials in docs/ are programs: extract
# each, compile it with the project's warnings as errors against the built
# library, and run those that are self-contained. A doc that drifts from the
# API fails this step.
set -u
build=$1; shift
cflags=(); while [ $# -gt 0 ] && [ "$1" != -- ]; do cflags+=("$1"); shift; done; shift
libs=("$@")
out=$build/docs-examples; mkdir -p "$out"
fails=0

# extract FILE HEADING-REGEX: the first ```c block after the heading
extract() { awk -v h="$2" '$0 ~ h {f=1} f && /^```c/ {g=1; next} g && /^```/ {exit} g {print}' "$1"; }

check() { # name file heading run?
	local name=$1 file=$2 heading=$3 run=$4
	extract "$file" "$heading" >"$out/$name.c"
	if [ ! -s "$out/$name.c" ]; then echo "docs: $name: no code block under '$heading' in $file"; fails=$((fails+1)); return; fi
	if ! ${CC:-cc} "${cflags[@]}" -Werror -o "$out/$name" "$out/$name.c" "${libs[@]}"; then
		echo "docs: $name ($file) does not compile"; fails=$((fails+1)); return; fi
	if [ "$run" = run ]; then
		if timeout 60 "$out/$name"; then echo "docs: $name: compiled and ran"; else
			echo "docs: $name ($file) failed: exit $?"; fails=$((fails+1)); fi
	elif [ "$run" = pair ]; then
		run_pair "$name" "$file"
	else
		echo "docs: $name: compiled"
	fi
}

# The shared-memory tutorial: a producer and a consumer, started in both
# orders; the consumer must print the producer's 5 messages. Its segment and
# FIFO names get this run's pid (another test run may share the machine);
# the text itself keeps /demo.
run_pair() { # name file
	local name=$1 file=$2 tag="lfpdoc$$" order
	sed "s|/demo\"|/$tag\"|g; s|/tmp/demo.fifo|/tmp/$tag.fifo|g" "$out/$name.c" >"$out/$name-run.c"
	if ! ${CC:-cc} "${cflags[@]}" -Werror -o "$out/$name-run" "$out/$name-run.c" "${libs[@]}"; then
		echo "docs: $name ($file) does not compile with its names replaced"; fails=$((fails+1)); return; fi
	for order in "consumer producer" "producer consumer"; do
		set -- $order
		timeout 30 "$out/$name-run" "$1" >"$out/$name.$1" 2>&1 & local a=$!
		# The second starts once the first is past its own setup and
		# waits in open() on the FIFO: the consumer made the FIFO, the
		# producer made the segment. (A bounded wait for a condition.)
		local mark="/tmp/$tag.fifo"; [ "$1" = producer ] && mark="/dev/shm/$tag"
		local w=0; while [ ! -e "$mark" ] && [ $w -lt 500 ] && kill -0 $a 2>/dev/null; do
			sleep 0.01; w=$((w + 1)); done
		timeout 30 "$out/$name-run" "$2" >"$out/$name.$2" 2>&1 & local b=$!
		wait $a; local ra=$?; wait $b; local rb=$?
		local got; got=$(grep -c '^got "message [0-4] from pid' "$out/$name.consumer")
		if [ $ra -ne 0 ] || [ $rb -ne 0 ] || [ "$got" != 5 ]; then
			echo "docs: $name ($file), $1 first: exits $ra/$rb, $got of 5 messages"
			sed 's/^/  /' "$out/$name.consumer" "$out/$name.producer" | head -8
			fails=$((fails+1))
		else
			echo "docs: $name: ran, $1 first: 5 of 5 messages"
		fi
		rm -f "/dev/shm/$tag" "/tmp/$tag.fifo"
	done
}

# docs/api.md is generated from the headers: it must be what they say now,
# and gen-api-doc fails if a public function has no doc comment.
if python3 tools/gen-api-doc "$out/api.md" && cmp -s "$out/api.md" docs/api.md; then
	echo "docs: api.md matches the headers"
else
	echo "docs: docs/api.md is stale or a public function is undocumented (make docs)"
	diff docs/api.md "$out/api.md" | head -6
	fails=$((fails+1))
fi

check readme README.md '^## Use' run
check caches_tutorial docs/caches.md '^## 8. Tutorial' run
check shm_tutorial docs/shared-memory.md '^## 2. Tutorial' pair
[ $fails -eq 0 ]
