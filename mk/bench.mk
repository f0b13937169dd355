# mk/bench.mk - `make bench`: lfpool against glibc, jemalloc, mimalloc,
# tcmalloc, a mutex free list and a no-op floor (stress/bench.c, issue 3).
#
#   make bench [BENCH_ARGS="--quick --scenario hot --size 64 --reps 5"]
#
# One source, four binaries: lfpool-bench (glibc malloc; also runs the noop,
# mutex and lfpool rows) and lfpool-bench-{jemalloc,mimalloc,tcmalloc}, each
# linked with its malloc so that malloc/free are that allocator's. The driver
# runs every measurement in a fresh child of the right binary and prints
# markdown tables (docs/benchmarks.md). lfpool is linked from the built static
# library and called through <lfpool.h> only. Runs under `nice`: the machine
# is shared. Timing is reported, never asserted.
BENCH_DIR   = $(BUILD)/bench
BENCH_ARGS ?=
BENCH_SRC   = stress/bench.c
BENCH_DEPS  = $(BENCH_SRC) include/lfpool.h atomics/lfp_atomic.h $(BUILD)/liblfpool.a
BENCH_BINS  = $(BENCH_DIR)/lfpool-bench $(BENCH_DIR)/lfpool-bench-jemalloc \
              $(BENCH_DIR)/lfpool-bench-mimalloc $(BENCH_DIR)/lfpool-bench-tcmalloc
# DPDK's rte_mempool, the issue's "closest production peer", when libdpdk-dev
# is installed (it is not installed by default: ~230 packages; `tools/ensure-deps
# bench-dpdk` installs it). Without it the dpdk row is skipped.
BENCH_DPDK_OK := $(shell pkg-config --exists libdpdk 2>/dev/null && echo yes)
ifeq ($(BENCH_DPDK_OK),yes)
BENCH_BINS += $(BENCH_DIR)/lfpool-bench-dpdk
endif
BENCH_CFLAGS = $(filter-out -O2 -O0 -O1,$(CFLAGS)) -O2

.PHONY: bench bench-bin deps-bench

deps-bench:
	@tools/ensure-deps build bench

$(BENCH_DIR)/lfpool-bench: $(BENCH_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $< -o $@ $(BUILD)/liblfpool.a $(LDLIBS_LIB) $(LDFLAGS_SAN)

$(BENCH_DIR)/lfpool-bench-jemalloc: $(BENCH_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -DBENCH_MALLOC_NAME='"jemalloc"' $< -o $@ $(BUILD)/liblfpool.a \
	  $$(pkg-config --libs jemalloc 2>/dev/null || echo -ljemalloc) $(LDLIBS_LIB) $(LDFLAGS_SAN)

$(BENCH_DIR)/lfpool-bench-mimalloc: $(BENCH_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -DBENCH_MALLOC_NAME='"mimalloc"' $< -o $@ $(BUILD)/liblfpool.a \
	  -lmimalloc $(LDLIBS_LIB) $(LDFLAGS_SAN)

$(BENCH_DIR)/lfpool-bench-tcmalloc: $(BENCH_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -DBENCH_MALLOC_NAME='"tcmalloc"' $< -o $@ $(BUILD)/liblfpool.a \
	  $$(pkg-config --libs libtcmalloc_minimal 2>/dev/null || echo -ltcmalloc_minimal) \
	  $(LDLIBS_LIB) $(LDFLAGS_SAN)

$(BENCH_DIR)/lfpool-bench-dpdk: $(BENCH_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -DBENCH_DPDK $$(pkg-config --cflags libdpdk) $< -o $@ \
	  $(BUILD)/liblfpool.a $$(pkg-config --libs libdpdk) $(LDLIBS_LIB) $(LDFLAGS_SAN)

bench-bin: deps-bench
	@$(MAKE) --no-print-directory $(BENCH_BINS)

bench: bench-bin
	@uptime
	nice -n 10 $(BENCH_DIR)/lfpool-bench $(BENCH_ARGS)
	@uptime

# Where the nanoseconds of the cached hot pair go (docs/benchmarks.md).
$(BENCH_DIR)/bench_fastpath: stress/bench_fastpath.c include/lfpool.h $(BUILD)/liblfpool.a
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $< -o $@ $(BUILD)/liblfpool.a $(LDLIBS_LIB) $(LDFLAGS_SAN)

.PHONY: bench-fastpath
bench-fastpath: $(BENCH_DIR)/bench_fastpath
	@uptime
	nice -n 10 $(BENCH_DIR)/bench_fastpath $(BENCH_FASTPATH_ARGS)
	nice -n 10 $(BENCH_DIR)/bench_fastpath --batch $(BENCH_FASTPATH_ARGS)
