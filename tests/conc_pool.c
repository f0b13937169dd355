/*
 * tests/conc_pool.c - concurrency test of the core pool (a plain program, so
 * it also runs under ThreadSanitizer, where Criterion cannot).
 *
 * N threads meet at a barrier, then each runs M random operations on one
 * shared pool, holding at most K blocks at a time:
 *   - alloc: the block must be in the pool, aligned, not held by anyone (the
 *     ownership table's relaxed CAS 0 -> me) and not carry a LIVE stamp; it
 *     is then stamped {LIVE, me, seq}. An empty pool must give NULL + ENOMEM.
 *   - free: the stamp must still be {LIVE, me, seq}; the block is marked
 *     FREE, given back to the table, and lfp_pool_free must return 0.
 *   - hand-off (--handoff): instead of freeing, a thread may pass a block to
 *     the next thread (i -> i+1 mod N) through a small SPSC ring; the receiver
 *     re-checks the sender's stamp, restamps it as its own and later frees it
 *     or passes it on, so blocks allocated by one thread are freed by another.
 *   - the pool has no per-thread cache (LFP_POOL_NO_CACHE) unless --cache
 *     asks for the default one: the shared free stack is under test.
 *   - preemption (--preempt US): every US microseconds a timer signal stalls
 *     each worker at a random instruction, which makes a stall inside a pop's
 *     ABA window common (see below; the negative control relies on it).
 * After join the main thread drains the rings and checks: conservation
 * (allocs == frees, every block back in the table), lfp_pool_validate() == 0,
 * free_count == capacity, the pool's counters against the threads' counts,
 * and a final sequential pass that takes every block once (all distinct) and
 * then finds the pool empty.
 *
 * Output: the seed line, then one result line. Exit 0 pass, 1 violation,
 * 2 usage, 3 watchdog (lfp_test.h). The first violation makes every thread
 * stop early (unless --no-stop) so a broken build fails fast.
 */
#define LFPT_RING_CAP 16u /* a small ring: producers often find it full */
#include "lfp_test.h"

#include <lfpool.h>

#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <sys/syscall.h>
#include <time.h>

struct opts {
	unsigned threads;
	uint64_t ops;
	uint64_t blocks;
	unsigned hold;
	size_t block_size;
	size_t block_align;
	unsigned timeout;
	unsigned preempt; /* period of injected stalls in us; 0 = none */
	unsigned stall;   /* longest injected stall, in pause instructions */
	bool checked, stats, handoff, cache, stop_on_fail;
	const char *seed_arg;
};

struct held {
	void *blk;
	uint64_t seq;
};

struct worker {
	/* Set by main before the threads start; read-only afterwards. */
	unsigned id; /* owner id = index + 1 (0 means "the pool") */
	struct lfpt_ring *in, *out;
	struct held *held;
	/* Owner thread only; read by main after join. */
	lfpt_rng_t rng;
	unsigned nheld;
	uint64_t seq;
	uint64_t allocs, frees, empties, sent, received;
	char pad[LFP_CACHE_LINE];
};

static lfp_pool_t *pool;
static size_t blk_bytes; /* usable bytes the stamps may cover */
static size_t blk_align;
static struct opts o;
static lfpt_owners_t owners;
static lfpt_barrier_t start_line;

static void check_fresh_block(struct worker *w, void *blk)
{
	int64_t idx = lfp_pool_index(pool, blk);
	LFPT_CHECK(idx >= 0 && lfp_pool_contains(pool, blk) &&
			   ((uintptr_t)blk & (blk_align - 1)) == 0,
		   "alloc returned %p (index %" PRId64 ") outside the pool or misaligned", blk, idx);
	lfpt_owners_move(&owners, idx, 0, w->id);
	lfpt_stamp_claim(blk, blk_bytes, w->id, ++w->seq);
}

