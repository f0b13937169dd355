/*
 * pool/cache.c - the per-thread cache in front of a pool: magazines of block
 * indices kept inside the pool region and handed between threads whole.
 *
 * Algorithm (Bonwick's magazines, made position independent; docs/caches.md).
 * A magazine is an array of up to k block indices plus a count, in the
 * region. A thread claims a slot of the region's slot table on first use (a
 * CAS on the slot's owner word), takes two empty magazines from the depot
 * (a free slot holds none, so the magazines of slots nobody holds serve the
 * threads that run), and then holds two magazines: `loaded`, which
 * alloc pops from and free pushes to with plain loads and stores and two
 * relaxed stores (inline in include/lfpool.h), and `prev`. When `loaded` runs
 * empty (full) and `prev` is full (empty), the two swap. Only when both are
 * empty (full) does the thread touch shared words:
 *   refill: pop the top two full magazines from its own home stack with
 *           one CAS, else one from its home or the pool's depot, else pop a
 *           chain of up to k blocks off the shared free stack (the walk of
 *           one chain), else steal the top two full magazines of another
 *           slot's home stack with one CAS. The empties go to home_empty,
 *           which only the owner touches (no CAS), up to the thread's share
 *           (park_empty), and past it to the depot, two per CAS.
 *   flush:  with two empties (from home, else the top two of the depot's
 *           empty stack with one CAS), push `prev` and `loaded` (both full)
 *           onto its own home stack as one chain, one CAS; with one, push
 *           `prev` and load it; if there is no empty magazine anywhere,
 *           write prev's blocks into an in-band batch (below) or, for
 *           blocks under 12 bytes, push them onto the free stack as one
 *           chain this thread linked itself.
 * So a batch always moves as a unit: a magazine (read as an array, never a
 * chain of links written by another core), or a chain walked only in the
 * overflow case. Home stacks keep a thread's blocks with that thread (the
 * 2-thread case never shares a line on the hot path), yet every magazine on
 * them can be stolen, so a thread's hoard - what nobody else can reach - is
 * only its loaded and prev magazines: at most 2 k blocks per slot.
 *
 * Each block's state word next[i] (pool/internal.h) reads LFPI_CACHED while
 * the block sits in a magazine, so validate() can account for every cached
 * block, frees of cached blocks fail with -EALREADY, and recovery can find
 * blocks a dead thread left half-way.
 *
 * Thread-local side (process memory, no malloc): a table of entries keyed by
 * {pool address, pool instance}. A process-wide registry of the threads'
 * tables, under one mutex, lets lfp_pool_destroy() clear other threads'
 * entries before the memory goes, and a pthread key destructor drains a
 * thread's caches when it exits. The mutex is taken once per (thread, pool)
 * and at thread exit, never on alloc or free.
 *
 * Invariants (quiescent):
 *   - each of the n_mags magazines is in exactly one place: a claimed slot's
 *     loaded or prev, or one magazine stack (a slot's home_full / home_empty,
 *     the pool's depot_full / depot_empty); a free slot's loaded and prev are
 *     LFP_NIL; empty-stack magazines have count 0, full-stack ones count > 0;
 *   - the blocks marked LFPI_CACHED are exactly the entries [0, count) of all
 *     magazines, each once;
 *   - |free stack| + sum of counts + |marked LFPI_ALLOC| = capacity.
 *
 * Labels (docs/memory-order.md):
 *   K1  count of the loaded magazine, relaxed store by its holder: accounting
 *       only (stats, validate, recovery), orders nothing.
 *   K2  block state word on the cached path, relaxed: read by the block's
 *       holder or by a thread a hand-off already ordered; stale poppers only
 *       compare it with the block count.
 *   K3  magazine-stack push CAS, release: publishes the magazine's entries
 *       and count, its mag_next link, and (transitively) the contents of its
 *       blocks; pairs with K4.
 *   K4  magazine-stack pop: head load and CAS acquire (failure acquire too,
 *       so the refreshed head's link is current); pairs with K3.
 *   K5  chain pop off the free stack: head load and CAS acquire, as the
 *       core's A1/A2; pairs with R1 (pool/stack.c). K6 is its A3-like no-op
 *       CAS (acq_rel) that tells a stale link from corruption.
 *   K7  slot claim CAS, acquire: sees the previous owner's (or recovery's)
 *       final magazine state; pairs with K8.
 *   K8  slot release store, release: publishes the drained slot; pairs with
 *       K7.
 *   K9  thread-table keys, relaxed: written only under the registry mutex,
 *       which orders everything around them; the owner's lock-free lookups
 *       only compare them.
 *   K11 a slot's home_empty head and the links of the magazines on it,
 *       relaxed: only the slot's owner touches them (empties are never
 *       stolen); a drainer or validate runs once the owner is dead or
 *       quiescent, ordered by K7/K8, a join, or destroy's contract.
 */
#include "internal.h"

#include <pthread.h>
#include <string.h>

#define TLS_ENTRIES 64u /* power of two */
#define TLS_PROBE 4u
#define CLAIM_RETRY 4096u /* slotless calls between two claim attempts */

uint32_t (*lfpi_cache_participant_hook)(const lfp_pool_t *p);
_Thread_local struct lfpi_last lfpi_last;

/* One thread's cache of one pool. `pub` first: the public handle is &pub. */
struct lfpi_tc {
	struct lfp_cache pub;     /* the inline fast path's view (owner only) */
	lfp_atomic_u64 key_pool;  /* pool address, 0 = unused (K9) */
	lfp_atomic_u64 key_inst;  /* the pool's instance (K9) */
	lfp_pool_t *pool;         /* owner only (like everything below) */
	struct lfpi_slot *slot;   /* NULL: no slot, calls go to the free stack */
	uint32_t slot_id;
	uint32_t loaded, prev;    /* magazine ids, mirrored in the slot */
	uint32_t fill;            /* entries in loaded when !inline_ok */
	uint32_t victim;          /* next slot to steal from */
	uint32_t retry;           /* slotless calls since the last claim try */
	uint32_t n_hempty;        /* magazines on the slot's home_empty */
	bool inline_ok;           /* pub drives the loaded magazine directly */
	bool pinned;              /* handed out by lfp_pool_cache(): never evicted */
	bool corrupt;             /* the free stack was found corrupt */
	uint32_t dummy;           /* !inline_ok: pub's pointers all point here */
};

struct lfpi_tls {
	struct lfpi_tc tc[TLS_ENTRIES];
	struct lfpi_tls *next, *prev; /* the registry list, under reg_mu */
	bool registered;              /* owner only */
	uint32_t serial;              /* thread serial for owner tags */
};

/* The thread's table (~9.5 KiB) lives in pages of its own, reached through
 * one initial-exec pointer, so that the library's static TLS stays small
 * enough for dlopen() (as tc in pool/frontend.c). A thread with no table
 * points at tls_none, all zero: no entries, not registered. tls_register
 * gives the thread its own table before anything writes it; validate
 * checks that tls_none is still zero. An exited thread's table is kept for
 * the next thread that needs one (tls_spare), never unmapped: a handle
 * used after its thread's exit (from a later key destructor, say) then
 * meets a disarmed entry and gets EINVAL, as when the table was TLS, not
 * an unmapped page. */
static struct lfpi_tls tls_none;
static _Thread_local struct lfpi_tls *tls_cur __attribute__((tls_model("initial-exec"))) = &tls_none;
#define tls (*tls_cur)

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct lfpi_tls *reg_head; /* under reg_mu */
static struct lfpi_tls *tls_spare; /* exited threads' tables, linked by next (reg_mu) */
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
static pthread_key_t reg_key;
static bool reg_key_ok; /* written once under reg_once */
static lfp_atomic_u32 thread_serial;

static void last_forget(const struct lfpi_tc *c)
{
	if (lfpi_last.cache == &c->pub)
		lfpi_last = (struct lfpi_last){ NULL, 0, NULL };
}

static struct lfpi_tc *tc_of(lfp_cache_t *h)
{
	return (struct lfpi_tc *)(void *)h; /* pub is the first member */
}

/* ---- magazine stacks: Treiber stacks of magazine ids over mag_next[] ------ */

static uint32_t mstack_pop(lfp_pool_t *p, lfp_atomic_u64 *head)
{
	lfp_atomic_u32 *mn = lfpi_mag_next(p);
	const uint32_t nm = p->n_mags;
	unsigned spins = 0;
	uint64_t old = lfp_load64_acquire(head); /* K4: pairs with K3 */

	for (;;) {
		uint32_t m = lfp_head_index(old);
		if (m == LFP_NIL || lfpi_unlikely(m >= nm))
			return LFP_NIL; /* empty (or corrupt: validate reports it) */
		/* Relaxed: K4 made the pusher's link visible; a newer value only
		 * means the head moved, and then the CAS fails. */
		uint32_t nx = lfp_load32_relaxed(&mn[m]);
#ifdef LFPI_CACHE_PLANTED_RACE
		/* Negative control only (mk/cache.mk, test-cache-negative): a
		 * pop by load and store instead of CAS, so two threads can take
		 * one magazine. The concurrency test must catch it. */
		for (int k = 0; k < 200; k++)
			lfp_cpu_relax();
		lfp_store64_relaxed(head, lfp_head_next(old, nx));
		return m;
#endif
		if (lfp_cas64_weak_acquire(head, &old, lfp_head_next(old, nx))) /* K4: pairs with K3 */
			return m;
		lfp_backoff(&spins);
	}
}

/* Pop up to two magazines with one CAS: the top one is returned, the one
 * under it (or LFP_NIL) goes to *second. Labels as mstack_pop (K4). The
 * second link is read only while the head has not moved (then it cannot
 * change: re-linking the top two needs a pop, which moves the head's tag),
 * and the CAS proves that it did not. Two facts carry this on every stack
 * it is used on (home_full, another slot's home_full, depot_empty): every
 * write of a head is a tagged CAS, and the winning CAS hands over both
 * magazines, so nobody writes their links again before our own push. */
