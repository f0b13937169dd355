/*
 * tests/conc_frontend.c - multithreaded mixed-size stress of the front end
 * (plain program: Criterion aborts under ThreadSanitizer).
 *
 * N worker threads allocate blocks of mixed sizes from one lfp_heap_t (class
 * pools, the fallback heap, now and then a huge mapping), stamp each with
 * its owner and sequence number (tests/lfp_test.h: a LIVE canary at the
 * start, a derived word at the end), and free them either themselves or by
 * handing them to the next thread through a small mailbox (cross-thread
 * free: the receiver checks the stamp and frees). Some blocks go through
 * realloc, which must keep the stamp. A trimmer thread calls lfp_heap_trim
 * all along, so pools are retired and regrown under the workers' feet: the
 * RCU directory and pool arrays are exercised while readers run.
 *
 * Checks: no block is handed out twice (a LIVE stamp at allocation), no
 * stamp is overwritten while owned (overlap), every free returns 0, every
 * block reports a usable size >= the size asked; after the join: the front
 * end validates, and after freeing the mailboxes and one last trim every
 * pool is retired, no huge mapping is left and the fallback heap holds no
 * block (conservation: everything allocated was freed exactly once).
 *
 * --bursts: every 16 operations a thread also allocates 65-199 blocks of
 * one 16-byte class and frees them all, shuffled, so its thread cache
 * fills and spills whole stacks (into the class depot, with --depot) while
 * the other threads do the same on the same class: the stamps catch a block
 * handed out twice (a depot pop without its ABA tag does that).
 *
 * --owned: the heap in owned mode, explicitly (LFP_HEAP_OWNED; the default
 * without --bins, --depot or --checked): threads own class pools; the
 * hand-offs are the remote frees, and the stamps catch a block that an
 * owner and a remote freer both put on a list.
 *
 * --bins: per-thread bins over shared pools (LFP_HEAP_BINS) instead.
 *
 * --preempt US --stall N: stall each worker at a random point every US
 * microseconds (lfp_test.h), which makes the ABA window of a depot pop
 * common: the negative control (mk/frontend.mk) cuts the depot's tag to one
 * bit and must be caught.
 *
 * Usage: conc_frontend [--threads N] [--ops N] [--checked] [--small-pools] [--depot] [--owned]
 *                      [--bins] [--bursts]
 *                      [--preempt US] [--stall N]
 *                      [--seed S] [--timeout SEC]
 * Exit: 0 pass, 1 violation, 2 usage, 3 watchdog.
 */
#include <lfpool.h>

#include "lfp_test.h"

#define MAX_THREADS 64
#define HOLD 48       /* blocks a thread keeps at most */
#define MAILBOX 32    /* blocks in flight to the next thread */
#define BURST 199     /* --bursts: most blocks a burst allocates at once */

struct item {
	unsigned char *p;
	size_t n;
	uint32_t owner;
	uint64_t seq;
};

struct mailbox {
	pthread_mutex_t mu; /* guards items/count: the hand-off's ordering */
	struct item items[MAILBOX];
	unsigned count;
};

struct worker {
	unsigned id; /* owner id, >= 1 */
	unsigned nthreads;
	uint64_t ops;
	lfp_heap_t *h;
	struct mailbox *boxes;
	lfpt_barrier_t *start;
	uint64_t seed;
	bool bursts;
	unsigned preempt; /* us between injected stalls; 0: none */
	uint64_t allocs, frees, handoffs, huge;
};

static lfp_atomic_u32 trim_stop; /* relaxed: a stop hint for the trimmer */

static size_t pick_size(lfpt_rng_t *r, uint64_t *huge)
{
	uint64_t k = lfpt_rng_below(r, 1000);
	if (k < 700)
		return LFPT_STAMP_MIN + 8 + lfpt_rng_below(r, 240);
	if (k < 950)
		return 256 + lfpt_rng_below(r, 16000);
	if (k < 998)
		return 16385 + lfpt_rng_below(r, 200000);
	(*huge)++;
	return ((size_t)256 << 10) + lfpt_rng_below(r, (size_t)512 << 10);
}

static bool check_usable(struct worker *w, const struct item *it)
{
	return LFPT_CHECK(lfp_heap_usable_size(w->h, it->p) >= it->n,
			  "usable size of %p below %zu", (void *)it->p, it->n);
}

