# mk/cache.mk - the per-thread cache and the bulk API (issue 3).
#
#   test-cache       tests/test_cache.c (Criterion): the single-thread
#                    contract of the cache, the bulk calls and recovery hooks
#   test-cache-conc  tests/conc_cache.c (plain program) over several configs:
#                    stamps, conservation and validate with caches on, thread
#                    exit with full caches, hand-off with 2 and many threads
#   test-cache-tsan  test-cache-conc under ThreadSanitizer ($(BUILD)/tsan)
#   test-cache-negative  expected failure: conc_cache against a library
#                    whose magazine-stack pop is a planted race (load + store
#                    instead of CAS, -DLFPI_CACHE_PLANTED_RACE) must be caught
#
# The cache is part of the core (no malloc, pthread only), so its sources go
# into CORE_SRCS as well as LIB_SRCS (LIB_SRCS was copied from CORE_SRCS
# before the fragments are read).
CACHE_SRCS := pool/cache.c pool/bulk.c
CORE_SRCS += $(CACHE_SRCS)
LIB_SRCS += $(CACHE_SRCS)

TEST_STEPS += test-cache test-cache-conc test-cache-tsan test-cache-negative

CC_TEST_DIR = $(BUILD)/tests
CC_DEPS = tests/lfp_test.h $(wildcard include/*.h include/lfpool/*.h pool/*.h atomics/*.h)
CC_CRIT_CFLAGS = $(shell pkg-config --cflags criterion 2>/dev/null)
CC_CRIT_LIBS   = $(shell pkg-config --libs criterion 2>/dev/null || echo -lcriterion)

# Both programs link the core library; test_cache also reaches the hidden
# recovery hooks, so it links the objects directly (hidden symbols are
# visible inside one link).
$(CC_TEST_DIR)/test_cache: tests/test_cache.c $(CC_DEPS) $(BUILD)/liblfpool-core.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CC_CRIT_CFLAGS) $< -o $@ $(BUILD)/liblfpool-core.a $(LDLIBS_LIB) $(CC_CRIT_LIBS) $(LDFLAGS_SAN)

$(CC_TEST_DIR)/conc_cache: tests/conc_cache.c $(CC_DEPS) $(BUILD)/liblfpool-core.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(BUILD)/liblfpool-core.a $(LDLIBS_LIB) $(LDFLAGS_SAN)

CC_SAN_ENV := TSAN_OPTIONS="halt_on_error=1 $(TSAN_OPTIONS)" \
              ASAN_OPTIONS="detect_leaks=1 $(ASAN_OPTIONS)" \
              UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1 $(UBSAN_OPTIONS)"

test-cache: $(CC_TEST_DIR)/test_cache
	$(CC_SAN_ENV) tools/criterion-run $(CC_TEST_DIR)/test_cache.log $(CC_TEST_DIR)/test_cache --jobs 2 --timeout 60

# Work per config is divided under sanitizers (TSan is ~10x slower).
CCONC_DIV_tsan := 8
CCONC_DIV_asan := 4
CCONC_DIV = $(or $(CCONC_DIV_$(SAN)),1)
cconc_ops = $$(( $(1) * 4 / $(CCONC_DIV) ))
CACHE_CONC_CONFIGS = \
  "--mode mixed --threads 4 --ops $(call cconc_ops,400000) --blocks 4096 --hold 64" \
  "--mode mixed --threads 4 --ops $(call cconc_ops,300000) --blocks 2048 --hold 48 --checked --stats" \
  "--mode mixed --threads 16 --ops $(call cconc_ops,60000) --blocks 1024 --hold 40 --size 8 --slots 6" \
  "--mode mixed --threads 6 --ops $(call cconc_ops,200000) --blocks 600 --hold 90 --size 16 --depot 1" \
  "--mode mixed --threads 3 --ops $(call cconc_ops,200000) --blocks 700 --hold 30 --block-size 40 --align 8" \
  "--mode mixed --threads 4 --ops $(call cconc_ops,200000) --blocks 2048 --hold 64 --bulk" \
  "--mode handoff --threads 2 --ops $(call cconc_ops,400000) --blocks 4096" \
  "--mode handoff --threads 8 --ops $(call cconc_ops,100000) --blocks 4096 --size 32" \
  "--mode exit --threads 8 --ops $(call cconc_ops,80000) --blocks 4096 --rounds 6" \
  "--mode mixed --threads 8 --ops $(call cconc_ops,100000) --blocks 512 --hold 8 --size 2 --slots 8" \
  "--mode handoff --threads 8 --ops $(call cconc_ops,100000) --blocks 512 --size 2" \
  "--mode mixed --threads 64 --ops $(call cconc_ops,10000) --blocks 131072 --hold 64" \
  "--mode handoff --threads 32 --ops $(call cconc_ops,10000) --blocks 131072"

# The last two run on a pool big enough for 128 default slots (more than
# the old cap of 64): 64 and 32 threads, all with a slot, steals across them.

# The core's own concurrency test (tests/conc_pool.c, engineer A), rerun on
# pools big enough to get a cache by default (>= 256 blocks), some with more
# threads than cache slots (4096 blocks: 4 slots).
CORE_CONC_CACHED_CONFIGS = \
  "--threads 4 --ops $(call cconc_ops,150000) --blocks 4096 --hold 64 --handoff" \
  "--threads 8 --ops $(call cconc_ops,60000) --blocks 4096 --hold 32 --handoff --checked --stats" \
  "--threads 6 --ops $(call cconc_ops,60000) --blocks 300 --hold 20 --handoff --block-size 40 --align 8"

test-cache-conc: $(CC_TEST_DIR)/conc_cache $(BUILD)/tests/conc_pool
	@set -u; fails=0; for cfg in $(CACHE_CONC_CONFIGS); do \
	  eval "set -- $$cfg"; \
	  echo "+ $(CC_TEST_DIR)/conc_cache $$*"; \
	  $(CC_SAN_ENV) $(CC_TEST_DIR)/conc_cache --timeout 120 "$$@" || { echo "conc_cache $$*: exit $$?"; fails=$$((fails+1)); }; \
	done; for cfg in $(CORE_CONC_CACHED_CONFIGS); do \
	  eval "set -- $$cfg"; \
	  echo "+ $(BUILD)/tests/conc_pool $$* (cached pool)"; \
	  $(CC_SAN_ENV) $(BUILD)/tests/conc_pool --timeout 120 "$$@" || { echo "conc_pool $$*: exit $$?"; fails=$$((fails+1)); }; \
	done; [ $$fails -eq 0 ] || { echo "test-cache-conc: $$fails config(s) failed"; exit 1; }

test-cache-tsan:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/tsan SAN=tsan test-cache-conc

# ---- the negative control ------------------------------------------------------
# Tiny magazines (k = 2) make every few allocs touch the magazine stacks, so a
# pop without CAS hands one magazine to two threads within a few runs: the
# stamps, the owner table or validate must report it (exit 1), the watchdog
# (exit 3), or the broken state crashes the program (a signal). Exit 0 on
# every try fails the step.
CNEG_BUILD   = $(BUILD)/cache-planted
CNEG_TRIES  ?= 6
CNEG_CONFIG ?= --mode mixed --threads 8 --ops 50000 --blocks 512 --hold 8 --size 2 --slots 8 --timeout 30

test-cache-negative: $(CC_TEST_DIR)/conc_cache
	@$(MAKE) --no-print-directory BUILD=$(CNEG_BUILD) \
	  EXTRA_CFLAGS="$(EXTRA_CFLAGS) -DLFPI_CACHE_PLANTED_RACE" $(CNEG_BUILD)/tests/conc_cache
	@echo "+ control: the same config against the real library must pass"
	$(CC_TEST_DIR)/conc_cache $(CNEG_CONFIG)
	@echo "+ negative: the planted race must be caught (up to $(CNEG_TRIES) seeds)"
	@for try in $$(seq 1 $(CNEG_TRIES)); do \
	  $(CNEG_BUILD)/tests/conc_cache $(CNEG_CONFIG) > $(CNEG_BUILD)/last.log 2>&1; rc=$$?; \
	  tail -n 3 $(CNEG_BUILD)/last.log; \
	  case $$rc in \
	  0) echo "test-cache-negative: try $$try not caught" ;; \
	  2) echo "test-cache-negative: FAIL - usage error"; exit 1 ;; \
	  *) echo "test-cache-negative: PASS - the planted race was caught on try $$try (exit $$rc)"; exit 0 ;; \
	  esac; \
	done; echo "test-cache-negative: FAIL - $(CNEG_TRIES) runs of the planted race passed"; exit 1
