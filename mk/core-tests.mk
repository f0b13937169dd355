# mk/core-tests.mk - the core pool's tests (issue 2, "Tests").
#
#   test-unit      tests/test_pool.c (Criterion): every rule and errno
#   test-conc      tests/conc_pool.c (plain program) over several configs
#   test-tsan      test-conc built and run under ThreadSanitizer ($(BUILD)/tsan)
#   test-asan      test-unit + test-conc under ASan+UBSan   ($(BUILD)/asan)
#   test-negative  expected failure: conc_pool against a library whose ABA
#                  tag is cut to NEG_TAG_BITS bits must be caught; the same
#                  config must pass against the real 32-bit tag
#
# The test programs link the core library only (liblfpool-core.a): they test
# the core, and they keep working while other layers are under construction.
# Sanitizer and negative builds are recursive makes into sub-folders of
# $(BUILD) (build/tsan, build/asan, build/negative-tag2 by default).
# Every run prints its seed; rerun one with LFP_SEED=<seed> make test-conc.

TEST_STEPS += test-unit test-conc test-tsan test-asan test-negative

CT_LIB    = $(BUILD)/liblfpool-core.a
CT_DEPS   = tests/lfp_test.h $(wildcard include/*.h include/lfpool/*.h pool/*.h atomics/*.h)
CRIT_CFLAGS = $(shell pkg-config --cflags criterion 2>/dev/null)
CRIT_LIBS   = $(shell pkg-config --libs criterion 2>/dev/null || echo -lcriterion)

$(BUILD)/tests/test_pool: tests/test_pool.c $(CT_DEPS) $(BUILD)/liblfpool-core.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CRIT_CFLAGS) $< -o $@ $(CT_LIB) $(LDLIBS_LIB) $(CRIT_LIBS) $(LDFLAGS_SAN)

$(BUILD)/tests/conc_pool: tests/conc_pool.c $(CT_DEPS) $(BUILD)/liblfpool-core.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(CT_LIB) $(LDLIBS_LIB) $(LDFLAGS_SAN)

# Sanitizer runtime options: stop at the first report with a failing status.
CT_SAN_ENV := TSAN_OPTIONS="halt_on_error=1 $(TSAN_OPTIONS)" \
              ASAN_OPTIONS="detect_leaks=1 abort_on_error=0 $(ASAN_OPTIONS)" \
              UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1 $(UBSAN_OPTIONS)"

# Criterion reports a leak found by LSan in a test's child process but still
# counts the test as passed, so the log is also searched for sanitizer
# reports. --timeout turns a hang (say, a walk round a cycle) into a failure.
CT_SAN_REPORT := ^==[0-9]+==(ERROR|WARNING): |^SUMMARY: [A-Za-z]+Sanitizer|runtime error:

test-unit: $(BUILD)/tests/test_pool
	@set -o pipefail; echo "+ $(BUILD)/tests/test_pool --jobs 2 --timeout 60"; \
	$(CT_SAN_ENV) $(BUILD)/tests/test_pool --jobs 2 --timeout 60 2>&1 | tee $(BUILD)/tests/test_pool.log; \
	rc=$$?; if grep -qE '$(CT_SAN_REPORT)' $(BUILD)/tests/test_pool.log; then \
	  echo "test-unit: FAIL - sanitizer report in $(BUILD)/tests/test_pool.log"; exit 1; fi; exit $$rc

# Concurrency configs, ops per thread divided under sanitizers (TSan is ~10x
# slower and the 2-core CI box must stay within minutes).
CONC_DIV_tsan := 4
CONC_DIV_asan := 2
CONC_DIV_ubsan := 2
CONC_DIV = $(or $(CONC_DIV_$(SAN)),1)
conc_ops = $$(( $(1) / $(CONC_DIV) ))
CONC_CONFIGS = \
  "--threads 4 --ops $(call conc_ops,1000000) --blocks 64 --hold 8" \
  "--threads 4 --ops $(call conc_ops,1000000) --blocks 64 --hold 8 --handoff --checked --stats" \
  "--threads 24 --ops $(call conc_ops,100000) --blocks 96 --hold 4 --handoff" \
  "--threads 8 --ops $(call conc_ops,300000) --blocks 3 --hold 2 --handoff --checked" \
  "--threads 4 --ops $(call conc_ops,300000) --blocks 1 --hold 1 --stats" \
  "--threads 3 --ops $(call conc_ops,500000) --blocks 50 --hold 6 --block-size 40 --align 8 --handoff --stats" \
  "--threads 4 --ops $(call conc_ops,1000000) --blocks 16 --hold 4 --preempt 50 --handoff --checked" \
  "--threads 6 --ops $(call conc_ops,300000) --blocks 4096 --hold 64 --handoff --cache --stats"

test-conc: $(BUILD)/tests/conc_pool
	@set -u; fails=0; for cfg in $(CONC_CONFIGS); do \
	  eval "set -- $$cfg"; \
	  echo "+ $(BUILD)/tests/conc_pool $$*"; \
	  $(CT_SAN_ENV) $(BUILD)/tests/conc_pool --timeout 120 "$$@" || { echo "conc_pool $$*: exit $$?"; fails=$$((fails+1)); }; \
	done; [ $$fails -eq 0 ] || { echo "test-conc: $$fails config(s) failed"; exit 1; }

test-tsan:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/tsan SAN=tsan test-conc

test-asan:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/asan SAN=asan test-unit test-conc

# ---- the negative control ---------------------------------------------------
# A library built with -DLFP_TAG_BITS=$(NEG_TAG_BITS) must make conc_pool fail.
# NEG_CONFIG makes the ABA window common: few blocks, a handful of threads,
# and --preempt 20 --stall 100, a per-thread timer that stalls each worker at
# a random instruction every 20 us (it yields the CPU or spins up to 100
# pause instructions). Without it a 2-core machine preempts a busy thread only
# a few hundred times a second: the same config caught a 1-bit tag in 7 of 20
# runs and a 2-bit tag in 1 of 20; with it, 2 bits are caught in 50 of 50. The same config must pass against the real 32-bit tag, so a failure
# is the tag's doing. A run stops at its first violation; up to NEG_TRIES
# seeds are tried and the step passes at the first run that exits 1
# (violation) or 3 (watchdog). Any other status (0 on every try, 2 usage, a
# crash) fails the step. `make negative-rate` measures the detection rate.
NEG_TAG_BITS ?= 2
NEG_TRIES    ?= 5
NEG_RUNS     ?= 20
NEG_CONFIG   ?= --threads 4 --ops 1000000 --blocks 16 --hold 4 --preempt 20 --stall 100 --timeout 30
NEG_BUILD     = $(BUILD)/negative-tag$(NEG_TAG_BITS)
NEG_PROG      = $(NEG_BUILD)/tests/conc_pool

neg-build:
	@$(MAKE) --no-print-directory BUILD=$(NEG_BUILD) \
	  EXTRA_CFLAGS="$(EXTRA_CFLAGS) -DLFP_TAG_BITS=$(NEG_TAG_BITS)" $(NEG_PROG)

test-negative: $(BUILD)/tests/conc_pool neg-build
	@echo "+ control: the same config against the real tag must pass"
	$(BUILD)/tests/conc_pool $(NEG_CONFIG)
	@echo "+ negative: LFP_TAG_BITS=$(NEG_TAG_BITS) must be caught (up to $(NEG_TRIES) seeds)"
	@for try in $$(seq 1 $(NEG_TRIES)); do \
	  $(NEG_PROG) $(NEG_CONFIG) > $(NEG_BUILD)/last.log 2>&1; rc=$$?; \
	  { head -n 4 $(NEG_BUILD)/last.log; tail -n 1 $(NEG_BUILD)/last.log; } | sed 's/^/    expected> /'; \
	  case $$rc in \
	  1|3) echo "test-negative: PASS - the $(NEG_TAG_BITS)-bit tag was caught on try $$try (exit $$rc; expected failure)"; exit 0 ;; \
	  0) echo "test-negative: try $$try not caught" ;; \
	  *) echo "test-negative: FAIL - unexpected exit $$rc"; exit 1 ;; \
	  esac; \
	done; echo "test-negative: FAIL - $(NEG_TRIES) runs of a $(NEG_TAG_BITS)-bit tag passed"; exit 1

# Detection rate of the negative control over NEG_RUNS runs (not a test step).
negative-rate: neg-build
	@caught=0; other=0; start=$$(date +%s%N); for i in $$(seq 1 $(NEG_RUNS)); do \
	  $(NEG_PROG) $(NEG_CONFIG) > /dev/null 2>&1; rc=$$?; \
	  case $$rc in 1|3) caught=$$((caught+1));; 0) ;; *) other=$$((other+1));; esac; \
	done; ms=$$(( ($$(date +%s%N) - start) / 1000000 )); \
	echo "negative-rate: LFP_TAG_BITS=$(NEG_TAG_BITS): caught $$caught/$(NEG_RUNS) (other exits: $$other) in $$ms ms [$(NEG_CONFIG)]"

.PHONY: neg-build negative-rate