static uint32_t mstack_pop2(lfp_pool_t *p, lfp_atomic_u64 *head, uint32_t *second)
{
	lfp_atomic_u32 *mn = lfpi_mag_next(p);
	const uint32_t nm = p->n_mags;
	unsigned spins = 0;
	uint64_t old = lfp_load64_acquire(head); /* K4: pairs with K3 */

	for (;;) {
		uint32_t m = lfp_head_index(old), m2 = LFP_NIL;
		if (m == LFP_NIL || lfpi_unlikely(m >= nm)) {
			*second = LFP_NIL;
			return LFP_NIL; /* empty (or corrupt: validate reports it) */
		}
		/* Relaxed, both: K4 made the pushers' links visible; a newer
		 * value only means the head moved, and then the CAS fails. */
		uint32_t nx = lfp_load32_relaxed(&mn[m]);
		if (nx < nm) {
			m2 = nx;
			nx = lfp_load32_relaxed(&mn[m2]);
		}
#ifdef LFPI_CACHE_PLANTED_RACE
		/* Negative control only: as in mstack_pop. */
		for (int k = 0; k < 200; k++)
			lfp_cpu_relax();
		lfp_store64_relaxed(head, lfp_head_next(old, nx));
		*second = m2;
		return m;
#endif
		if (lfp_cas64_weak_acquire(head, &old, lfp_head_next(old, nx))) { /* K4: pairs with K3 */
			*second = m2;
			return m;
		}
		lfp_backoff(&spins);
	}
}

/* Push x on a tagged stack whose links are links[] (mag_next[] for magazine
 * stacks, next[] for batch stacks): the core's tagged push, labelled K3 here
 * (release, pairs with K4). */
static void tstack_push(lfp_atomic_u32 *links, lfp_atomic_u64 *head, uint32_t x)
{
	lfpi_tagged_push_chain(links, head, x, x); /* K3: pairs with K4 */
}

static void mstack_push(lfp_pool_t *p, lfp_atomic_u64 *head, uint32_t m)
{
	tstack_push(lfpi_mag_next(p), head, m);
}

static bool mstack_empty_hint(const lfp_atomic_u64 *head)
{
	/* Relaxed: a hint to skip an empty stack; a pop re-reads with K4. */
	return lfp_head_index(lfp_load64_relaxed(head)) == LFP_NIL;
}

static uint32_t mag_count(const lfp_pool_t *p, uint32_t m)
{
	/* K1 relaxed: our own magazine, or one K4/K7 handed us. */
	return lfp_load32_relaxed(&lfpi_mag_at(p, m)->count);
}

/* A slot's home_empty is its owner's alone: empties are never stolen, and a
 * drainer runs only once the owner is dead or quiescent (after K7/K8 or a
 * join). So it is a plain stack: no CAS, no locked instruction. K11. */
static void hempty_push(lfp_pool_t *p, struct lfpi_slot *s, uint32_t m)
{
	uint64_t h = lfp_load64_relaxed(&s->home_empty); /* K11: owner only */
	lfp_store32_relaxed(&lfpi_mag_next(p)[m], lfp_head_index(h)); /* K11 */
	lfp_store64_relaxed(&s->home_empty, lfp_head_next(h, m)); /* K11 */
}

/*
 * How many more empty magazines this thread may park at home (park_empty
 * parks one there, no CAS, while this is not 0, else on the depot). Home
 * empties are the owner's alone and a slot is claimed with two empties from
 * the depot, so a thread that parks every empty at home - then idles, or
 * only allocates, like a handoff's producer - would leave a later thread no
 * slot at all. The share,
 * (n_mags - 2) / (claimed + 1) - 2, leaves room for one more claim while the
 * claimed slots do not change; a thread that streams through its own
 * magazines (mt-batch) still finds most of its empties at home.
 */
static uint32_t home_room(const struct lfpi_tc *c)
{
	/* the share minus what is parked, minus 2 */
	const lfp_pool_t *p = c->pool;
	uint32_t claimed = lfp_load32_relaxed(&p->claimed); /* relaxed: a hint */
	/* A hint can be off (a reclaim of an owner that died mid-claim); never
	 * let it divide by zero. */
	if (claimed > p->cache_slots)
		claimed = p->cache_slots;
	uint32_t share = (p->n_mags - 2) / (claimed + 1);
	return share > c->n_hempty + 2 ? share - c->n_hempty - 2 : 0;
}

static void park_empty(struct lfpi_tc *c, uint32_t m)
{
	if (home_room(c) != 0) {
		hempty_push(c->pool, c->slot, m);
		c->n_hempty++;
	} else {
		mstack_push(c->pool, &c->pool->depot_empty, m);
	}
}

/* Park empty magazines a and b, each by park_empty's rule, except that two
 * past the share go to the depot together, as one chain with one CAS (K3):
 * a thread past its share pays one shared CAS per two magazines. */
static void park_empty2(struct lfpi_tc *c, uint32_t a, uint32_t b)
{
	lfp_pool_t *p = c->pool;
	if (home_room(c) != 0) {
		park_empty(c, a); /* home */
		park_empty(c, b); /* home, or the depot if a took the last room */
		return;
	}
	lfp_store32_relaxed(&lfpi_mag_next(p)[a], b); /* relaxed: published by K3 */
	lfpi_tagged_push_chain(lfpi_mag_next(p), &p->depot_empty, a, b); /* K3: pairs with K4 */
}

static uint32_t hempty_pop(lfp_pool_t *p, struct lfpi_slot *s)
{
	uint64_t h = lfp_load64_relaxed(&s->home_empty); /* K11: owner only */
	uint32_t m = lfp_head_index(h);
	if (m >= p->n_mags)
		return LFP_NIL; /* empty (or corrupt: validate reports it) */
	uint32_t nx = lfp_load32_relaxed(&lfpi_mag_next(p)[m]); /* K11 */
	lfp_store64_relaxed(&s->home_empty, lfp_head_next(h, nx)); /* K11 */
	return m;
}

/* ---- the shared free stack, whole chains ---------------------------------- */

uint32_t lfpi_stack_pop_chain(lfp_pool_t *p, uint32_t *out, uint32_t max)
{
	lfp_atomic_u32 *next = lfpi_next(p);
	const uint64_t count = p->count;
	unsigned spins = 0;
	uint64_t old = lfp_load64_acquire(&p->head); /* K5: pairs with R1 */

	for (;;) {
		uint32_t i = lfp_head_index(old), n = 0;
		while (n < max && i < count) {
			out[n++] = i;
			/* Relaxed: K5 ordered every push before the head we read
			 * (the pushes' release sequence); a link newer than that
			 * means the stack moved, and then the CAS fails. */
			i = lfp_load32_relaxed(&next[i]);
		}
		if (n == 0 && i == LFP_NIL)
			return 0;
		if (lfpi_unlikely(i >= count && i != LFP_NIL)) {
			/* A link of a block popped meanwhile (now marked), or
			 * corruption: as the core's pop, a no-op CAS that succeeds
			 * proves the head did not move. K6: acq_rel, pairs with
			 * R1/K5/A2. */
			if (lfp_cas64_acq_rel(&p->head, &old, old))
				return LFPI_POP_CORRUPT;
			continue;
		}
		if (lfp_cas64_weak_acquire(&p->head, &old, lfp_head_next(old, i))) /* K5: pairs with R1 */
			return n;
		lfp_backoff(&spins);
	}
}

/* Push magazine m's blocks onto the free stack as one chain linked here (the
 * overflow path), leaving m empty. */
static void spill(lfp_pool_t *p, uint32_t m)
{
	struct lfpi_mag *g = lfpi_mag_at(p, m);
	lfp_atomic_u32 *next = lfpi_next(p);
	uint32_t n = mag_count(p, m);

	if (n == 0)
		return;
	for (uint32_t j = 0; j + 1 < n; j++)
		lfp_store32_relaxed(&next[g->ent[j]], g->ent[j + 1]); /* relaxed: published by R1 */
	lfp_store32_relaxed(&g->count, 0); /* K1 */
	lfpi_stack_push_chain(p, g->ent[0], g->ent[n - 1]);
}

/* ---- in-band batches: a magazine's worth of indices kept in its own blocks --
 *
 * A batch is a chain of directories, each listing sub-carriers, all of them
 * blocks of the batch (W = stride / 4 words per block):
 *   directory:   [0] = s, sub-carriers listed (<= W - 2)
 *                [1] = next directory, or LFP_NIL
 *                [2 .. 2 + s) = the sub-carriers' indices
 *   sub-carrier: [0] = c, indices it holds (<= W - 1)
 *                [1 .. 1 + c) = block indices
 * The head directory is the batch stack's entry (its next[] word is the
 * stack link); every other block of the batch is marked LFPI_CACHED. An
 * unpacker learns every sub-carrier of a directory from one read, so their
 * (independent) reads overlap: a k-block batch of 64-byte blocks costs one
 * dependent miss per 225 blocks (k <= 225: one), not one per 15 blocks as a
 * chain of carriers would. */

#if defined(__GNUC__) || defined(__clang__)
#define lfpi_prefetch(a) __builtin_prefetch((a), 0, 3)
#else
#define lfpi_prefetch(a) ((void)(a))
#endif

/* Sub-carriers a directory lists: 0 if blocks are too small for batches. */
static uint32_t dir_cap(const lfp_pool_t *p)
{
	return p->stride >= 12 ? (uint32_t)(p->stride / 4 - 2) : 0;
}

static uint32_t rd32(const char *mem, uint32_t word)
{
	uint32_t v;
	memcpy(&v, mem + 4 * (size_t)word, sizeof v); /* any block alignment */
	return v;
}