static void give_back(uint32_t me, void *blk, uint64_t seq, uint64_t *frees)
{
	lfpt_stamp_release(blk, blk_bytes, me, seq);
	/* Off the table before the pool call: once freed, another thread may
	 * allocate the block and claim it at once. */
	lfpt_owners_move(&owners, lfp_pool_index(pool, blk), me, 0);
	int rc = lfp_pool_free(pool, blk);
	LFPT_CHECK(rc == 0, "free(%p) by %" PRIu32 " returned %d", blk, me, rc);
	(*frees)++;
}

/* Take up to `max` blocks from the inbox; keep them if there is room and
 * `keep`, else free them. */
static void receive(struct worker *w, unsigned max, bool keep)
{
	struct lfpt_msg m;
	for (unsigned k = 0; k < max && lfpt_ring_pop(w->in, &m); k++) {
		w->received++;
		uint64_t seq = ++w->seq;
		lfpt_stamp_handoff(m.blk, blk_bytes, m.owner, m.seq, w->id, seq);
		lfpt_owners_move(&owners, lfp_pool_index(pool, m.blk), m.owner, w->id);
		if (keep && w->nheld < o.hold)
			w->held[w->nheld++] = (struct held){ m.blk, seq };
		else
			give_back(w->id, m.blk, seq, &w->frees);
	}
}

/* Workers that finished their ops; F1 (release increment) publishes a
 * worker's last ring pushes, F2 (acquire load) lets a draining worker see
 * them. Only an optimisation: main drains every ring after join anyway. */
static lfp_atomic_u32 finished;

static void *run_worker(void *arg)
{
	struct worker *w = arg;
	/* An op is a successful alloc, free or send; an empty pool costs an
	 * attempt but no op, so a tiny pool still sees real traffic. The
	 * attempt cap keeps a pool that lost its blocks from looping forever. */
	const uint64_t max_attempts = o.ops * 64 + 4096;
	uint64_t ops = 0;

	timer_t timer;
	if (o.preempt)
		lfpt_preempt_start(&timer, o.preempt, w->rng.s ^ w->id);
	lfpt_barrier_wait(&start_line);
	for (uint64_t attempt = 0; ops < o.ops && attempt < max_attempts; attempt++) {
		if ((attempt & 1023) == 0) {
			lfpt_progress(1024);
			if (o.stop_on_fail && lfpt_should_stop())
				break;
		}
		if (o.handoff)
			receive(w, 4, true);
		uint64_t r = lfpt_rng_next(&w->rng);
		if (w->nheld == 0 || (w->nheld < o.hold && (r & 1))) {
			errno = 0;
			void *blk = lfp_pool_alloc(pool);
			if (blk == NULL) {
				int e = errno;
				LFPT_CHECK(e == ENOMEM, "alloc failed with errno %d (%s), not ENOMEM", e,
					   strerror(e));
				w->empties++;
				/* The blocks are held by threads that are not running
				 * (more threads than cores): let them run. */
				sched_yield();
				continue;
			}
			check_fresh_block(w, blk);
			w->held[w->nheld++] = (struct held){ blk, w->seq };
			w->allocs++;
			ops++;
			continue;
		}
		unsigned k = (unsigned)((r >> 8) % w->nheld);
		struct held h = w->held[k];
		w->held[k] = w->held[--w->nheld];
		ops++;
		if (o.handoff && ((r >> 1) & 3) == 0 &&
		    lfpt_stamp_check(h.blk, blk_bytes, w->id, h.seq, "send") &&
		    lfpt_ring_push(w->out, &(struct lfpt_msg){ h.blk, w->id, h.seq })) {
			w->sent++;
			continue;
		}
		give_back(w->id, h.blk, h.seq, &w->frees);
	}
	while (w->nheld > 0) {
		struct held h = w->held[--w->nheld];
		give_back(w->id, h.blk, h.seq, &w->frees);
	}
	uint32_t f = lfp_load32_relaxed(&finished); /* relaxed: the CAS's expectation */
	while (!lfp_cas32_acq_rel(&finished, &f, f + 1)) /* F1: releases our pushes; pairs with F2 */
		;
	/* Serve the inbox until every sender is done, so blocks sent to us do
	 * not sit idle while others still want them. */
	while (o.handoff && lfp_load32_acquire(&finished) < o.threads) { /* F2: pairs with F1 */
		receive(w, LFPT_RING_CAP, false);
		sched_yield();
	}
	if (o.preempt)
		timer_delete(timer);
	return NULL;
}