static void release(struct worker *w, struct item *it)
{
	lfpt_stamp_release(it->p, it->n, it->owner, it->seq);
	int rc = lfp_heap_free(w->h, it->p);
	LFPT_CHECK(rc == 0, "free(%p) = %d", (void *)it->p, rc);
	w->frees++;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	lfpt_rng_t r;
	lfpt_rng_init(&r, w->seed, w->id);
	struct item held[HOLD];
	unsigned nheld = 0;
	uint64_t seq = 0;
	struct mailbox *mine = &w->boxes[w->id - 1];
	struct mailbox *next = &w->boxes[w->id % w->nthreads];
	timer_t timer;
	if (w->preempt)
		lfpt_preempt_start(&timer, w->preempt, w->seed ^ w->id);
	lfpt_barrier_wait(w->start);
	for (uint64_t op = 0; op < w->ops && !lfpt_should_stop(); op++) {
		if ((op & 1023) == 0)
			lfpt_progress(1024);
		/* Free what the previous thread handed over. */
		if ((op & 7) == 0) {
			struct item got[MAILBOX];
			unsigned ng;
			pthread_mutex_lock(&mine->mu);
			ng = mine->count;
			memcpy(got, mine->items, ng * sizeof *got);
			mine->count = 0;
			pthread_mutex_unlock(&mine->mu);
			for (unsigned i = 0; i < ng; i++) {
				lfpt_stamp_handoff(got[i].p, got[i].n, got[i].owner, got[i].seq, w->id, ++seq);
				got[i].owner = w->id;
				got[i].seq = seq;
				release(w, &got[i]);
			}
		}
		if (w->bursts && (op & 15) == 8) {
			struct item b[BURST];
			const size_t n = LFPT_STAMP_MIN;
			unsigned nb = 0, want = 65 + (unsigned)lfpt_rng_below(&r, BURST - 64);
			for (; nb < want; nb++) {
				b[nb] = (struct item){ .n = n, .owner = w->id, .seq = ++seq };
				b[nb].p = lfp_heap_malloc(w->h, n);
				if (!LFPT_CHECK(b[nb].p != NULL, "burst alloc %zu: %s", n, strerror(errno)))
					break;
				w->allocs++;
				lfpt_stamp_claim(b[nb].p, n, w->id, b[nb].seq);
			}
			while (nb > 0) { /* in a shuffled order */
				unsigned k = (unsigned)lfpt_rng_below(&r, nb);
				struct item it = b[k];
				b[k] = b[--nb];
				release(w, &it);
			}
		}
		unsigned what = (unsigned)lfpt_rng_below(&r, 8);
		if (nheld < HOLD && (nheld == 0 || what < 4)) {
			struct item it = { .n = pick_size(&r, &w->huge), .owner = w->id, .seq = ++seq };
			it.p = what == 0 ? lfp_heap_calloc(w->h, 1, it.n) : lfp_heap_malloc(w->h, it.n);
			if (!LFPT_CHECK(it.p != NULL, "alloc %zu: %s", it.n, strerror(errno)))
				break;
			w->allocs++;
			lfpt_stamp_claim(it.p, it.n, it.owner, it.seq);
			check_usable(w, &it);
			held[nheld++] = it;
			continue;
		}
		unsigned k = (unsigned)lfpt_rng_below(&r, nheld);
		struct item it = held[k];
		held[k] = held[--nheld];
		if (what == 4) {
			/* The block may move: stamp it FREE first (the old copy is
			 * freed by realloc), check that the copy kept the stamp,
			 * then claim the result like a fresh allocation. */
			lfpt_stamp_release(it.p, it.n, it.owner, it.seq);
			size_t n = pick_size(&r, &w->huge);
			unsigned char *q = lfp_heap_realloc(w->h, it.p, n);
			if (!LFPT_CHECK(q != NULL, "realloc %zu -> %zu: %s", it.n, n, strerror(errno)))
				break;
			lfpt_stamp_t st = lfpt_stamp_read(q);
			LFPT_CHECK(st.canary == LFPT_CANARY_FREE && st.owner == it.owner && st.seq == it.seq,
				   "realloc lost the stamp of %p", (void *)q);
			it.p = q;
			it.n = n;
			it.seq = ++seq;
			lfpt_stamp_claim(q, n, it.owner, it.seq);
			check_usable(w, &it);
			held[nheld++] = it;
		} else if (what == 5 && w->nthreads > 1) {
			lfpt_stamp_check(it.p, it.n, it.owner, it.seq, "send");
			pthread_mutex_lock(&next->mu);
			bool sent = next->count < MAILBOX;
			if (sent)
				next->items[next->count++] = it;
			pthread_mutex_unlock(&next->mu);
			if (sent)
				w->handoffs++;
			else
				release(w, &it);
		} else {
			release(w, &it);
		}
	}
	if (w->preempt)
		timer_delete(timer);
	for (unsigned i = 0; i < nheld; i++)
		release(w, &held[i]);
	return NULL;
}