static void wr32(char *mem, uint32_t word, uint32_t v)
{
	memcpy(mem + 4 * (size_t)word, &v, sizeof v);
}

/* Push carrier c (its batch already written) on a batch stack. */
static void bstack_push(lfp_pool_t *p, lfp_atomic_u64 *head, uint32_t c)
{
	tstack_push(lfpi_next(p), head, c);
}

/* Pop a batch's head carrier, or LFP_NIL (empty, or corrupt). */
static uint32_t bstack_pop(lfp_pool_t *p, lfp_atomic_u64 *head)
{
	lfp_atomic_u32 *next = lfpi_next(p);
	const uint64_t count = p->count;
	unsigned spins = 0;
	uint64_t old = lfp_load64_acquire(head); /* K4: pairs with K3 */
	for (;;) {
		uint32_t c = lfp_head_index(old);
		if (c == LFP_NIL || lfpi_unlikely(c >= count))
			return LFP_NIL;
		/* Relaxed: K4 made the pusher's link visible; a newer value
		 * means the head moved and the CAS fails. */
		uint32_t n = lfp_load32_relaxed(&next[c]);
		if (lfpi_unlikely(n >= count && n != LFP_NIL)) {
			/* c was popped meanwhile (its word is a mark now), or the
			 * link is corrupt: a no-op CAS that succeeds proves the
			 * head did not move (K6-like, acq_rel). */
			if (lfp_cas64_acq_rel(head, &old, old))
				return LFP_NIL;
			continue;
		}
		if (lfp_cas64_weak_acquire(head, &old, lfp_head_next(old, n))) /* K4: pairs with K3 */
			return c;
		lfp_backoff(&spins);
	}
}

/* Write ent[0..n) (n > 0) into their own blocks as one batch; returns its
 * head directory. */
static uint32_t batch_pack(lfp_pool_t *p, const uint32_t *ent, uint32_t n)
{
	const uint32_t ds = dir_cap(p), cs = ds + 1;
	uint32_t head = ent[0], i = 0;
	char *dir = NULL;

	while (i < n) {
		uint32_t d = ent[i++], s = 0;
		char *dm = lfpi_ptr(p, d);
		if (dir != NULL)
			wr32(dir, 1, d); /* the previous directory links here */
		dir = dm;
		while (s < ds && i < n) {
			uint32_t sc = ent[i++];
			uint32_t cnt = n - i < cs ? n - i : cs;
			char *sm = lfpi_ptr(p, sc);
			wr32(sm, 0, cnt);
			memcpy(sm + 4, &ent[i], 4 * (size_t)cnt);
			i += cnt;
			wr32(dm, 2 + s++, sc);
		}
		wr32(dm, 0, s);
	}
	wr32(dir, 1, LFP_NIL);
	return head;
}

/* Read the batch headed by c into out[0..), at most max blocks; true if it
 * was well formed (else out holds the blocks read before the fault). The
 * caller owns the batch (K4, or quiescence). */
static bool batch_unpack(const lfp_pool_t *p, uint32_t c, uint32_t *out, uint32_t max,
			 uint32_t *got)
{
	const uint32_t ds = dir_cap(p), cs = ds + 1;
	const uint64_t count = p->count;
	uint32_t n = 0;

	for (uint32_t d = c; d != LFP_NIL;) {
		if (lfpi_unlikely(d >= count || n >= max))
			goto bad;
		const char *dm = lfpi_ptr(p, d);
		uint32_t s = rd32(dm, 0), nd = rd32(dm, 1);
		if (lfpi_unlikely(s > ds))
			goto bad;
		out[n++] = d;
		/* Start every sub-carrier's read at once (they are independent). */
		for (uint32_t j = 0; j < s; j++) {
			uint32_t sc = rd32(dm, 2 + j);
			if (lfpi_likely(sc < count))
				lfpi_prefetch(lfpi_ptr(p, sc));
		}
		for (uint32_t j = 0; j < s; j++) {
			uint32_t sc = rd32(dm, 2 + j);
			if (lfpi_unlikely(sc >= count || n >= max))
				goto bad;
			const char *sm = lfpi_ptr(p, sc);
			uint32_t cnt = rd32(sm, 0);
			if (lfpi_unlikely(cnt > cs || cnt > max - n - 1))
				goto bad;
			out[n] = sc;
			memcpy(&out[n + 1], sm + 4, 4 * (size_t)cnt);
			uint32_t worst = 0; /* largest index: one compare for all */
			for (uint32_t x = 0; x < cnt; x++)
				worst = out[n + 1 + x] > worst ? out[n + 1 + x] : worst;
			if (lfpi_unlikely(worst >= count))
				goto bad;
			n += 1 + cnt;
		}
		d = nd;
	}
	*got = n;
	return true;
bad:
	*got = n;
	return false;
}

/* Write magazine m's blocks as one batch and push it on head; m ends empty.
 * The count goes to 0 before the push: a thread dying in between leaves
 * blocks marked LFPI_CACHED in no magazine, which lfpi_cache_sweep finds. */
static void spill_batch(lfp_pool_t *p, uint32_t m, lfp_atomic_u64 *head, lfp_atomic_u64 *counter)
{
	struct lfpi_mag *g = lfpi_mag_at(p, m);
	const uint32_t n = mag_count(p, m);

	if (n == 0)
		return;
	uint32_t top = batch_pack(p, g->ent, n);
	lfp_store32_relaxed(&g->count, 0); /* K1 */
	lfp_fetch_add64_relaxed(counter, n); /* relaxed: a statistic */
	bstack_push(p, head, top);
}

/* Pop a batch from head into empty magazine m; false if there was none. */
static bool take_batch(lfp_pool_t *p, lfp_atomic_u64 *head, lfp_atomic_u64 *counter, uint32_t m,
		       bool *corrupt)
{
	struct lfpi_mag *g = lfpi_mag_at(p, m);
	uint32_t c = bstack_pop(p, head), n = 0;

	if (c == LFP_NIL)
		return false;
	/* K4 gave us the batch: its blocks are ours to read. */
	lfp_store32_relaxed(&lfpi_next(p)[c], LFPI_CACHED); /* K2: the head joins the others */
	if (lfpi_unlikely(!batch_unpack(p, c, g->ent, p->cache_size, &n)))
		*corrupt = true; /* a block written after it was freed? */
	lfp_fetch_sub64_relaxed(counter, n); /* relaxed: a statistic */
	lfp_store32_relaxed(&g->count, n); /* K1 */
	return n != 0;
}

/* prev (or any magazine m) must be emptied and no empty magazine exists:
 * to a batch when blocks can carry one, else to the free stack as a chain. */
static void spill_any(lfp_pool_t *p, uint32_t m, lfp_atomic_u64 *batch_head,
		      lfp_atomic_u64 *counter)
{
	if (dir_cap(p) != 0)
		spill_batch(p, m, batch_head, counter);
	else
		spill(p, m);
}

/* Call fn(ctx, i) for every block of the batch headed by c but c itself, in
 * pack order, while fn returns true. False if fn stopped or the batch is
 * malformed (an index out of range, more than k blocks). Quiescent readers
 * (validate, sweep) and the thread that popped the batch. */
static bool batch_visit(const lfp_pool_t *p, uint32_t c, bool (*fn)(void *ctx, uint32_t i),
			void *ctx)
{
	const uint32_t ds = dir_cap(p), cs = ds + 1, k = p->cache_size;
	const uint64_t count = p->count;
	uint32_t n = 0;

	for (uint32_t d = c; d != LFP_NIL;) {
		if (d >= count || ++n > k || (d != c && !fn(ctx, d)))
			return false;
		const char *dm = lfpi_ptr(p, d);
		uint32_t s = rd32(dm, 0);
		if (s > ds)
			return false;
		for (uint32_t j = 0; j < s; j++) {
			uint32_t sc = rd32(dm, 2 + j);
			if (sc >= count || ++n > k || !fn(ctx, sc))
				return false;
			const char *sm = lfpi_ptr(p, sc);
			uint32_t cnt = rd32(sm, 0);
			if (cnt > cs)
				return false;
			for (uint32_t x = 1; x <= cnt; x++) {
				uint32_t i = rd32(sm, x);
				if (i >= count || ++n > k || !fn(ctx, i))
					return false;
			}
		}
		d = rd32(dm, 1);
	}
	return true;
}

struct link_ctx {
	lfp_atomic_u32 *next;
	uint32_t last, n;
};

static bool link_one(void *v, uint32_t i)
{
	struct link_ctx *l = v;
	lfp_store32_relaxed(&l->next[l->last], i); /* relaxed: published by R1 */
	l->last = i;
	l->n++;
	return true;
}

/* Pop a batch from head and put its blocks on the free stack as one chain
 * (for threads without a cache slot). False if there was none. */
static bool batch_to_stack(lfp_pool_t *p, lfp_atomic_u64 *head, lfp_atomic_u64 *counter)
{
	uint32_t c = bstack_pop(p, head);
	struct link_ctx l = { lfpi_next(p), c, 1 };

	if (c == LFP_NIL)
		return false;
	/* A malformed batch: keep what was linked (validate reports the rest). */
	(void)batch_visit(p, c, link_one, &l);
	lfp_fetch_sub64_relaxed(counter, l.n); /* relaxed: a statistic */
	lfpi_stack_push_chain(p, c, l.last);
	return true;
}

