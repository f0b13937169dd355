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
	else
		echo "docs: $name: compiled (not run: it needs two processes)"
	fi
}

check readme README.md '^## Use' run
check caches_tutorial docs/caches.md '^## 8. Tutorial' run
check shm_tutorial docs/shared-memory.md '^## 2. Tutorial' compile
[ $fails -eq 0 ]
