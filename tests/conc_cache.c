/*
 * tests/conc_cache.c - concurrency test of the per-thread cache (a plain
 * program, so it runs under ThreadSanitizer, where Criterion cannot).
 *
 * Modes (--mode):
 *   mixed    N threads each run M random operations on one cached pool,
 *            holding at most K blocks: alloc (lfp_pool_alloc, the inline
 *            lfp_cache_alloc through the thread's handle, or with --bulk
 *            lfp_pool_alloc_bulk), free (the same three ways), hand a block
 *            to the next thread through an SPSC ring (so blocks are freed by
 *            a thread that did not allocate them), and now and then
 *            lfp_pool_cache_flush. Every block is checked against an
 *            ownership table (relaxed CAS 0 -> me) and stamped {LIVE, me,
 *            seq}; the stamp is re-checked on free and on receipt.
 *   handoff  every thread is the producer of ring i and the consumer of ring
 *            i-1: alloc, stamp, send; receive, check, free. Each of the M
 *            blocks a thread allocates is freed by another thread.
 *   exit     R rounds of N threads that run mixed operations and then exit
 *            with whatever their caches hold (nothing flushed by hand).
 * After the threads join, main drains the rings and checks: conservation
 * (allocs == frees, nobody holds a block), lfp_pool_validate() == 0 with
 * free == capacity, free_count == capacity, the cached count within the
 * documented bound, and a sequential pass that takes every block once (all
 * distinct) and then finds the pool empty - so nothing is lost in a cache of
 * a thread that exited.
 *
 * Output: the seed line, then one result line. Exit 0 pass, 1 violation,
 * 2 usage, 3 watchdog (tests/lfp_test.h).
 */
#define LFPT_RING_CAP 64u
#include "lfp_test.h"

#include <lfpool.h>

#include <sched.h>

enum mode { MIXED, HANDOFF, EXIT };

static struct {
	enum mode mode;
	unsigned threads, rounds;
	uint64_t ops, blocks, hold, block_size, align;
	uint64_t cache_size, slots, depot;
	bool checked, stats, bulk;
	unsigned timeout;
	const char *seed_arg;
} o = { .mode = MIXED, .threads = 4, .rounds = 1, .ops = 100000, .blocks = 4096, .hold = 32,
	.block_size = 64, .timeout = 120 };

struct held {
	void *blk;
	uint64_t seq;
};

struct worker {
	uint32_t id; /* 1.. */
	lfpt_rng_t rng;
	struct lfpt_ring *in, *out;
	struct held *held;
	uint64_t nheld;
	uint64_t seq, allocs, frees, sent, received, empties;
	lfp_atomic_u32 done; /* handoff: F1 release store when it will send no more */
	struct worker *upstream;
};

static lfp_pool_t *pool;
static lfp_atomic_u32 finished; /* mixed: threads done sending (F3/F4) */
static lfpt_owners_t owners;
static lfpt_barrier_t start_line;
static size_t blk_bytes;

static void usage(const char *msg)
{
	fprintf(stderr,
		"conc_cache: %s\nusage: conc_cache [--mode mixed|handoff|exit] [--threads N] [--ops M]\n"
		"  [--blocks B] [--hold K] [--block-size S] [--align A] [--size k] [--slots S]\n"
		"  [--depot D] [--rounds R] [--checked] [--stats] [--bulk] [--seed X] [--timeout s]\n",
		msg);
	exit(LFPT_EXIT_USAGE);
}

static uint64_t num(const char *flag, const char *v)
{
	uint64_t x;
	if (!lfpt_parse_u64(v, &x))
		usage(flag);
	return x;
}