bool lfpi_cache_rescue(lfp_pool_t *p)
{
	uint32_t m = mstack_pop(p, &p->depot_full);
	if (m == LFP_NIL && batch_to_stack(p, &p->depot_batch, &p->batched))
		return true;
	for (uint32_t s = 0; m == LFP_NIL && s < p->cache_slots; s++) {
		struct lfpi_slot *sl = lfpi_slot_at(p, s);
		if (!mstack_empty_hint(&sl->home_full))
			m = mstack_pop(p, &sl->home_full);
		if (m == LFP_NIL && !mstack_empty_hint(&sl->home_batch) &&
		    batch_to_stack(p, &sl->home_batch, &sl->batched))
			return true;
	}
	if (m == LFP_NIL)
		return false;
	spill(p, m);
	mstack_push(p, &p->depot_empty, m);
	return true;
}

/* ---- a thread's view of its loaded magazine ------------------------------- */

static uint32_t tc_fill(const struct lfpi_tc *c)
{
	return c->inline_ok ? (uint32_t)(c->pub.top - c->pub.base) : c->fill;
}

/* The loaded magazine now holds n entries: publish it (slow paths). */
static void tc_set_fill(struct lfpi_tc *c, uint32_t n)
{
	lfp_store32_relaxed(&lfpi_mag_at(c->pool, c->loaded)->count, n); /* K1 */
	if (c->inline_ok)
		c->pub.top = c->pub.base + n;
	else
		c->fill = n;
}

static void tc_load(struct lfpi_tc *c, uint32_t m)
{
	lfp_pool_t *p = c->pool;
	struct lfpi_mag *g = lfpi_mag_at(p, m);
	uint32_t n = mag_count(p, m);

	if (lfpi_unlikely(n > p->cache_size)) {
		/* Only a corrupt region gets here: never index past the end. */
		n = p->cache_size;
		c->corrupt = true;
	}
	c->loaded = m;
	lfp_store32_relaxed(&c->slot->loaded, m); /* relaxed: read when quiescent, or after K8 */
	if (c->inline_ok) {
		c->pub.base = g->ent;
		c->pub.top = g->ent + n;
		c->pub.end = g->ent + p->cache_size;
		c->pub.count = (uint32_t *)(uintptr_t)&g->count;
	} else {
		c->fill = n;
	}
}

static void tc_set_prev(struct lfpi_tc *c, uint32_t m)
{
	c->prev = m;
	lfp_store32_relaxed(&c->slot->prev, m); /* relaxed: read when quiescent, or after K8 */
}

static void tc_swap(struct lfpi_tc *c)
{
	uint32_t l = c->loaded;
	tc_load(c, c->prev);
	tc_set_prev(c, l);
}

/* The fast-path fields that do not depend on the loaded magazine. */
static void tc_setup(struct lfpi_tc *c)
{
	lfp_pool_t *p = c->pool;
	/* ABI 2: stride = odd << shift; inv = odd^-1 mod 2^64 by Newton's
	 * iteration (3 correct bits from odd itself, doubled five times). */
	uint32_t shift = (uint32_t)__builtin_ctzll(p->stride);
	uint64_t odd = p->stride >> shift, inv = odd;
	for (int k = 0; k < 5; k++)
		inv *= 2 - odd * inv;
	c->inline_ok = c->slot != NULL && !(p->flags & (LFP_POOL_STATS | LFP_POOL_CHECKED));
	c->pub.marks = (uint32_t *)(uintptr_t)lfpi_next(p);
	c->pub.blocks = lfpi_blocks(p);
	c->pub.mark_alloc = LFPI_ALLOC;
	c->pub.stride = p->stride;
	c->pub.shift = shift;
	c->pub.inv = inv;
	c->pub.nblocks = c->inline_ok ? p->count : 0;
	c->dummy = 0;
	if (!c->inline_ok) {
		/* top == base == end: every inline call takes the slow path. */
		c->pub.top = c->pub.base = c->pub.end = c->pub.count = &c->dummy;
		c->fill = 0;
	}
}

/* The entry's pool is gone for this thread (destroyed, or a shared slot
 * forgotten in a fork child): point the inline fast path at the dummy word,
 * so a stale handle takes the slow path, which finds the cleared key and
 * fails with EINVAL instead of using the old region (which may still be
 * mapped: lfp_pool_init memory). Caller holds reg_mu, or is the only thread;
 * the entry's owner touches these fields only through that handle (invalid
 * by contract after destroy) or under reg_mu. */
static void tc_disarm(struct lfpi_tc *c)
{
	c->slot = NULL;
	c->inline_ok = false;
	c->fill = 0;
	c->pub.nblocks = 0;
	c->pub.top = c->pub.base = c->pub.end = c->pub.count = &c->dummy;
}

/* Steal the top two full magazines of another slot's home stack with one
 * CAS (the second, or LFP_NIL if there was one, in *second), starting at
 * the thread's hint; every slot is tried before giving up (an allocation
 * fails only if they all looked empty). Empty magazines are never stolen. */
static uint32_t steal(struct lfpi_tc *c, uint32_t *second)
{
	lfp_pool_t *p = c->pool;
	const uint32_t S = p->cache_slots;

	*second = LFP_NIL;
	for (uint32_t j = 0; j < S; j++) {
		uint32_t v = (c->victim + j) % S;
		if (v == c->slot_id)
			continue;
		lfp_atomic_u64 *h = &lfpi_slot_at(p, v)->home_full;
		if (mstack_empty_hint(h))
			continue;
		/* Two for one CAS, as from home: a consumer's line, so the
		 * fewer visits the better. */
		uint32_t m = mstack_pop2(p, h, second);
		if (m != LFP_NIL) {
			c->victim = v;
			return m;
		}
	}
	return LFP_NIL;
}

/* Steal a batch from another slot into the (empty) loaded magazine. */
static bool steal_batch(struct lfpi_tc *c)
{
	lfp_pool_t *p = c->pool;
	const uint32_t S = p->cache_slots;

	for (uint32_t j = 0; j < S; j++) {
		uint32_t v = (c->victim + j) % S;
		struct lfpi_slot *vs = lfpi_slot_at(p, v);
		if (v == c->slot_id || mstack_empty_hint(&vs->home_batch))
			continue;
		if (take_batch(p, &vs->home_batch, &vs->batched, c->loaded, &c->corrupt)) {
			c->victim = v;
			return true;
		}
	}
	return false;
}

/* Load full magazines m and m2 (loaded, prev) in place of the two empty
 * ones, then park those. Install first: until the slot's mirrors stop
 * naming a magazine it must be on no stack, or a reclaim after the owner's
 * death would push it a second time (a magazine between the two is "in no
 * place", which the sweep repairs; docs/caches.md section 6). */
static void tc_take_two(struct lfpi_tc *c, uint32_t m, uint32_t m2)
{
	uint32_t op = c->prev, ol = c->loaded;
	tc_set_prev(c, m2);
	tc_load(c, m);
	park_empty2(c, op, ol);
}

/* loaded is empty: make it non-empty, or return false (nothing anywhere). */
static bool tc_refill(struct lfpi_tc *c)
{
	lfp_pool_t *p = c->pool;
	struct lfpi_slot *s = c->slot;

	if (mag_count(p, c->prev) != 0) {
		tc_swap(c);
		return true;
	}
	uint32_t m2, m = mstack_pop2(p, &s->home_full, &m2);
	if (m2 != LFP_NIL) {
		/* Two full ones for one CAS: both empties go home (or, past
		 * the share, to the depot with one CAS). */
		tc_take_two(c, m, m2);
		return true;
	}
	if (m == LFP_NIL && take_batch(p, &s->home_batch, &s->batched, c->loaded, &c->corrupt))
		goto reload;
	if (m == LFP_NIL)
		m = mstack_pop(p, &p->depot_full);
	if (m == LFP_NIL && take_batch(p, &p->depot_batch, &p->batched, c->loaded, &c->corrupt))
		goto reload;
	if (m == LFP_NIL) {
		struct lfpi_mag *g = lfpi_mag_at(p, c->loaded);
		uint32_t n = lfpi_stack_pop_chain(p, g->ent, p->cache_size);
		if (lfpi_unlikely(n == LFPI_POP_CORRUPT)) {
			c->corrupt = true;
			n = 0;
		}
		if (n != 0) {
			lfp_atomic_u32 *next = lfpi_next(p);
			for (uint32_t j = 0; j < n; j++)
				lfp_store32_relaxed(&next[g->ent[j]], LFPI_CACHED); /* K2 */
			tc_set_fill(c, n);
			return true;
		}
		m = steal(c, &m2);
		if (m2 != LFP_NIL) {
			tc_take_two(c, m, m2);
			return true;
		}
		if (m == LFP_NIL && steal_batch(c))
			goto reload;
		if (m == LFP_NIL)
			return false;
	}
	/* loaded and prev are both empty: keep one as prev, park the other
	 * (installed first, as in tc_take_two; the mirrors name loaded twice
	 * for a moment, which slot_drain counts once). */
	uint32_t op = c->prev;
	tc_set_prev(c, c->loaded);
	tc_load(c, m);
	park_empty(c, op);
	return true;
reload: /* a batch was unpacked into loaded */
	tc_load(c, c->loaded);
	return true;
}

