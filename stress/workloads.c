/*
 * stress/workloads.c - the workloads, the allocators behind them, and the
 * checks that make every run a verification run.
 *
 * A worker thread runs the run's phases in order. For each phase it waits for
 * main to start the phase's generation (G2), runs the workload until main
 * stops it (or until --ops pairs are done), gives back every block it still
 * holds, flushes its cache, and reports done (D1). Main then checks the now
 * quiescent pools (st_check_quiescent) before it starts the next phase.
 *
 * Block verification (see stress.h): stamp = owner << 48 | sequence in the
 * first word, canary(stamp) in the last aligned word (blocks >= 16 bytes).
 * take() checks a fresh block carries no live owner's stamp+canary and
 * stamps it;
 * give() checks stamp and canary, marks a pool block FREE, frees it and
 * checks the return code. Stamps are relaxed atomic accesses: in a correct
 * run a block has one owner at a time (ordered by the allocator or by the
 * hand-off), and atomics keep the compiler from folding the check of a
 * stamp this thread just wrote, so the check really reads memory.
 *
 * Invariant per pool, quiescent: sum over threads (allocs - frees) = 0 and
 * free count = capacity; lfp_pool_validate() agrees.
 */
#include "stress.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FREE_MARK UINT64_C(0xF4EEF4EEF4EEF4EE)
#define CANARY_KEY UINT64_C(0xC0FFEE5A11CA7ED5)
#define MAX_REPORTED 20

static uint64_t canary_of(uint64_t stamp)
{
	return (stamp * UINT64_C(0x9E3779B97F4A7C15)) ^ CANARY_KEY;
}

/* ---- the allocators ------------------------------------------------------ */

static inline void *be_alloc(struct st_thread *t, int pool, size_t size)
{
	struct st_run *r = t->run;
	switch (r->backend) {
	case BE_POOL:
		return lfp_pool_alloc(r->pools[pool].pool);
	case BE_CACHED:
#ifdef ST_HAVE_CACHE
		return pool < ST_MAX_CACHES && t->cache[pool] ? lfp_cache_alloc(t->cache[pool])
								 : lfp_pool_alloc(r->pools[pool].pool);
#else
		return NULL;
#endif
#ifdef ST_HAVE_SHM
	case BE_SHM:
		return lfp_shm_alloc(r->shm);
#endif
	default:
		return malloc(size);
	}
}

static inline int be_free(struct st_thread *t, int pool, void *p)
{
	struct st_run *r = t->run;
	switch (r->backend) {
	case BE_POOL:
		return lfp_pool_free(r->pools[pool].pool, p);
	case BE_CACHED:
#ifdef ST_HAVE_CACHE
		return pool < ST_MAX_CACHES && t->cache[pool] ? lfp_cache_free(t->cache[pool], p)
								 : lfp_pool_free(r->pools[pool].pool, p);
#else
		return -ENOSYS;
#endif
#ifdef ST_HAVE_SHM
	case BE_SHM:
		return lfp_shm_free(r->shm, p);
#endif
	default:
		free(p);
		return 0;
	}
}

static void be_thread_done(struct st_thread *t)
{
#ifdef ST_HAVE_SHM
	if (t->run->backend == BE_SHM) {
		int n = lfp_shm_cache_flush(t->run->shm);
		if (n < 0)
			st_violation(t->run, t, VK_FREE_ERROR, "lfp_shm_cache_flush returned %d", n);
	}
#endif
#ifdef ST_HAVE_CACHE
	/* Both lfpool backends: the uncached pools have LFP_POOL_NO_CACHE,
	 * for which the flush is a no-op. */
	if (t->run->backend == BE_CACHED || t->run->backend == BE_POOL)
		for (int i = 0; i < t->run->npools; i++) {
			int rc = lfp_pool_cache_flush(t->run->pools[i].pool);
			if (rc != 0)
				st_violation(t->run, t, VK_FREE_ERROR, "lfp_pool_cache_flush(pool %d) returned %d", i, rc);
		}
#endif
}

/* Variable sizes: the front end (lfp_heap_*) for lfpool, malloc for the
 * peers. A free the front end refuses is a violation. */
static inline void *be_malloc(struct st_thread *t, size_t size)
{
	if (t->run->pool_backend) {
#ifdef ST_HAVE_HEAP
		return lfp_heap_malloc(t->run->heap, size);
#else
		return NULL;
#endif
	}
	return malloc(size);
}

static inline void *be_realloc(struct st_thread *t, void *p, size_t size)
{
	if (t->run->pool_backend) {
#ifdef ST_HAVE_HEAP
		return lfp_heap_realloc(t->run->heap, p, size);
#else
		(void)p;
		(void)size;
		return NULL;
#endif
	}
	return realloc(p, size);
}