static void parse(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes = true;
		if (!strcmp(a, "--mode")) {
			if (v && !strcmp(v, "mixed")) o.mode = MIXED;
			else if (v && !strcmp(v, "handoff")) o.mode = HANDOFF;
			else if (v && !strcmp(v, "exit")) o.mode = EXIT;
			else usage("--mode: mixed, handoff or exit");
		} else if (!strcmp(a, "--threads")) o.threads = (unsigned)num(a, v);
		else if (!strcmp(a, "--ops")) o.ops = num(a, v);
		else if (!strcmp(a, "--blocks")) o.blocks = num(a, v);
		else if (!strcmp(a, "--hold")) o.hold = num(a, v);
		else if (!strcmp(a, "--block-size")) o.block_size = num(a, v);
		else if (!strcmp(a, "--align")) o.align = num(a, v);
		else if (!strcmp(a, "--size")) o.cache_size = num(a, v);
		else if (!strcmp(a, "--slots")) o.slots = num(a, v);
		else if (!strcmp(a, "--depot")) o.depot = num(a, v);
		else if (!strcmp(a, "--rounds")) o.rounds = (unsigned)num(a, v);
		else if (!strcmp(a, "--timeout")) o.timeout = (unsigned)num(a, v);
		else if (!strcmp(a, "--seed")) { if (!v) usage(a); o.seed_arg = v; }
		else {
			takes = false;
			if (!strcmp(a, "--checked")) o.checked = true;
			else if (!strcmp(a, "--stats")) o.stats = true;
			else if (!strcmp(a, "--bulk")) o.bulk = true;
			else usage(a);
		}
		if (takes) {
			if (v == NULL)
				usage(a);
			i++;
		}
	}
	if (o.threads < 1 || o.threads > 256 || o.blocks < 1 || o.hold < 1 || o.rounds < 1 ||
	    o.block_size < LFPT_STAMP_MIN)
		usage("bad numbers (threads 1..256, block-size >= 16)");
	if (o.mode == HANDOFF && o.threads < 2)
		usage("handoff needs >= 2 threads");
}

/* ---- the checked steps ----------------------------------------------------- */

static void got_block(struct worker *w, void *blk)
{
	LFPT_CHECK(lfp_pool_contains(pool, blk), "block %p outside the pool", blk);
	int64_t idx = lfp_pool_index(pool, blk);
	lfpt_owners_move(&owners, idx, 0, w->id);
	w->seq++;
	lfpt_stamp_claim(blk, blk_bytes, w->id, w->seq);
	w->allocs++;
}

/* Give back one block we hold: stamp and table first (the next owner may
 * claim it the moment it is free). */
static void release_prep(struct worker *w, struct held h)
{
	lfpt_stamp_release(h.blk, blk_bytes, w->id, h.seq);
	lfpt_owners_move(&owners, lfp_pool_index(pool, h.blk), w->id, 0);
	w->frees++;
}

static void free_one(struct worker *w, lfp_cache_t *c, struct held h, uint64_t how)
{
	release_prep(w, h);
	int rc = (how & 1) && c ? lfp_cache_free(c, h.blk) : lfp_pool_free(pool, h.blk);
	LFPT_CHECK(rc == 0, "free of %p: %d", h.blk, rc);
}

static void receive(struct worker *w, unsigned max)
{
	struct lfpt_msg m;
	for (unsigned k = 0; k < max && w->nheld < o.hold * 2 && lfpt_ring_pop(w->in, &m); k++) {
		w->seq++;
		if (lfpt_stamp_handoff(m.blk, blk_bytes, m.owner, m.seq, w->id, w->seq))
			lfpt_owners_move(&owners, lfp_pool_index(pool, m.blk), m.owner, w->id);
		w->held[w->nheld++] = (struct held){ m.blk, w->seq };
		w->received++;
	}
}

static void alloc_some(struct worker *w, lfp_cache_t *c, uint64_t r)
{
	if (o.bulk && (r & 4)) {
		void *b[8];
		uint64_t want = 1 + (r >> 8) % 8;
		if (want > o.hold - w->nheld)
			want = o.hold - w->nheld;
		errno = 0;
		int64_t got = lfp_pool_alloc_bulk(pool, b, want);
		LFPT_CHECK(got >= 0 && (uint64_t)got <= want, "alloc_bulk gave %lld", (long long)got);
		if (got < (int64_t)want)
			LFPT_CHECK(errno == ENOMEM, "short alloc_bulk with errno %d", errno);
		for (int64_t j = 0; j < got; j++) {
			got_block(w, b[j]);
			w->held[w->nheld++] = (struct held){ b[j], w->seq };
		}
		if (got == 0) {
			w->empties++;
			sched_yield();
		}
		return;
	}
	errno = 0;
	void *blk = (r & 2) && c ? lfp_cache_alloc(c) : lfp_pool_alloc(pool);
	if (blk == NULL) {
		int e = errno;
		LFPT_CHECK(e == ENOMEM, "alloc failed with errno %d (%s)", e, strerror(e));
		w->empties++;
		sched_yield(); /* the blocks are held by threads that are not running */
		return;
	}
	got_block(w, blk);
	w->held[w->nheld++] = (struct held){ blk, w->seq };
}

