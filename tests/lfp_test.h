/*
 * tests/lfp_test.h - the one helper header of every lfpool test program.
 *
 * Header-only (every function is static inline, every piece of state lives in
 * a function-local static), so a test is one .c file that includes this and
 * links the library. A program made of several .c files gets one copy of the
 * state per file: route checks through one file, or count them yourself.
 *
 * What it gives:
 *   - a failure counter and LFPT_CHECK(cond, fmt, ...): a failed check prints
 *     file:line, the condition and a message (the first LFPT_MAX_REPORTS of
 *     them), counts a violation and raises the stop flag. It never aborts and
 *     never vanishes under NDEBUG; the program decides its exit status from
 *     lfpt_violations() (see the exit codes below).
 *   - a seeded PRNG (splitmix64; one independent stream per thread) and
 *     lfpt_seed_pick(): --seed beats the LFP_SEED environment variable beats
 *     the clock; the seed is always printed with the line that reproduces it.
 *   - a start barrier (pthread barrier, which ThreadSanitizer understands) and
 *     lfpt_threads_run() to start N workers on it and join them.
 *   - ownership stamps: a block's first 16 bytes hold {canary, owner, seq}
 *     and its last 8 bytes a word derived from (owner, seq). Stamp on alloc,
 *     re-check on free and on hand-off. A block handed out twice shows up as a
 *     LIVE canary at the second allocation, or as the wrong owner/seq later.
 *     The stamps are plain (non-atomic) memory on purpose: the pool promises
 *     that writes before free are visible to the next allocator, so a missing
 *     release/acquire in the library is a data race ThreadSanitizer reports
 *     on these bytes.
 *   - an ownership table: one atomic word per block index holding the owner
 *     (0 = in the pool), claimed with a relaxed CAS, so a double allocation is
 *     caught even if the block bytes were overwritten. Relaxed on purpose: it
 *     must not add synchronisation that would hide a library ordering bug
 *     from TSan; only its atomicity is used.
 *   - a watchdog thread: if lfpt_watchdog_stop() is not called within N
 *     seconds it prints "WATCHDOG: hang after N s, seed S" (and the progress
 *     counter) and _exit(3)s. A thread, not alarm(): under TSan a signal is
 *     only delivered at the next intercepted call, and a hung spin loop may
 *     never make one. The wait is a timeout, not synchronisation.
 *
 * Exit codes used by the plain (non-Criterion) test programs:
 *   0 pass, 1 a violation was counted, 2 usage or setup error, 3 watchdog.
 *
 * Atomics go through atomics/lfp_atomic.h (order in the name), as in the
 * library; the labels used here are local to this header (T*).
 */
#ifndef LFP_TEST_H
#define LFP_TEST_H

#include "../atomics/lfp_atomic.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define LFPT_EXIT_PASS 0
#define LFPT_EXIT_FAIL 1
#define LFPT_EXIT_USAGE 2
#define LFPT_EXIT_WATCHDOG 3

/** How many failed checks are printed in full; the rest are only counted. */
#define LFPT_MAX_REPORTS 20

#if defined(__GNUC__) || defined(__clang__)
#define LFPT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define LFPT_NORETURN __attribute__((noreturn))
#else
#define LFPT_PRINTF(f, a)
#define LFPT_NORETURN
#endif

/* ---- failure accounting --------------------------------------------------- */

struct lfpt_state {
	lfp_atomic_u64 violations; /* relaxed: a count, read after join */
	lfp_atomic_u32 stop;       /* relaxed: a hint to stop early, orders nothing */
	lfp_atomic_u64 progress;   /* relaxed: printed by the watchdog only */
	uint64_t seed;             /* set once before threads start */
	const char *prog;          /* set once before threads start */
};

/* Resident pages among the whole pages inside [p, p + len) (mincore), or
 * -1 if mincore fails. Tests that memory went back to the kernel. */