static void be_mfree(struct st_thread *t, void *p);

bool st_workload_available(const struct st_run *run, enum st_workload w, const char **why)
{
	*why = NULL;
	if ((w == WL_SIZES || w == WL_TRACE) && run->pool_backend && !run->have_heap) {
		*why = "unavailable: the lfpool front end (include/lfpool/heap.h) is not built yet";
		return false;
	}
	if (w == WL_TRACE && run->trace == NULL) {
		*why = "skipped: no malloc-lab traces (../shared/traces absent)";
		return false;
	}
	return true;
}

/* ---- violations ---------------------------------------------------------- */

const char *const st_vkind_names[VK_COUNT] = {
	"alloc_error", "bad_pointer", "double_alloc", "stamp", "canary", "free_error",
	"conservation", "validate", "contents",
};

void st_violation(struct st_run *run, struct st_thread *t, enum st_vkind kind, const char *fmt, ...)
{
	lfp_fetch_add64_relaxed(&run->vkind[kind], 1); /* relaxed: a counter */
	/* Relaxed: a counter; the report below is the evidence, and the
	 * final total is read after join. */
	uint64_t n = lfp_fetch_add64_relaxed(&run->violations, 1); /* relaxed: a counter */
	if (t) {
		t->viol_local++;
		t->cur->violations++;
		lfp_store64_relaxed(&t->pub_viol, t->viol_local); /* relaxed: a gauge */
	}
	if (n < MAX_REPORTED) {
		char msg[400];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof msg, fmt, ap);
		va_end(ap);
		fprintf(stderr, "VIOLATION %s %s%d: %s\n", st_vkind_names[kind], t ? "thread " : "main",
			t ? t->id : 0, msg);
	} else if (n == MAX_REPORTED) {
		fprintf(stderr, "VIOLATION: more than %d; not printing further ones\n", MAX_REPORTED);
	}
	if (run->o->stop_on_violation)
		lfp_store32_relaxed(&run->abort, 1); /* relaxed: a flag polled by workers */
}

static void be_mfree(struct st_thread *t, void *p)
{
	if (t->run->pool_backend) {
#ifdef ST_HAVE_HEAP
		int rc = lfp_heap_free(t->run->heap, p);
		if (rc != 0)
			st_violation(t->run, t, VK_FREE_ERROR, "lfp_heap_free(%p) returned %d (%s)", p, rc,
				     strerror(-rc));
#else
		(void)p;
#endif
		return;
	}
	free(p);
}

/* ---- stamps -------------------------------------------------------------- */

static inline lfp_atomic_u64 *word0(void *b) { return b; }
static inline lfp_atomic_u64 *lastword(void *b, size_t size)
{
	return (lfp_atomic_u64 *)(void *)((char *)b + ((size - 8) & ~(size_t)7));
}

static inline uint64_t next_stamp(struct st_thread *t)
{
	const struct st_run *r = t->run;
	return (uint64_t)(r->id_base + (uint32_t)t->id + 1) << 48 |
	       ((r->seq_base + ++t->seq) & UINT64_C(0xFFFFFFFFFFFF));
}

static inline void stamp_block(void *b, size_t size, uint64_t s)
{
	if (size < 8)
		return;
	lfp_store64_relaxed(word0(b), s); /* relaxed: owner-only, see file comment */
	if (size >= 16)
		lfp_store64_relaxed(lastword(b, size), canary_of(s)); /* relaxed: owner-only */
}

/* The pool a block should come from (process mode: the segment's). */
static inline const lfp_pool_t *pool_of(const struct st_run *r, int pool)
{
	return r->shm_pool ? r->shm_pool : r->pools[pool].pool;
}

static const char *pool_name(struct st_run *r, void *b, char *buf, size_t n)
{
	if (r->shm_pool) {
		snprintf(buf, n, "shm block %lld", (long long)lfp_pool_index(r->shm_pool, b));
		return buf;
	}
	for (int i = 0; i < r->npools; i++) {
		int64_t idx = lfp_pool_index(r->pools[i].pool, b);
		if (idx >= 0) {
			snprintf(buf, n, "pool %d block %lld", i, (long long)idx);
			return buf;
		}
	}
	snprintf(buf, n, "block");
	return buf;
}