LFPT_NORETURN static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [--threads N] [--ops M] [--blocks B] [--hold K] [--block-size S]\n"
		"          [--align A] [--seed S] [--timeout SEC] [--checked] [--stats]\n"
		"          [--handoff] [--cache] [--preempt US [--stall N]] [--no-stop]\n"
		"  M is per thread; K blocks held at most per thread; exit 0 pass,\n"
		"  1 violation, 2 usage, 3 watchdog.\n",
		prog);
	exit(LFPT_EXIT_USAGE);
}

/* If argv[*i] is `name`, parse its value into *out (usage on error). */
static bool num_opt(int argc, char **argv, int *i, const char *name, uint64_t lo, uint64_t hi,
		    uint64_t *out)
{
	if (strcmp(argv[*i], name) != 0)
		return false;
	if (*i + 1 >= argc || !lfpt_parse_u64(argv[*i + 1], out) || *out < lo || *out > hi)
		usage(argv[0]);
	(*i)++;
	return true;
}

static void parse(int argc, char **argv)
{
	o = (struct opts){ .threads = 4, .ops = 100000, .blocks = 64, .hold = 8,
			   .block_size = 64, .timeout = 60, .stall = 200,
			   .stop_on_fail = true };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		uint64_t v;
		if (num_opt(argc, argv, &i, "--threads", 1, 1024, &v))
			o.threads = (unsigned)v;
		else if (num_opt(argc, argv, &i, "--ops", 0, UINT64_C(1) << 40, &v))
			o.ops = v;
		else if (num_opt(argc, argv, &i, "--blocks", 1, UINT64_C(1) << 24, &v))
			o.blocks = v;
		else if (num_opt(argc, argv, &i, "--hold", 1, 4096, &v))
			o.hold = (unsigned)v;
		else if (num_opt(argc, argv, &i, "--block-size", LFPT_STAMP_MIN, 1u << 20, &v))
			o.block_size = (size_t)v;
		else if (num_opt(argc, argv, &i, "--align", 0, 4096, &v))
			o.block_align = (size_t)v;
		else if (num_opt(argc, argv, &i, "--timeout", 1, 86400, &v))
			o.timeout = (unsigned)v;
		else if (num_opt(argc, argv, &i, "--preempt", 0, 999999, &v))
			o.preempt = (unsigned)v;
		else if (num_opt(argc, argv, &i, "--stall", 0, 1u << 24, &v))
			o.stall = (unsigned)v;
		else if (strcmp(a, "--seed") == 0 && i + 1 < argc)
			o.seed_arg = argv[++i];
		else if (strcmp(a, "--checked") == 0)
			o.checked = true;
		else if (strcmp(a, "--stats") == 0)
			o.stats = true;
		else if (strcmp(a, "--handoff") == 0)
			o.handoff = true;
		else if (strcmp(a, "--cache") == 0)
			o.cache = true;
		else if (strcmp(a, "--no-stop") == 0)
			o.stop_on_fail = false;
		else
			usage(argv[0]);
	}
}