static void free_some(struct worker *w, lfp_cache_t *c, uint64_t r)
{
	if (o.bulk && (r & 8) && w->nheld >= 2) {
		void *b[8];
		uint64_t n = 1 + (r >> 16) % 8;
		if (n > w->nheld)
			n = w->nheld;
		for (uint64_t j = 0; j < n; j++) {
			struct held h = w->held[--w->nheld];
			release_prep(w, h);
			b[j] = h.blk;
		}
		int rc = lfp_pool_free_bulk(pool, b, n);
		LFPT_CHECK(rc == 0, "free_bulk of %llu: %d", (unsigned long long)n, rc);
		return;
	}
	uint64_t k = (r >> 8) % w->nheld;
	struct held h = w->held[k];
	w->held[k] = w->held[--w->nheld];
	free_one(w, c, h, r >> 4);
}

static void *run_mixed(void *arg)
{
	struct worker *w = arg;
	const uint64_t max_attempts = o.ops * 64 + 4096;
	uint64_t ops = 0;

	lfpt_barrier_wait(&start_line);
	lfp_cache_t *c = lfp_pool_cache(pool);
	LFPT_CHECK(c != NULL, "lfp_pool_cache: %s", strerror(errno));
	for (uint64_t attempt = 0; ops < o.ops && attempt < max_attempts; attempt++) {
		if ((attempt & 1023) == 0) {
			lfpt_progress(1024);
			if (lfpt_should_stop())
				break;
		}
		receive(w, 4);
		uint64_t r = lfpt_rng_next(&w->rng);
		if (w->nheld == 0 || (w->nheld < o.hold && (r & 1))) {
			alloc_some(w, c, r);
			ops++;
			continue;
		}
		ops++;
		if (((r >> 24) & 7) == 0) {
			uint64_t k = (r >> 8) % w->nheld;
			struct held h = w->held[k];
			if (lfpt_stamp_check(h.blk, blk_bytes, w->id, h.seq, "send") &&
			    lfpt_ring_push(w->out, &(struct lfpt_msg){ h.blk, w->id, h.seq })) {
				w->held[k] = w->held[--w->nheld];
				w->sent++;
				continue;
			}
			/* Ring full: the receiver is not running (more threads
			 * than cores); let it run rather than spin. */
			sched_yield();
		}
		free_some(w, c, r);
		if (((r >> 32) & 511) == 0)
			LFPT_CHECK(lfp_pool_cache_flush(pool) == 0, "flush");
	}
	while (w->nheld > 0)
		free_one(w, c, w->held[--w->nheld], 0);
	/* Keep taking what the upstream thread sends until every thread is
	 * done sending, so its pushes do not find a dead end. F3: release,
	 * after our last send; pairs with F4. */
	lfp_fetch_add32_release(&finished, 1);
	for (;;) {
		/* F4: acquire, pairs with F3: all sends are visible below. */
		bool all = lfp_load32_acquire(&finished) == o.threads;
		receive(w, UINT32_MAX);
		while (w->nheld > 0)
			free_one(w, c, w->held[--w->nheld], 0);
		if (all || lfpt_should_stop())
			break;
		sched_yield();
	}
	return NULL;
}

static void take_received(struct worker *w, lfp_cache_t *c, const struct lfpt_msg *m, unsigned k)
{
	if (lfpt_stamp_check(m->blk, blk_bytes, m->owner, m->seq, "receive")) {
		lfpt_stamp_release(m->blk, blk_bytes, m->owner, m->seq);
		lfpt_owners_move(&owners, lfp_pool_index(pool, m->blk), m->owner, 0);
	}
	w->received++;
	w->frees++;
	int rc = (k & 1) ? lfp_cache_free(c, m->blk) : lfp_pool_free(pool, m->blk);
	LFPT_CHECK(rc == 0, "free of a received block: %d", rc);
}