/* Check the stamp and canary of a block we own; false (reported) if wrong. */
static bool verify_block(struct st_thread *t, void *b, size_t size, uint64_t s, const char *when)
{
	if (size < 8)
		return true;
	uint64_t w = lfp_load64_relaxed(word0(b)); /* relaxed: owner-only */
	uint64_t c = size >= 16 ? lfp_load64_relaxed(lastword(b, size)) : canary_of(s); /* relaxed */
	if (st_likely(w == s && c == canary_of(s)))
		return true;
	char buf[64];
	if (w != s)
		st_violation(t->run, t, VK_STAMP, "%s: %s %p: ownership stamp %016llx, expected %016llx "
			     "(%s thread %llu seq %llu): two owners at once",
			     when, pool_name(t->run, b, buf, sizeof buf), b, (unsigned long long)w,
			     (unsigned long long)s, w == FREE_MARK ? "freed by" : "owned by",
			     (unsigned long long)(w >> 48) - 1,
			     (unsigned long long)(w & UINT64_C(0xFFFFFFFFFFFF)));
	else
		st_violation(t->run, t, VK_CANARY, "%s: %s %p: canary %016llx, expected %016llx: block "
			     "overwritten at its end", when, pool_name(t->run, b, buf, sizeof buf), b,
			     (unsigned long long)c, (unsigned long long)canary_of(s));
	return false;
}

/* Allocate one fixed-size block and stamp it. NULL when the pool is empty. */
static inline void *take(struct st_thread *t, int pool, uint64_t *stamp)
{
	struct st_run *r = t->run;
	size_t size = r->block_size;
	void *b = be_alloc(t, pool, size);
	if (st_unlikely(b == NULL)) {
		int e = errno;
		t->cur->fails++;
		if (e != ENOMEM)
			st_violation(r, t, VK_ALLOC_ERROR, "alloc returned NULL with errno %d (%s), not ENOMEM",
				     e, strerror(e));
		return NULL;
	}
	t->cur->allocs++;
	if (r->pool_backend) {
		const lfp_pool_t *p = pool_of(r, pool);
		if (st_unlikely(lfp_pool_index(p, b) < 0)) {
			st_violation(r, t, VK_BAD_POINTER, "alloc returned %p, not a block start of pool %d", b, pool);
			return NULL;
		}
	}
	/* A fresh block must not carry a live owner's stamp: every owner marks
	 * its block FREE before freeing it. The allocator may reuse a free
	 * block's bytes for itself (lfpool's cache writes batches of indices
	 * into free blocks, malloc its metadata), so "live" means a stamp with
	 * a valid owner AND its matching canary, which such bytes do not form. */
	uint64_t w = lfp_load64_relaxed(word0(b)); /* relaxed: ordered by the allocator */
	if (st_unlikely(w != 0 && w != FREE_MARK) && (w >> 48) != 0 && (w >> 48) <= r->id_limit &&
	    lfp_load64_relaxed(lastword(b, size)) == canary_of(w)) { /* relaxed: as above */
		if (r->stamp_dead && r->stamp_dead(r, w)) {
			/* Reclaimed from a killed worker that owned it. */
			lfp_fetch_add64_relaxed(&t->run->dead_stamps, 1); /* relaxed: a counter */
		} else {
			char buf[64];
			st_violation(r, t, VK_DOUBLE_ALLOC, "alloc returned %s %p still owned by thread %llu "
				     "(seq %llu): double allocation", pool_name(r, b, buf, sizeof buf),
				     b, (unsigned long long)(w >> 48) - 1,
				     (unsigned long long)(w & UINT64_C(0xFFFFFFFFFFFF)));
		}
	}
	*stamp = next_stamp(t);
	stamp_block(b, size, *stamp);
	return b;
}

/* Verify, mark free and free a fixed-size block. */
static inline void give(struct st_thread *t, int pool, void *b, uint64_t stamp)
{
	struct st_run *r = t->run;
	size_t size = r->block_size;
	verify_block(t, b, size, stamp, "free");
	stamp_block(b, size, FREE_MARK); /* every backend: the fresh-block check relies on it */
	int rc = be_free(t, pool, b);
	if (st_unlikely(rc != 0)) {
		char buf[64];
		st_violation(r, t, VK_FREE_ERROR, "free of %s %p returned %d (%s)", pool_name(r, b, buf, sizeof buf),
			     b, rc, strerror(-rc));
		return;
	}
	t->cur->frees++;
}

/* ---- pacing, barrier, phase control -------------------------------------- */

static inline void beat(struct st_thread *t)
{
	lfp_store64_relaxed(&t->hb, ++t->hb_local); /* relaxed: a gauge */
}

/* Poll-loop pacing while waiting on another thread: yield, and after a while
 * sleep briefly so waiting threads leave the CPUs to working ones. This is
 * not synchronisation: the loop condition is an atomic load. */
static void wait_pause(struct st_thread *t, unsigned *spins)
{
	beat(t);
	if (++*spins < 64) {
		lfp_cpu_relax();
	} else if (*spins < 256) {
		sched_yield();
	} else {
		struct timespec ts = { 0, 50 * 1000 };
		nanosleep(&ts, NULL);
	}
}

