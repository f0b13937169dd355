# mk/bench-core.mk - cost of the uncached core pool (stress/bench_core.c).
#
#   make bench-core [BENCH_CORE_ARGS="--reps 11 --pairs 2000000"]
#
# Builds the benchmark twice from one source: linked against the static
# library (direct calls) and against the shared one (every call through the
# PLT), runs both and prints their tables. Results: docs/benchmarks.md,
# "Core pool (uncached)". Timing is reported, never asserted.
BENCH_CORE_DIR  = $(BUILD)/bench
BENCH_CORE_ARGS ?=

.PHONY: bench-core

$(BENCH_CORE_DIR)/bench_core: stress/bench_core.c $(BUILD)/liblfpool.a atomics/lfp_atomic.h include/lfpool.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(STATIC) $(LDLIBS_LIB) $(LDFLAGS_SAN)

# Linked by path to the versioned .so: DT_NEEDED is its soname, found at run
# time through the rpath in this build folder.
$(BENCH_CORE_DIR)/bench_core_shared: stress/bench_core.c $(BUILD)/liblfpool.so.$(VERSION) atomics/lfp_atomic.h include/lfpool.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(SHARED) -Wl,-rpath,$(abspath $(BUILD)) $(LDLIBS_LIB) $(LDFLAGS_SAN)

bench-core: $(BENCH_CORE_DIR)/bench_core $(BENCH_CORE_DIR)/bench_core_shared
	@echo "+ $(BENCH_CORE_DIR)/bench_core $(BENCH_CORE_ARGS)"
	@$(BENCH_CORE_DIR)/bench_core --label "static lib" $(BENCH_CORE_ARGS)
	@echo
	@echo "+ $(BENCH_CORE_DIR)/bench_core_shared $(BENCH_CORE_ARGS)"
	@$(BENCH_CORE_DIR)/bench_core_shared --label "shared lib (PLT)" $(BENCH_CORE_ARGS)