static void *run_handoff(void *arg)
{
	struct worker *w = arg;
	uint64_t produced = 0, spins = 0;
	struct lfpt_msg m;

	lfpt_barrier_wait(&start_line);
	lfp_cache_t *c = lfp_pool_cache(pool);
	LFPT_CHECK(c != NULL, "lfp_pool_cache: %s", strerror(errno));
	for (;;) {
		if ((++spins & 1023) == 0) {
			lfpt_progress(1024);
			if (lfpt_should_stop())
				break;
		}
		bool progress = false;
		if (produced < o.ops && lfpt_ring_has_room(w->out)) {
			errno = 0;
			void *blk = (spins & 1) ? lfp_cache_alloc(c) : lfp_pool_alloc(pool);
			if (blk != NULL) {
				got_block(w, blk);
				if (lfpt_ring_push(w->out, &(struct lfpt_msg){ blk, w->id, w->seq })) {
					produced++;
					w->sent++;
				} else {
					free_one(w, c, (struct held){ blk, w->seq }, spins);
				}
				progress = true;
			} else {
				LFPT_CHECK(errno == ENOMEM, "alloc: errno %d", errno);
				w->empties++;
			}
			if (produced == o.ops)
				lfp_store32_release(&w->done, 1); /* F1: after the last push; pairs with F2 */
		}
		for (unsigned k = 0; k < 8 && lfpt_ring_pop(w->in, &m); k++) {
			take_received(w, c, &m, k);
			progress = true;
		}
		/* F2: acquire, pairs with F1: once upstream is done, its last
		 * push is visible, so draining the ring now gets everything. */
		if (produced >= o.ops && lfp_load32_acquire(&w->upstream->done)) {
			for (unsigned k = 0; lfpt_ring_pop(w->in, &m); k++)
				take_received(w, c, &m, k);
			break;
		}
		if (!progress)
			sched_yield();
	}
	return NULL;
}

static void *run_exit(void *arg)
{
	return run_mixed(arg);
}

/* ---- main -------------------------------------------------------------------- */

static void drain_rings(struct worker *ws, uint32_t me)
{
	struct lfpt_msg m;
	for (unsigned t = 0; t < o.threads; t++)
		while (lfpt_ring_pop(ws[t].out, &m)) {
			if (lfpt_stamp_check(m.blk, blk_bytes, m.owner, m.seq, "drain")) {
				lfpt_stamp_release(m.blk, blk_bytes, m.owner, m.seq);
				lfpt_owners_move(&owners, lfp_pool_index(pool, m.blk), m.owner, 0);
			}
			ws[t].frees++; /* counted as the sender's */
			LFPT_CHECK(lfp_pool_free(pool, m.blk) == 0, "drain free");
		}
	(void)me;
}

static void final_checks(const char *when)
{
	lfp_pool_report_t rep;
	int rc = lfp_pool_validate(pool, &rep);
	LFPT_CHECK(rc == 0 && rep.free == o.blocks,
		   "%s: validate %d (%s; free %llu cached %llu allocated %llu)", when, rc,
		   rep.error ? rep.error : "-", (unsigned long long)rep.free,
		   (unsigned long long)rep.cached, (unsigned long long)rep.allocated);
	size_t fc = lfp_pool_free_count(pool);
	LFPT_CHECK(fc == o.blocks, "%s: free_count %zu != %llu", when, fc,
		   (unsigned long long)o.blocks);
	LFPT_CHECK(lfpt_owners_held(&owners) == 0, "%s: %llu blocks still held in the table", when,
		   (unsigned long long)lfpt_owners_held(&owners));
	lfp_pool_stats_t st;
	lfp_pool_stats(pool, &st);
	LFPT_CHECK(st.free == o.blocks && st.cached <= o.blocks, "%s: stats free %llu cached %llu",
		   when, (unsigned long long)st.free, (unsigned long long)st.cached);
	if (o.stats)
		LFPT_CHECK(st.allocs == st.frees && st.in_use == 0,
			   "%s: counters allocs %llu frees %llu in_use %llu", when,
			   (unsigned long long)st.allocs, (unsigned long long)st.frees,
			   (unsigned long long)st.in_use);
}

/* Main takes every block once (all distinct, by the owner table), finds the
 * pool empty, and gives them all back. */
static void sequential_pass(void)
{
	const uint32_t me = 0xFFFF;
	void **all = calloc(o.blocks, sizeof *all);
	uint64_t got = 0;
	if (all == NULL)
		exit(LFPT_EXIT_USAGE);
	while (got < o.blocks) {
		void *blk = lfp_pool_alloc(pool);
		if (!LFPT_CHECK(blk != NULL, "quiescent pool gave only %llu of %llu blocks (errno %d)",
				(unsigned long long)got, (unsigned long long)o.blocks, errno))
			break;
		if (!lfpt_owners_move(&owners, lfp_pool_index(pool, blk), 0, me))
			break;
		all[got++] = blk;
	}
	if (got == o.blocks) {
		errno = 0;
		void *extra = lfp_pool_alloc(pool);
		LFPT_CHECK(extra == NULL && errno == ENOMEM, "a block beyond capacity (%p, errno %d)",
			   extra, errno);
	}
	for (uint64_t i = 0; i < got; i++) {
		lfpt_owners_move(&owners, lfp_pool_index(pool, all[i]), me, 0);
		LFPT_CHECK(lfp_pool_free(pool, all[i]) == 0, "sequential free");
	}
	free(all);
}