void st_barrier_init(struct st_barrier *b, uint32_t n)
{
	lfp_init32(&b->count, 0);
	lfp_init32(&b->gen, 0);
	b->n = n;
}

void st_run_init_sync(struct st_run *r, uint32_t nthreads)
{
	lfp_init32(&r->go, 0);
	lfp_init32(&r->stop, 0);
	lfp_init32(&r->done, 0);
	lfp_init32(&r->ready, 0);
	lfp_init32(&r->abort, 0);
	lfp_init64(&r->violations, 0);
	for (int k = 0; k < VK_COUNT; k++)
		lfp_init64(&r->vkind[k], 0);
	for (int i = 0; i < 64; i++)
		lfp_init64(&r->xslot[i].v, 0);
	st_barrier_init(&r->bar, nthreads);
}

/* Wait for all b->n parties; the last to arrive runs leader(arg) first.
 * B1: the arrival CAS is acq_rel, so the leader (whose CAS reads the chain of
 * every earlier arrival) sees everything the others did before arriving.
 * B2: the leader's release store of the generation publishes its work and
 * the count reset; B3: the waiters' acquire load pairs with it. */
static void barrier_wait(struct st_thread *t, struct st_barrier *b, void (*leader)(void *), void *arg)
{
	uint32_t g = lfp_load32_acquire(&b->gen); /* B3: pairs with B2 of the last round */
	uint32_t c = lfp_load32_relaxed(&b->count); /* relaxed: the CAS's expectation */
	while (!lfp_cas32_acq_rel(&b->count, &c, c + 1)) /* B1 */
		;
	if (c + 1 == b->n) {
		if (leader)
			leader(arg);
		lfp_store32_relaxed(&b->count, 0); /* relaxed: published by B2 */
		lfp_store32_release(&b->gen, g + 1); /* B2: pairs with B3 */
		return;
	}
	unsigned spins = 0;
	while (lfp_load32_acquire(&b->gen) == g) /* B3: pairs with B2 */
		wait_pause(t, &spins);
}

static inline bool stopping(struct st_thread *t)
{
	struct st_run *r = t->run;
	/* Relaxed: flags; nothing is read on their strength. */
	return lfp_load32_relaxed(&r->stop) >= (uint32_t)t->gen || lfp_load32_relaxed(&r->abort); /* relaxed: flags */
}

/* Continue the loop? n pairs done so far by this thread in this phase. */
static inline bool keep_going(struct st_thread *t, uint64_t n)
{
	lfp_store64_relaxed(&t->pub_frees, t->cur->frees); /* relaxed: a gauge */
	beat(t);
	if (t->run->o->ops)
		return n < t->run->o->ops && !lfp_load32_relaxed(&t->run->abort); /* relaxed: flag */
	return !stopping(t);
}

static inline uint64_t chunk(struct st_thread *t, uint64_t n, uint64_t want)
{
	uint64_t lim = t->run->o->ops;
	return lim && lim - n < want ? lim - n : want;
}

/* ---- held lists --------------------------------------------------------- */

static void hold(struct st_thread *t, void *b, uint64_t s, int pool, size_t size)
{
	t->held[t->nheld++] = (struct st_held){ b, s, (uint32_t)pool, (uint32_t)size };
}

static void shuffle_held(struct st_thread *t, size_t from)
{
	for (size_t i = t->nheld; i > from + 1; i--) {
		size_t j = from + st_rand_below(&t->rng, (uint32_t)(i - from));
		struct st_held x = t->held[i - 1];
		t->held[i - 1] = t->held[j];
		t->held[j] = x;
	}
}

/* Free held[from..] in reverse order. */
static void release_held(struct st_thread *t, size_t from)
{
	while (t->nheld > from) {
		struct st_held *h = &t->held[--t->nheld];
		give(t, (int)h->pool, h->p, h->stamp);
	}
}

/* ---- workloads ----------------------------------------------------------- */

static void wl_hot(struct st_thread *t)
{
	uint64_t n = 0, s;
	while (keep_going(t, n)) {
		for (uint64_t k = chunk(t, n, 32); k > 0; k--) {
			void *b = take(t, t->pool, &s);
			if (b == NULL)
				continue;
			give(t, t->pool, b, s);
			n++;
		}
	}
}

/* A batch of 1..batch blocks out, then back: reversed (lifo) or shuffled. */
static void wl_batch(struct st_thread *t, bool shuffled)
{
	uint64_t n = 0, s;
	uint32_t batch = (uint32_t)t->run->o->batch;
	while (keep_going(t, n)) {
		uint32_t want = (uint32_t)chunk(t, n, 1 + st_rand_below(&t->rng, batch));
		for (uint32_t k = 0; k < want; k++) {
			void *b = take(t, t->pool, &s);
			if (b == NULL)
				break;
			hold(t, b, s, t->pool, t->run->block_size);
		}
		n += t->nheld;
		if (shuffled)
			shuffle_held(t, 0);
		release_held(t, 0);
	}
}

