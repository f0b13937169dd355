# mk/shm.mk - named pools in shared memory (issue 4).
#
#   test-shm        tests/test_shm.c (Criterion): create/attach/detach, every
#                   errno, corrupt headers, adoption, caches, recovery of a
#                   dead child, init timeout / dead creator, hugepage fallback
#   test-shm-multi  tests/shm_multi.c: 2, 3 and 4 processes at different
#                   addresses exchange blocks (adopt), stamps + conservation
#   test-shm-kill   tests/shm_kill.c: 4 processes, one SIGKILLed at a random
#                   instant, recovery must be exact; SHM_KILL_REPS (20) reps
#   test-shm-perm   a default-mode segment is closed to another uid (root:
#                   a child drops to nobody; and lfpool-stat under setpriv)
#   test-shm-tsan   shm_multi --inproc under ThreadSanitizer
#   test-shm-negative  builds with a broken recovery must fail the tests
#   stress-kill     the kill test with STRESS_KILL_REPS (100) repetitions
#                   (for the stress harness: `make stress-kill`, exit 0/1)
#   fuzz            tests/fuzz_attach.c under libFuzzer + ASan/UBSan (clang),
#                   FUZZ_TIME seconds (60); corpus in $(BUILD)/fuzz/corpus
#   lfpool-stat     $(BUILD)/lfpool-stat, the inspection CLI
#
# Prerequisites name $(BUILD)/liblfpool.a: STATIC is set after mk/*.mk is read.
# Every run prints its seed; rerun one with LFP_SEED=<seed> (or --seed).
# Segment names carry the pid of the test process and are unlinked on every
# exit path.

SHM_SRCS := pool/shm.c pool/shm_ops.c pool/shm_recover.c
LIB_SRCS += $(SHM_SRCS)