/* loaded is full: make room in it. */
static void tc_flush(struct lfpi_tc *c)
{
	lfp_pool_t *p = c->pool;
	struct lfpi_slot *s = c->slot;

	if (mag_count(p, c->prev) == 0) {
		tc_swap(c);
		return;
	}
	uint32_t e2 = LFP_NIL, e = hempty_pop(p, s);
	if (e != LFP_NIL) {
		c->n_hempty--;
		e2 = hempty_pop(p, s);
		if (e2 != LFP_NIL)
			c->n_hempty--;
	} else {
		/* None at home: two from the depot for one CAS. */
		e = mstack_pop2(p, &p->depot_empty, &e2);
	}
	/* The empties are installed before the full ones are pushed (see
	 * tc_take_two). */
	const uint32_t op = c->prev, ol = c->loaded;
	if (e2 != LFP_NIL) {
		/* Two empties: both full ones go to home_full as one chain,
		 * prev -> loaded, with one CAS (K3). */
		tc_set_prev(c, e2);
		tc_load(c, e);
		lfp_store32_relaxed(&lfpi_mag_next(p)[op], ol); /* relaxed: published by K3 */
		lfpi_tagged_push_chain(lfpi_mag_next(p), &s->home_full, op, ol); /* K3: pairs with K4 */
		return;
	}
	if (e != LFP_NIL) {
		tc_set_prev(c, ol);
		tc_load(c, e);
		mstack_push(p, &s->home_full, op);
		return;
	}
	/* No empty magazine anywhere: prev's blocks become an in-band batch on
	 * our home stack (or, if blocks are too small to carry one, a chain on
	 * the free stack that we link ourselves). */
	spill_any(p, c->prev, &s->home_batch, &s->batched);
	tc_swap(c);
}

/* Give everything slot s holds to the shared structures; its home stacks
 * move to the depot. `keep` (a flush: the owner keeps the slot): its loaded
 * and prev magazines end up empty (swapped for empty ones when there are
 * any, so the full ones travel whole); else (the slot is being freed) both
 * go to the depot and the slot holds none. Caller: the owner, or anyone once
 * the owner is dead or quiescent. `recover`: keep only entries still marked
 * LFPI_CACHED (a dead owner may have died mid-call, or mid-claim: then a
 * magazine id may still be LFP_NIL). */
static void slot_drain(lfp_pool_t *p, struct lfpi_slot *s, bool recover, bool keep)
{
	lfp_atomic_u32 *next = lfpi_next(p);

	/* Relaxed: ours, or K7/quiescence ordered it. An owner that died
	 * inside tc_swap or an install names one magazine as both loaded and
	 * prev: it is drained once. */
	const uint32_t first = lfp_load32_relaxed(&s->loaded);
	for (int w = 0; w < 2; w++) {
		lfp_atomic_u32 *which = w ? &s->prev : &s->loaded;
		uint32_t m = lfp_load32_relaxed(which); /* relaxed: as above */
		if (m >= p->n_mags)
			continue; /* none (LFP_NIL): the owner died mid-claim */
		if (w == 1 && m == first) {
			lfp_store32_relaxed(which, LFP_NIL); /* relaxed: as above */
			continue;
		}
		struct lfpi_mag *g = lfpi_mag_at(p, m);
		uint32_t n = mag_count(p, m);
		if (recover) {
			uint32_t kept = 0;
			if (n > p->cache_size)
				n = p->cache_size;
			for (uint32_t j = 0; j < n; j++) {
				uint32_t i = g->ent[j];
				/* relaxed: the owner is dead; its stores are all done */
				if (i < p->count && lfp_load32_relaxed(&next[i]) == LFPI_CACHED)
					g->ent[kept++] = i;
			}
			n = kept;
			lfp_store32_relaxed(&g->count, n); /* K1 */
		}
		if (!keep) {
			/* NIL first: a drainer dying before the push leaves the
			 * magazine nowhere, which lfpi_cache_sweep repairs. */
			lfp_store32_relaxed(which, LFP_NIL); /* relaxed: as above */
			mstack_push(p, n ? &p->depot_full : &p->depot_empty, m);
			continue;
		}
		if (n == 0)
			continue;
		uint32_t e = hempty_pop(p, s);
		if (e == LFP_NIL)
			e = mstack_pop(p, &p->depot_empty);
		if (e != LFP_NIL) {
			lfp_store32_relaxed(which, e); /* relaxed: as above */
			mstack_push(p, &p->depot_full, m);
		} else {
			spill_any(p, m, &p->depot_batch, &p->batched);
		}
	}
	uint32_t m;
	while ((m = mstack_pop(p, &s->home_full)) != LFP_NIL)
		mstack_push(p, &p->depot_full, m);
	while ((m = hempty_pop(p, s)) != LFP_NIL)
		mstack_push(p, &p->depot_empty, m);
	while ((m = bstack_pop(p, &s->home_batch)) != LFP_NIL)
		bstack_push(p, &p->depot_batch, m);
	/* The count follows: relaxed, statistics. A thief racing with this
	 * moves its own delta; the sum over all counters stays exact modulo
	 * 2^64, so a quiescent count is exact. */
	uint64_t b = lfp_load64_relaxed(&s->batched);
	lfp_fetch_sub64_relaxed(&s->batched, b);
	lfp_fetch_add64_relaxed(&p->batched, b);
}

/* An empty magazine for a slot being claimed: a spare one from the depot,
 * else a full one (from the depot, or stolen from a home stack) whose blocks
 * first become an in-band batch on the depot (or a chain on the free stack).
 * One always exists at rest: claimed slots hold 2 of the 2 S + D magazines,
 * and this slot was free. LFP_NIL only if every other one was in flight. */
static uint32_t take_empty(lfp_pool_t *p)
{
	uint32_t m = mstack_pop(p, &p->depot_empty);
	if (m != LFP_NIL)
		return m;
	m = mstack_pop(p, &p->depot_full);
	for (uint32_t s = 0; m == LFP_NIL && s < p->cache_slots; s++) {
		lfp_atomic_u64 *h = &lfpi_slot_at(p, s)->home_full;
		if (!mstack_empty_hint(h))
			m = mstack_pop(p, h);
	}
	if (m != LFP_NIL)
		spill_any(p, m, &p->depot_batch, &p->batched);
	return m;
}

static uint64_t owner_tag(const lfp_pool_t *p)
{
	uint32_t part = lfpi_cache_participant_hook ? lfpi_cache_participant_hook(p) : 0;
	return (uint64_t)part << 32 | (tls.serial ? tls.serial : 1u);
}

/* Claim a free slot of c->pool for this thread. */
static bool tc_claim(struct lfpi_tc *c)
{
	lfp_pool_t *p = c->pool;
	const uint32_t S = p->cache_slots;
	const uint64_t tag = owner_tag(p);

	for (uint32_t j = 0; j < S; j++) {
		uint32_t sid = (tls.serial + j) % S;
		struct lfpi_slot *s = lfpi_slot_at(p, sid);
		uint64_t expect = 0;
		if (lfp_load64_relaxed(&s->owner) != 0) /* relaxed: a hint; the CAS decides */
			continue;
		if (!lfp_cas64_acquire(&s->owner, &expect, tag)) /* K7: pairs with K8 */
			continue;
		/* A free slot holds no magazine: take two empty ones. */
		uint32_t a = take_empty(p), b = a == LFP_NIL ? LFP_NIL : take_empty(p);
		if (b == LFP_NIL) {
			/* Every magazine was in flight (a tiny depot under
			 * contention): run slotless for now, retry later. */
			if (a != LFP_NIL)
				mstack_push(p, &p->depot_empty, a);
			lfp_store64_release(&s->owner, 0); /* K8: pairs with K7 */
			break;
		}
		lfp_store32_relaxed(&s->loaded, a); /* relaxed: read when quiescent, or after K8 */
		lfp_store32_relaxed(&s->prev, b);   /* relaxed: as above */
		c->slot = s;
		c->slot_id = sid;
		c->victim = (sid + 1) % S;
		c->n_hempty = 0;
		lfp_fetch_add32_relaxed(&p->claimed, 1); /* relaxed: a hint (park_empty) */
		tc_setup(c);
		c->prev = b;
		tc_load(c, a);
		return true;
	}
	c->slot = NULL;
	tc_setup(c);
	return false;
}

/* Drain this thread's slot and free it. */
static void tc_release(struct lfpi_tc *c)
{
	if (c->slot == NULL)
		return;
	slot_drain(c->pool, c->slot, false, false);
	lfp_fetch_sub32_relaxed(&c->pool->claimed, 1); /* relaxed: a hint */
	lfp_store64_release(&c->slot->owner, 0); /* K8: pairs with K7 */
	c->slot = NULL;
	tc_setup(c);
}

/* ---- the thread table and the registry ------------------------------------ */

static void tls_exit(void *arg);

static void fork_prepare(void)
{
	pthread_mutex_lock(&reg_mu);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&reg_mu);
}

/* In the child only this thread exists. Its caches of private pools stay
 * (the child has its own copy of those regions, slot included); a shared
 * region's slot belongs to the parent's thread, so it is forgotten. Other
 * threads' slots in the child's private copies are lost to the child. */
static void fork_child(void)
{
	reg_head = NULL;
	lfpi_last = (struct lfpi_last){ NULL, 0, NULL };
	if (tls.registered) {
		tls.next = tls.prev = NULL;
		reg_head = &tls;
		tls.serial = lfp_fetch_add32_relaxed(&thread_serial, 1) + 1; /* relaxed: a unique number */
		for (uint32_t e = 0; e < TLS_ENTRIES; e++) {
			struct lfpi_tc *c = &tls.tc[e];
			if (lfp_load64_relaxed(&c->key_pool) != 0 && (c->pool->flags & LFPI_POOL_SHARED)) { /* K9 */
				lfp_store64_relaxed(&c->key_pool, 0); /* K9 */
				lfp_store64_relaxed(&c->key_inst, 0); /* K9 */
				tc_disarm(c); /* a kept handle must not reach the parent's magazine */
				c->pinned = false;
			}
		}
	}
	pthread_mutex_unlock(&reg_mu);
}

static void reg_init(void)
{
	reg_key_ok = pthread_key_create(&reg_key, tls_exit) == 0;
	if (reg_key_ok && pthread_atfork(fork_prepare, fork_parent, fork_child) != 0) {
		pthread_key_delete(reg_key);
		reg_key_ok = false;
	}
}