static void wl_handoff(struct st_thread *t)
{
	struct st_run *r = t->run;
	int pair = t->id / 2;
	if (pair >= r->nthreads / 2) { /* odd one out */
		wl_hot(t);
		return;
	}
	struct st_ring *ring = &r->rings[pair];
	unsigned spins = 0;
	uint64_t n = 0;
	if (t->id % 2 == 0) { /* producer */
		uint32_t tail = lfp_load32_relaxed(&ring->tail); /* relaxed: our own index */
		uint32_t head = lfp_load32_acquire(&ring->head); /* H1: pairs with C2 */
		while (keep_going(t, n)) {
			for (int k = 0; k < 32; k++) {
				if (tail - head == ST_RING) {
					/* Looks full: refresh the consumer's index. */
					head = lfp_load32_acquire(&ring->head); /* H1: pairs with C2 */
					if (tail - head == ST_RING) {
						wait_pause(t, &spins);
						break;
					}
				}
				uint64_t s;
				void *b = take(t, t->pool, &s);
				if (b == NULL) {
					wait_pause(t, &spins);
					break;
				}
				spins = 0;
				ring->slot[tail % ST_RING] = (struct st_slot){ b, s, (uint32_t)t->pool,
									   (uint32_t)r->block_size };
				lfp_store32_release(&ring->tail, ++tail); /* P1: pairs with C1 */
				n++;
			}
		}
		lfp_store32_release(&ring->closed, 1); /* P2: pairs with C3 */
	} else { /* consumer: drains until the producer closed and the ring is empty */
		uint32_t head = lfp_load32_relaxed(&ring->head); /* relaxed: our own index */
		for (;;) {
			uint32_t closed = lfp_load32_acquire(&ring->closed); /* C3: pairs with P2 */
			uint32_t tail = lfp_load32_acquire(&ring->tail); /* C1: pairs with P1 */
			if (head == tail) {
				if (closed)
					break;
				wait_pause(t, &spins);
				keep_going(t, n);
				continue;
			}
			spins = 0;
			while (head != tail) {
				struct st_slot sl = ring->slot[head % ST_RING];
				give(t, (int)sl.pool, sl.p, sl.stamp);
				n++;
				/* Hand slots back in groups: one store per 32 blocks. */
				if ((++head & 31) == 0)
					lfp_store32_release(&ring->head, head); /* C2: pairs with H1 */
			}
			lfp_store32_release(&ring->head, head); /* C2: pairs with H1 */
			keep_going(t, n);
		}
	}
}

/* Burst: allocate until the pool is empty; the barrier's leader checks that
 * every pool's blocks are all held; everyone verifies and frees in random
 * order; repeat until stopped. Peers (malloc) get a budget of one pool's
 * capacity shared out instead of "empty". */
struct burst_ctx {
	struct st_run *run;
	int round;
};

static void burst_check_full(void *arg)
{
	struct burst_ctx *c = arg;
	struct st_run *r = c->run;
	if (r->pool_backend) {
		uint64_t held[ST_MAX_POOLS] = { 0 };
		for (int i = 0; i < r->nthreads; i++)
			held[r->th[i].pool] += r->th[i].nheld;
		for (int p = 0; p < r->npools; p++)
			if (r->pools[p].nthreads > 0 && held[p] != r->pools[p].capacity)
				st_violation(r, NULL, VK_CONSERVATION, "burst: pool %d empty for every thread but %llu "
					     "blocks held, capacity %zu (blocks lost or duplicated)",
					     p, (unsigned long long)held[p], r->pools[p].capacity);
	}
}

static void burst_decide(void *arg)
{
	struct burst_ctx *c = arg;
	struct st_run *r = c->run;
	c->round++;
	if (r->o->ops)
		r->burst_go_on = (uint64_t)c->round * r->pools[0].capacity / (uint64_t)r->nthreads <
					 r->o->ops && !lfp_load32_relaxed(&r->abort); /* relaxed: flag */
	else
		r->burst_go_on = lfp_load32_relaxed(&r->stop) < lfp_load32_relaxed(&r->go) &&
				 !lfp_load32_relaxed(&r->abort); /* relaxed: flags */
}

static struct burst_ctx burst_ctx_g; /* one burst phase at a time; leader-only */

