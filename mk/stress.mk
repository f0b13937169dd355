# mk/stress.mk - the stress harness (issue 6) and NUMA placement for pools.
#
#   make stress         build lfpool-stress and run its default profile: every
#                       PU, 20 s, all workloads in turn, verification on
#   make stress-scale   thread sweep 1,2,4..PUs,2x,8x for lfpool (cached and
#                       uncached) and each peer; CSV + PNG under docs/
#   make stress-bundle  build/bundle/: the binary, the broken self-test build,
#                       the peer/hwloc .so files and scale.sh, to run the sweep
#                       on a machine without those packages
#   make stress-plot CSV=file.csv [PNG=file.png] [LABEL=text]   draw a sweep's CSV
#   make stress-bin     just build ($(BUILD)/lfpool-stress and the broken
#                       build $(BUILD)/selftest/lfpool-stress)
#
# Test steps: test-stress-plan (Criterion: planner + NUMA pools),
# test-stress-cli (argument errors), test-stress-workloads (a short verified
# run of every workload, a folded synthetic plan), test-stress-selftest (the
# broken build must be caught), test-stress-kill (process mode survives >= 10
# SIGKILLs; skips until the shared-memory pool exists).
#
# pool/numa.c is not core: it goes into the full library only, with hwloc.

LIB_SRCS += pool/numa.c
LIB_PKGS += hwloc

ST_SRCS := stress/lfpool-stress.c stress/topo.c stress/plan.c stress/workloads.c \
           stress/backend.c stress/trace.c stress/procs.c
ST_BIN    = $(BUILD)/lfpool-stress
ST_BROKEN = $(BUILD)/selftest/lfpool-stress
ST_OBJS   = $(patsubst %.c,$(BUILD)/obj/%.o,$(ST_SRCS))
ST_LIBS   = $$(pkg-config --libs hwloc 2>/dev/null || echo -lhwloc) -ldl -lm
ST_TIME  ?= 20
STRESS_ARGS ?=