struct trimmer {
	lfp_heap_t *h;
	uint64_t trims, retired;
};

static void *trimmer_main(void *arg)
{
	struct trimmer *t = arg;
	/* relaxed: a stop hint; the join orders the counters */
	while (!lfp_load32_relaxed(&trim_stop) && !lfpt_should_stop()) {
		int n = lfp_heap_trim(t->h);
		LFPT_CHECK(n >= 0, "trim: %d", n);
		t->trims++;
		t->retired += n > 0 ? (uint64_t)n : 0;
		/* pacing only (not synchronization): let the workers refill */
		struct timespec ts = { 0, 2 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned nthreads = 4;
	uint64_t ops = 100000, timeout = 120;
	const char *seed_arg = NULL;
	bool checked = false, small_pools = false, depot = false, bursts = false, owned = false, bins = false;
	uint64_t preempt = 0, stall = 100, rounds = 1;
	for (int i = 1; i < argc; i++) {
		uint64_t v;
		if (!strcmp(argv[i], "--threads") && i + 1 < argc && lfpt_parse_u64(argv[i + 1], &v)) {
			nthreads = (unsigned)v;
			i++;
		} else if (!strcmp(argv[i], "--ops") && i + 1 < argc && lfpt_parse_u64(argv[i + 1], &ops)) {
			i++;
		} else if (!strcmp(argv[i], "--timeout") && i + 1 < argc &&
			   lfpt_parse_u64(argv[i + 1], &timeout)) {
			i++;
		} else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			seed_arg = argv[++i];
		} else if (!strcmp(argv[i], "--checked")) {
			checked = true;
		} else if (!strcmp(argv[i], "--small-pools")) {
			small_pools = true;
		} else if (!strcmp(argv[i], "--depot")) {
			depot = true;
		} else if (!strcmp(argv[i], "--owned")) {
			owned = true;
		} else if (!strcmp(argv[i], "--bins")) {
			bins = true;
		} else if (!strcmp(argv[i], "--bursts")) {
			bursts = true;
		} else if (!strcmp(argv[i], "--preempt") && i + 1 < argc && lfpt_parse_u64(argv[i + 1], &preempt)) {
			i++;
		} else if (!strcmp(argv[i], "--stall") && i + 1 < argc && lfpt_parse_u64(argv[i + 1], &stall)) {
			i++;
		} else if (!strcmp(argv[i], "--rounds") && i + 1 < argc && lfpt_parse_u64(argv[i + 1], &rounds) &&
			   rounds >= 1) {
			i++;
		} else {
			fprintf(stderr, "usage: %s [--threads N] [--ops N] [--checked] [--small-pools] [--depot] [--owned] [--bins] [--bursts] [--preempt US] [--stall N] "
					"[--rounds R] [--seed S] [--timeout SEC]\n", argv[0]);
			return LFPT_EXIT_USAGE;
		}
	}
	if (nthreads < 1 || nthreads > MAX_THREADS) {
		fprintf(stderr, "--threads must be 1..%d\n", MAX_THREADS);
		return LFPT_EXIT_USAGE;
	}
	uint64_t seed = lfpt_seed_pick(argv[0], seed_arg);
	lfpt_watchdog_start((unsigned)timeout);
	if (preempt != 0 && lfpt_preempt_install((unsigned)stall) != 0) {
		fprintf(stderr, "sigaction: %s\n", strerror(errno));
		return LFPT_EXIT_USAGE;
	}

	lfp_heap_config_t hc = { .flags = (checked ? LFP_HEAP_CHECKED : 0u) | (depot ? LFP_HEAP_DEPOT : 0u) |
					  (owned ? LFP_HEAP_OWNED : 0u) | (bins ? LFP_HEAP_BINS : 0u) };
	if (small_pools) {
		/* Many small pools: growth and retirement all the time. */
		hc.pool_min_bytes = 256;
		hc.pool_max_bytes = 4096;
	}
	lfp_heap_t *h = lfp_heap_create(&hc);
	if (h == NULL) {
		fprintf(stderr, "lfp_heap_create: %s\n", strerror(errno));
		return LFPT_EXIT_USAGE;
	}
	struct mailbox boxes[MAX_THREADS];
	struct worker w[MAX_THREADS];
	lfpt_barrier_t start;
	lfpt_barrier_init(&start, nthreads);
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_mutex_init(&boxes[i].mu, NULL);
		boxes[i].count = 0;
		w[i] = (struct worker){ .id = i + 1, .nthreads = nthreads, .ops = ops, .h = h,
					.boxes = boxes, .start = &start, .seed = seed, .bursts = bursts,
					.preempt = (unsigned)preempt };
	}
	struct trimmer tr = { .h = h };
	/* --rounds R: R generations of threads, ops/R each; a thread's state
	 * and cache table go back at its exit and serve the next generation,
	 * which also frees what the last one left in the mailboxes. Between
	 * rounds the heap is quiescent (workers joined, trimmer stopped) and
	 * must validate. */
	for (uint64_t round = 0; round < rounds; round++) {
		if (round > 0) {
			const char *rwhy = NULL;
			LFPT_CHECK(lfp_heap_validate(h, &rwhy) == 0, "validate after round %" PRIu64 ": %s",
				   round, rwhy ? rwhy : "?");
			lfpt_barrier_destroy(&start);
			lfpt_barrier_init(&start, nthreads);
		}
		for (unsigned i = 0; i < nthreads; i++) {
			w[i].ops = ops / rounds;
			w[i].seed = seed + round;
		}
		lfp_store32_relaxed(&trim_stop, 0); /* relaxed: the create below orders */
		pthread_t tt;
		if (pthread_create(&tt, NULL, trimmer_main, &tr) != 0) {
			fprintf(stderr, "pthread_create\n");
			return LFPT_EXIT_USAGE;
		}
		lfpt_threads_run(nthreads, worker_main, w, sizeof w[0]);
		lfp_store32_relaxed(&trim_stop, 1); /* relaxed: a hint; the join below orders */
		pthread_join(tt, NULL);
	}

	/* What is still in the mailboxes goes back now. */
	uint64_t allocs = 0, frees = 0, handoffs = 0, huge = 0;
	for (unsigned i = 0; i < nthreads; i++) {
		for (unsigned k = 0; k < boxes[i].count; k++) {
			struct item *it = &boxes[i].items[k];
			lfpt_stamp_release(it->p, it->n, it->owner, it->seq);
			LFPT_CHECK(lfp_heap_free(h, it->p) == 0, "late free");
			frees++;
		}
		allocs += w[i].allocs;
		frees += w[i].frees;
		handoffs += w[i].handoffs;
		huge += w[i].huge;
	}
	LFPT_CHECK(allocs == frees, "allocated %" PRIu64 ", freed %" PRIu64, allocs, frees);
	const char *why = NULL;
	LFPT_CHECK(lfp_heap_validate(h, &why) == 0, "validate after join: %s", why ? why : "?");
	/* Every thread has exited, so their caches are drained: every pool is
	 * completely free and the last trim must retire them all. */
	(void)lfp_heap_trim(h);
	lfp_heap_stats_t st;
	lfp_heap_stats(h, &st);
	LFPT_CHECK(st.pools == 0, "%" PRIu64 " pools left after the last trim", st.pools);
	LFPT_CHECK(st.huge_live == 0, "%" PRIu64 " huge mappings left", st.huge_live);
	LFPT_CHECK(st.fallback.alloc_blocks == 0, "%" PRIu64 " fallback blocks left",
		   st.fallback.alloc_blocks);
	LFPT_CHECK(st.bad_frees == 0, "%" PRIu64 " frees refused", st.bad_frees);
	LFPT_CHECK(st.depot_blocks == 0, "%" PRIu64 " blocks still in the depots", st.depot_blocks);
	LFPT_CHECK(lfp_heap_validate(h, &why) == 0, "validate after the last trim: %s", why ? why : "?");
	LFPT_CHECK(lfp_heap_destroy(h) == 0, "destroy");
	lfpt_watchdog_stop();
	printf("conc_frontend: %u threads, %" PRIu64 " allocs, %" PRIu64 " hand-offs, %" PRIu64
	       " huge, %" PRIu64 " trims retired %" PRIu64 " pools (%" PRIu64 " added): %s\n",
	       nthreads, allocs, handoffs, huge, tr.trims, tr.retired, st.pools_added,
	       lfpt_violations() ? "FAIL" : "ok");
	return lfpt_violations() ? LFPT_EXIT_FAIL : LFPT_EXIT_PASS;
}