/* After join: every block is back; take them all once more, one by one. */
static void final_sequential_pass(uint64_t *allocs, uint64_t *frees)
{
	const uint32_t me = o.threads + 2;
	void **all = calloc(o.blocks, sizeof *all);
	uint64_t got = 0;
	if (all == NULL)
		exit(LFPT_EXIT_USAGE);
	while (got < o.blocks) {
		void *blk = lfp_pool_alloc(pool);
		if (!LFPT_CHECK(blk != NULL, "quiescent pool gave only %" PRIu64 " of %" PRIu64
				" blocks (errno %d)", got, o.blocks, errno))
			break;
		int64_t idx = lfp_pool_index(pool, blk);
		if (!lfpt_owners_move(&owners, idx, 0, me))
			break; /* handed out twice; stop before looping on a cycle */
		lfpt_stamp_claim(blk, blk_bytes, me, got);
		all[got++] = blk;
		(*allocs)++;
	}
	if (got == o.blocks) {
		errno = 0;
		void *extra = lfp_pool_alloc(pool);
		LFPT_CHECK(extra == NULL && errno == ENOMEM,
			   "pool gave a block beyond its capacity (%p, errno %d)", extra, errno);
	}
	for (uint64_t i = 0; i < got; i++)
		give_back(me, all[i], i, frees);
	free(all);
}