# Which other layers exist decides what the harness can drive: a layer counts
# when its source is in LIB_SRCS (read at recipe time, after every fragment).
# The flags live in a stamp file rewritten only when they change, so the
# harness objects rebuild exactly then.
ST_FEAT_STAMP = $(BUILD)/obj/stress/features
ST_FEAT_TEXT = $(strip \
  $(if $(filter pool/frontend.c,$(LIB_SRCS)),-DST_HAVE_HEAP) \
  $(if $(filter pool/shm.c,$(LIB_SRCS)),-DST_HAVE_SHM) \
  $(if $(shell grep -qs 'lfp_cache_alloc' include/lfpool.h include/lfpool/*.h && echo y),-DST_HAVE_CACHE))

$(ST_FEAT_STAMP): st-force
	@mkdir -p $(dir $@); echo '$(ST_FEAT_TEXT)' | cmp -s - $@ || echo '$(ST_FEAT_TEXT)' > $@
.PHONY: st-force
st-force: ;

$(BUILD)/obj/stress/%.o: stress/%.c stress/stress.h $(ST_FEAT_STAMP) \
                         $(wildcard include/*.h include/lfpool/*.h atomics/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $$(cat $(ST_FEAT_STAMP)) -c $< -o $@

.PHONY: stress stress-bin stress-broken stress-scale stress-bundle stress-plot deps-stress
TEST_STEPS += test-stress-plan test-stress-cli test-stress-workloads test-stress-selftest \
              test-stress-kill test-stress-sanitizers

deps-stress:
	@tools/ensure-deps build stress

$(ST_BIN): $(ST_OBJS) $(BUILD)/liblfpool.a
	$(CC) $(LDFLAGS_SAN) -o $@ $(ST_OBJS) $(BUILD)/liblfpool.a $(LDLIBS_LIB) $(ST_LIBS)

# The deliberately broken build: the same sources with the ABA tag cut to 2
# bits, in its own build folder (a recursive make with BUILD=.../selftest).
stress-broken:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/selftest \
	  EXTRA_CFLAGS='-DLFP_TAG_BITS=2 $(EXTRA_CFLAGS)' $(BUILD)/selftest/lfpool-stress

stress-bin: deps-stress
	@$(MAKE) --no-print-directory $(ST_BIN)
	@$(MAKE) --no-print-directory stress-broken

# The default profile twice, half the time each: pools as the library makes
# them by default (per-thread cache on), then the bare shared stack
# (LFP_POOL_NO_CACHE, the harshest contention on one head word); then the
# shared-memory kill test with 100 SIGKILLs (STRESS_KILL_REPS=0 skips it).
stress: stress-bin
	$(ST_BIN) --backend lfpool-cached --duration $$(( ($(ST_TIME) + 1) / 2 )) $(STRESS_ARGS)
	$(ST_BIN) --backend lfpool --duration $$(( ($(ST_TIME) + 1) / 2 )) $(STRESS_ARGS)
	@if [ "$(STRESS_KILL_REPS)" != 0 ]; then $(MAKE) --no-print-directory stress-kill; fi

# ---- scaling sweep --------------------------------------------------------
ST_LABEL ?= $(shell hostname -s 2>/dev/null || echo host)
ST_SCALE_CSV ?= docs/scale-$(ST_LABEL).csv
ST_SCALE_PNG ?= $(ST_SCALE_CSV:.csv=.png)

stress-scale: stress-bin
	@tools/ensure-deps bench plot
	ST_BIN=$(ST_BIN) stress/scale.sh $(ST_SCALE_CSV)
	$(MAKE) --no-print-directory stress-plot CSV=$(ST_SCALE_CSV) PNG=$(ST_SCALE_PNG)

stress-plot:
	@test -n "$(CSV)" || { echo "make stress-plot CSV=file.csv [PNG=file.png]"; exit 2; }
	@tools/ensure-deps plot
	gnuplot -e "csv='$(CSV)'; png='$(or $(PNG),$(CSV:.csv=.png))'$(if $(LABEL),; label='$(LABEL)')" tools/plot-scale.gp
	@echo "plot: $(or $(PNG),$(CSV:.csv=.png))"

# ---- a bundle for machines without hwloc, peers or gnuplot ----------------
# lib/ holds hwloc and the peers (used through LD_LIBRARY_PATH); lib/glibc/
# holds this machine's loader and C library, used only if the binary does
# not start on the target's own (older) C library (see stress/scale.sh).
ST_BUNDLE := build/bundle
ST_BUNDLE_LIBS := libhwloc.so.15 libudev.so.1 libjemalloc.so.2 libmimalloc.so.2 \
                  libtcmalloc_minimal.so.4 libstdc++.so.6 libgcc_s.so.1 \
                  liburcu-bp.so.8 liburcu-common.so.8 liburcu-cds.so.8

stress-bundle: stress-bin
	@tools/ensure-deps bench
	rm -rf $(ST_BUNDLE) && mkdir -p $(ST_BUNDLE)/lib $(ST_BUNDLE)/selftest
	cp $(ST_BIN) $(ST_BUNDLE)/ && cp $(ST_BROKEN) $(ST_BUNDLE)/selftest/
	@set -e; for l in $(ST_BUNDLE_LIBS); do \
	  p=$$(ldconfig -p | awk -v l="$$l" '$$1 == l && /x86-64/ { print $$NF; exit }'); \
	  if [ -n "$$p" ]; then cp -L "$$p" $(ST_BUNDLE)/lib/; else echo "bundle: $$l not found (skipped)"; fi; \
	done
	mkdir -p $(ST_BUNDLE)/lib/glibc
	@set -e; for l in ld-linux-x86-64.so.2 libc.so.6 libm.so.6; do \
	  p=$$(ldconfig -p | awk -v l="$$l" '$$1 == l && /x86-64/ { print $$NF; exit }'); \
	  cp -L "$$p" $(ST_BUNDLE)/lib/glibc/; done
	cp stress/scale.sh $(ST_BUNDLE)/scale.sh
	printf '%s\n' "lfpool-stress bundle built $$(date -u +%FT%TZ) on $$(hostname) from $$(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
	  "run: ./scale.sh [out.csv]   (then on the build machine: make stress-plot CSV=out.csv)" > $(ST_BUNDLE)/README
	@echo "bundle: $(ST_BUNDLE) ($$(du -sh $(ST_BUNDLE) | cut -f1)); run $(ST_BUNDLE)/scale.sh"

# ---- tests ---------------------------------------------------------------
ST_TEST_DIR = $(BUILD)/tests
ST_CRIT_CFLAGS = $(shell pkg-config --cflags criterion 2>/dev/null)
ST_CRIT_LIBS   = $(shell pkg-config --libs criterion 2>/dev/null || echo -lcriterion)

$(ST_TEST_DIR)/test_plan: tests/test_plan.c $(BUILD)/obj/stress/plan.o $(BUILD)/obj/stress/topo.o \
                          $(BUILD)/liblfpool.a stress/stress.h $(ST_FEAT_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $$(cat $(ST_FEAT_STAMP)) $(ST_CRIT_CFLAGS) tests/test_plan.c $(BUILD)/obj/stress/plan.o \
	  $(BUILD)/obj/stress/topo.o $(BUILD)/liblfpool.a -o $@ $(LDLIBS_LIB) $(ST_LIBS) $(ST_CRIT_LIBS) $(LDFLAGS_SAN)

test-stress-plan: deps-stress $(ST_TEST_DIR)/test_plan
	$(ST_TEST_DIR)/test_plan --jobs 2

test-stress-cli: stress-bin
	ST_BIN=$(ST_BIN) tests/stress_cli.sh

test-stress-workloads: stress-bin
	ST_BIN=$(ST_BIN) tests/stress_workloads.sh

test-stress-selftest: stress-bin
	ST_BIN=$(ST_BIN) tests/stress_selftest.sh

test-stress-kill: stress-bin
	ST_BIN=$(ST_BIN) tests/stress_kill.sh

# The harness itself under ThreadSanitizer and ASan+UBSan(+LSan): its rings,
# barrier, exchange slots, stamps and process mode, with the library, must
# be race- and error-free. Built in $(BUILD)/tsan and $(BUILD)/asan (shared
# with the core's sanitizer builds); plain programs, sanitizers halt on the
# first report, each run must still end in a PASS.
ST_SAN_RUNS = "--duration 2 --threads 3" \
              "--duration 2 --threads 3 --backend lfpool-cached --policy numa" \
              "--duration 1 --topology 'pack:2 numa:2 core:2 pu:1' --policy scatter --workload chaos,handoff,burst" \
              "--procs 2 --threads 2 --kill-every 0.3 --duration 2"
test-stress-sanitizers: deps-stress
	@set -e; for san in tsan asan; do \
	  $(MAKE) --no-print-directory BUILD=$(BUILD)/$$san SAN=$$san $(BUILD)/$$san/lfpool-stress; done
	@set -u; fails=0; for san in tsan asan; do for cfg in $(ST_SAN_RUNS); do \
	  echo "+ $$san: lfpool-stress $$cfg"; \
	  eval "set -- $$cfg"; \
	  TSAN_OPTIONS="halt_on_error=1 $(TSAN_OPTIONS)" ASAN_OPTIONS="detect_leaks=1 $(ASAN_OPTIONS)" \
	  UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1" \
	  $(BUILD)/$$san/lfpool-stress -q --no-progress "$$@" > $(BUILD)/$$san/stress-san.out 2>&1; rc=$$?; \
	  tail -1 $(BUILD)/$$san/stress-san.out | cut -c1-150; \
	  if [ $$rc -ne 0 ] || ! tail -1 $(BUILD)/$$san/stress-san.out | grep -q '^SUMMARY result=PASS'; then \
	    echo "FAIL ($$san, exit $$rc):"; grep -m5 -E 'WARNING|ERROR|SUMMARY|VIOLATION' $(BUILD)/$$san/stress-san.out; fails=$$((fails+1)); fi; \
	done; done; [ $$fails -eq 0 ]