int main(int argc, char **argv)
{
	parse(argc, argv);
	uint64_t seed = lfpt_seed_pick("conc_cache", o.seed_arg);
	lfpt_watchdog_start(o.timeout);

	lfp_pool_config_t cfg = {
		.block_size = o.block_size,
		.block_count = o.blocks,
		.block_align = o.align,
		.flags = (o.checked ? LFP_POOL_CHECKED : 0u) | (o.stats ? LFP_POOL_STATS : 0u),
		.cache_size = o.cache_size,
		.cache_slots = o.slots,
		.cache_depot = o.depot,
	};
	pool = lfp_pool_create(&cfg);
	if (pool == NULL) {
		fprintf(stderr, "conc_cache: lfp_pool_create: %s\n", strerror(errno));
		return LFPT_EXIT_USAGE;
	}
	blk_bytes = lfp_pool_block_size(pool);
	lfpt_owners_init(&owners, o.blocks);

	uint64_t allocs = 0, frees = 0, sent = 0, received = 0, empties = 0;
	for (unsigned round = 0; round < o.rounds && !lfpt_should_stop(); round++) {
		struct worker *ws = calloc(o.threads, sizeof *ws);
		struct lfpt_ring *rings = aligned_alloc(LFP_CACHE_LINE, sizeof *rings * o.threads);
		if (ws == NULL || rings == NULL)
			return LFPT_EXIT_USAGE;
		memset(rings, 0, sizeof *rings * o.threads);
		for (unsigned t = 0; t < o.threads; t++) {
			ws[t].id = t + 1 + round * o.threads;
			lfpt_rng_init(&ws[t].rng, seed, ws[t].id);
			ws[t].out = &rings[t];
			ws[t].in = &rings[(t + o.threads - 1) % o.threads];
			ws[t].upstream = &ws[(t + o.threads - 1) % o.threads];
			ws[t].held = calloc(o.hold * 2 + 16, sizeof *ws[t].held);
			lfp_init32(&ws[t].done, 0);
			lfp_init32(&rings[t].head, 0);
			lfp_init32(&rings[t].tail, 0);
		}
		lfpt_barrier_init(&start_line, o.threads);
		lfp_store32_relaxed(&finished, 0); /* relaxed: before the threads start */
		void *(*fn)(void *) = o.mode == HANDOFF ? run_handoff : o.mode == EXIT ? run_exit : run_mixed;
		uint64_t saved_ops = o.ops;
		if (o.mode == EXIT)
			o.ops = o.ops / o.rounds + 1;
		lfpt_threads_run(o.threads, fn, ws, sizeof *ws);
		o.ops = saved_ops;
		lfpt_barrier_destroy(&start_line);
		drain_rings(ws, 0);
		for (unsigned t = 0; t < o.threads; t++) {
			allocs += ws[t].allocs;
			frees += ws[t].frees;
			sent += ws[t].sent;
			received += ws[t].received;
			empties += ws[t].empties;
			free(ws[t].held);
		}
		free(ws);
		free(rings);
		char when[32];
		snprintf(when, sizeof when, "round %u", round);
		LFPT_CHECK(allocs == frees, "%s: allocs %llu != frees %llu", when,
			   (unsigned long long)allocs, (unsigned long long)frees);
		final_checks(when);
		sequential_pass();
		final_checks(when);
	}
	lfpt_watchdog_stop();
	lfp_pool_stats_t st;
	lfp_pool_stats(pool, &st);
	printf("conc_cache: mode %s threads %u ops %llu blocks %llu: allocs %llu frees %llu sent %llu "
	       "received %llu empty %llu cached-at-end %llu violations %llu\n",
	       o.mode == MIXED ? "mixed" : o.mode == HANDOFF ? "handoff" : "exit", o.threads,
	       (unsigned long long)o.ops, (unsigned long long)o.blocks, (unsigned long long)allocs,
	       (unsigned long long)frees, (unsigned long long)sent, (unsigned long long)received,
	       (unsigned long long)empties, (unsigned long long)st.cached,
	       (unsigned long long)lfpt_violations());
	lfpt_owners_destroy(&owners);
	lfp_pool_destroy(pool);
	return lfpt_exit_status();
}