static void wl_burst(struct st_thread *t)
{
	struct st_run *r = t->run;
	uint64_t s;
	if (t->id == 0)
		burst_ctx_g = (struct burst_ctx){ r, 0 };
	barrier_wait(t, &r->bar, NULL, NULL);
	for (;;) {
		size_t cap = r->pool_backend || t->burst_budget > t->held_cap ? t->held_cap
									  : (size_t)t->burst_budget;
		while (t->nheld < cap) {
			void *b = take(t, t->pool, &s);
			if (b == NULL)
				break;
			hold(t, b, s, t->pool, r->block_size);
			if ((t->nheld & 63) == 0)
				beat(t);
		}
		if (r->pool_backend && t->nheld == t->held_cap && t->held_cap < r->pools[t->pool].capacity)
			st_violation(r, t, VK_CONSERVATION, "burst: held list full (%zu) before the pool ran dry", t->held_cap);
		barrier_wait(t, &r->bar, burst_check_full, &burst_ctx_g);
		shuffle_held(t, 0);
		release_held(t, 0);
		lfp_store64_relaxed(&t->pub_frees, t->cur->frees); /* relaxed: a gauge */
		barrier_wait(t, &r->bar, burst_decide, &burst_ctx_g);
		if (!r->burst_go_on) /* written by the leader before B2 */
			break;
	}
}

/* Mixed sizes and trace replay go through variable-size allocation. */
static size_t pick_size(struct st_thread *t)
{
	uint32_t x = st_rand_below(&t->rng, 100);
	size_t max = t->run->o->max_size;
	if (x < 70)
		return 16 + st_rand_below(&t->rng, 113);        /* 16..128 */
	if (x < 95)
		return 129 + st_rand_below(&t->rng, 896);       /* 129..1024 */
	return 1025 + st_rand_below(&t->rng, (uint32_t)(max > 1025 ? max - 1024 : 1));
}

static bool verify_sized(struct st_thread *t, void *b, size_t size, uint64_t s, const char *when)
{
	return verify_block(t, b, size, s, when);
}

static void wl_sizes(struct st_thread *t)
{
	uint64_t n = 0;
	uint32_t batch = (uint32_t)t->run->o->batch;
	while (keep_going(t, n)) {
		uint32_t want = (uint32_t)chunk(t, n, 1 + st_rand_below(&t->rng, batch));
		for (uint32_t k = 0; k < want; k++) {
			size_t size = pick_size(t);
			void *b = be_malloc(t, size);
			if (b == NULL) {
				t->cur->fails++;
				break;
			}
			t->cur->allocs++;
			uint64_t s = next_stamp(t);
			stamp_block(b, size, s);
			hold(t, b, s, 0, size);
		}
		n += t->nheld;
		shuffle_held(t, 0);
		while (t->nheld) {
			struct st_held *h = &t->held[--t->nheld];
			verify_sized(t, h->p, h->size, h->stamp, "free");
			be_mfree(t, h->p);
			t->cur->frees++;
		}
	}
}

/* Replay the trace over and over; each thread has its own id table. */
static void wl_trace(struct st_thread *t)
{
	struct st_trace *tr = t->run->trace;
	struct st_held *id = t->held; /* held_cap >= num_ids (set up by main) */
	uint64_t n = 0;
	memset(id, 0, sizeof *id * tr->num_ids);
	while (keep_going(t, n)) {
		for (uint32_t i = 0; i < tr->num_ops; i++) {
			const struct st_trace_op *op = &tr->ops[i];
			struct st_held *h = &id[op->id];
			if (op->kind == 'a' || (op->kind == 'r' && h->p == NULL)) {
				if (h->p) { /* unbalanced trace re-allocating a live id */
					verify_sized(t, h->p, h->size, h->stamp, "free");
					be_mfree(t, h->p);
					t->cur->frees++;
				}
				size_t size = op->size ? op->size : 1;
				h->p = be_malloc(t, size);
				if (h->p == NULL) {
					t->cur->fails++;
					continue;
				}
				t->cur->allocs++;
				h->size = (uint32_t)size;
				h->stamp = next_stamp(t);
				stamp_block(h->p, size, h->stamp);
			} else if (op->kind == 'r') {
				verify_sized(t, h->p, h->size, h->stamp, "realloc");
				size_t size = op->size ? op->size : 1;
				void *q = be_realloc(t, h->p, size);
				if (q == NULL) {
					t->cur->fails++;
					continue;
				}
				t->cur->reallocs++;
				/* The first min(old, new) bytes moved with it. */
				if (size >= 8 && h->size >= 8 &&
				    lfp_load64_relaxed(word0(q)) != h->stamp) /* relaxed: owner-only */
					st_violation(t->run, t, VK_CONTENTS, "realloc lost the block's contents "
						     "(stamp %016llx, expected %016llx)",
						     (unsigned long long)lfp_load64_relaxed(word0(q)),
						     (unsigned long long)h->stamp);
				h->p = q;
				h->size = (uint32_t)size;
				stamp_block(q, size, h->stamp);
			} else if (h->p) { /* 'f' */
				verify_sized(t, h->p, h->size, h->stamp, "free");
				be_mfree(t, h->p);
				t->cur->frees++;
				h->p = NULL;
				n++;
			}
			if ((i & 255) == 255) {
				if (!keep_going(t, n))
					break;
			}
		}
		for (uint32_t i = 0; i < tr->num_ids; i++) /* unbalanced traces */
			if (id[i].p) {
				verify_sized(t, id[i].p, id[i].size, id[i].stamp, "free");
				be_mfree(t, id[i].p);
				t->cur->frees++;
				id[i].p = NULL;
			}
	}
}