static bool tls_register(void)
{
	if (tls.registered)
		return true;
	if (pthread_once(&reg_once, reg_init) != 0 || !reg_key_ok)
		return false;
	if (tls_cur == &tls_none) {
		pthread_mutex_lock(&reg_mu);
		struct lfpi_tls *t = tls_spare;
		if (t != NULL)
			tls_spare = t->next;
		pthread_mutex_unlock(&reg_mu);
		if (t != NULL)
			memset(t, 0, sizeof *t);
		else if ((t = lfpi_map_zeroed(sizeof *t)) == NULL)
			return false; /* the caller runs uncached */
		tls_cur = t;
	}
	pthread_mutex_lock(&reg_mu);
	tls.prev = NULL;
	tls.next = reg_head;
	if (reg_head)
		reg_head->prev = &tls;
	reg_head = &tls;
	tls.registered = true;
	if (tls.serial == 0)
		tls.serial = lfp_fetch_add32_relaxed(&thread_serial, 1) + 1; /* relaxed: a unique number */
	pthread_mutex_unlock(&reg_mu);
	/* A non-NULL value makes the destructor run at thread exit. */
	if (pthread_setspecific(reg_key, &tls) != 0) {
		pthread_mutex_lock(&reg_mu);
		if (tls.prev)
			tls.prev->next = tls.next;
		else
			reg_head = tls.next;
		if (tls.next)
			tls.next->prev = tls.prev;
		tls.registered = false;
		pthread_mutex_unlock(&reg_mu);
		return false;
	}
	return true;
}

static void tc_clear_key(struct lfpi_tc *c)
{
	lfp_store64_relaxed(&c->key_pool, 0); /* K9 (caller holds reg_mu) */
	lfp_store64_relaxed(&c->key_inst, 0); /* K9 */
}

/* Thread exit: drain and free every slot, leave the registry. */
static void tls_exit(void *arg)
{
	struct lfpi_tls *t = arg;
	if (t == &tls_none)
		return; /* never registered (not reached: the key holds a table) */

	pthread_mutex_lock(&reg_mu);
	for (uint32_t e = 0; e < TLS_ENTRIES; e++) {
		struct lfpi_tc *c = &t->tc[e];
		if (lfp_load64_relaxed(&c->key_pool) == 0) /* K9 */
			continue;
		tc_release(c);
		tc_clear_key(c);
		c->pinned = false;
	}
	if (t->prev)
		t->prev->next = t->next;
	else
		reg_head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->prev = NULL;
	t->registered = false;
	/* Off the registry; kept for the next thread (its entries disarmed). A
	 * later call of this thread (another destructor) starts over from
	 * tls_none. */
	t->next = tls_spare;
	tls_spare = t;
	if (tls_cur == t)
		tls_cur = &tls_none;
	pthread_mutex_unlock(&reg_mu);
	lfpi_last = (struct lfpi_last){ NULL, 0, NULL };
}

static uint32_t tls_hash(const lfp_pool_t *p)
{
	return (uint32_t)(((uint64_t)(uintptr_t)p >> 6) * UINT64_C(0x9E3779B97F4A7C15) >> 58) &
	       (TLS_ENTRIES - 1);
}

static struct lfpi_tc *tc_find(const lfp_pool_t *p)
{
	const uint32_t h = tls_hash(p);
	for (uint32_t k = 0; k < TLS_PROBE; k++) {
		struct lfpi_tc *c = &tls.tc[(h + k) & (TLS_ENTRIES - 1)];
		if (lfp_load64_relaxed(&c->key_pool) == (uint64_t)(uintptr_t)p && /* K9 */
		    lfp_load64_relaxed(&c->key_inst) == p->instance)                /* K9 */
			return c;
	}
	return NULL;
}

/* A new entry for p in this thread's table: a free one, else an unpinned
 * one (drained and freed first); NULL if every candidate is pinned. */
static struct lfpi_tc *tc_create(lfp_pool_t *p, bool pin)
{
	const uint32_t h = tls_hash(p);
	struct lfpi_tc *c = NULL;

	if (!tls_register())
		return NULL;
	for (uint32_t k = 0; k < TLS_PROBE && c == NULL; k++) {
		struct lfpi_tc *e = &tls.tc[(h + k) & (TLS_ENTRIES - 1)];
		if (lfp_load64_relaxed(&e->key_pool) == 0) /* K9 */
			c = e;
	}
	for (uint32_t k = 0; k < TLS_PROBE && c == NULL; k++) {
		struct lfpi_tc *e = &tls.tc[(h + k) & (TLS_ENTRIES - 1)];
		if (!e->pinned)
			c = e;
	}
	if (c == NULL)
		return NULL;
	pthread_mutex_lock(&reg_mu);
	last_forget(c);
	if (lfp_load64_relaxed(&c->key_pool) != 0) { /* K9: evict (its pool is alive: a
						      * destroy would have cleared the key) */
		tc_release(c);
		tc_clear_key(c);
	}
	memset(c, 0, offsetof(struct lfpi_tc, key_pool));
	c->pool = p;
	c->slot = NULL;
	c->pinned = pin;
	c->corrupt = false;
	c->retry = 0;
	if (p->cache_slots == 0 || !tc_claim(c))
		tc_setup(c);
	lfp_store64_relaxed(&c->key_inst, p->instance);               /* K9 */
	lfp_store64_relaxed(&c->key_pool, (uint64_t)(uintptr_t)p);    /* K9 */
	pthread_mutex_unlock(&reg_mu);
	return c;
}

struct lfp_cache *lfpi_cache_lookup(lfp_pool_t *p)
{
	struct lfpi_tc *c = tc_find(p);
	if (c == NULL)
		c = tc_create(p, false);
	if (c == NULL)
		return NULL;
	lfpi_last = (struct lfpi_last){ p, p->instance, &c->pub };
	return &c->pub;
}

/* ---- public entry points --------------------------------------------------- */

lfp_cache_t *lfp_pool_cache(lfp_pool_t *pool)
{
	if (!lfpi_live(pool)) {
		errno = EINVAL;
		return NULL;
	}
	struct lfpi_tc *c = tc_find(pool);
	if (c != NULL)
		c->pinned = true;
	else
		c = tc_create(pool, true);
	if (c == NULL) {
		errno = tls.registered ? ENOSPC : ENOMEM; /* no table for this thread */
		return NULL;
	}
	return &c->pub;
}

/* A handle whose key was cleared (its pool destroyed, or never made). */
static bool tc_live(struct lfpi_tc *c)
{
	return c != NULL && lfp_load64_relaxed(&c->key_pool) != 0 && lfpi_live(c->pool); /* K9 */
}

static void maybe_claim(struct lfpi_tc *c)
{
	if (c->pool->cache_slots && ++c->retry >= CLAIM_RETRY) {
		c->retry = 0;
		(void)tc_claim(c);
	}
}

void *lfp_cache_alloc_slow(lfp_cache_t *h)
{
	struct lfpi_tc *c = tc_of(h);
	if (lfpi_unlikely(!tc_live(c))) {
		errno = EINVAL;
		return NULL;
	}
	lfp_pool_t *p = c->pool;
	if (c->slot == NULL) {
		maybe_claim(c);
		if (c->slot == NULL)
			return lfpi_pool_alloc_uncached(p);
	}
	uint32_t n = tc_fill(c);
	if (n == 0) {
		if (!tc_refill(c)) {
			lfp_fetch_add64_relaxed(&p->n_fail, 1); /* relaxed: statistics */
			errno = c->corrupt ? EUCLEAN : ENOMEM;
			c->corrupt = false;
			return NULL;
		}
		n = tc_fill(c);
	}
	uint32_t i = lfpi_mag_at(p, c->loaded)->ent[n - 1];
	tc_set_fill(c, n - 1);
	lfp_store32_relaxed(&lfpi_next(p)[i], c->pub.mark_alloc); /* K2 */
	if (p->flags & LFP_POOL_STATS)
		lfpi_count_alloc(p);
	return lfpi_ptr(p, i);
}

int lfp_cache_free_slow(lfp_cache_t *h, void *ptr)
{
	struct lfpi_tc *c = tc_of(h);
	if (lfpi_unlikely(!tc_live(c)))
		return -EINVAL;
	if (ptr == NULL)
		return 0;
	lfp_pool_t *p = c->pool;
	if (c->slot == NULL) {
		maybe_claim(c);
		if (c->slot == NULL)
			return lfpi_pool_free_uncached(p, ptr);
	}
	int64_t i = lfpi_index(p, ptr);
	if (lfpi_unlikely(i < 0))
		return -EINVAL;
	lfp_atomic_u32 *link = &lfpi_next(p)[i];
	if (p->flags & LFP_POOL_CHECKED) {
		uint32_t expect = c->pub.mark_alloc;
		/* K2 relaxed CAS: only atomicity matters (one of two racing
		 * freers wins); the block is published by K3/R1 later. */
		if (!lfp_cas32_relaxed(link, &expect, LFPI_CACHED))
			return -EALREADY;
	} else {
		if (lfp_load32_relaxed(link) != c->pub.mark_alloc) /* K2 */
			return -EALREADY;
		lfp_store32_relaxed(link, LFPI_CACHED); /* K2 */
	}
	if (p->flags & LFP_POOL_STATS)
		lfp_fetch_add64_relaxed(&p->n_free, 1); /* relaxed: statistics */
	uint32_t n = tc_fill(c);
	if (n == p->cache_size) {
		tc_flush(c);
		n = tc_fill(c);
	}
	lfpi_mag_at(p, c->loaded)->ent[n] = (uint32_t)i;
	tc_set_fill(c, n + 1);
	return 0;
}