SHM_DIR   = $(BUILD)/shm
SHM_DEPS  = tests/lfp_test.h pool/shm_internal.h $(wildcard include/*.h include/lfpool/*.h pool/internal.h atomics/*.h)
SHM_CRIT_CFLAGS = $(shell pkg-config --cflags criterion 2>/dev/null)
SHM_CRIT_LIBS   = $(shell pkg-config --libs criterion 2>/dev/null || echo -lcriterion)
SHM_KILL_REPS ?= 20
STRESS_KILL_REPS ?= 100
FUZZ_TIME ?= 60
SHM_STAT  = $(BUILD)/lfpool-stat

.PHONY: test-shm test-shm-multi test-shm-kill test-shm-perm test-shm-tsan test-shm-negative \
        stress-kill fuzz lfpool-stat
TEST_STEPS += test-shm test-shm-multi test-shm-kill test-shm-perm test-shm-tsan test-shm-negative

$(SHM_DIR)/test_shm: tests/test_shm.c $(SHM_DEPS) $(BUILD)/liblfpool.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SHM_CRIT_CFLAGS) $< -o $@ $(STATIC) $(LDLIBS_LIB) $(SHM_CRIT_LIBS) $(LDFLAGS_SAN)

$(SHM_DIR)/%: tests/%.c $(SHM_DEPS) $(BUILD)/liblfpool.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(STATIC) $(LDLIBS_LIB) $(LDFLAGS_SAN)

$(SHM_STAT): stress/lfpool-stat.c $(SHM_DEPS) $(BUILD)/liblfpool.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(STATIC) $(LDLIBS_LIB) $(LDFLAGS_SAN)

lfpool-stat: $(SHM_STAT)

test-shm: $(SHM_DIR)/test_shm $(SHM_STAT)
	LFP_STAT=$(SHM_STAT) tools/criterion-run $(SHM_DIR)/test_shm.log $(SHM_DIR)/test_shm --jobs 2 --filter '!(perm/*)'

test-shm-multi: $(SHM_DIR)/shm_multi
	$(SHM_DIR)/shm_multi --procs 2 --ops 100000
	$(SHM_DIR)/shm_multi --procs 3 --ops 100000 --nocache
	$(SHM_DIR)/shm_multi --procs 4 --ops 100000 --threads 2
	$(SHM_DIR)/shm_multi --inproc --threads 4 --ops 100000

# ThreadSanitizer cannot follow fork(): the one-process mode (threads on one
# handle, a thread running exact counts and recoveries meanwhile).
test-shm-tsan:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/tsan SAN=tsan $(BUILD)/tsan/shm/shm_multi
	TSAN_OPTIONS="halt_on_error=1 $(TSAN_OPTIONS)" $(BUILD)/tsan/shm/shm_multi --inproc --threads 3 --ops 5000
	TSAN_OPTIONS="halt_on_error=1 $(TSAN_OPTIONS)" $(BUILD)/tsan/shm/shm_multi --inproc --threads 3 --ops 5000 --nocache

# The checks prove their power: a recovery that forgets in-flight blocks
# (LFP_SHM_TEST_BREAK=1) must fail the crash-point tests, and one that does
# not stop the world (=2) must fail the concurrent-recovery run.
SHM_NEG = $(BUILD)/shm-negative
# The concurrent run catches the broken recovery in about 3 of 4 runs (9 of
# 12 here), so one try failed CI about once in four; up to SHM_NEG_TRIES
# seeds are tried and the step passes at the first catch (a false alarm
# then needs 10 misses: < 1e-5).
SHM_NEG_TRIES ?= 10
test-shm-negative:
	@$(MAKE) --no-print-directory BUILD=$(SHM_NEG)1 EXTRA_CFLAGS='-DLFP_SHM_TEST_BREAK=1 $(EXTRA_CFLAGS)' $(SHM_NEG)1/shm/test_shm
	@$(MAKE) --no-print-directory BUILD=$(SHM_NEG)2 EXTRA_CFLAGS='-DLFP_SHM_TEST_BREAK=2 $(EXTRA_CFLAGS)' $(SHM_NEG)2/shm/shm_multi
	@if $(SHM_NEG)1/shm/test_shm --filter 'recover/killed_*' > $(SHM_NEG)1/out.txt 2>&1; then \
	  echo "FAIL: a recovery that forgets in-flight blocks passed the crash-point tests"; exit 1; fi; \
	echo "caught (forgets orphans): $$(grep -c FAIL $(SHM_NEG)1/out.txt) crash-point tests failed, as they must"
	@for try in $$(seq 1 $(SHM_NEG_TRIES)); do \
	  $(SHM_NEG)2/shm/shm_multi --inproc --threads 4 --ops 20000 > $(SHM_NEG)2/out.txt 2>&1; rc=$$?; \
	  case $$rc in \
	  0) echo "  try $$try: not caught" ;; \
	  2) echo "FAIL: shm_multi usage error"; exit 1 ;; \
	  *) echo "caught (no stop-the-world) on try $$try: $$(grep -m1 '^FAIL' $(SHM_NEG)2/out.txt)"; exit 0 ;; \
	  esac; \
	done; echo "FAIL: a recovery that does not stop the world passed $(SHM_NEG_TRIES) concurrent runs"; exit 1

test-shm-kill: $(SHM_DIR)/shm_kill $(SHM_STAT)
	$(SHM_DIR)/shm_kill --reps $(SHM_KILL_REPS) --stat $(SHM_STAT)

stress-kill: $(SHM_DIR)/shm_kill $(SHM_STAT)
	$(SHM_DIR)/shm_kill --reps $(STRESS_KILL_REPS) --stat $(SHM_STAT)

# Root only: a child switches to nobody (setresuid) and must be refused by
# shm_open and lfp_shm_attach (with a 0644 control that nobody can open).
# Then the CLI: lfpool-stat run under setpriv as nobody must be refused a
# default-mode segment ("Permission denied", exit 2) and must read a 0666
# one (the control: the refusal comes from the mode, not from the binary).
# The binary is copied to a fresh world-readable folder so nobody can run it.
# As non-root, Criterion skips the cross-uid half (mode bits still checked)
# and the setpriv half says it is skipped.
test-shm-perm: $(SHM_DIR)/test_shm $(SHM_STAT)
	$(SHM_DIR)/test_shm --filter 'perm/*'
	@if [ "$$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then \
	  echo "test-shm-perm: setpriv half skipped (needs root and setpriv)"; exit 0; fi; \
	n=/lfpt-perm-$$$$; tmp=$$(mktemp -d); \
	trap '$(SHM_STAT) --unlink '$$n' >/dev/null 2>&1; $(SHM_STAT) --unlink '$$n'-open >/dev/null 2>&1; rm -rf '$$tmp EXIT; \
	cp $(SHM_STAT) $$tmp/ && chmod 755 $$tmp $$tmp/lfpool-stat || exit 1; \
	$(SHM_STAT) --create $$n --blocks 16 --size 64 >/dev/null || exit 1; \
	$(SHM_STAT) --create $$n-open --blocks 16 --size 64 --mode 0666 >/dev/null || exit 1; \
	as_nobody="setpriv --reuid=nobody --regid=nogroup --clear-groups $$tmp/lfpool-stat"; \
	out=$$($$as_nobody $$n 2>&1); rc=$$?; echo "nobody on a 0600 segment: exit $$rc: $$(echo "$$out" | tail -1)"; \
	if [ $$rc != 2 ] || ! echo "$$out" | grep -q 'Permission denied'; then \
	  echo "FAIL: nobody was not refused"; exit 1; fi; \
	out=$$($$as_nobody $$n-open 2>&1); rc=$$?; echo "nobody on a 0666 segment: exit $$rc: $$(echo "$$out" | tail -1)"; \
	if [ $$rc != 0 ]; then echo "FAIL: control: nobody could not inspect a 0666 segment"; exit 1; fi; \
	echo "test-shm-perm: default mode keeps other uids out"

# ---- libFuzzer ------------------------------------------------------------
FUZZ_DIR = $(BUILD)/fuzz
FUZZ_SRCS = $(CORE_SRCS) $(SHM_SRCS)
FUZZ_CFLAGS = -std=c11 -g -O1 -D_GNU_SOURCE -Iinclude -pthread \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

$(FUZZ_DIR)/fuzz_attach: tests/fuzz_attach.c $(FUZZ_SRCS) $(SHM_DEPS)
	@tools/ensure-deps fuzz
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) tests/fuzz_attach.c $(FUZZ_SRCS) -o $@

fuzz: $(FUZZ_DIR)/fuzz_attach
	@mkdir -p $(FUZZ_DIR)/corpus
	$(FUZZ_DIR)/fuzz_attach -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
	  -timeout=5 $(FUZZ_DIR)/corpus