/* Give a live block to another thread through a random exchange slot and
 * free whatever block comes back. X1: the exchange is acq_rel: release
 * publishes our stamp writes to the block, acquire gets the previous owner's;
 * pairs with X1 in the other thread. */
static void exchange(struct st_thread *t)
{
	struct st_run *r = t->run;
	uint64_t s;
	void *b = take(t, t->pool, &s);
	if (b == NULL)
		return;
	uint64_t old = lfp_xchg64_acq_rel(&r->xslot[st_rand_below(&t->rng, r->nxslots)].v, /* X1 */
					  (uint64_t)(uintptr_t)b);
	if (old == 0)
		return;
	void *q = (void *)(uintptr_t)old;
	int pool = 0;
	if (r->pool_backend && !r->shm_pool)
		for (int i = 0; i < r->npools; i++)
			if (lfp_pool_contains(r->pools[i].pool, q))
				pool = i;
	/* We know neither the giver nor its sequence: the stamp must be a live
	 * owner's and agree with the canary. Then the block is ours. */
	uint64_t w = lfp_load64_relaxed(word0(q)); /* relaxed: ordered by X1 */
	if (w == 0 || w == FREE_MARK || (w >> 48) == 0 || (w >> 48) > (uint64_t)r->id_limit)
		st_violation(r, t, VK_CONTENTS, "exchange: received block %p with stamp %016llx (not a live owner)", q,
			     (unsigned long long)w);
	else
		verify_block(t, q, r->block_size, w, "exchange");
	s = next_stamp(t);
	stamp_block(q, r->block_size, s);
	give(t, pool, q, s);
}

static void wl_chaos(struct st_thread *t)
{
	uint64_t n = 0, s;
	uint32_t batch = (uint32_t)t->run->o->batch;
	while (keep_going(t, n)) {
		uint32_t what = st_rand_below(&t->rng, 8);
		uint64_t f0 = t->cur->frees;
		if (what < 3) {
			for (int k = 0; k < 8; k++) {
				void *b = take(t, t->pool, &s);
				if (b)
					give(t, t->pool, b, s);
			}
		} else if (what < 7) {
			uint32_t want = 1 + st_rand_below(&t->rng, batch);
			for (uint32_t k = 0; k < want; k++) {
				void *b = take(t, t->pool, &s);
				if (b == NULL)
					break;
				hold(t, b, s, t->pool, t->run->block_size);
			}
			if (what >= 5)
				shuffle_held(t, 0);
			release_held(t, 0);
		} else {
			exchange(t);
		}
		n += t->cur->frees - f0;
	}
}

/* ---- the worker ---------------------------------------------------------- */

void *st_worker(void *arg)
{
	struct st_thread *t = arg;
	struct st_run *r = t->run;
	const struct st_opts *o = r->o;

#ifdef ST_HAVE_CACHE
	/* The cached backend's fast path: this thread's handle for each pool
	 * (NULL if it cannot have one: the pool calls then still work). */
	if (r->backend == BE_CACHED)
		for (int i = 0; i < r->npools && i < ST_MAX_CACHES; i++)
			t->cache[i] = lfp_pool_cache(r->pools[i].pool);
#endif
	for (int ph = 0; ph < o->n_phases; ph++) {
		unsigned spins = 0;
		t->gen = ph + 1;
		t->cur = &t->res[ph];
		while (lfp_load32_acquire(&r->go) < (uint32_t)t->gen) /* G2: pairs with G1 */
			wait_pause(t, &spins);
		enum st_workload w = o->phases[ph];
		const char *why;
		if (st_workload_available(r, w, &why) && !lfp_load32_relaxed(&r->abort)) { /* relaxed: flag */
			uint64_t c0 = st_thread_cpu_ns();
			lfp_store32_relaxed(&t->in_phase, 1); /* relaxed: a gauge */
			if (o->inject_hang && t->id == 0 && ph == 0)
				for (;;) /* the watchdog's own test: spin without a heartbeat */
					pause();
			switch (w) {
			case WL_HOT: wl_hot(t); break;
			case WL_LIFO: wl_batch(t, false); break;
			case WL_RANDOM: wl_batch(t, true); break;
			case WL_HANDOFF: wl_handoff(t); break;
			case WL_BURST: wl_burst(t); break;
			case WL_SIZES: wl_sizes(t); break;
			case WL_TRACE: wl_trace(t); break;
			case WL_CHAOS: wl_chaos(t); break;
			default: break;
			}
			release_held(t, 0);
			be_thread_done(t);
			t->cur->cpu_ns = st_thread_cpu_ns() - c0;
			lfp_store32_relaxed(&t->in_phase, 0); /* relaxed: a gauge */
		}
		lfp_store64_relaxed(&t->pub_frees, t->cur->frees); /* relaxed: a gauge */
		uint32_t d = lfp_load32_relaxed(&r->done); /* relaxed: the CAS's expectation */
		while (!lfp_cas32_acq_rel(&r->done, &d, d + 1)) /* D1: pairs with D2 */
			;
	}
	return NULL;
}