int lfp_pool_cache_flush(lfp_pool_t *pool)
{
	if (!lfpi_live(pool))
		return -EINVAL;
	if (pool->cache_slots == 0)
		return 0;
	struct lfpi_tc *c = tc_find(pool);
	if (c == NULL || c->slot == NULL)
		return 0;
	slot_drain(pool, c->slot, false, true);
	c->n_hempty = 0; /* the drain moved home's empties to the depot */
	c->prev = lfp_load32_relaxed(&c->slot->prev); /* relaxed: our own slot */
	tc_load(c, lfp_load32_relaxed(&c->slot->loaded));
	return 0;
}

/* ---- bulk helpers (pool/bulk.c) -------------------------------------------- */

static struct lfpi_tc *tc_slotted(lfp_pool_t *p)
{
	if (p->cache_slots == 0)
		return NULL;
	struct lfp_cache *h = lfpi_cache_lookup(p);
	struct lfpi_tc *c = h ? tc_of(h) : NULL;
	return c && c->slot ? c : NULL;
}

int64_t lfpi_cache_take(lfp_pool_t *p, uint32_t *idx, uint32_t n, int *err)
{
	struct lfpi_tc *c = tc_slotted(p);
	lfp_atomic_u32 *next = lfpi_next(p);
	uint32_t got = 0;

	if (c == NULL)
		return -1;
	while (got < n) {
		uint32_t have = tc_fill(c);
		if (have == 0) {
			if (!tc_refill(c)) {
				*err = c->corrupt ? EUCLEAN : ENOMEM;
				c->corrupt = false;
				break;
			}
			have = tc_fill(c);
		}
		uint32_t take = have < n - got ? have : n - got;
		const uint32_t *ent = lfpi_mag_at(p, c->loaded)->ent + (have - take);
		for (uint32_t j = 0; j < take; j++) {
			idx[got + j] = ent[take - 1 - j]; /* LIFO, as single allocs */
			lfp_store32_relaxed(&next[idx[got + j]], c->pub.mark_alloc); /* K2 */
		}
		tc_set_fill(c, have - take);
		got += take;
	}
	return got;
}

int lfpi_cache_put(lfp_pool_t *p, const uint32_t *idx, uint32_t n)
{
	struct lfpi_tc *c = tc_slotted(p);
	const uint32_t k = p->cache_size;
	uint32_t done = 0;

	if (c == NULL)
		return -1;
	while (done < n) {
		uint32_t have = tc_fill(c);
		if (have == k) {
			tc_flush(c);
			have = tc_fill(c);
		}
		uint32_t put = k - have < n - done ? k - have : n - done;
		uint32_t *ent = lfpi_mag_at(p, c->loaded)->ent + have;
		memcpy(ent, idx + done, (size_t)put * sizeof *ent);
		tc_set_fill(c, have + put);
		done += put;
	}
	return 0;
}

/* ---- pool-wide: init, destroy, counting, validation, recovery -------------- */

void lfpi_cache_init(lfp_pool_t *p)
{
	lfp_atomic_u32 *mn = lfpi_mag_next(p);

	for (uint32_t s = 0; s < p->cache_slots; s++) {
		struct lfpi_slot *sl = lfpi_slot_at(p, s);
		memset(sl, 0, sizeof *sl);
		lfp_init64(&sl->owner, 0);
		lfp_init32(&sl->loaded, LFP_NIL); /* a free slot holds no magazine */
		lfp_init32(&sl->prev, LFP_NIL);
		lfp_init64(&sl->home_full, lfp_head_make(LFP_NIL, 0));
		lfp_init64(&sl->home_empty, lfp_head_make(LFP_NIL, 0));
		lfp_init64(&sl->home_batch, lfp_head_make(LFP_NIL, 0));
		lfp_init64(&sl->batched, 0);
	}
	/* A count that reads 0 already is not written: in a fresh anonymous
	 * mapping (lfp_pool_create) the magazines' pages then stay untouched
	 * until a thread first fills one, so a big pool's cache area (about
	 * 4.6 bytes per block by default) is not resident at birth.
	 * The pool is not published yet: nothing else reads these words. */
	for (uint32_t m = 0; m < p->n_mags; m++)
		if (lfp_load32_relaxed(&lfpi_mag_at(p, m)->count) != 0) /* relaxed: unpublished pool */
			lfp_init32(&lfpi_mag_at(p, m)->count, 0);
	/* Every magazine starts on depot_empty, linked in order: a slot takes
	 * two when a thread claims it and gives them back when it is freed, so
	 * the magazines of slots nobody holds serve the threads that run. */
	for (uint32_t m = 0; m < p->n_mags; m++)
		lfp_init32(&mn[m], m + 1 < p->n_mags ? m + 1 : LFP_NIL);
	lfp_init64(&p->depot_empty, lfp_head_make(p->n_mags ? 0 : LFP_NIL, 0));
}

void lfpi_cache_destroy(lfp_pool_t *p)
{
	const uint64_t key = (uint64_t)(uintptr_t)p, inst = p->instance;

	/* No thread of this process may keep (and at exit drain) a key to p. */
	if (pthread_once(&reg_once, reg_init) == 0 && reg_key_ok) {
		pthread_mutex_lock(&reg_mu);
		for (struct lfpi_tls *t = reg_head; t != NULL; t = t->next)
			for (uint32_t e = 0; e < TLS_ENTRIES; e++) {
				struct lfpi_tc *c = &t->tc[e];
				if (lfp_load64_relaxed(&c->key_pool) == key && /* K9 */
				    lfp_load64_relaxed(&c->key_inst) == inst) { /* K9 */
					tc_clear_key(c);
					tc_disarm(c); /* a stale handle gets EINVAL */
				}
			}
		pthread_mutex_unlock(&reg_mu);
	}
	/* Quiescent by contract: drain what the slots still hold, so a region
	 * handed back to its caller is consistent. */
	for (uint32_t s = 0; s < p->cache_slots; s++) {
		struct lfpi_slot *sl = lfpi_slot_at(p, s);
		if (lfp_load64_relaxed(&sl->owner) == 0) /* relaxed: quiescent */
			continue;
		slot_drain(p, sl, false, false);
		lfp_fetch_sub32_relaxed(&p->claimed, 1); /* relaxed: a hint */
		lfp_store64_release(&sl->owner, 0); /* K8 */
	}
}

uint64_t lfpi_cache_count(const lfp_pool_t *p)
{
	uint64_t n = lfp_load64_relaxed(&p->batched); /* relaxed: a statistic */
	for (uint32_t s = 0; s < p->cache_slots; s++)
		n += lfp_load64_relaxed(&lfpi_slot_at(p, s)->batched); /* relaxed: a statistic */
	for (uint32_t m = 0; m < p->n_mags; m++)
		n += mag_count(p, m); /* K1: a snapshot */
	return n;
}

static int vfail(lfp_pool_report_t *r, const char *why, uint32_t idx)
{
	r->error = why;
	r->bad_index = idx;
	return -EUCLEAN;
}

/* Mark every magazine reachable from head in seen[]; -EUCLEAN on a magazine
 * met twice, an id out of range or a count of the wrong kind. */
static int walk_mags(const lfp_pool_t *p, const lfp_atomic_u64 *head, bool empties,
		     uint64_t *seen, lfp_pool_report_t *r)
{
	const lfp_atomic_u32 *mn = lfpi_mag_next(p);
	uint32_t m = lfp_head_index(lfp_load64_acquire(head)); /* K4: pairs with K3 */
	uint32_t steps = 0;

	while (m != LFP_NIL) {
		if (m >= p->n_mags)
			return vfail(r, "magazine stack link out of range", m);
		if (seen[m / 64] & (UINT64_C(1) << (m % 64)))
			return vfail(r, "a magazine is in two places", m);
		seen[m / 64] |= UINT64_C(1) << (m % 64);
		uint32_t n = mag_count(p, m);
		if (empties ? n != 0 : n == 0)
			return vfail(r, empties ? "a magazine on an empty stack holds blocks"
						: "an empty magazine on a full stack", m);
		if (++steps > p->n_mags)
			return vfail(r, "magazine stack has a cycle", m);
		m = lfp_load32_relaxed(&mn[m]); /* relaxed: quiescent */
	}
	return 0;
}

struct vis_ctx {
	const lfp_atomic_u32 *next;
	uint64_t entries, digest;
	uint32_t bad; /* the block that failed, or LFP_NIL */
};

static bool check_cached(void *v, uint32_t i)
{
	struct vis_ctx *x = v;
	if (lfp_load32_relaxed(&x->next[i]) != LFPI_CACHED) { /* relaxed: quiescent */
		x->bad = i;
		return false;
	}
	x->entries++;
	x->digest += lfpi_index_hash(i);
	return true;
}

/* Walk a batch stack (quiescent): every head's link in range, every other
 * block of each batch marked LFPI_CACHED; adds them to *entries and *digest
 * and the heads to *heads. */
static int walk_batches(const lfp_pool_t *p, const lfp_atomic_u64 *head, lfp_pool_report_t *r,
			uint64_t *entries, uint64_t *digest, uint64_t *heads)
{
	const lfp_atomic_u32 *next = lfpi_next(p);
	const uint64_t count = p->count;
	uint64_t steps = 0;
	uint32_t b = lfp_head_index(lfp_load64_acquire(head)); /* K4: pairs with K3 */

	while (b != LFP_NIL) {
		if (b >= count || ++steps > count)
			return vfail(r, "batch stack link out of range, or a cycle", b);
		if (dir_cap(p) == 0)
			return vfail(r, "a batch in a pool whose blocks cannot carry one", b);
		(*heads)++;
		struct vis_ctx x = { next, 0, 0, LFP_NIL };
		if (!batch_visit(p, b, check_cached, &x))
			return x.bad != LFP_NIL ? vfail(r, "batch block not marked cached", x.bad)
						: vfail(r, "batch malformed: index out of range or too long", b);
		*entries += x.entries;
		*digest += x.digest;
		b = lfp_load32_relaxed(&next[b]); /* relaxed: quiescent */
	}
	return 0;
}