static inline long lfpt_resident_pages(const void *p, size_t len)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1);
	uintptr_t b = ((uintptr_t)p + len) & ~(page - 1);
	if (b <= a)
		return 0;
	size_t n = (b - a) / page;
	unsigned char *v = malloc(n);
	if (v == NULL || mincore((void *)a, b - a, v) != 0) {
		free(v);
		return -1;
	}
	long r = 0;
	for (size_t i = 0; i < n; i++)
		r += v[i] & 1;
	free(v);
	return r;
}

static inline struct lfpt_state *lfpt_state(void)
{
	static struct lfpt_state s; /* zero-initialised atomics are valid */
	return &s;
}

/** Record a violation: print it (the first few), count it, raise stop. */
static inline void lfpt_fail_at(const char *file, int line, const char *cond,
				const char *fmt, ...) LFPT_PRINTF(4, 5);
static inline void lfpt_fail_at(const char *file, int line, const char *cond,
				const char *fmt, ...)
{
	struct lfpt_state *s = lfpt_state();
	/* T1 relaxed: a counter; the final read happens after pthread_join. */
	uint64_t n = lfp_fetch_add64_relaxed(&s->violations, 1);
	lfp_store32_relaxed(&s->stop, 1); /* T2 relaxed: a hint, see lfpt_should_stop */
	if (n >= LFPT_MAX_REPORTS) {
		if (n == LFPT_MAX_REPORTS)
			fprintf(stderr, "FAIL: (further failures only counted)\n");
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	flockfile(stderr);
	fprintf(stderr, "FAIL %s:%d: (%s) ", file, line, cond);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	funlockfile(stderr);
	va_end(ap);
}

/**
 * Check cond; on failure count a violation and print fmt. Evaluates to 1 if
 * cond held, 0 if not, so callers can branch: if (!LFPT_CHECK(...)) return;
 */
#define LFPT_CHECK(cond, ...)                                                   \
	((cond) ? 1 : (lfpt_fail_at(__FILE__, __LINE__, #cond, __VA_ARGS__), 0))

/** Violations counted so far (exact once every checking thread is joined). */
static inline uint64_t lfpt_violations(void)
{
	return lfp_load64_relaxed(&lfpt_state()->violations); /* T1: relaxed counter */
}

/** True once any check failed: long loops may stop early to save time. */
static inline bool lfpt_should_stop(void)
{
	return lfp_load32_relaxed(&lfpt_state()->stop) != 0; /* T2: relaxed hint */
}

/** Bump the progress counter the watchdog prints (call every few K ops). */
static inline void lfpt_progress(uint64_t n)
{
	lfp_fetch_add64_relaxed(&lfpt_state()->progress, n); /* relaxed: diagnostics */
}

/* ---- PRNG: splitmix64 (Steele, Lea, Flood 2014), one stream per thread ---- */

typedef struct lfpt_rng {
	uint64_t s;
} lfpt_rng_t;

static inline uint64_t lfpt_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/** Seed stream `stream` of `seed`: distinct streams are uncorrelated. */
static inline void lfpt_rng_init(lfpt_rng_t *r, uint64_t seed, uint64_t stream)
{
	r->s = lfpt_mix64(seed ^ lfpt_mix64(stream + UINT64_C(0x9e3779b97f4a7c15)));
}

static inline uint64_t lfpt_rng_next(lfpt_rng_t *r)
{
	r->s += UINT64_C(0x9e3779b97f4a7c15);
	return lfpt_mix64(r->s);
}

/** Uniform-enough value in [0, n), n > 0 (modulo bias is irrelevant here). */
static inline uint64_t lfpt_rng_below(lfpt_rng_t *r, uint64_t n)
{
	return lfpt_rng_next(r) % n;
}

/* ---- argument parsing and the seed ---------------------------------------- */

/** Parse a whole decimal (or 0x hex) u64; false on junk or overflow. */
static inline bool lfpt_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	if (s == NULL || *s == '\0' || *s == '-')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno != 0 || *end != '\0')
		return false;
	*out = (uint64_t)v;
	return true;
}

/**
 * Choose the run's seed: `arg` (the --seed value) if not NULL, else $LFP_SEED,
 * else the clock and pid. Prints "<prog>: seed=S (rerun: --seed S or
 * LFP_SEED=S)" to stdout and records it for the watchdog. Exits 2 on a
 * malformed seed.
 */
static inline uint64_t lfpt_seed_pick(const char *prog, const char *arg)
{
	struct lfpt_state *s = lfpt_state();
	const char *src = arg ? arg : getenv("LFP_SEED");
	uint64_t seed;

	if (src != NULL && *src != '\0') {
		if (!lfpt_parse_u64(src, &seed)) {
			fprintf(stderr, "%s: bad seed '%s'\n", prog, src);
			exit(LFPT_EXIT_USAGE);
		}
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		seed = lfpt_mix64((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
		       (uint64_t)getpid();
		seed &= UINT64_C(0xFFFFFFFFFFFF); /* short enough to retype */
	}
	s->seed = seed;
	s->prog = prog;
	printf("%s: seed=%" PRIu64 " (rerun: --seed %" PRIu64 " or LFP_SEED=%" PRIu64 ")\n",
	       prog, seed, seed, seed);
	fflush(stdout);
	return seed;
}

/* ---- start barrier and thread runner -------------------------------------- */

typedef struct lfpt_barrier {
	pthread_barrier_t b;
} lfpt_barrier_t;

/** Barrier for n threads; exits 2 if it cannot be made. */
static inline void lfpt_barrier_init(lfpt_barrier_t *b, unsigned n)
{
	int rc = pthread_barrier_init(&b->b, NULL, n);
	if (rc != 0) {
		fprintf(stderr, "pthread_barrier_init: %s\n", strerror(rc));
		exit(LFPT_EXIT_USAGE);
	}
}

/** Block until all n threads arrived: everything before it in any thread
 * happens before everything after it in every thread. */
static inline void lfpt_barrier_wait(lfpt_barrier_t *b)
{
	int rc = pthread_barrier_wait(&b->b);
	LFPT_CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier: %s", strerror(rc));
}

static inline void lfpt_barrier_destroy(lfpt_barrier_t *b)
{
	pthread_barrier_destroy(&b->b);
}

/**
 * Start n threads running fn(args + i * arg_size) and join them all. The
 * threads should meet at a barrier first so they start together. Exits 2 if
 * a thread cannot be created.
 */
static inline void lfpt_threads_run(unsigned n, void *(*fn)(void *), void *args, size_t arg_size)
{
	pthread_t *tids = calloc(n, sizeof *tids);
	if (tids == NULL) {
		fprintf(stderr, "out of memory for %u threads\n", n);
		exit(LFPT_EXIT_USAGE);
	}
	for (unsigned i = 0; i < n; i++) {
		int rc = pthread_create(&tids[i], NULL, fn, (char *)args + (size_t)i * arg_size);
		if (rc != 0) {
			fprintf(stderr, "pthread_create %u: %s\n", i, strerror(rc));
			exit(LFPT_EXIT_USAGE);
		}
	}
	for (unsigned i = 0; i < n; i++)
		LFPT_CHECK(pthread_join(tids[i], NULL) == 0, "join %u", i);
	free(tids);
}

/* ---- ownership stamps ------------------------------------------------------ */

#define LFPT_CANARY_LIVE UINT32_C(0x4556494c) /* "LIVE" */
#define LFPT_CANARY_FREE UINT32_C(0x45455246) /* "FREE" */
/** Smallest block that holds a stamp. */
#define LFPT_STAMP_MIN 16u

typedef struct lfpt_stamp {
	uint32_t canary; /* LIVE while owned, FREE once given back */
	uint32_t owner;  /* owner id, never 0 */
	uint64_t seq;    /* owner's sequence number for this ownership */
} lfpt_stamp_t;

static inline uint64_t lfpt_stamp_tail(uint32_t owner, uint64_t seq)
{
	return lfpt_mix64(((uint64_t)owner << 40) ^ seq ^ UINT64_C(0x5441494c));
}

/* memcpy keeps the accesses legal for any block alignment (even 1). The
 * compiler barriers keep the stamp accesses where the test put them
 * relative to the pool calls; they are not memory fences. */
static inline lfpt_stamp_t lfpt_stamp_read(const void *blk)
{
	lfpt_stamp_t st;
	lfp_compiler_barrier();
	memcpy(&st, blk, sizeof st);
	return st;
}

static inline void lfpt_stamp_write(void *blk, size_t size, uint32_t canary, uint32_t owner,
				    uint64_t seq)
{
	lfpt_stamp_t st = { .canary = canary, .owner = owner, .seq = seq };
	memcpy(blk, &st, sizeof st);
	if (size >= sizeof st + sizeof(uint64_t)) {
		uint64_t t = canary == LFPT_CANARY_LIVE ? lfpt_stamp_tail(owner, seq) : 0;
		memcpy((char *)blk + size - sizeof t, &t, sizeof t);
	}
	lfp_compiler_barrier();
}

/**
 * A block just came out of the pool for `owner`: it must not carry a LIVE
 * stamp (that would mean another owner still holds it). Stamp it LIVE.
 * @param size bytes of the block that may be written (>= LFPT_STAMP_MIN)
 * @return false (and a counted violation) if the block was live.
 */
static inline bool lfpt_stamp_claim(void *blk, size_t size, uint32_t owner, uint64_t seq)
{
	lfpt_stamp_t st = lfpt_stamp_read(blk);
	bool ok = LFPT_CHECK(st.canary != LFPT_CANARY_LIVE,
			     "block %p handed to owner %" PRIu32 " seq %" PRIu64
			     " while live for owner %" PRIu32 " seq %" PRIu64,
			     blk, owner, seq, st.owner, st.seq);
	lfpt_stamp_write(blk, size, LFPT_CANARY_LIVE, owner, seq);
	return ok;
}

/**
 * Check that blk is LIVE and stamped by (owner, seq); `when` names the moment
 * for the message ("free", "hand-off"). @return false on a (counted) mismatch.
 */
static inline bool lfpt_stamp_check(const void *blk, size_t size, uint32_t owner, uint64_t seq,
				    const char *when)
{
	lfpt_stamp_t st = lfpt_stamp_read(blk);
	if (!LFPT_CHECK(st.canary == LFPT_CANARY_LIVE && st.owner == owner && st.seq == seq,
			"%s of %p: expected LIVE owner %" PRIu32 " seq %" PRIu64
			", found canary %08" PRIx32 " owner %" PRIu32 " seq %" PRIu64,
			when, blk, owner, seq, st.canary, st.owner, st.seq))
		return false;
	if (size >= sizeof st + sizeof(uint64_t)) {
		uint64_t t;
		memcpy(&t, (const char *)blk + size - sizeof t, sizeof t);
		return LFPT_CHECK(t == lfpt_stamp_tail(owner, seq),
				  "%s of %p: tail word of owner %" PRIu32 " seq %" PRIu64
				  " overwritten (overlapping blocks?)",
				  when, blk, owner, seq);
	}
	return true;
}

/** Check (owner, seq) and mark the block FREE, just before giving it back. */
static inline bool lfpt_stamp_release(void *blk, size_t size, uint32_t owner, uint64_t seq)
{
	bool ok = lfpt_stamp_check(blk, size, owner, seq, "free");
	lfpt_stamp_write(blk, size, LFPT_CANARY_FREE, owner, seq);
	return ok;
}

/** Hand-off received: check the sender's stamp, restamp for the receiver. */
static inline bool lfpt_stamp_handoff(void *blk, size_t size, uint32_t from, uint64_t from_seq,
				      uint32_t to, uint64_t to_seq)
{
	bool ok = lfpt_stamp_check(blk, size, from, from_seq, "hand-off");
	lfpt_stamp_write(blk, size, LFPT_CANARY_LIVE, to, to_seq);
	return ok;
}

/* ---- ownership table: who holds block i (0 = the pool) --------------------- */

typedef struct lfpt_owners {
	lfp_atomic_u32 *owner; /* one word per block index */
	uint64_t count;
} lfpt_owners_t;

/** Table for count blocks, all owned by the pool; exits 2 without memory. */
static inline void lfpt_owners_init(lfpt_owners_t *t, uint64_t count)
{
	t->owner = calloc(count, sizeof *t->owner);
	t->count = count;
	if (t->owner == NULL) {
		fprintf(stderr, "out of memory for an owner table of %" PRIu64 "\n", count);
		exit(LFPT_EXIT_USAGE);
	}
	for (uint64_t i = 0; i < count; i++)
		lfp_init32(&t->owner[i], 0);
}

static inline void lfpt_owners_destroy(lfpt_owners_t *t)
{
	free(t->owner);
	t->owner = NULL;
}

/**
 * Move block idx from `from` to `to` (0 = the pool); a violation if someone
 * else holds it. Relaxed CAS: only atomicity is used (see the top comment).
 */
static inline bool lfpt_owners_move(lfpt_owners_t *t, int64_t idx, uint32_t from, uint32_t to)
{
	if (!LFPT_CHECK(idx >= 0 && (uint64_t)idx < t->count, "block index %" PRId64 " out of range",
			idx))
		return false;
	uint32_t seen = from;
	return LFPT_CHECK(lfp_cas32_relaxed(&t->owner[idx], &seen, to), /* relaxed: see above */
			  "block %" PRId64 " moving %" PRIu32 " -> %" PRIu32 " is held by %" PRIu32,
			  idx, from, to, seen);
}

/** Count blocks not back with the pool (call when quiescent). */
static inline uint64_t lfpt_owners_held(const lfpt_owners_t *t)
{
	uint64_t n = 0;
	for (uint64_t i = 0; i < t->count; i++)
		n += lfp_load32_relaxed(&t->owner[i]) != 0; /* relaxed: quiescent */
	return n;
}

/* ---- watchdog -------------------------------------------------------------- */

struct lfpt_watchdog {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t tid;
	unsigned seconds;
	bool stopped; /* under mu */
	bool running;
};

static inline struct lfpt_watchdog *lfpt_watchdog_state(void)
{
	static struct lfpt_watchdog w = { .mu = PTHREAD_MUTEX_INITIALIZER };
	return &w;
}

static inline void *lfpt_watchdog_main(void *arg)
{
	struct lfpt_watchdog *w = arg;
	struct lfpt_state *s = lfpt_state();
	struct timespec deadline;
	bool stopped;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += (time_t)w->seconds;
	pthread_mutex_lock(&w->mu);
	while (!w->stopped)
		if (pthread_cond_timedwait(&w->cv, &w->mu, &deadline) == ETIMEDOUT)
			break;
	stopped = w->stopped;
	pthread_mutex_unlock(&w->mu);
	if (stopped)
		return NULL;
	fprintf(stderr,
		"WATCHDOG: hang after %u s, seed %" PRIu64 " (%s; progress %" PRIu64
		", violations %" PRIu64 ")\n",
		w->seconds, s->seed, s->prog ? s->prog : "?",
		lfp_load64_relaxed(&s->progress),     /* relaxed: diagnostics */
		lfp_load64_relaxed(&s->violations)); /* relaxed: diagnostics */
	fflush(NULL);
	_exit(LFPT_EXIT_WATCHDOG);
}

/**
 * Arm the watchdog: unless lfpt_watchdog_stop() runs within `seconds`, the
 * process prints the WATCHDOG line and exits 3. $LFP_WATCHDOG_SCALE (a
 * positive integer) multiplies the time, for slow machines and sanitizers.
 */
static inline void lfpt_watchdog_start(unsigned seconds)
{
	struct lfpt_watchdog *w = lfpt_watchdog_state();
	pthread_condattr_t ca;
	uint64_t scale;
	const char *env = getenv("LFP_WATCHDOG_SCALE");

	if (env != NULL && lfpt_parse_u64(env, &scale) && scale > 0 && scale < 1000)
		seconds *= (unsigned)scale;
	w->seconds = seconds;
	w->stopped = false;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&w->tid, NULL, lfpt_watchdog_main, w) != 0) {
		fprintf(stderr, "cannot start the watchdog\n");
		exit(LFPT_EXIT_USAGE);
	}
	w->running = true;
}

/** Disarm and join the watchdog. */
static inline void lfpt_watchdog_stop(void)
{
	struct lfpt_watchdog *w = lfpt_watchdog_state();
	if (!w->running)
		return;
	pthread_mutex_lock(&w->mu);
	w->stopped = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->tid, NULL);
	pthread_cond_destroy(&w->cv);
	w->running = false;
}

/** Exit status for a plain test program from the violation count. */
static inline int lfpt_exit_status(void)
{
	return lfpt_violations() == 0 ? LFPT_EXIT_PASS : LFPT_EXIT_FAIL;
}

/* ---- malloc-lab trace replay (tests that read ../shared/traces) ----------
 * A minimal reader of the CS:APP trace format (../shared/traces/malloclab/
 * FORMAT.md: four header integers, then "a id size", "r id size", "f id"
 * lines; a missing size reuses the last one, as the driver's fscanf does)
 * and a replay with content checks, shared by test_heap.c and
 * test_frontend.c. stress/lfpool-replay.c is the full tool. The traces are
 * read at run time only: a missing file is reported as -1 so the caller can
 * skip. */

/** Ids a replayed trace may use (the corner traces use fewer). */
#define LFPT_TRACE_MAX_IDS 64

struct lfpt_trace_op {
	char t;      /* 'a', 'r' or 'f' */
	int id;      /* block id; -1 for realloc(NULL)/free(NULL) */
	size_t size; /* 0 for a free */
};

/**
 * Read up to max ops of trace `name`, relative to $LFP_TRACES (else
 * ../shared/traces from the current directory).
 * @return ops read; -1 if the file is absent (skip); -2 if it is malformed
 *         or uses more than LFPT_TRACE_MAX_IDS ids (why says where).
 */
static inline long lfpt_trace_read(const char *name, struct lfpt_trace_op *ops, long max,
				   char *why, size_t whylen)
{
	const char *root = getenv("LFP_TRACES");
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", root && *root ? root : "../shared/traces", name);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	long hdr[4], n = 0;
	for (int i = 0; i < 4; i++)
		if (fscanf(f, "%ld", &hdr[i]) != 1) {
			snprintf(why, whylen, "%.300s: header", path);
			fclose(f);
			return -2;
		}
	size_t size = 0;
	char line[256];
	while (n < hdr[2] && n < max && fscanf(f, " %255[^\n]", line) == 1) {
		char t;
		int id;
		long sz;
		int k = sscanf(line, "%c %d %ld", &t, &id, &sz);
		if (k < 2 || id < (t == 'a' ? 0 : -1) || id >= LFPT_TRACE_MAX_IDS) {
			snprintf(why, whylen, "%.300s: bad line '%.150s'", path, line);
			fclose(f);
			return -2;
		}
		if (k == 3)
			size = (size_t)sz;
		ops[n++] = (struct lfpt_trace_op){ t, id, t == 'f' ? 0 : size };
	}
	fclose(f);
	return n;
}

/** The allocator a trace is replayed on (h is passed to each call). */
struct lfpt_trace_heap {
	void *(*malloc_fn)(void *h, size_t n);
	void *(*realloc_fn)(void *h, void *p, size_t n);
	int (*free_fn)(void *h, void *p);
	void *h;
};

/**
 * Replay ops[0..n) on a: every block is filled with its id, realloc must
 * keep the common prefix, realloc(p, 0) must return NULL, free must return
 * 0. Blocks still live at the end stay allocated (the caller destroys the
 * heap). @return 0, or -1 with why describing the first failure.
 */
static inline int lfpt_trace_replay(const struct lfpt_trace_op *ops, long n,
				    const struct lfpt_trace_heap *a, char *why, size_t whylen)
{
	void *ptr[LFPT_TRACE_MAX_IDS] = { 0 };
	size_t sz[LFPT_TRACE_MAX_IDS] = { 0 };
	for (long i = 0; i < n; i++) {
		int id = ops[i].id;
		if (ops[i].t == 'a') {
			ptr[id] = a->malloc_fn(a->h, ops[i].size);
			if (ptr[id] == NULL) {
				snprintf(why, whylen, "op %ld: malloc(%zu) failed", i, ops[i].size);
				return -1;
			}
			sz[id] = ops[i].size;
			memset(ptr[id], id, ops[i].size);
		} else if (ops[i].t == 'r') {
			void *old = id >= 0 ? ptr[id] : NULL;
			void *q = a->realloc_fn(a->h, old, ops[i].size);
			if (ops[i].size == 0) {
				if (q != NULL) {
					snprintf(why, whylen, "op %ld: realloc(p, 0) returned a block", i);
					return -1;
				}
			} else {
				if (q == NULL) {
					snprintf(why, whylen, "op %ld: realloc(%zu) failed", i, ops[i].size);
					return -1;
				}
				size_t keep = id < 0 ? 0 : sz[id] < ops[i].size ? sz[id] : ops[i].size;
				for (size_t k = 0; k < keep; k++)
					if (((unsigned char *)q)[k] != (unsigned char)id) {
						snprintf(why, whylen, "op %ld: realloc lost byte %zu", i, k);
						return -1;
					}
				memset(q, id, ops[i].size);
			}
			if (id >= 0) {
				ptr[id] = q;
				sz[id] = ops[i].size;
			}
		} else {
			int rc = a->free_fn(a->h, id >= 0 ? ptr[id] : NULL);
			if (rc != 0) {
				snprintf(why, whylen, "op %ld: free returned %d", i, rc);
				return -1;
			}
			if (id >= 0)
				ptr[id] = NULL;
		}
	}
	return 0;
}

/* ---- SPSC ring (only where the includer defines LFPT_RING_CAP) -----------
 * A single-producer single-consumer ring of {block, owner, seq} messages for
 * hand-off tests. LFPT_RING_CAP (a power of two) is set by the includer
 * before including this header. Labels: C1 producer's release store of tail
 * publishes the slot (and the block's stamp), pairs with C2, the consumer's
 * acquire load of tail; C3 consumer's release store of head hands the slot
 * back, pairs with C4, the producer's acquire load of head. */
#ifdef LFPT_RING_CAP
struct lfpt_msg {
	void *blk;
	uint32_t owner;
	uint64_t seq;
};

struct lfpt_ring {
	LFP_CACHE_ALIGNED lfp_atomic_u32 tail; /* written by the producer only */
	LFP_CACHE_ALIGNED lfp_atomic_u32 head; /* written by the consumer only */
	struct lfpt_msg slot[LFPT_RING_CAP];   /* owned per C1..C4 */
};

static inline bool lfpt_ring_push(struct lfpt_ring *r, const struct lfpt_msg *m)
{
	uint32_t t = lfp_load32_relaxed(&r->tail); /* relaxed: we are its only writer */
	uint32_t h = lfp_load32_acquire(&r->head); /* C4: pairs with C3 */
	if (t - h == LFPT_RING_CAP)
		return false;
	r->slot[t & (LFPT_RING_CAP - 1)] = *m;
	lfp_store32_release(&r->tail, t + 1); /* C1: pairs with C2 */
	return true;
}

static inline bool lfpt_ring_has_room(struct lfpt_ring *r)
{
	uint32_t t = lfp_load32_relaxed(&r->tail); /* relaxed: we are its only writer */
	return t - lfp_load32_acquire(&r->head) < LFPT_RING_CAP; /* C4: pairs with C3 */
}

static inline bool lfpt_ring_pop(struct lfpt_ring *r, struct lfpt_msg *m)
{
	uint32_t h = lfp_load32_relaxed(&r->head); /* relaxed: we are its only writer */
	uint32_t t = lfp_load32_acquire(&r->tail); /* C2: pairs with C1 */
	if (h == t)
		return false;
	*m = r->slot[h & (LFPT_RING_CAP - 1)];
	lfp_store32_release(&r->head, h + 1); /* C3: pairs with C4 */
	return true;
}
#endif /* LFPT_RING_CAP */

/* ---- preemption injection (--preempt US) -----------------------------------
 * On a machine with few cores the timer preempts a busy thread only a few
 * hundred times a second, so a worker is almost never caught between a
 * pop's head load and its CAS, the window in which a short ABA tag wraps.
 * lfpt_preempt_install(stall) makes SIGUSR1 stall the thread it hits, and
 * lfpt_preempt_start(&timer, us, seed) arms, for the calling worker, a timer
 * that sends it SIGUSR1 every `us` microseconds. The handler either gives
 * the CPU away (sched_yield, as a preemption would) or spins for a random
 * 0..stall pause instructions while the other workers go on: a stall at a
 * random point. A timer interrupt lands on a random instruction: a debug
 * build that looked at the interrupted instruction pointer saw about 1
 * stall in 30 land between the core pop's link load and its CAS. Signals
 * sent by the other workers mostly landed at the target's next system call
 * (under 1 in 300 in the window), and a separate signalling thread starves
 * on two busy cores. Spinning alone lost most of its power when other
 * programs kept the machine busy (the other workers were not running
 * during the stall); yielding does not need them to be. The handler touches
 * no shared state but a statistics counter and makes no library call (the
 * library does not promise to be async-signal-safe).
 */
#include <signal.h>
#include <sys/syscall.h>

struct lfpt_preempt {
	unsigned stall;       /* longest spin, in pause instructions */
	lfp_atomic_u64 count; /* stalls so far (relaxed: read after join) */
};

static inline struct lfpt_preempt *lfpt_preempt_state(void)
{
	static struct lfpt_preempt s;
	return &s;
}

static inline uint64_t *lfpt_stall_rng(void)
{
	static _Thread_local uint64_t r;
	return &r;
}

static inline void lfpt_stall_handler(int sig)
{
	int saved = errno;
	struct lfpt_preempt *p = lfpt_preempt_state();
	(void)sig;
	lfp_fetch_add64_relaxed(&p->count, 1); /* relaxed: a count, read after join */
	uint64_t *rng = lfpt_stall_rng();
	*rng += UINT64_C(0x9e3779b97f4a7c15);
	uint64_t r = lfpt_mix64(*rng);
	if (r & 1) {
		/* Give the CPU away, as a preemption would: the other workers
		 * run here too, which also works when other programs keep
		 * the rest of the machine busy. */
		syscall(SYS_sched_yield);
	} else {
		for (uint64_t k = (r >> 1) % ((uint64_t)p->stall + 1); k > 0; k--)
			lfp_cpu_relax();
	}
	errno = saved;
}

/* Process-wide, before the workers start: 0, or -1 if sigaction failed. */
static inline int lfpt_preempt_install(unsigned stall)
{
	struct sigaction sa;
	lfpt_preempt_state()->stall = stall;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = lfpt_stall_handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGUSR1, &sa, NULL) == 0 ? 0 : -1;
}

/* In each worker: a timer that stalls this thread every us microseconds
 * (timer_delete it before the thread ends). Exits with LFPT_EXIT_USAGE if
 * the timer cannot be made. */
static inline void lfpt_preempt_start(timer_t *timer, unsigned us, uint64_t seed)
{
	struct sigevent ev;
	*lfpt_stall_rng() = lfpt_mix64(seed);
	memset(&ev, 0, sizeof ev);
	ev.sigev_notify = SIGEV_THREAD_ID;
	ev.sigev_signo = SIGUSR1;
	ev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
	struct itimerspec its = { .it_interval = { 0, (long)us * 1000 }, .it_value = { 0, (long)us * 1000 } };
	if (timer_create(CLOCK_MONOTONIC, &ev, timer) != 0 || timer_settime(*timer, 0, &its, NULL) != 0) {
		fprintf(stderr, "preemption timer: %s\n", strerror(errno));
		exit(LFPT_EXIT_USAGE);
	}
}

static inline uint64_t lfpt_stall_count(void)
{
	return lfp_load64_relaxed(&lfpt_preempt_state()->count); /* relaxed: after join */
}

#endif /* LFP_TEST_H */