/* ---- after a phase ------------------------------------------------------- */

uint64_t st_check_quiescent(struct st_run *r, int phase)
{
	uint64_t v0 = lfp_load64_relaxed(&r->violations); /* relaxed: main alone now */
	uint64_t allocs = 0, frees = 0;

	/* Chaos leaves up to 64 blocks parked in the exchange slots. */
	for (int i = 0; i < 64; i++) {
		uint64_t x = lfp_xchg64_acq_rel(&r->xslot[i].v, 0); /* X1 */
		if (x == 0)
			continue;
		void *q = (void *)(uintptr_t)x;
		r->drained[phase]++;
		if (r->shm) {
#ifdef ST_HAVE_SHM
			lfp_atomic_u64 *w = q;
			lfp_store64_relaxed(w, FREE_MARK); /* relaxed: ours now */
			int rc = lfp_shm_free(r->shm, q);
			if (rc != 0)
				st_violation(r, NULL, VK_FREE_ERROR, "phase %d: freeing a parked block %p gave %d", phase, q, rc);
#endif
		} else if (r->pool_backend) {
			int rc = -EINVAL;
			lfp_atomic_u64 *w = q;
			lfp_store64_relaxed(w, FREE_MARK); /* relaxed: ours now */
			for (int p = 0; p < r->npools; p++)
				if (lfp_pool_contains(r->pools[p].pool, q))
					rc = lfp_pool_free(r->pools[p].pool, q);
			if (rc != 0)
				st_violation(r, NULL, VK_FREE_ERROR, "phase %d: freeing a parked block %p gave %d", phase, q, rc);
		} else {
			free(q);
		}
	}
#ifdef ST_HAVE_CACHE
	if (r->pool_backend && !r->shm) /* what main freed may sit in its own cache */
		for (int p = 0; p < r->npools; p++)
			lfp_pool_cache_flush(r->pools[p].pool);
#endif
	frees = r->drained[phase];
	for (int i = 0; i < r->nthreads; i++) {
		allocs += r->th[i].res[phase].allocs;
		frees += r->th[i].res[phase].frees;
	}
	if (allocs != frees)
		st_violation(r, NULL, VK_CONSERVATION, "phase %d (%s): conservation: %llu allocations but %llu frees",
			     phase, st_workload_names[r->o->phases[phase]],
			     (unsigned long long)allocs, (unsigned long long)frees);
	if (r->pool_backend && !r->shm) { /* a segment is checked by the parent */
		for (int p = 0; p < r->npools; p++) {
			lfp_pool_report_t rep;
			int rc = lfp_pool_validate(r->pools[p].pool, &rep);
			if (rc != 0)
				st_violation(r, NULL, VK_VALIDATE, "phase %d: validate(pool %d) = %d: %s (index %u; "
					     "free %llu allocated %llu other %llu)", phase, p, rc,
					     rep.error ? rep.error : "?", rep.bad_index,
					     (unsigned long long)rep.free, (unsigned long long)rep.allocated,
					     (unsigned long long)rep.other);
			else if (rep.free != r->pools[p].capacity)
				st_violation(r, NULL, VK_CONSERVATION, "phase %d: pool %d has %llu of %zu blocks free after "
					     "every block was given back", phase, p,
					     (unsigned long long)rep.free, r->pools[p].capacity);
		}
	}
#ifdef ST_HAVE_HEAP
	if (r->heap && (r->o->phases[phase] == WL_SIZES || r->o->phases[phase] == WL_TRACE)) {
		const char *why = NULL;
		int rc = lfp_heap_validate(r->heap, &why);
		if (rc != 0)
			st_violation(r, NULL, VK_VALIDATE, "phase %d: lfp_heap_validate = %d: %s", phase, rc,
				     why ? why : "?");
	}
#endif
	return lfp_load64_relaxed(&r->violations) - v0; /* relaxed: main alone now */
}