int lfpi_cache_validate(const lfp_pool_t *p, lfp_pool_report_t *r, uint64_t *entries,
			uint64_t *digest, uint64_t *heads)
{
	uint64_t seen[(LFPI_CACHE_MAX_MAGS + 64) / 64];
	const lfp_atomic_u32 *next = lfpi_next(p);
	int rc;

	memset(seen, 0, sizeof seen);
	*entries = 0;
	*digest = 0;
	*heads = 0;
	const unsigned char *z = (const unsigned char *)&tls_none;
	for (size_t i = 0; i < sizeof tls_none; i++)
		if (z[i] != 0)
			return vfail(r, "the table of threads with none (tls_none) was written", UINT32_MAX);
	if (p->n_mags > LFPI_CACHE_MAX_MAGS || p->n_mags < 2 * p->cache_slots)
		return vfail(r, "cache header out of range", UINT32_MAX);
	if ((rc = walk_mags(p, &p->depot_full, false, seen, r)) < 0 ||
	    (rc = walk_mags(p, &p->depot_empty, true, seen, r)) < 0 ||
	    (rc = walk_batches(p, &p->depot_batch, r, entries, digest, heads)) < 0)
		return rc;
	for (uint32_t s = 0; s < p->cache_slots; s++) {
		const struct lfpi_slot *sl = lfpi_slot_at(p, s);
		if ((rc = walk_mags(p, &sl->home_full, false, seen, r)) < 0 ||
		    (rc = walk_mags(p, &sl->home_empty, true, seen, r)) < 0 ||
		    (rc = walk_batches(p, &sl->home_batch, r, entries, digest, heads)) < 0)
			return rc;
		uint32_t two[2] = { lfp_load32_relaxed(&sl->loaded), lfp_load32_relaxed(&sl->prev) }; /* relaxed: quiescent */
		bool claimed = lfp_load64_relaxed(&sl->owner) != 0; /* relaxed: quiescent */
		for (int w = 0; w < 2; w++) {
			uint32_t m = two[w];
			if (!claimed && m == LFP_NIL)
				continue; /* a free slot holds no magazine */
			if (!claimed)
				return vfail(r, "a free slot holds a magazine", m);
			if (m >= p->n_mags)
				return vfail(r, "slot holds a magazine id out of range", m);
			if (seen[m / 64] & (UINT64_C(1) << (m % 64)))
				return vfail(r, "a magazine is in two places", m);
			seen[m / 64] |= UINT64_C(1) << (m % 64);
		}
	}
	for (uint32_t m = 0; m < p->n_mags; m++) {
		if (!(seen[m / 64] & (UINT64_C(1) << (m % 64))))
			return vfail(r, "a magazine is nowhere (lost)", m);
		const struct lfpi_mag *g = lfpi_mag_at(p, m);
		uint32_t n = mag_count(p, m);
		if (n > p->cache_size)
			return vfail(r, "magazine count above its size", m);
		for (uint32_t j = 0; j < n; j++) {
			uint32_t i = g->ent[j];
			if (i >= p->count)
				return vfail(r, "magazine entry out of range", i);
			if (lfp_load32_relaxed(&next[i]) != LFPI_CACHED) /* relaxed: quiescent */
				return vfail(r, "magazine entry not marked cached", i);
			*digest += lfpi_index_hash(i);
		}
		*entries += n;
	}
	return 0;
}

int lfpi_cache_reclaim_slot(lfp_pool_t *p, uint32_t s)
{
	if (!lfpi_live(p) || s >= p->cache_slots)
		return -EINVAL;
	struct lfpi_slot *sl = lfpi_slot_at(p, s);
	/* Acquire: what the dead owner stored before it died (K7-like). */
	if (lfp_load64_acquire(&sl->owner) == 0)
		return -EINVAL;
	slot_drain(p, sl, true, false);
	/* An owner that died between its owner CAS and its count (or between
	 * its count and its release) was never counted, or no longer is: do
	 * not take the hint below zero. Relaxed: a hint. */
	uint32_t n = lfp_load32_relaxed(&p->claimed);
	while (n != 0 && !lfp_cas32_relaxed(&p->claimed, &n, n - 1))
		;
	lfp_store64_release(&sl->owner, 0); /* K8: pairs with K7 */
	return 0;
}

static void sweep_mark(uint32_t m, uint64_t *seen)
{
	seen[m / 64] |= UINT64_C(1) << (m % 64);
}

static void sweep_stack(lfp_pool_t *p, const lfp_atomic_u64 *head, uint64_t *seen)
{
	const lfp_atomic_u32 *mn = lfpi_mag_next(p);
	uint32_t m = lfp_head_index(lfp_load64_acquire(head)); /* K4: pairs with K3 */
	for (uint32_t steps = 0; m < p->n_mags && steps < p->n_mags; steps++) {
		sweep_mark(m, seen);
		m = lfp_load32_relaxed(&mn[m]); /* relaxed: quiescent */
	}
}

/* Keep entries still marked LFPI_CACHED (and mark them seen); drop the rest. */
static void sweep_mag(lfp_pool_t *p, uint32_t m)
{
	lfp_atomic_u32 *next = lfpi_next(p);
	struct lfpi_mag *g = lfpi_mag_at(p, m);
	uint32_t n = mag_count(p, m), kept = 0;
	if (n > p->cache_size)
		n = p->cache_size;
	for (uint32_t j = 0; j < n; j++) {
		uint32_t i = g->ent[j];
		if (i < p->count && lfp_load32_relaxed(&next[i]) == LFPI_CACHED) { /* relaxed: quiescent */
			lfp_store32_relaxed(&next[i], LFPI_SEEN); /* relaxed: quiescent */
			g->ent[kept++] = i;
		}
	}
	lfp_store32_relaxed(&g->count, kept); /* K1 */
}

static bool mark_seen(void *v, uint32_t i)
{
	lfp_atomic_u32 *next = v;
	if (lfp_load32_relaxed(&next[i]) == LFPI_CACHED) /* relaxed: quiescent */
		lfp_store32_relaxed(&next[i], LFPI_SEEN); /* relaxed: quiescent */
	return true;
}

/* Mark the blocks of every batch on head seen (they are reachable; a
 * malformed batch's blocks past the fault stay orphans). */
static void sweep_batches(lfp_pool_t *p, const lfp_atomic_u64 *head)
{
	lfp_atomic_u32 *next = lfpi_next(p);
	uint64_t steps = 0;
	uint32_t b = lfp_head_index(lfp_load64_acquire(head)); /* K4: pairs with K3 */
	while (b < p->count && dir_cap(p) != 0 && steps++ < p->count) {
		(void)batch_visit(p, b, mark_seen, next);
		b = lfp_load32_relaxed(&next[b]); /* relaxed: quiescent */
	}
}

uint64_t lfpi_cache_sweep(lfp_pool_t *p)
{
	uint64_t seen[(LFPI_CACHE_MAX_MAGS + 64) / 64];
	lfp_atomic_u32 *next = lfpi_next(p);
	uint64_t recovered = 0;
	uint32_t first = LFP_NIL, last = LFP_NIL;

	if (!lfpi_live(p) || p->cache_slots == 0)
		return 0;
	memset(seen, 0, sizeof seen);
	sweep_stack(p, &p->depot_full, seen);
	sweep_stack(p, &p->depot_empty, seen);
	for (uint32_t s = 0; s < p->cache_slots; s++) {
		struct lfpi_slot *sl = lfpi_slot_at(p, s);
		sweep_stack(p, &sl->home_full, seen);
		sweep_stack(p, &sl->home_empty, seen);
		uint32_t l = lfp_load32_relaxed(&sl->loaded), v = lfp_load32_relaxed(&sl->prev); /* relaxed: quiescent */
		if (l < p->n_mags)
			sweep_mark(l, seen);
		if (v < p->n_mags)
			sweep_mark(v, seen);
	}
	for (uint32_t m = 0; m < p->n_mags; m++)
		if (seen[m / 64] & (UINT64_C(1) << (m % 64)))
			sweep_mag(p, m);
	sweep_batches(p, &p->depot_batch);
	for (uint32_t s = 0; s < p->cache_slots; s++)
		sweep_batches(p, &lfpi_slot_at(p, s)->home_batch);
	/* Orphans: still LFPI_CACHED, i.e. in no reachable magazine. */
	for (uint64_t i = 0; i < p->count; i++) {
		uint32_t v = lfp_load32_relaxed(&next[i]); /* relaxed: quiescent */
		if (v == LFPI_SEEN) {
			lfp_store32_relaxed(&next[i], LFPI_CACHED); /* relaxed: quiescent */
		} else if (v == LFPI_CACHED) {
			if (last != LFP_NIL)
				lfp_store32_relaxed(&next[last], (uint32_t)i); /* published by R1 */
			else
				first = (uint32_t)i;
			last = (uint32_t)i;
			recovered++;
		}
	}
	if (first != LFP_NIL)
		lfpi_stack_push_chain(p, first, last);
	/* Magazines found nowhere (a thread died holding one): empty them onto
	 * depot_empty (their blocks were orphans above). */
	for (uint32_t m = 0; m < p->n_mags; m++)
		if (!(seen[m / 64] & (UINT64_C(1) << (m % 64)))) {
			lfp_store32_relaxed(&lfpi_mag_at(p, m)->count, 0); /* K1 */
			mstack_push(p, &p->depot_empty, m);
		}
	return recovered;
}

void lfpi_cache_abandon(lfp_pool_t *p)
{
	struct lfpi_tc *c = tc_find(p);
	if (c == NULL)
		return;
	last_forget(c);
	pthread_mutex_lock(&reg_mu);
	tc_clear_key(c);
	tc_disarm(c);
	c->pinned = false;
	pthread_mutex_unlock(&reg_mu);
}