int main(int argc, char **argv)
{
	parse(argc, argv);
	uint64_t seed = lfpt_seed_pick("conc_pool", o.seed_arg);
	lfpt_watchdog_start(o.timeout);

	lfp_pool_config_t cfg = {
		.block_size = o.block_size,
		.block_count = o.blocks,
		.block_align = o.block_align,
		/* The shared free stack is what this test is about: no
		 * per-thread cache unless --cache asks for the default one. */
		.flags = (o.checked ? LFP_POOL_CHECKED : 0u) | (o.stats ? LFP_POOL_STATS : 0u) |
			 (o.cache ? 0u : LFP_POOL_NO_CACHE),
	};
	pool = lfp_pool_create(&cfg);
	if (pool == NULL) {
		fprintf(stderr, "conc_pool: lfp_pool_create: %s\n", strerror(errno));
		return LFPT_EXIT_USAGE;
	}
	blk_bytes = o.block_size; /* what we asked for, not the rounded stride */
	blk_align = o.block_align ? o.block_align : alignof(max_align_t);
	lfpt_owners_init(&owners, o.blocks);
	lfpt_barrier_init(&start_line, o.threads);
	if (o.preempt && lfpt_preempt_install(o.stall) != 0)
		return LFPT_EXIT_USAGE;

	struct worker *w = calloc(o.threads, sizeof *w);
	/* aligned_alloc: struct lfpt_ring is cache-line aligned (sizeof is a multiple). */
	struct lfpt_ring *rings = aligned_alloc(LFP_CACHE_LINE, o.threads * sizeof *rings);
	if (w == NULL || rings == NULL)
		return LFPT_EXIT_USAGE;
	memset(rings, 0, o.threads * sizeof *rings);
	for (unsigned i = 0; i < o.threads; i++) {
		lfp_init32(&rings[i].head, 0);
		lfp_init32(&rings[i].tail, 0);
		w[i].id = i + 1;
		w[i].out = &rings[i];
		w[i].in = &rings[(i + o.threads - 1) % o.threads];
		w[i].held = calloc(o.hold, sizeof *w[i].held);
		if (w[i].held == NULL)
			return LFPT_EXIT_USAGE;
		lfpt_rng_init(&w[i].rng, seed, i);
	}

	lfp_init32(&finished, 0);
	lfpt_threads_run(o.threads, run_worker, w, sizeof *w);

	/* Quiescent from here: join ordered every worker's writes before us. */
	uint64_t allocs = 0, frees = 0, empties = 0, sent = 0, received = 0, drained = 0;
	for (unsigned i = 0; i < o.threads; i++) {
		struct lfpt_msg m;
		while (lfpt_ring_pop(&rings[i], &m)) {
			drained++;
			lfpt_stamp_check(m.blk, blk_bytes, m.owner, m.seq, "drain");
			lfpt_stamp_write(m.blk, blk_bytes, LFPT_CANARY_LIVE, o.threads + 1, drained);
			lfpt_owners_move(&owners, lfp_pool_index(pool, m.blk), m.owner, o.threads + 1);
			give_back(o.threads + 1, m.blk, drained, &frees);
		}
		allocs += w[i].allocs;
		frees += w[i].frees;
		empties += w[i].empties;
		sent += w[i].sent;
		received += w[i].received;
		free(w[i].held);
	}
	const uint64_t run_allocs = allocs, run_frees = frees;

	LFPT_CHECK(sent == received + drained, "sent %" PRIu64 " != received %" PRIu64
		   " + drained %" PRIu64, sent, received, drained);
	LFPT_CHECK(allocs == frees, "conservation: allocs %" PRIu64 " != frees %" PRIu64, allocs,
		   frees);
	LFPT_CHECK(lfpt_owners_held(&owners) == 0, "%" PRIu64 " blocks still held after join",
		   lfpt_owners_held(&owners));

	lfp_pool_report_t rep;
	int rc = lfp_pool_validate(pool, &rep);
	LFPT_CHECK(rc == 0, "validate: %d (%s; free %" PRIu64 " allocated %" PRIu64
		   " other %" PRIu64 " bad index %" PRIu32 ")", rc, rep.error ? rep.error : "-",
		   rep.free, rep.allocated, rep.other, rep.bad_index);
	size_t fc = lfp_pool_free_count(pool);
	LFPT_CHECK(fc == o.blocks, "free_count %zu != capacity %" PRIu64, fc, o.blocks);
	LFPT_CHECK(lfp_pool_capacity(pool) == o.blocks, "capacity %zu", lfp_pool_capacity(pool));

	lfp_pool_stats_t st;
	LFPT_CHECK(lfp_pool_stats(pool, &st) == 0, "stats failed");
	LFPT_CHECK(st.failures == empties, "stats.failures %" PRIu64 " != empty allocs %" PRIu64,
		   st.failures, empties);
	if (o.stats) {
		LFPT_CHECK(st.allocs == allocs && st.frees == frees && st.in_use == 0,
			   "stats allocs %" PRIu64 " frees %" PRIu64 " in_use %" PRIu64
			   " vs counted %" PRIu64 "/%" PRIu64, st.allocs, st.frees, st.in_use, allocs,
			   frees);
		LFPT_CHECK(st.high_water <= o.blocks && (allocs == 0 || st.high_water >= 1),
			   "high_water %" PRIu64 " outside 1..%" PRIu64, st.high_water, o.blocks);
	}

	/* Only if the concurrent phase left a sane pool: a corrupt stack could
	 * hand out one block forever. */
	if (lfpt_violations() == 0) {
		final_sequential_pass(&allocs, &frees);
		rc = lfp_pool_validate(pool, &rep);
		LFPT_CHECK(rc == 0 && lfp_pool_free_count(pool) == o.blocks,
			   "after the sequential pass: validate %d (%s), free_count %zu", rc,
			   rep.error ? rep.error : "-", lfp_pool_free_count(pool));
	}

	lfpt_watchdog_stop();
	LFPT_CHECK(lfp_pool_destroy(pool) == 0, "destroy");
	lfpt_barrier_destroy(&start_line);
	lfpt_owners_destroy(&owners);
	free(rings);
	free(w);

	uint64_t bad = lfpt_violations();
	printf("conc_pool: seed=%" PRIu64 " threads=%u ops=%" PRIu64 " blocks=%" PRIu64
	       " hold=%u%s%s%s%s preempt=%u stalls=%" PRIu64 " tag_bits=%d: allocs=%" PRIu64 " frees=%" PRIu64 " empty=%" PRIu64
	       " handed=%" PRIu64 " violations=%" PRIu64 " -> %s\n",
	       seed, o.threads, o.ops, o.blocks, o.hold, o.checked ? " checked" : "",
	       o.stats ? " stats" : "", o.handoff ? " handoff" : "", o.cache ? " cache" : "", o.preempt, lfpt_stall_count(), LFP_TAG_BITS, run_allocs, run_frees,
	       empties, sent, bad, bad ? "FAIL" : "PASS");
	return lfpt_exit_status();
}
