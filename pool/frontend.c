/*
 * pool/frontend.c - the malloc-compatible front end (lfp_heap_*, lfp_malloc).
 *
 * Sizes up to the largest class go to per-class pools (lfp_pool_t, without
 * the pools' own per-thread cache); sizes above it and below the huge
 * threshold go to one fallback heap (pool/heap.c); huge sizes get their own
 * mmap. A class starts with one small pool and adds a pool twice as big
 * whenever all of its pools are empty (with owned pools: all the pools this
 * thread can use, and twice its own largest); completely free pools are retired by
 * lfp_heap_trim. Pool regions are carved from the fallback heap (whole
 * 512-byte page-map pages), so a retired pool's memory serves mid-size
 * requests next.
 *
 * In front of the pools, every thread keeps a small cache per class (struct
 * fe_tc below): malloc pops it, free pushes onto it, with no atomic
 * read-modify-write and no read section; it moves blocks to and from the
 * pools' lock-free free stacks in chains, one CAS per chain.
 *
 * Finding the owner of a pointer. free(p) reads the page map: one word per
 * 512-byte page of the fallback heap, `pool | class` for every page of a
 * pool's region. A pointer on a page with no word is a huge block (the
 * directory: a sorted array of {lo, hi, kind, class, object} covering every
 * huge mapping; until 0.2 every small pool too), a fallback-heap
 * block (inside the reservation), or foreign. The directory, and each
 * class's array of pools, are immutable once published: writers (under
 * dir_lock / the class's grow_lock) copy, modify, publish the copy with a
 * release store and free the old copy after a grace period. Readers of them
 * (refills, the directory lookups of free, realloc, usable_size) run inside
 * an RCU read-side critical section (liburcu, bulletproof flavour) from the
 * acquire load to their last use of the pool. Retiring a pool:
 *   1. unpublish it from its class; synchronize_rcu: no refill holds it;
 *   2. if it is still completely free (blocks in thread caches count as
 *      allocated), no block of it is live, so no legal free can target it:
 *      unpublish it from the page map; synchronize_rcu: no free() that
 *      read its word is inside it; destroy it and give its region back;
 *      otherwise (a refill took blocks in the window) put it back.
 * free's page-map path has no read section: a live block pins its pool, and
 * a stale pointer is checked against whatever the word names (tc_put).
 *
 * Why urcu-bp (docs/frontend.md has the longer version): memb and qsbr need
 * every reader thread to call rcu_register_thread() first, and qsbr also
 * needs every registered thread to announce quiescent states, or grace
 * periods stall. A malloc is called by threads the library never sees
 * start, including a future LD_PRELOAD drop-in's callers; bp registers a
 * thread on its first read lock (memory from mmap, not malloc) and notices
 * dead threads by itself. With sys_membarrier, bp's read side is a
 * thread-local counter update with no fence; measured here at ~1 ns per
 * lock/unlock pair when liburcu-bp is linked statically, ~9 ns through the
 * shared library (PLT calls and __tls_get_addr).
 *
 * Labels (docs/memory-order.md):
 *   F1  release store of a class's pool array; pairs with F2.
 *   F2  acquire load of a class's pool array (refills): the pools it names
 *       are initialized and in the page map (P1 happened before F1).
 *   F3  release store of the directory; pairs with F4.
 *   F4  acquire load of the directory (free, realloc, usable_size).
 *   F5  acquire load of the default heap pointer; pairs with F6.
 *   F6  release store of the default heap pointer after creation.
 *   P1  release store of a page-map word; pairs with P2 (free's load).
 *   K2  relaxed loads and stores of a block's state word (LFPI_ALLOC,
 *       LFPI_HELD) by the thread that holds the block, as in the pools.
 *   R1  the chain push that gives blocks back (pool/stack.c).
 *   D1  release CAS of a class-depot push (LFP_HEAP_DEPOT); pairs with D2.
 *   D2  acquire load / CAS of a depot pop: the bundle's offsets and count.
 *   D3  relaxed load / fetch_add of a depot's never-used bundle count.
 *   O1-O7  owned pools (LFP_HEAP_OWNED): at own_none below.
 *   Relaxed: the allocation hint and the statistics counters (hints and
 *   counts order nothing).
 * The RCU grace periods order every reader's accesses before the
 * reclamation of what it read; ThreadSanitizer cannot see inside liburcu,
 * so builds under it add __tsan_release at read_unlock and __tsan_acquire
 * after each grace period.
 *
 * Invariants: directory entries are sorted, disjoint and huge blocks only;
 * every page of a pool's region is in the page map with the pool's class,
 * and no other page is; a pool leaves the page map only after it left its
 * class array and a grace period passed; a block in a thread cache or parked in a class
 * depot is marked LFPI_HELD.
 */
#include "heap_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <urcu/urcu-bp.h>

#if defined(__SANITIZE_THREAD__)
#define LFPI_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LFPI_TSAN 1
#endif
#endif
#ifdef LFPI_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static char lfpi_rcu_tsan_sync;
#endif

_Static_assert(sizeof(uintptr_t) == sizeof(uint64_t), "pointers are stored in 64-bit atomics");

/* Slow paths stay out of line, so the fast paths need no stack frame. */
#if defined(__GNUC__) || defined(__clang__)
#define FE_NOINLINE __attribute__((noinline))
#define FE_INLINE __attribute__((always_inline)) inline
#else
#define FE_NOINLINE
#define FE_INLINE inline
#endif

/* ---- RCU helpers ----------------------------------------------------------- */

static inline void rcu_lock(void)
{
	urcu_bp_read_lock();
}

static inline void rcu_unlock(void)
{
#ifdef LFPI_TSAN
	__tsan_release(&lfpi_rcu_tsan_sync);
#endif
	urcu_bp_read_unlock();
}

/* After a grace period: every read section that began before it has ended. */
static inline void rcu_after_grace(void)
{
#ifdef LFPI_TSAN
	__tsan_acquire(&lfpi_rcu_tsan_sync);
#endif
}

static void rcu_sync(void)
{
	urcu_bp_synchronize_rcu();
	rcu_after_grace();
}

static inline void *ptr_load_acquire(const lfp_atomic_u64 *w)
{
	return (void *)(uintptr_t)lfp_load64_acquire(w);
}

static inline void ptr_store_release(lfp_atomic_u64 *w, const void *p)
{
	lfp_store64_release(w, (uint64_t)(uintptr_t)p);
}

/* ---- structures ------------------------------------------------------------- */

enum { DIR_POOL = 1, DIR_HUGE = 2 };

struct dir_entry {
	uintptr_t lo, hi; /* [lo, hi) */
	uint32_t kind;
	uint32_t cls;     /* DIR_POOL: class index */
	void *obj;        /* DIR_POOL: the pool; DIR_HUGE: the user pointer */
};

/* Retired arrays wait on the heap's garbage list for a grace period. */
struct gnode {
	struct gnode *next;
};

/* Huge mappings, sorted by lo; immutable once published. */
struct dir {
	struct gnode gc;
	uint32_t n;
	struct dir_entry e[];
};

/* A class's pools, immutable once published; newest last. */
struct poolset {
	struct gnode gc;
	uint32_t n;
	lfp_pool_t *pool[];
};

/* A class's depot of full bin stacks (LFP_HEAP_DEPOT; see fe_bundle). */
struct fe_depot {
	_Alignas(64)
	lfp_atomic_u64 full, empty; /* {tag:32 | bundle id:32} heads (D1/D2) */
	lfp_atomic_u32 fresh;       /* bundles never used: ids fresh.. (D3) */
	uint32_t bytes;             /* of one bundle; immutable */
	lfp_atomic_u64 blocks;      /* relaxed stat: blocks parked */
	char *bundles;              /* DEP_STACKS x bytes; immutable */
};
struct cls {
	size_t size;           /* immutable */
	size_t align;          /* immutable */
	lfp_atomic_u64 pools;  /* struct poolset * (F1/F2) */
	lfp_atomic_u32 hint;   /* relaxed: index of the pool that served last */
	pthread_mutex_t grow_lock;
	size_t next_bytes;     /* block bytes of the next pool (grow_lock) */
	/* Immutable: the thread-cache shape (struct fe_tc). The block grid is
	 * h->hot[class]. */
	uint32_t tc_cap;       /* blocks per bin stack (0: checked heap) */
	uint32_t tc_fill;      /* blocks one refill brings */
	struct fe_depot *dep;  /* full bin stacks any thread may take (NULL:
				* none); immutable */
	lfp_atomic_u64 unowned; /* owned mode: pools with own_tid 0, as a signed
				 * count (relaxed: a hint, own_find) */
};

#define LFPI_HEAP_MAGIC UINT64_C(0x4c46504845415031) /* "LFPHEAP1" */

/* The page map has one word per PM_PAGE (512 bytes) of the fallback heap:
 * for every page of a pool's region, that pool's address with the class
 * index in its low bits (pool regions are 64-byte aligned and classes <
 * LFP_HEAP_MAX_CLASSES <= 64), else 0. Every pool region is whole pages
 * (pool_config) and page-aligned, so no two pools, and no pool and a
 * fallback-heap block, share a page: one load finds a block's pool and
 * class. Pools with regions of at least one granule ("big") are also
 * granule-aligned and whole granules. Smaller ones were listed in the
 * directory too until 0.2; its copy-on-write array made every pool added
 * cost O(pools), which with owned pools (one per thread and class) grew
 * quadratic in the threads. PM_PAGE is the map's own unit,
 * independent of the system page size: 512 bytes keeps the rounding of
 * small pools cheap (footprint sum on the real traces: 1 KiB pages
 * 1.22x glibc, 512 B 1.20x; benchmarks-heap.md section 7). */
#define GRAN_SHIFT 16
#define GRAN ((size_t)1 << GRAN_SHIFT)
#define PM_SHIFT 9
#define PM_PAGE ((size_t)1 << PM_SHIFT)
#define PM_CLASS_MASK ((uintptr_t)LFP_REGION_ALIGN - 1)
_Static_assert(LFP_HEAP_MAX_CLASSES <= LFP_REGION_ALIGN, "class index fits below the alignment");
#define GC_BATCH 32u
#define AUTO_TRIM_EVERY 64u /* pool additions between automatic trims */

struct lfp_heap {
	uint64_t magic;
	uint64_t id;               /* unique across heaps (thread caches name
				    * their heap by it); immutable */
	struct lfp_heap *tc_next;  /* the list of live heaps (tc_lock) */
	unsigned flags;            /* immutable */
	uint32_t nclasses;         /* immutable */
	size_t max_class;          /* immutable */
	size_t huge_threshold;     /* immutable */
	size_t pool_min_bytes, pool_max_bytes; /* immutable */
	lfp_flheap_t *fh;          /* mid sizes and pool regions; immutable */
	lfp_flheap_t *meta;        /* this struct, directories, pool arrays */
	uintptr_t fh_base;         /* fh's region; immutable */
	size_t fh_len;
	lfp_atomic_u64 *pagemap;   /* PM_PAGE of fh -> pool | class (P1/P2) */
	uintptr_t pm_bias;         /* pagemap - (fh's first page >> PM_SHIFT) words */
	size_t pagemap_bytes;      /* immutable */
	uintptr_t pm_hi;           /* end of the highest page ever mapped (dir_lock) */
	void *dep_map;             /* the classes' depots (dep_create); immutable */
	size_t dep_map_bytes;
	uint8_t *class_of;         /* (n + 7) / 8 -> class, n <= max_class */
	lfp_atomic_u64 dir;        /* struct dir * (F3/F4) */
	pthread_mutex_t dir_lock;  /* writers of dir */
	pthread_mutex_t trim_lock; /* one trim at a time */
	pthread_mutex_t gc_lock;   /* garbage, ngarbage, gc_due */
	struct gnode *garbage;
	uint32_t ngarbage;
	struct gnode *gc_due;      /* full batches for gc_collect */
	lfp_atomic_u64 pools_added, pools_retired, pool_bytes; /* relaxed stats */
	lfp_atomic_u64 grows_since_trim; /* relaxed: a trigger count */
	lfp_atomic_u64 huge_live, huge_bytes, bad_frees;        /* relaxed stats */
	/* What free's fast path needs of a class, packed (immutable). */
	struct cls_hot {
		uint64_t inv;      /* inverse of the stride's odd part modulo 2^64 */
		uint32_t shift;    /* trailing zero bits of the stride */
		uint32_t stride;   /* round_up(size, align): every pool of the class */
	} hot[LFP_HEAP_MAX_CLASSES];
	struct cls cls[];
};

/*
 * Default classes: 8, then every 16 bytes to 128, then four per power of two
 * up to 16 KiB (37 classes). From the size profiles of the Autolab
 * real-program traces (docs/frontend.md): 88-94% of requests are <= 64
 * bytes and more than 99% are <= 16 KiB; a geometric family with four
 * steps per doubling bounds rounding waste at 25% (about 10% on average)
 * and keeps the number of classes, hence of separately growing pools, low.
 */
static const size_t default_classes[] = {
	8, 16, 32, 48, 64, 80, 96, 112, 128,
	160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024,
	1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096,
	5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384,
};

#define DEFAULT_POOL_MIN ((size_t)1 << 10)
/* A pool has at least this many blocks. (Classes up to 64 bytes started at
 * 256 blocks while the class pools had their own per-thread cache, which
 * needs 256; the thread cache of struct fe_tc works at any pool size, and
 * 2 lowers the small traces' footprint: geomean 2.60x -> 2.53x glibc.) */
#define POOL_MIN_BLOCKS 2u
#define DEFAULT_POOL_MAX ((size_t)1 << 20)
#define DEFAULT_HUGE ((size_t)256 << 10)
#define META_RESERVE ((size_t)1 << 30)

static inline bool heap_live(const lfp_heap_t *h)
{
	return h != NULL && h->magic == LFPI_HEAP_MAGIC;
}

static size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* ---- deferred reclamation ---------------------------------------------------- */

/*
 * Free an unpublished array once no reader can hold it. Arrays collect on a
 * list; every GC_BATCH of them cost one synchronize_rcu (so growth and huge
 * blocks do not pay a grace period each, and no call_rcu thread is needed).
 * Never called inside a read section.
 */
static void retire_later(lfp_heap_t *h, struct gnode *g)
{
	pthread_mutex_lock(&h->gc_lock);
	g->next = h->garbage;
	h->garbage = g;
	if (++h->ngarbage >= GC_BATCH) {
		/* A full batch waits for gc_collect, which the caller runs
		 * once it holds no lock: a grace period waited for here, under
		 * a class's grow_lock or dir_lock, stalled every other thread
		 * that grew a pool (128 threads on 16 cores sat idle a third
		 * of the time). */
		g = h->garbage;
		while (g->next != NULL)
			g = g->next;
		g->next = h->gc_due;
		h->gc_due = h->garbage;
		h->garbage = NULL;
		h->ngarbage = 0;
	}
	pthread_mutex_unlock(&h->gc_lock);
}

/* Free the full batches of retired arrays after a grace period. Call with
 * no lock held and outside any read section (it waits for one). */
static void gc_collect(lfp_heap_t *h)
{
	pthread_mutex_lock(&h->gc_lock);
	struct gnode *batch = h->gc_due;
	h->gc_due = NULL;
	pthread_mutex_unlock(&h->gc_lock);
	if (batch == NULL)
		return;
	rcu_sync();
	while (batch) {
		struct gnode *next = batch->next;
		(void)lfp_flheap_free(h->meta, batch);
		batch = next;
	}
}

/* ---- directory -------------------------------------------------------------- */

/* Last entry with lo <= p, if p < its hi; NULL otherwise. Inside a read
 * section (or under dir_lock). */
static const struct dir_entry *dir_find(const struct dir *d, uintptr_t p)
{
	const struct dir_entry *e = d->e;
	uint32_t n = d->n;
	if (n == 0 || p < e[0].lo)
		return NULL;
	/* Branchless lower bound: the last entry with lo <= p. */
	while (n > 1) {
		uint32_t half = n / 2;
		e = e[half].lo <= p ? e + half : e;
		n -= half;
	}
	return p < e->hi ? e : NULL;
}

/* Publish a copy of the directory without the entry starting at `drop`
 * (if drop != 0; it must exist) and with `add` (if not NULL). Caller holds
 * dir_lock. 0 or -ENOMEM (nothing changed). */
static int dir_edit(lfp_heap_t *h, const struct dir_entry *add, uintptr_t drop)
{
	struct dir *old = ptr_load_acquire(&h->dir); /* F4 (under dir_lock) */
	uint32_t n = old ? old->n : 0;
	uint32_t nn = n + (add != NULL) - (drop != 0);
	struct dir *d = lfp_flheap_malloc(h->meta, sizeof *d + sizeof(struct dir_entry) * (nn ? nn : 1));
	if (d == NULL)
		return -ENOMEM;
	uint32_t j = 0;
	bool placed = add == NULL;
	for (uint32_t i = 0; i < n; i++) {
		if (drop != 0 && old->e[i].lo == drop)
			continue;
		if (!placed && add->lo < old->e[i].lo) {
			d->e[j++] = *add;
			placed = true;
		}
		d->e[j++] = old->e[i];
	}
	if (!placed)
		d->e[j++] = *add;
	d->n = j;
	ptr_store_release(&h->dir, d); /* F3: pairs with F4 */
	if (old)
		retire_later(h, &old->gc);
	return 0;
}

static int dir_update(lfp_heap_t *h, const struct dir_entry *e, bool add)
{
	return add ? dir_edit(h, e, 0) : dir_edit(h, NULL, e->lo);
}

/* ---- the page map of big pools ------------------------------------------------ */

static inline lfp_atomic_u64 *pm_slot(const lfp_heap_t *h, uintptr_t p)
{
	/* Pages are counted from the aligned address below fh's start. */
	return (lfp_atomic_u64 *)(h->pm_bias + (p >> PM_SHIFT) * sizeof(lfp_atomic_u64));
}

static inline lfp_pool_t *pm_pool(uint64_t w)
{
	return (lfp_pool_t *)(uintptr_t)(w & ~(uint64_t)PM_CLASS_MASK);
}

static inline uint32_t pm_class(uint64_t w)
{
	return (uint32_t)(w & PM_CLASS_MASK);
}

/* Map (pool != NULL) or unmap the pages of a pool's region. */
static void pagemap_set(lfp_heap_t *h, uintptr_t lo, uintptr_t hi, lfp_pool_t *pool, uint32_t ci)
{
	uint64_t word = pool ? (uint64_t)(uintptr_t)pool | ci : 0;
	/* Only the pages wholly inside [lo, hi). */
	lo = (lo + PM_PAGE - 1) & ~(uintptr_t)(PM_PAGE - 1);
	hi &= ~(uintptr_t)(PM_PAGE - 1);
	for (uintptr_t a = lo; a < hi; a += PM_PAGE) {
		if (pool)
			lfp_store64_release(pm_slot(h, a), word); /* P1: pairs with P2 */
		else
			lfp_store64_relaxed(pm_slot(h, a), 0); /* relaxed: a grace period
								* follows before reuse */
	}
}

/* ---- classes and pools ------------------------------------------------------- */

static inline uint32_t class_index(const lfp_heap_t *h, size_t n)
{
	return h->class_of[(n + 7) >> 3];
}

/* Try every pool of the class, the hinted one first. NULL if all are empty.
 * Inside a read section. errno is left as it was. */
static void *class_try(struct cls *c, const struct poolset *s)
{
	uint32_t n = s->n;
	uint32_t i = lfp_load32_relaxed(&c->hint); /* relaxed: a hint */
	if (i >= n)
		i = n - 1;
	int saved = errno;
	for (uint32_t k = 0; k < n; k++) {
		void *p = lfp_pool_alloc(s->pool[i]);
		if (p != NULL) {
			if (k != 0)
				lfp_store32_relaxed(&c->hint, i); /* relaxed: a hint */
			errno = saved;
			return p;
		}
		i = i == 0 ? n - 1 : i - 1; /* newest (largest) pools first */
	}
	errno = saved;
	return NULL;
}

static unsigned pool_flags(const lfp_heap_t *h)
{
	/* The thread cache (struct fe_tc) is the class pools' cache; a
	 * checked heap has none and uses the pools' own. */
	return ((h->flags & LFP_HEAP_CHECKED) ? LFP_POOL_CHECKED : LFP_POOL_NO_CACHE) |
	       ((h->flags & LFP_HEAP_POOL_STATS) ? LFP_POOL_STATS : 0u);
}

/* Whole granules for a big pool region, whole page-map pages for a small
 * one, so no two pools share a page and the page map alone finds every pool
 * block. */
static size_t region_round(size_t r)
{
	size_t unit = r >= GRAN ? GRAN : PM_PAGE;
	return (r + unit - 1) & ~(unit - 1);
}

/* The config of a pool of class c with about `bytes` of blocks; a big one
 * gets as many blocks as fill its whole granules. *rsize: region bytes. */
static lfp_pool_config_t pool_config(const lfp_heap_t *h, const struct cls *c, size_t bytes,
				     size_t *rsize)
{
	size_t count = bytes / c->size;
	lfp_pool_config_t pc = {
		.block_size = c->size,
		.block_count = count < POOL_MIN_BLOCKS ? POOL_MIN_BLOCKS : count,
		.block_align = c->align,
		.flags = pool_flags(h),
	};
	size_t r = lfp_pool_region_size(&pc);
	size_t want = region_round(r);
	/* Grow the count to fill the granules, then back off until it fits
	 * (the cache area depends on the count too). */
	pc.block_count += (want - r) / (c->size + 4);
	while (pc.block_count > 2 && (r = lfp_pool_region_size(&pc)) > want)
		pc.block_count -= (r - want) / c->size + 1;
	/* The size pool_region_bytes finds again at retirement: the back-off
	 * can cross a cache-shape threshold (a checked heap's pools have a
	 * cache) and end well below want, and pages past the region that
	 * kept their page-map words would refuse the fallback heap's blocks
	 * placed there later. */
	*rsize = region_round(lfp_pool_region_size(&pc));
	return pc;
}

/* Publish a copy of class c's pool array with `add` appended (if not NULL)
 * and the pools in drop[0..ndrop) left out. Caller holds c->grow_lock. */
static int poolset_update(lfp_heap_t *h, struct cls *c, lfp_pool_t *add, lfp_pool_t *const *drop,
			  size_t ndrop)
{
	struct poolset *old = ptr_load_acquire(&c->pools); /* F2 (under grow_lock) */
	uint32_t n = old ? old->n : 0;
	struct poolset *s = lfp_flheap_malloc(h->meta, sizeof *s + sizeof(lfp_pool_t *) * (n + 1));
	if (s == NULL)
		return -ENOMEM;
	s->n = 0;
	for (uint32_t i = 0; i < n; i++) {
		bool dropped = false;
		for (size_t k = 0; k < ndrop; k++)
			dropped |= old->pool[i] == drop[k];
		if (!dropped)
			s->pool[s->n++] = old->pool[i];
	}
	if (add)
		s->pool[s->n++] = add;
	if (s->n == 0) {
		(void)lfp_flheap_free(h->meta, s);
		s = NULL;
	}
	ptr_store_release(&c->pools, s); /* F1: pairs with F2 */
	if (s)
		lfp_store32_relaxed(&c->hint, s->n - 1); /* relaxed: a hint */
	if (old)
		retire_later(h, &old->gc);
	return 0;
}

/* Make p findable by free(): its whole pages in the page map. Caller holds
 * dir_lock (for pm_hi). */
static void pool_publish(lfp_heap_t *h, lfp_pool_t *pool, uint32_t ci, size_t rsize)
{
	uintptr_t lo = (uintptr_t)pool;
	/* The page map alone finds every pool block: no directory entry,
	 * whose copy-on-write array made each pool added cost O(pools). */
	pagemap_set(h, lo, lo + rsize, pool, ci);
	if (lo + rsize > h->pm_hi)
		h->pm_hi = lo + rsize;
}

static void pool_unpublish(lfp_heap_t *h, lfp_pool_t *pool, size_t rsize)
{
	uintptr_t lo = (uintptr_t)pool;
	pagemap_set(h, lo, lo + rsize, NULL, 0);
}

/* Bytes of p's region (what pool_config gave it). */
static size_t pool_region_bytes(const lfp_heap_t *h, const struct cls *c, const lfp_pool_t *p)
{
	lfp_pool_config_t pc = {
		.block_size = c->size,
		.block_count = lfp_pool_capacity(p),
		.block_align = c->align,
		.flags = pool_flags(h),
	};
	return region_round(lfp_pool_region_size(&pc));
}

/* Add a pool of `bytes` of blocks to class c (grow_lock held); 0: the
 * class's next size, which then doubles. 0 or -ENOMEM; the pool in *added
 * if added is not NULL (owned mode: unowned, counted in c->unowned). */
static int class_grow(lfp_heap_t *h, struct cls *c, uint32_t ci, size_t bytes, lfp_pool_t **added)
{
	size_t rsize;
	bool class_size = bytes == 0 || bytes >= c->next_bytes;
	lfp_pool_config_t pc = pool_config(h, c, class_size ? c->next_bytes : bytes, &rsize);
	if (rsize == 0)
		return -ENOMEM;
	void *mem = lfp_flheap_aligned_alloc(h->fh, rsize >= GRAN ? GRAN : PM_PAGE, rsize);
	if (mem == NULL)
		return -ENOMEM;
	lfp_pool_t *pool;
	if (lfpi_flheap_pin(h->fh, mem) != 0 || lfp_pool_init(mem, rsize, &pc, &pool) != 0) {
		(void)lfpi_flheap_free_pinned(h->fh, mem);
		(void)lfp_flheap_free(h->fh, mem);
		return -ENOMEM;
	}
	lfp_init32(&pool->own_lhead, LFP_NIL); /* owned mode: no owner, no own list */
	pthread_mutex_lock(&h->dir_lock);
	pool_publish(h, pool, ci, rsize);
	pthread_mutex_unlock(&h->dir_lock);
	int rc = poolset_update(h, c, pool, NULL, 0);
	if (rc != 0) {
		pthread_mutex_lock(&h->dir_lock);
		pool_unpublish(h, pool, rsize);
		pthread_mutex_unlock(&h->dir_lock);
		rcu_sync();
	}
	if (rc != 0) {
		(void)lfp_pool_destroy(pool);
		(void)lfpi_flheap_free_pinned(h->fh, mem);
		return rc;
	}
	lfp_fetch_add64_relaxed(&h->pools_added, 1);     /* relaxed: stats */
	lfp_fetch_add64_relaxed(&h->pool_bytes, rsize);  /* relaxed: stats */
	lfp_fetch_add64_relaxed(&h->grows_since_trim, 1); /* relaxed: a trigger */
	if (h->flags & LFP_HEAP_OWNED)
		lfp_fetch_add64_relaxed(&c->unowned, 1); /* relaxed: a hint */
	if (class_size && c->next_bytes < h->pool_max_bytes)
		c->next_bytes *= 2;
	if (added != NULL)
		*added = pool;
	return 0;
}

#define TRIM_BATCH 64 /* candidates of one trim_class pass */
static int trim_class(lfp_heap_t *h, struct cls *c);
static void own_before_trim(lfp_heap_t *h, uint32_t growing);

/*
 * Every AUTO_TRIM_EVERY pool additions, retire the completely free pools of
 * the other classes, so a program whose sizes change phase does not keep
 * every class's old peak (it costs two grace periods, amortized over the
 * additions). Called with no lock held; skipped if a trim is running.
 */
static void auto_trim(lfp_heap_t *h, uint32_t growing)
{
	if (lfp_load64_relaxed(&h->grows_since_trim) < AUTO_TRIM_EVERY) /* relaxed: a trigger */
		return;
	if (pthread_mutex_trylock(&h->trim_lock) != 0)
		return;
	lfp_store64_relaxed(&h->grows_since_trim, 0); /* relaxed: under trim_lock */
	own_before_trim(h, growing);
	for (uint32_t i = 0; i < h->nclasses; i++)
		if (i != growing)
			(void)trim_class(h, &h->cls[i]);
	pthread_mutex_unlock(&h->trim_lock);
}

/* A class that cannot grow: the reservation is full, or what is left of it
 * is too fragmented for another pool. The fallback heap serves the class
 * size while it has room (its blocks are 16-byte aligned, as class blocks
 * are, and free finds them through the directory's fallback range), so
 * small requests fail only when the reservation is used up: before, 64 MiB
 * reservations ran out for 16-byte blocks with 3-4 MiB still free in
 * pieces. errno: kept on success, ENOMEM on failure. */
static FE_NOINLINE void *class_fallback(lfp_heap_t *h, uint32_t ci)
{
	int saved = errno;
	void *p = lfp_flheap_malloc(h->fh, h->cls[ci].size);
	errno = p != NULL ? saved : ENOMEM;
	return p;
}

/* Slow path: every pool of the class was empty. Grow, then allocate. */
static void *class_alloc_slow(lfp_heap_t *h, uint32_t ci)
{
	struct cls *c = &h->cls[ci];
	void *p = NULL;
	pthread_mutex_lock(&c->grow_lock);
	for (int tries = 0; tries < 4 && p == NULL; tries++) {
		rcu_lock();
		const struct poolset *s = ptr_load_acquire(&c->pools); /* F2: pairs with F1 */
		if (s != NULL)
			p = class_try(c, s);
		rcu_unlock();
		if (p != NULL || class_grow(h, c, ci, 0, NULL) != 0)
			break;
	}
	pthread_mutex_unlock(&c->grow_lock);
	gc_collect(h);
	auto_trim(h, ci);
	return p != NULL ? p : class_fallback(h, ci);
}

/*
 * The front end's thread cache (struct fe_tc). Per thread, per class of one
 * heap, a bin of two small stacks of blocks: `av` that malloc pops and
 * `fr` that free pushes. malloc takes av's top (fr becomes av when av runs
 * dry); free pushes onto fr. No atomic read-modify-write, no read section.
 * Two stacks, not one: a free's push goes to a different word than the
 * next malloc's pop, so that pop never waits for the free's page-map load
 * that chose the bin (one shared top word made a malloc/free pair cost
 * ~7 ns instead of ~2.6 in a bare loop on this machine).
 *
 * Blocks in a bin are marked LFPI_HELD in their pool's state word: still
 * allocated as far as the pool knows (so their pool is never retired under
 * them, and bins need no RCU), but not live: a second free of one, by any
 * thread, finds HELD instead of LFPI_ALLOC and is refused (-EALREADY), as
 * realloc and usable_size refuse it. malloc sets LFPI_ALLOC again. A free
 * accepts only a block start of a live pool of the block's class whose state
 * word reads LFPI_ALLOC.
 *
 * Refill: an empty bin pops up to tc_fill blocks off a class pool's free
 * stack with one CAS (lfpi_stack_pop_chain), inside a read section (the
 * pool must not be retired meanwhile). Spill: a full fr gives its older
 * half back, each pool's share linked into one chain and pushed with one
 * CAS (the pools are pinned by those very blocks). The class pools have no
 * per-thread cache of their own (LFP_POOL_NO_CACHE): the bins are it.
 *
 * A thread's bins hold blocks of one heap (tc.id, unique per heap): using
 * another heap first gives them back, if their heap still lives (tc_lock
 * guards the list of live heaps, so lfp_heap_destroy cannot run meanwhile);
 * a pthread key destructor gives them back at thread exit. Worst-case hoard
 * per thread: 2 x tc_cap blocks per class (docs/frontend.md). Owner thread
 * only; plain, except the state words (K2: relaxed, the holder's own mark).
 * LFP_HEAP_CHECKED heaps have no bins: every call goes to the pools' own
 * CAS-checked paths, which also catch two threads racing to free one block.
 */
struct fe_ent {
	void *p;
	lfp_atomic_u32 *st;  /* p's state word */
};
struct fe_bin {
	uint32_t an, fn;     /* entries in av, in fr */
	struct fe_ent *av, *fr;
	uint32_t cap;        /* entries each holds */
	uint32_t fill;       /* blocks the next refill asks for: starts small,
			      * doubles with each refill up to cap */
};
/* A class's current pool in owned mode (LFP_HEAP_OWNED; see own_none). */
struct own_slot {
	lfp_pool_t *pool;       /* &own_none: none */
	lfp_atomic_u32 *next;   /* its next[] */
	char *blocks;           /* its block 0 */
	uint32_t stride, count; /* count 0: none */
};
_Static_assert(sizeof(struct own_slot) <= sizeof(struct fe_bin), "owned mode adds no TLS");
struct fe_tc {
	union {              /* first: a slot's address is the state's plus
			      * ci * 32, one base for its fields */
		struct fe_bin bin[LFP_HEAP_MAX_CLASSES];
		struct own_slot own[LFP_HEAP_MAX_CLASSES]; /* LFP_HEAP_OWNED */
	};
	uint64_t id;         /* the heap whose blocks the bins hold; 0: none */
	lfp_heap_t *heap;    /* that heap, while it is on the live list */
	struct fe_ent *store; /* every bin's stacks (mmap), store_bytes; owned
			       * mode: the ready lists */
	size_t store_bytes;
	uint64_t ntid;       /* owned mode: ~(this thread's tag in own_tid);
			      * 0 until the first attach to an owned heap
			      * (own_me) */
	bool armed;          /* the exit destructor will run */
	struct fe_tc *spare_next; /* on tc_spare, once its thread has exited */
};
/*
 * The thread state (~2 KiB) lives in a page of its own (tc_own_state),
 * reached through one initial-exec pointer: a fixed offset from the thread
 * pointer, no call, and 8 bytes of static TLS. A library with initial-exec
 * TLS must find all of its TLS in the few hundred bytes of static TLS that
 * glibc keeps for dlopen(), or dlopen() refuses it; the state itself in TLS
 * did not fit. A thread that has not attached to a heap points at tc_none,
 * all zero, which reads as "no heap, no tag, no bins"; every write to the
 * state comes after an attach (tc_attach gives the thread its own page
 * first), and lfp_heap_validate checks that tc_none is still zero. An
 * exited thread's page is kept for the next thread that attaches
 * (tc_spare, under tc_lock), never unmapped.
 */
static struct fe_tc tc_none;
static _Thread_local struct fe_tc *tc_state __attribute__((tls_model("initial-exec"))) = &tc_none;
#define tc (*tc_state)
static pthread_mutex_t tc_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fe_tc *tc_spare; /* tc_lock */

/* Give this thread a state of its own (zero) if it has none. false if
 * there is no memory for it. */
static bool tc_own_state(void)
{
	if (tc_state != &tc_none)
		return true;
	pthread_mutex_lock(&tc_lock);
	struct fe_tc *t = tc_spare;
	if (t != NULL)
		tc_spare = t->spare_next;
	pthread_mutex_unlock(&tc_lock);
	if (t != NULL)
		memset(t, 0, sizeof *t);
	else if ((t = lfpi_map_zeroed(sizeof *t)) == NULL)
		return false; /* the caller goes on without bins */
	tc_state = t;
	return true;
}

#define TC_STACK_BYTES ((size_t)4 << 10) /* one stack holds at most this many bytes... */
#define TC_STACK_MAX 64u                 /* ...and at most this many blocks */
#define TC_FIRST_FILL 4u                 /* a bin's first refill */
#define TC_MAX_BLOCK ((size_t)4 << 10)   /* bigger classes have no bin: rare
					  * sizes, and they would dominate
					  * the worst-case hoard */

static lfp_heap_t *tc_heaps; /* the live heaps (tc_lock) */
static pthread_once_t tc_once = PTHREAD_ONCE_INIT;
static pthread_key_t tc_exit_key;
static bool tc_key_ok;

static void tc_exit(void *arg);

static void tc_fork_prepare(void)
{
	pthread_mutex_lock(&tc_lock);
}

static void tc_fork_after(void)
{
	pthread_mutex_unlock(&tc_lock);
}

static void tc_init_once(void)
{
	tc_key_ok = pthread_key_create(&tc_exit_key, tc_exit) == 0;
	if (tc_key_ok && pthread_atfork(tc_fork_prepare, tc_fork_after, tc_fork_after) != 0) {
		pthread_key_delete(tc_exit_key);
		tc_key_ok = false;
	}
}

/* Give e[0..k) back to their pools: runs of one pool become one chain and
 * one CAS. Each block is LFPI_HELD, so its pool lives. */
static void tc_give_back(const lfp_heap_t *h, struct fe_ent *e, uint32_t k)
{
	uint32_t j = 0;
	while (j < k) {
		/* P2: pairs with P1; the page map names p's pool (whole pages) */
		lfp_pool_t *pool = pm_pool(lfp_load64_acquire(pm_slot(h, (uintptr_t)e[j].p)));
		lfp_atomic_u32 *next = lfpi_next(pool);
		uint32_t first = (uint32_t)(e[j].st - next), last = first, n = 1;
		/* The same pool while the state word lies in its next[] (compared
		 * as addresses: the entries may point into other pools' arrays). */
		for (j++; j < k && ((uintptr_t)e[j].st - (uintptr_t)next) / sizeof *next < pool->count;
		     j++, n++) {
			uint32_t i = (uint32_t)(e[j].st - next);
			lfp_store32_relaxed(&next[last], i); /* relaxed: published by R1 */
			last = i;
		}
		/* After the push the pool may be completely free and retired
		 * at once: touch nothing of it then. With LFP_POOL_STATS the
		 * count goes first (trim reads the counters), so a read section
		 * keeps the pool until the push is done. */
		if (lfpi_unlikely(pool->flags & LFP_POOL_STATS)) {
			rcu_lock();
			lfp_fetch_add64_relaxed(&pool->n_free, n); /* relaxed: statistics */
			lfpi_stack_push_chain(pool, first, last); /* R1 */
			rcu_unlock();
		} else {
			lfpi_stack_push_chain(pool, first, last); /* R1 */
		}
	}
}

/*
 * The class depot (heaps made with LFP_HEAP_DEPOT): DEP_STACKS whole bin
 * stacks (bundles) per class, shared by the heap's threads, so that a stack
 * a full bin gives up reaches the next refill as one unit. Without it the
 * blocks go back to their pools as a chain of next[] links, and the refill
 * walks that chain link by link: one dependent load per block
 * (lfpi_stack_pop_chain is 20 % of a replay of firefox-reddit). A bundle
 * holds each block's offset from fh_base / 8 (4 bytes; the state word is
 * found again on take through the page map). Its blocks stay LFPI_HELD, so
 * they pin their pools (trim_class drains the depot first) and a second
 * free of one is refused. Two Treiber stacks of bundle ids with tagged
 * heads, `full` and `empty`, links in the bundles; a bundle never used
 * comes from `fresh`. A put is two CASes (take an empty bundle, push it
 * full), a take too. When every bundle is full the stack goes back to its
 * pools as without a depot, so a class's depot holds at most DEP_STACKS x
 * tc_cap blocks (DEP_STACKS x 4 KiB). Opt-in: the bundles' memory is never
 * returned, and it lands in the peak footprint (benchmarks-heap.md 8).
 * D1 release CAS of a push: the bundle's offsets, count and link before the
 * head; pairs with D2. D2 acquire load / CAS of a head (pop); pairs with
 * D1. D3 relaxed load / fetch_add of `fresh`: only the ids' uniqueness
 * matters (the bundle is published by D1 like any other).
 */
#define DEP_STACKS 256u
/* Bits of a depot head's ABA tag. Only the negative control of
 * mk/frontend.mk cuts it (test-negative-depot: a 1-bit tag must be caught). */
#ifndef LFPI_DEPOT_TAG_BITS
#define LFPI_DEPOT_TAG_BITS 32
#endif
#if LFPI_DEPOT_TAG_BITS < 1 || LFPI_DEPOT_TAG_BITS > 32
#error "LFPI_DEPOT_TAG_BITS must be in 1..32"
#endif

/* The head that puts bundle i on top of old: the tag moves on by one. */
static uint64_t dep_head_next(uint64_t old, uint32_t i)
{
	uint32_t tag = (lfp_head_tag(old) + 1) & (uint32_t)((UINT64_C(1) << LFPI_DEPOT_TAG_BITS) - 1);
	return (uint64_t)tag << 32 | i;
}
struct fe_bundle {
	lfp_atomic_u32 link;        /* the next bundle on its stack (D1/D2) */
	/* Plain: written by the putter before its D1 push, read by the taker
	 * after its D2 pop (and by a quiescent validate). */
	uint32_t n;
	uint32_t off[];             /* (block - fh_base) / 8: 4 bytes a block,
				     * the state word is found again on take */
};

static struct fe_bundle *dep_bundle(struct fe_depot *d, uint32_t i)
{
	return (struct fe_bundle *)(void *)(d->bundles + (size_t)i * d->bytes);
}

static uint32_t dep_pop(struct fe_depot *d, lfp_atomic_u64 *head)
{
	unsigned spins = 0;
	uint64_t old = lfp_load64_acquire(head); /* D2: pairs with D1 */
	for (;;) {
		uint32_t i = lfp_head_index(old);
		if (i >= DEP_STACKS)
			return LFP_NIL;
		/* Relaxed: D2 made the pusher's link visible; a newer value
		 * means the head moved, and then the CAS fails (tag). */
		uint32_t nx = lfp_load32_relaxed(&dep_bundle(d, i)->link);
		/* Failure acquire too: the retry reads the new head's link. */
		if (lfp_cas64_weak_acquire(head, &old, dep_head_next(old, nx))) /* D2: pairs with D1 */
			return i;
		lfp_backoff(&spins);
	}
}

static void dep_push(struct fe_depot *d, lfp_atomic_u64 *head, uint32_t i)
{
	struct fe_bundle *b = dep_bundle(d, i);
	unsigned spins = 0;
	/* Relaxed: the value is only the CAS's expectation; D1 publishes. */
	uint64_t old = lfp_load64_relaxed(head);
	for (;;) {
		lfp_store32_relaxed(&b->link, lfp_head_index(old)); /* relaxed: published by D1 */
		/* Failure relaxed: the retry only re-links. */
		if (lfp_cas64_weak_release(head, &old, dep_head_next(old, i))) /* D1: pairs with D2 */
			return;
		lfp_backoff(&spins);
	}
}

/* Park e[0..k) (HELD blocks of class ci) in the class depot as one
 * bundle; false if there is no depot or every bundle is full. */
static bool dep_put(lfp_heap_t *h, uint32_t ci, const struct fe_ent *e, uint32_t k)
{
	struct fe_depot *d = h->cls[ci].dep;
	if (d == NULL)
		return false;
	if (k == 0)
		return true;
	uint32_t i = dep_pop(d, &d->empty);
	if (i == LFP_NIL) {
		/* A bundle's page is first touched here, so an unused depot
		 * costs address space only. */
		if (lfp_load32_relaxed(&d->fresh) >= DEP_STACKS ||              /* D3 */
		    (i = lfp_fetch_add32_relaxed(&d->fresh, 1)) >= DEP_STACKS) /* D3 */
			return false;
	}
	struct fe_bundle *b = dep_bundle(d, i);
	b->n = k;
	for (uint32_t j = 0; j < k; j++)
		b->off[j] = (uint32_t)(((uintptr_t)e[j].p - h->fh_base) >> 3);
	lfp_fetch_add64_relaxed(&d->blocks, k); /* relaxed: stats */
	dep_push(d, &d->full, i);
	return true;
}

/* Take a bundle of class ci into e[] (room for the class's tc_cap); its
 * size, 0 if none. The blocks are HELD: they pin their pools, whose words
 * in the page map and whose grids free_hit checked when they came in. */
static uint32_t dep_take(lfp_heap_t *h, uint32_t ci, struct fe_ent *e)
{
	struct fe_depot *d = h->cls[ci].dep;
	uint32_t i = d != NULL ? dep_pop(d, &d->full) : LFP_NIL;
	if (i == LFP_NIL)
		return 0;
	struct fe_bundle *b = dep_bundle(d, i);
	const struct cls_hot *c = &h->hot[ci];
	uint32_t k = b->n;
	for (uint32_t j = 0; j < k; j++) {
		uintptr_t a = h->fh_base + ((uintptr_t)b->off[j] << 3);
		/* P2: pairs with P1; the page map names a's pool (whole pages) */
		const lfp_pool_t *pool = pm_pool(lfp_load64_acquire(pm_slot(h, a)));
		uint64_t q = (uint64_t)(a - (uintptr_t)lfpi_blocks(pool)) * c->inv;
		q = q >> c->shift | q << ((64u - c->shift) & 63u);
		e[j] = (struct fe_ent){ (void *)a, &lfpi_next(pool)[q] };
	}
	dep_push(d, &d->empty, i);
	lfp_fetch_sub64_relaxed(&d->blocks, k); /* relaxed: stats */
	return k;
}

/* Give the bundles of class ci's depot back to the pools (trim): at most
 * DEP_STACKS of them, so that threads parking meanwhile cannot keep a
 * trim (or a malloc that runs the automatic trim) going. */
static void dep_drain(lfp_heap_t *h, uint32_t ci)
{
	struct fe_ent e[TC_STACK_MAX];
	uint32_t k;
	for (uint32_t n = 0; n < DEP_STACKS && (k = dep_take(h, ci, e)) != 0; n++)
		tc_give_back(h, e, k);
}

static size_t dep_bundle_bytes(const struct cls *c)
{
	size_t bytes = sizeof(struct fe_bundle) + (size_t)c->tc_cap * sizeof(uint32_t);
	return (bytes + 7) & ~(size_t)7;
}

/* With LFP_HEAP_DEPOT, every class's depot in one anonymous mapping
 * (h->dep_map): the heads first, one line per class, then the bundles,
 * whose pages are touched only when used. No depots (dep NULL) without the
 * flag, or if it cannot be mapped (the bins work without), or if offsets /
 * 8 of the fallback heap would not fit 32 bits. */
static void dep_create(lfp_heap_t *h)
{
	size_t heads = (size_t)h->nclasses * sizeof(struct fe_depot), total = heads;
	for (uint32_t ci = 0; ci < h->nclasses; ci++)
		if (h->cls[ci].tc_cap != 0)
			total += DEP_STACKS * dep_bundle_bytes(&h->cls[ci]);
	if (!(h->flags & LFP_HEAP_DEPOT) || (h->flags & LFP_HEAP_OWNED) || total == heads ||
	    (h->fh_len >> 3) > UINT32_MAX)
		return;
	total = (total + page_size() - 1) & ~(page_size() - 1);
	int saved = errno; /* no depot is no error: the bins work without */
	void *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
	errno = saved;
	if (m == MAP_FAILED)
		return;
	h->dep_map = m;
	h->dep_map_bytes = total;
	struct fe_depot *d = m;
	char *at = (char *)m + heads;
	for (uint32_t ci = 0; ci < h->nclasses; ci++, d++) {
		if (h->cls[ci].tc_cap == 0)
			continue;
		lfp_init64(&d->full, lfp_head_make(LFP_NIL, 0));
		lfp_init64(&d->empty, lfp_head_make(LFP_NIL, 0));
		lfp_init32(&d->fresh, 0);
		lfp_init64(&d->blocks, 0);
		d->bytes = (uint32_t)dep_bundle_bytes(&h->cls[ci]);
		d->bundles = at;
		at += DEP_STACKS * (size_t)d->bytes;
		h->cls[ci].dep = d;
	}
}

/* fr is full: give av back and make fr the new av. */
static FE_NOINLINE void tc_spill(lfp_heap_t *h, struct fe_bin *b, uint32_t ci)
{
	/* av's blocks (older: refilled or freed before fr's) go to the depot
	 * or back to their pools, and the full fr becomes av: no copying, and
	 * fr's recently freed blocks, the warmest, are the next ones handed
	 * out. */
	if (!dep_put(h, ci, b->av, b->an))
		tc_give_back(h, b->av, b->an);
	struct fe_ent *t = b->av;
	b->av = b->fr;
	b->fr = t;
	b->an = b->fn;
	b->fn = 0;
}

static void own_disown_all(lfp_heap_t *h);

/* Give every block of this thread's bins back to h (the bins' heap); in
 * owned mode, give up every pool this thread owns. */
static void tc_give_back_all(lfp_heap_t *h)
{
	if (h->flags & LFP_HEAP_OWNED) {
		own_disown_all(h);
		return;
	}
	for (uint32_t ci = 0; ci < h->nclasses; ci++) {
		struct fe_bin *b = &tc.bin[ci];
		tc_give_back(h, b->av, b->an);
		tc_give_back(h, b->fr, b->fn);
		b->an = b->fn = 0;
	}
}

/* The bins belong to no heap. */
static void tc_forget(void)
{
	memset(tc.bin, 0, sizeof tc.bin);
	tc.id = 0;
	tc.heap = NULL;
}

/* Give every cached block back to the heap the bins belong to, if it still
 * lives, and forget them. */
static void tc_detach(void)
{
	if (tc.id == 0)
		return;
	pthread_mutex_lock(&tc_lock);
	lfp_heap_t *h = NULL;
	for (lfp_heap_t *x = tc_heaps; x != NULL && h == NULL; x = x->tc_next)
		if (x == tc.heap && x->id == tc.id)
			h = x;
	if (h != NULL)
		tc_give_back_all(h);
	pthread_mutex_unlock(&tc_lock);
	tc_forget();
}

static void tc_exit(void *arg)
{
	(void)arg;
	tc_detach();
	if (tc.store != NULL)
		munmap(tc.store, tc.store_bytes);
	/* A later call of this thread (another destructor) starts over from
	 * tc_none, and arms the key again. The page waits for the next
	 * thread. */
	struct fe_tc *mine = tc_state;
	tc_state = &tc_none;
	if (mine != &tc_none) {
		pthread_mutex_lock(&tc_lock);
		mine->spare_next = tc_spare;
		tc_spare = mine;
		pthread_mutex_unlock(&tc_lock);
	}
}

static bool tc_attach(lfp_heap_t *h);
static FE_NOINLINE void *malloc_big(lfp_heap_t *h, size_t n);
static inline lfp_atomic_u32 *block_word(const lfp_heap_t *h, uint32_t ci, const lfp_pool_t *pool,
					 uintptr_t a);
static FE_INLINE int live_word(const lfp_heap_t *h, uint32_t ci, const lfp_pool_t *pool, const void *p,
			       lfp_atomic_u32 **st, uint32_t *ix);
/* Thread tags of owned mode: unique, never 0 (unowned) and never
 * UINT64_MAX (a thread with no tag yet) or OWN_TRIM. */
static lfp_atomic_u64 own_tags;

/* This thread's tag as a pool's own_tid holds it. A thread that never
 * attached to an owned heap gets UINT64_MAX, which no pool holds, so
 * `own_tid == own_me()` alone says "this thread owns the pool": it owns
 * pools of the heap it is attached to only (tc_attach gives up those of
 * the heap before), and free needs no tc.id test. */
static inline uint64_t own_me(void)
{
	return ~tc.ntid;
}

/*
 * Owned pools (the default mode; docs/frontend.md, "Owned pools"). Instead of
 * bins in front of shared pools, a thread owns class pools: it alone
 * allocates from them, and it frees their blocks onto the pool's own list
 * (own_lhead, linked through next[] like the shared stack) with no atomic
 * read-modify-write. A free by any other thread goes onto the pool's shared
 * stack with one CAS (R1) and is counted in own_rfreed (O3); the owner takes
 * that whole stack with one CAS when its own list runs dry (O6). No list
 * is walked on the way: a stack is taken whole, and blocks leave a list one
 * malloc at a time (the link a malloc reads lies on the state word's line,
 * which it writes anyway). A pool that is completely free when it becomes
 * current is relinked in address order (own_relink: count stores, no loads).
 *
 * Per thread and class one current pool (struct own_slot in tc.own[]); the
 * first local free to another of its pools notes that pool (own_ready), on
 * a short ready list (tc.store, OWN_READY per class) if that has room; a
 * miss takes the ready list, then scans the class's pools for its own with
 * free blocks (the noted ones the list had no room for among them), then
 * claims an unowned one (CAS of own_tid 0 -> own_me(), O1), then grows the
 * class.
 *
 * The exact double-free check is the bins': a block's state word reads
 * LFPI_ALLOC only while the program holds it; on either list it is a link.
 *
 * A thread gives up its pools (disown: its own list goes onto the shared
 * stack, one chain push after a walk to the list's end, then a release
 * store of own_tid = 0, O2) when it exits, moves to another heap, or calls
 * lfp_heap_cache_flush / lfp_heap_trim; before an automatic trim it gives
 * up those that are completely free. Only unowned pools are retired
 * (trim_class), so no thread's tc.own or ready list names a retired pool.
 * Completely free: own_live - own_rfreed == 0, counted, not walked.
 *
 * O1 acquire CAS claiming a pool: the last owner's words (own_lhead,
 *    own_live, next[]); pairs with O2.
 * O2 release store of own_tid = 0 (disown), after the own list went onto
 *    the shared stack; pairs with O1 and O5.
 * O3 release fetch_add of own_rfreed, a remote free's last touch of the
 *    pool (after its push); pairs with O4.
 * O4 acquire load of own_rfreed (own_in_use): every free it counts is done
 *    with the pool; pairs with O3.
 * O5 acquire CAS of own_tid 0 -> OWN_TRIM by trim (a candidate no thread
 *    can claim meanwhile), and validate's acquire load; pairs with O2.
 * O6 acquire CAS taking the shared stack whole; pairs with R1.
 * O7 relaxed own_lhead, own_live, own_ready and own_tid == own_me(): written
 *    by the owner only, handed to the next owner by O2/O1 (a thread reads
 *    its own tag there exactly: only it writes it in or out).
 */
#define OWN_READY 8u

/* tc.own[ci].pool of a class with no current pool: its count of 0 sends
 * every malloc to own_miss. Never written. */
static lfp_pool_t own_none;

static void own_unready(const lfp_heap_t *h, uint32_t ci, lfp_pool_t *pool);
static void own_relink(lfp_pool_t *pool);

/* Make pool (this thread's, class ci) the current one. */
static void own_install(const lfp_heap_t *h, uint32_t ci, lfp_pool_t *pool)
{
	struct own_slot *o = &tc.own[ci];
	own_unready(h, ci, pool);
	own_relink(pool);
	lfp_store32_relaxed(&pool->own_ready, 1); /* O7: the current pool counts as noted */
	o->pool = pool;
	o->next = lfpi_next(pool);
	o->blocks = lfpi_blocks(pool);
	o->stride = (uint32_t)pool->stride;
	o->count = (uint32_t)pool->count;
}

/* No current pool; the old one (if any) is not touched. */
static void own_reset(struct own_slot *o)
{
	o->pool = &own_none;
	o->count = 0;
}

/* The current pool (this thread's) stops being current. */
static void own_uninstall(struct own_slot *o)
{
	if (o->pool != &own_none)
		lfp_store32_relaxed(&o->pool->own_ready, 0); /* O7: its next free notes it */
	own_reset(o);
}

/*
 * tc.store in owned mode, per class: the ready list (OWN_READY pools), the
 * list of every pool this thread owns in the class (OWN_MINE; past that,
 * OWN_MINE_OVER in its length: the class's pool array is scanned instead),
 * and the two lengths. With the list, a miss looks at this thread's pools
 * only: a scan of the class's pools costs a cache miss per pool, and with
 * one or two pools per thread and class, 256 producer threads whose
 * consumers free remotely spent 10 % of their CPU in that scan (512: lfpool
 * 83 ns per object, mimalloc 65). Layout: every ready list, every mine
 * list, the ready lengths, the mine lengths.
 */
#define OWN_MINE 16u
#define OWN_MINE_OVER 0x80000000u

static lfp_pool_t **own_ready_list(uint32_t ci)
{
	return (lfp_pool_t **)(void *)tc.store + (size_t)ci * OWN_READY;
}
static lfp_pool_t **own_mine_list(const lfp_heap_t *h, uint32_t ci)
{
	return (lfp_pool_t **)(void *)tc.store + (size_t)h->nclasses * OWN_READY + (size_t)ci * OWN_MINE;
}
static uint32_t *own_ready_len(const lfp_heap_t *h, uint32_t ci)
{
	return (uint32_t *)(void *)((lfp_pool_t **)(void *)tc.store +
				    (size_t)h->nclasses * (OWN_READY + OWN_MINE)) + ci;
}
static uint32_t *own_mine_len(const lfp_heap_t *h, uint32_t ci)
{
	return own_ready_len(h, 0) + h->nclasses + ci;
}

/* This thread has just claimed pool (class ci). */
static void own_mine_add(const lfp_heap_t *h, uint32_t ci, lfp_pool_t *pool)
{
	uint32_t *n = own_mine_len(h, ci);
	if (*n < OWN_MINE)
		own_mine_list(h, ci)[(*n)++] = pool;
	else
		*n |= OWN_MINE_OVER; /* lost track until every pool is given up */
}

/* This thread is giving up pool (class ci). */
static void own_mine_drop(const lfp_heap_t *h, uint32_t ci, const lfp_pool_t *pool)
{
	uint32_t *n = own_mine_len(h, ci), len = *n & ~OWN_MINE_OVER;
	lfp_pool_t **m = own_mine_list(h, ci);
	for (uint32_t k = 0; k < len; k++)
		if (m[k] == pool) {
			m[k] = m[len - 1];
			*n = (*n & OWN_MINE_OVER) | (len - 1);
			return;
		}
}

/* Clear pool's note (own_ready): off this thread's ready list of class ci
 * if it is there. pool is this thread's. */
static void own_unready(const lfp_heap_t *h, uint32_t ci, lfp_pool_t *pool)
{
	if (lfp_load32_relaxed(&pool->own_ready) == 0) /* O7 */
		return;
	lfp_pool_t **r = own_ready_list(ci);
	uint32_t *n = own_ready_len(h, ci);
	for (uint32_t k = 0; k < *n; k++)
		if (r[k] == pool)
			r[k--] = r[--*n];
	lfp_store32_relaxed(&pool->own_ready, 0); /* O7 */
}

static size_t own_store_bytes(const lfp_heap_t *h)
{
	return (size_t)h->nclasses * ((OWN_READY + OWN_MINE) * sizeof(lfp_pool_t *) + 2 * sizeof(uint32_t));
}

/* Claim pool (class ci) for this thread if no thread owns it. */
static bool own_claim(lfp_heap_t *h, uint32_t ci, lfp_pool_t *pool)
{
	uint64_t none = 0;
	if (!lfp_cas64_acquire(&pool->own_tid, &none, own_me())) /* O1: pairs with O2 */
		return false;
	lfp_fetch_sub64_relaxed(&h->cls[ci].unowned, 1); /* relaxed: a hint */
	own_mine_add(h, ci, pool);
	return true;
}

/* Blocks of pool the program holds (owned mode); O4. */
static uint64_t own_in_use(const lfp_pool_t *pool)
{
	uint64_t freed = lfp_load64_acquire(&pool->own_rfreed); /* O4: pairs with O3 */
	return lfp_load64_relaxed(&pool->own_live) - freed;     /* O7 */
}

/* The owner takes pool's shared stack whole as its own list (which is
 * empty); false if the stack was empty. */
static bool own_take_shared(lfp_pool_t *pool)
{
	unsigned spins = 0;
	uint64_t old = lfp_load64_acquire(&pool->head); /* O6: pairs with R1 */
	for (;;) {
		uint32_t i = lfp_head_index(old);
		if (i == LFP_NIL)
			return false;
		if (lfp_cas64_weak_acquire(&pool->head, &old, lfp_head_next(old, LFP_NIL))) { /* O6 */
			lfp_store32_relaxed(&pool->own_lhead, i); /* O7 */
			return true;
		}
		lfp_backoff(&spins);
	}
}

/*
 * A pool of ours about to become current: if it is completely free, link
 * all its blocks into the own list in address order (what is on the shared
 * stack too), so that the mallocs that follow walk next[] and the blocks
 * forward, as from a fresh pool, instead of in the order of the frees that
 * emptied it (a cache miss per malloc once that order is random). With
 * nothing in use no other thread touches the lists: a free of a block that
 * is not allocated stops at its state word, which never reads LFPI_ALLOC
 * here. Costs count stores. It runs when a pool this thread used up comes
 * back (at least count frees came since its last relink), and when a pool
 * given up (flush, trim, exit) is claimed again, whose give-up walked its
 * list, which costs as much. A fresh pool is already in order: skipped.
 */
static void own_relink(lfp_pool_t *pool)
{
	if (own_in_use(pool) != 0)
		return;
	/* A stack never touched (tag 0: no CAS ever moved it) is still the
	 * one the pool's init linked in order. Relaxed: with nothing in use
	 * no other thread writes the head; O6 below takes it. */
	bool fresh = lfp_load64_relaxed(&pool->head) == lfp_head_make(0, 0);
	(void)own_take_shared(pool); /* O6: the remote frees' blocks, whole */
	if (fresh)
		return; /* own_lhead is block 0 */
	lfp_atomic_u32 *next = lfpi_next(pool);
	uint32_t n = (uint32_t)pool->count;
	for (uint32_t i = 0; i + 1 < n; i++)
		lfp_store32_relaxed(&next[i], i + 1); /* O7: our list */
	lfp_store32_relaxed(&next[n - 1], LFP_NIL); /* O7 */
	lfp_store32_relaxed(&pool->own_lhead, 0);   /* O7 */
}

/* Free blocks of an owned pool: on its own list or its shared stack. */
static bool own_has_free(const lfp_pool_t *pool)
{
	return lfp_load32_relaxed(&pool->own_lhead) != LFP_NIL ||           /* O7 */
	       lfp_head_index(lfp_load64_relaxed(&pool->head)) != LFP_NIL; /* relaxed: a hint;
									      * O6 takes it */
}

/* Give up pool (this thread's, class ci): its own list goes onto the
 * shared stack, then own_tid = 0 (O2). The caller keeps it from
 * retirement (a read section or a block it holds). */
static void own_disown(lfp_heap_t *h, lfp_pool_t *pool, uint32_t ci)
{
	lfp_atomic_u32 *next = lfpi_next(pool);
	uint32_t first = lfp_load32_relaxed(&pool->own_lhead); /* O7 */
	if (first < pool->count) {
		/* Walk to the list's end (at most count steps; a bad link
		 * ends the list there: what is past it stays lost). */
		uint32_t last = first;
		for (uint64_t n = 1;; n++) {
			uint32_t x = lfp_load32_relaxed(&next[last]); /* O7: our list */
			if (x == LFP_NIL)
				break;
			if (x >= pool->count || n >= pool->count) {
				lfp_store32_relaxed(&next[last], LFP_NIL); /* O7 */
				break;
			}
			last = x;
		}
		lfpi_stack_push_chain(pool, first, last); /* R1 */
	}
	lfp_store32_relaxed(&pool->own_lhead, LFP_NIL); /* O7 */
	if (tc.own[ci].pool == pool)
		own_uninstall(&tc.own[ci]);
	own_unready(h, ci, pool);
	own_mine_drop(h, ci, pool);
	/* Counted first: a count one too high for a moment costs a scan that
	 * finds nothing, one too low (a fork() between the two, in the child)
	 * would make the class grow instead of reusing the pool. */
	lfp_fetch_add64_relaxed(&h->cls[ci].unowned, 1); /* relaxed: a hint */
	lfp_store64_release(&pool->own_tid, 0); /* O2: pairs with O1/O5 */
}

/* Give up this thread's pools of h (every one, or only the completely
 * free ones of classes other than `except`). h is this thread's heap. */
static void own_disown_some(lfp_heap_t *h, bool only_free, uint32_t except)
{
	for (uint32_t ci = 0; ci < h->nclasses; ci++) {
		if (ci == except)
			continue;
		uint32_t n = *own_mine_len(h, ci);
		if (!(n & OWN_MINE_OVER)) { /* our pools, from the list (never retired) */
			lfp_pool_t **m = own_mine_list(h, ci);
			for (uint32_t k = n; k-- > 0;) /* own_disown moves the last entry to k */
				if (!only_free || own_in_use(m[k]) == 0)
					own_disown(h, m[k], ci);
			continue;
		}
		rcu_lock();
		const struct poolset *s = ptr_load_acquire(&h->cls[ci].pools); /* F2: pairs with F1 */
		for (uint32_t k = 0; s != NULL && k < s->n; k++) {
			lfp_pool_t *pool = s->pool[k];
			if (lfp_load64_relaxed(&pool->own_tid) == own_me() && /* O7 */
			    (!only_free || own_in_use(pool) == 0))
				own_disown(h, pool, ci);
		}
		rcu_unlock();
	}
}

static void own_disown_all(lfp_heap_t *h)
{
	own_disown_some(h, false, UINT32_MAX);
	for (uint32_t ci = 0; ci < h->nclasses; ci++) {
		own_reset(&tc.own[ci]); /* every pool is given up: touch none */
		*own_ready_len(h, ci) = 0;
		*own_mine_len(h, ci) = 0; /* exact again */
	}
}

/* A local free to pool, not noted (own_ready 0: neither current, nor on
 * the ready list, nor noted before): note it, on the ready list if that
 * has room (a miss's scan finds the rest). The note stays until the pool
 * is used up as the current pool, or given up, so the frees after this one
 * skip the call. One test of own_ready, and not `pool == current`, on the
 * free path: that comparison is a coin toss in a program that frees in
 * random order, and each misprediction also throws away the overlapped
 * loads of the frees after it (docs/frontend.md, "Owned pools"). */
static FE_NOINLINE int own_ready_add(const lfp_heap_t *h, uint32_t ci, lfp_pool_t *pool)
{
	uint32_t *n = own_ready_len(h, ci);
	if (*n < OWN_READY)
		own_ready_list(ci)[(*n)++] = pool;
	lfp_store32_relaxed(&pool->own_ready, 1); /* O7 */
	return 0; /* own_put's result: a tail call keeps its fast path frameless */
}

/* r, which is 0: lets a caller that tests own_put's result call these two
 * in tail position (no stack frame on free's fast path). */
static inline int own_zero(int r)
{
	if (r != 0)
		__builtin_unreachable();
	return r;
}

/* own_put's free by a thread that does not own pool: block i onto the
 * shared stack, counted. 0. Out of line, like own_ready_add. */
static FE_NOINLINE int own_put_remote(lfp_pool_t *pool, uint32_t i)
{
	lfpi_stack_push(pool, i); /* R1 */
	lfp_fetch_add64_release(&pool->own_rfreed, 1); /* O3: pairs with O4; our last touch */
	return 0;
}

/* One of this thread's pools of class ci, looked at by own_find: true if
 * it has free blocks; else *mine grows to its block bytes if larger. */
static bool own_usable(const lfp_heap_t *h, uint32_t ci, const lfp_pool_t *pool, size_t *mine)
{
	if (own_has_free(pool))
		return true;
	if ((size_t)pool->count * h->cls[ci].size > *mine)
		*mine = (size_t)pool->count * h->cls[ci].size;
	return false;
}

/* Make a pool with free blocks current for class ci, which has none (the
 * caller, own_miss, uninstalled it): from the ready list, then this
 * thread's other pools, then an unowned one (claimed, O1). false if there
 * is none; then *mine is the block bytes of the largest pool of the class
 * this thread owns (0: none), which sizes the pool the class grows by. */
static bool own_find(lfp_heap_t *h, uint32_t ci, size_t *mine)
{
	lfp_pool_t **r = own_ready_list(ci);
	uint32_t *n = own_ready_len(h, ci);
	while (*n != 0) {
		lfp_pool_t *pool = r[--*n];
		lfp_store32_relaxed(&pool->own_ready, 0); /* O7 */
		if (own_has_free(pool)) {
			own_install(h, ci, pool);
			return true;
		}
	}
	lfp_pool_t *got = NULL;
	*mine = 0;
	uint32_t nm = *own_mine_len(h, ci);
	bool listed = !(nm & OWN_MINE_OVER);
	for (uint32_t k = 0; listed && k < nm && got == NULL; k++) { /* never retired */
		lfp_pool_t *pool = own_mine_list(h, ci)[k];
		if (own_usable(h, ci, pool, mine))
			got = pool;
	}
	/* The scan of the class's pools: for ours if the list lost track,
	 * for an unowned one if there may be any. The count is a hint (a
	 * claim or disown in flight may have moved it a moment late); a
	 * miss that skips the scan wrongly grows the class by one pool. */
	bool unowned = (int64_t)lfp_load64_relaxed(&h->cls[ci].unowned) > 0; /* relaxed: a hint */
	if (got == NULL && (!listed || unowned)) {
		rcu_lock();
		const struct poolset *s = ptr_load_acquire(&h->cls[ci].pools); /* F2: pairs with F1 */
		for (uint32_t k = 0; !listed && s != NULL && k < s->n && got == NULL; k++) {
			lfp_pool_t *pool = s->pool[k];
			if (lfp_load64_relaxed(&pool->own_tid) == own_me() && /* O7 */
			    own_usable(h, ci, pool, mine))
				got = pool;
		}
		for (uint32_t k = 0; unowned && s != NULL && k < s->n && got == NULL; k++) {
			lfp_pool_t *pool = s->pool[k];
			/* Relaxed pre-checks: hints; the CAS decides. A claimed
			 * pool whose stack another owner emptied meanwhile
			 * stays ours, empty: our next miss moves on. */
			if (lfp_load64_relaxed(&pool->own_tid) == 0 &&
			    lfp_head_index(lfp_load64_relaxed(&pool->head)) != LFP_NIL &&
			    own_claim(h, ci, pool)) /* O1 */
				got = pool;
		}
		/* A pool we own is never retired: it outlives the read section. */
		rcu_unlock();
	}
	if (got == NULL)
		return false;
	own_install(h, ci, got);
	return true;
}

/* malloc's miss in owned mode: the current pool's own list is empty (or
 * there is none, or this thread is not attached to h). */
static FE_NOINLINE void *own_miss(lfp_heap_t *h, uint32_t ci)
{
	if (tc.id != h->id && !tc_attach(h)) /* no thread state (no key, no memory for it): */
		return lfp_flheap_malloc(h->fh, h->cls[ci].size); /* the fallback heap serves */
	struct own_slot *o = &tc.own[ci];
	int saved = errno;
	for (;;) {
		lfp_pool_t *pool = o->pool;
		if (pool != &own_none) {
			uint32_t i = lfp_load32_relaxed(&pool->own_lhead); /* O7 */
			if (i < o->count)
				break;
			if (i != LFP_NIL)
				lfp_store32_relaxed(&pool->own_lhead, LFP_NIL); /* O7: a bad link:
										 * drop the list */
			if (own_take_shared(pool))
				break;
			own_uninstall(o); /* used up; its frees will make it ready */
		}
		size_t mine;
		if (own_find(h, ci, &mine))
			continue;
		/* Grow by twice this thread's largest pool of the class (the
		 * first: the smallest), not by the class's next size: with
		 * that, every thread's first pool of a class was the size
		 * the class had reached, up to 1 MiB, and 64 threads holding
		 * 4 blocks of 4 classes held about 250 MiB of pools. */
		struct cls *c = &h->cls[ci];
		lfp_pool_t *added = NULL;
		pthread_mutex_lock(&c->grow_lock);
		int rc = class_grow(h, c, ci, mine != 0 ? 2 * mine : h->pool_min_bytes, &added);
		/* Claimed before the unlock: a trim picks its candidates under
		 * grow_lock, and an unowned free pool is one. Lost to another
		 * thread's claim: the next own_find goes on. */
		if (rc == 0)
			(void)own_claim(h, ci, added);
		pthread_mutex_unlock(&c->grow_lock);
		gc_collect(h);
		auto_trim(h, ci);
		if (rc != 0) {
			errno = saved;
			return class_fallback(h, ci);
		}
	}
	errno = saved;
	lfp_pool_t *pool = o->pool;
	uint32_t i = lfp_load32_relaxed(&pool->own_lhead); /* O7 */
	lfp_atomic_u32 *st = &o->next[i];
	lfp_store32_relaxed(&pool->own_lhead, lfp_load32_relaxed(st)); /* O7 */
	lfp_store32_relaxed(st, LFPI_ALLOC); /* K2: the caller's now */
	lfp_store64_relaxed(&pool->own_live, lfp_load64_relaxed(&pool->own_live) + 1); /* O7 */
	return o->blocks + (size_t)i * o->stride;
}

static FE_INLINE void *own_malloc(lfp_heap_t *h, size_t n)
{
	if (lfpi_likely(n <= h->max_class)) {
		uint32_t ci = class_index(h, n); /* 0 maps to the first class */
		if (lfpi_likely(tc.id == h->id)) {
			struct own_slot *o = &tc.own[ci];
			lfp_pool_t *pool = o->pool;
			uint32_t i = lfp_load32_relaxed(&pool->own_lhead); /* O7 */
			/* One test for an empty list (LFP_NIL), no current pool
			 * (count 0) and a bad link. */
			if (lfpi_likely(i < o->count)) {
				lfp_atomic_u32 *st = &o->next[i];
				lfp_store32_relaxed(&pool->own_lhead, lfp_load32_relaxed(st)); /* O7 */
				lfp_store32_relaxed(st, LFPI_ALLOC); /* K2: the caller's now */
				lfp_store64_relaxed(&pool->own_live,
						    lfp_load64_relaxed(&pool->own_live) + 1); /* O7 */
				return o->blocks + (size_t)i * o->stride;
			}
		}
		return own_miss(h, ci);
	}
	return malloc_big(h, n);
}

/*
 * Free block start p of pool (class ci, by the page map or the directory)
 * in owned mode. 0; -EINVAL if p is not a block start of a live class-ci
 * pool; -EALREADY if the block is not allocated. Concurrency: any thread;
 * the same block must not be freed by two threads at once. No read section
 * needed: the block, allocated, keeps its pool from retirement until the
 * free is done (a remote free's last touch is O3).
 */
static FE_INLINE int own_put(lfp_heap_t *h, uint32_t ci, lfp_pool_t *pool, void *p)
{
	lfp_atomic_u32 *st;
	uint32_t i;
	int rc = live_word(h, ci, pool, p, &st, &i);
	if (lfpi_unlikely(rc != 0))
		return rc;
#ifdef LFPI_OWN_PLANTED_RACE
	/* Negative control only (mk/frontend.mk, test-negative-owned): every
	 * free takes the owner's path, so another thread's free races the
	 * owner's plain list updates. conc_frontend --owned must catch it. */
	if (lfp_load64_relaxed(&pool->own_tid) != 0) { /* O7 */
#else
	if (lfpi_likely(lfp_load64_relaxed(&pool->own_tid) == own_me())) { /* O7 */
#endif
		lfp_store32_relaxed(st, lfp_load32_relaxed(&pool->own_lhead)); /* O7 */
		lfp_store32_relaxed(&pool->own_lhead, i);                       /* O7 */
		lfp_store64_relaxed(&pool->own_live, lfp_load64_relaxed(&pool->own_live) - 1); /* O7 */
		if (lfpi_unlikely(lfp_load32_relaxed(&pool->own_ready) == 0)) /* O7 */
			return own_zero(own_ready_add(h, ci, pool));
		return 0;
	}
	return own_zero(own_put_remote(pool, i));
}

/* Before an automatic trim: a thread in owned mode gives up its completely
 * free pools of the other classes, so that the trim can retire them (their
 * memory then serves any class). */
static void own_before_trim(lfp_heap_t *h, uint32_t growing)
{
	if ((h->flags & LFP_HEAP_OWNED) && tc.id == h->id)
		own_disown_some(h, true, growing);
}

/* Make the bins h's (the old heap's blocks go back first). false: no bins
 * for now (no memory, no destructor, or a checked heap). */
static bool tc_attach(lfp_heap_t *h)
{
	if (h->flags & LFP_HEAP_CHECKED)
		return false;
	tc_detach();
	if (!tc.armed) {
		if (pthread_once(&tc_once, tc_init_once) != 0 || !tc_key_ok || !tc_own_state())
			return false;
		if (pthread_setspecific(tc_exit_key, tc_state) != 0)
			return false; /* the page stays this thread's, unarmed: the next attach retries */
		tc.armed = true;
	}
	size_t need = 0;
	bool owned = h->flags & LFP_HEAP_OWNED;
	for (uint32_t ci = 0; ci < h->nclasses && !owned; ci++)
		need += 2 * (size_t)h->cls[ci].tc_cap * sizeof(struct fe_ent);
	if (owned)
		need = own_store_bytes(h);
	need = (need + page_size() - 1) & ~(page_size() - 1);
	if (tc.store_bytes < need) {
		if (tc.store != NULL)
			munmap(tc.store, tc.store_bytes);
		int saved = errno; /* a failure here is not the caller's: it goes on without bins */
		void *m = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		errno = saved;
		tc.store = m == MAP_FAILED ? NULL : m;
		tc.store_bytes = m == MAP_FAILED ? 0 : need;
		if (tc.store == NULL)
			return false;
	}
	if (owned) {
		if (tc.ntid == 0)
			tc.ntid = ~(lfp_fetch_add64_relaxed(&own_tags, 1) + 1); /* relaxed: only
										 * uniqueness matters */
		memset(tc.store, 0, own_store_bytes(h));
		for (uint32_t ci = 0; ci < h->nclasses; ci++)
			own_reset(&tc.own[ci]);
		tc.heap = h;
		tc.id = h->id;
		return true;
	}
	struct fe_ent *s = tc.store;
	for (uint32_t ci = 0; ci < h->nclasses; ci++) {
		uint32_t cap = h->cls[ci].tc_cap;
		tc.bin[ci] = (struct fe_bin){ 0, 0, s, s + cap, cap, h->cls[ci].tc_fill };
		s += 2 * (size_t)h->cls[ci].tc_cap;
	}
	tc.heap = h;
	tc.id = h->id;
	return true;
}

/* Pop up to want blocks of class ci into b->av, marked LFPI_HELD, from the
 * class's pools (the hinted, then newest first). 0 if all are empty. */
static uint32_t tc_refill(lfp_heap_t *h, uint32_t ci, struct fe_bin *b, uint32_t want)
{
	struct cls *c = &h->cls[ci];
	uint32_t idx[TC_STACK_MAX], got = 0;
	rcu_lock();
	const struct poolset *s = ptr_load_acquire(&c->pools); /* F2: pairs with F1 */
	uint32_t n = s ? s->n : 0;
	uint32_t i = lfp_load32_relaxed(&c->hint); /* relaxed: a hint */
	if (i >= n)
		i = n - 1;
	for (uint32_t k = 0; k < n && got == 0; k++, i = i == 0 ? n - 1 : i - 1) {
		lfp_pool_t *pool = s->pool[i];
		uint32_t m = lfpi_stack_pop_chain(pool, idx, want);
		if (m == LFPI_POP_CORRUPT || m == 0)
			continue;
		lfp_atomic_u32 *next = lfpi_next(pool);
		for (uint32_t j = 0; j < m; j++) {
			lfp_store32_relaxed(&next[idx[j]], LFPI_HELD); /* K2: ours now */
			/* Lowest index on top: a fresh pool hands out ascending addresses. */
			b->av[m - 1 - j] = (struct fe_ent){ lfpi_ptr(pool, idx[j]), &next[idx[j]] };
		}
		if (pool->flags & LFP_POOL_STATS)
			lfp_fetch_add64_relaxed(&pool->n_alloc, m); /* relaxed: statistics */
		if (k != 0)
			lfp_store32_relaxed(&c->hint, i); /* relaxed: a hint */
		got = m;
	}
	rcu_unlock();
	b->an = got;
	return got;
}

/* Grow class ci by a pool (unless another thread did), under its grow_lock. */
static int tc_grow(lfp_heap_t *h, uint32_t ci, struct fe_bin *b)
{
	struct cls *c = &h->cls[ci];
	int rc = 0;
	pthread_mutex_lock(&c->grow_lock);
	if (tc_refill(h, ci, b, b->fill) == 0)
		rc = class_grow(h, c, ci, 0, NULL);
	pthread_mutex_unlock(&c->grow_lock);
	gc_collect(h);
	auto_trim(h, ci);
	return rc;
}

/* The class path without a bin (a checked heap, a class above TC_MAX_BLOCK,
 * no memory for bins): the pools' own alloc. */
static FE_NOINLINE void *class_alloc_pool(lfp_heap_t *h, uint32_t ci)
{
	struct cls *c = &h->cls[ci];
	void *p = NULL;
	rcu_lock();
	const struct poolset *s = ptr_load_acquire(&c->pools); /* F2: pairs with F1 */
	if (s != NULL)
		p = class_try(c, s);
	rcu_unlock();
	return p ? p : class_alloc_slow(h, ci);
}

/* malloc's miss: bins of another heap (or none), or an empty av. */
static FE_NOINLINE void *tc_alloc_miss(lfp_heap_t *h, uint32_t ci)
{
	if (tc.id != h->id && !tc_attach(h))
		return class_alloc_pool(h, ci);
	struct fe_bin *b = &tc.bin[ci];
	if (b->cap == 0)
		return class_alloc_pool(h, ci); /* a class without a bin */
	if (b->fn != 0) {
		struct fe_ent *t = b->av;
		b->av = b->fr;
		b->fr = t;
		b->an = b->fn;
		b->fn = 0;
	} else if ((b->an = dep_take(h, ci, b->av)) == 0) {
		int saved = errno;
		while (tc_refill(h, ci, b, b->fill) == 0) {
			if (tc_grow(h, ci, b) != 0) {
				errno = saved;
				return class_fallback(h, ci);
			}
			if (b->an != 0)
				break;
		}
		errno = saved;
		if (b->fill < b->cap)
			b->fill = b->fill * 2 < b->cap ? b->fill * 2 : b->cap;
	}
	struct fe_ent *e = &b->av[--b->an];
	lfp_store32_relaxed(e->st, LFPI_ALLOC); /* K2: the caller's now */
	return e->p;
}

/* Unique heap ids (K10-like counter; relaxed: only uniqueness matters). */
static lfp_atomic_u64 gen_counter;

static uint64_t gen_next(void)
{
	return lfp_fetch_add64_relaxed(&gen_counter, 1) + 1; /* relaxed: a unique number */
}

int lfp_heap_cache_flush(lfp_heap_t *h)
{
	if (!heap_live(h))
		return -EINVAL;
	if (tc.id == h->id)
		tc_give_back_all(h);
	return 0;
}

/* ---- huge blocks -------------------------------------------------------------- */

static void *huge_alloc(lfp_heap_t *h, size_t n, size_t align)
{
	size_t page = page_size();
	if (align < page)
		align = page;
	if (n == 0)
		n = 1; /* aligned_alloc(big alignment, 0) still gets a page */
	size_t len, map_len;
	if (__builtin_add_overflow(n, page - 1, &len)) {
		errno = ENOMEM;
		return NULL;
	}
	len &= ~(page - 1);
	if (__builtin_add_overflow(len, align - page, &map_len)) {
		errno = ENOMEM;
		return NULL;
	}
	char *m = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		errno = ENOMEM;
		return NULL;
	}
	char *p = (char *)(((uintptr_t)m + align - 1) & ~(uintptr_t)(align - 1));
	/* Trim the alignment slack so the mapping is exactly [p, p+len). */
	if (p > m)
		munmap(m, (size_t)(p - m));
	if ((size_t)(p - m) + len < map_len)
		munmap(p + len, map_len - (size_t)(p - m) - len);
	struct dir_entry e = { (uintptr_t)p, (uintptr_t)p + len, DIR_HUGE, 0, p };
	pthread_mutex_lock(&h->dir_lock);
	int rc = dir_update(h, &e, true);
	pthread_mutex_unlock(&h->dir_lock);
	gc_collect(h);
	if (rc != 0) {
		munmap(p, len);
		errno = ENOMEM;
		return NULL;
	}
	lfp_fetch_add64_relaxed(&h->huge_live, 1);   /* relaxed: stats */
	lfp_fetch_add64_relaxed(&h->huge_bytes, len); /* relaxed: stats */
	return p;
}

/* Free huge block p (found in the directory by the caller, outside any read
 * section). Under dir_lock the entry is looked up again, so of two racing
 * frees one wins and the other gets -EINVAL (the mapping is gone). */
static int huge_free(lfp_heap_t *h, void *p)
{
	pthread_mutex_lock(&h->dir_lock);
	const struct dir *d = ptr_load_acquire(&h->dir); /* F4 (under dir_lock) */
	const struct dir_entry *f = d ? dir_find(d, (uintptr_t)p) : NULL;
	if (f == NULL || f->kind != DIR_HUGE || f->obj != p) {
		pthread_mutex_unlock(&h->dir_lock);
		return -EINVAL;
	}
	struct dir_entry e = *f;
	while (dir_update(h, &e, false) != 0)
		; /* the metadata heap is out of memory: retry (rare) */
	pthread_mutex_unlock(&h->dir_lock);
	gc_collect(h);
	/* Readers only read directory entries, never the mapping: unmap now. */
	int saved = errno;
	munmap((void *)e.lo, e.hi - e.lo);
	errno = saved;
	lfp_fetch_sub64_relaxed(&h->huge_live, 1);            /* relaxed: stats */
	lfp_fetch_sub64_relaxed(&h->huge_bytes, e.hi - e.lo); /* relaxed: stats */
	return 0;
}

/*
 * Grow or shrink huge block p to at least n bytes (n >= the threshold) with
 * mremap: the kernel moves page tables, nothing is copied. Growth leaves a
 * quarter of headroom (address space only: untouched pages cost nothing),
 * so a block that grows step by step is remapped rarely. NULL if p is not a
 * huge block or the kernel refuses (the caller then copies).
 */
static void *huge_resize(lfp_heap_t *h, void *p, size_t n)
{
	size_t page = page_size(), want;
	if (__builtin_add_overflow(n, n / 4 + page - 1, &want))
		return NULL;
	want &= ~(page - 1);
	pthread_mutex_lock(&h->dir_lock);
	const struct dir *d = ptr_load_acquire(&h->dir); /* F4 (under dir_lock) */
	const struct dir_entry *f = d ? dir_find(d, (uintptr_t)p) : NULL;
	if (f == NULL || f->kind != DIR_HUGE || f->obj != p || f->lo != (uintptr_t)p) {
		pthread_mutex_unlock(&h->dir_lock);
		return NULL;
	}
	struct dir_entry old = *f;
	size_t old_len = old.hi - old.lo;
	int saved = errno;
	char *q = mremap(p, old_len, want, MREMAP_MAYMOVE);
	errno = saved;
	if (q == MAP_FAILED) {
		pthread_mutex_unlock(&h->dir_lock);
		return NULL;
	}
	struct dir_entry e = { (uintptr_t)q, (uintptr_t)q + want, DIR_HUGE, 0, q };
	while (dir_edit(h, &e, old.lo) != 0)
		; /* the metadata heap is out of memory: retry (rare) */
	pthread_mutex_unlock(&h->dir_lock);
	gc_collect(h);
	lfp_fetch_add64_relaxed(&h->huge_bytes, want - old_len); /* relaxed: stats (wraps
								     * back on shrink) */
	return q;
}

/* ---- owner lookup --------------------------------------------------------------- */

#define OWN_FALLBACK 0u
#define OWN_FOREIGN UINT32_MAX

struct owner {
	uint32_t kind; /* OWN_FALLBACK, DIR_POOL, DIR_HUGE or OWN_FOREIGN */
	uint32_t cls;  /* DIR_POOL: class index */
	uintptr_t hi;  /* DIR_HUGE: end of the mapping */
	void *obj;     /* DIR_POOL: the pool; DIR_HUGE: the user pointer */
};

/* Inside a read section. A pool's block in O(1) through the page map, else
 * a binary search of the directory (huge blocks). */
static inline struct owner owner_of(const lfp_heap_t *h, const void *p)
{
	uintptr_t a = (uintptr_t)p;
	bool in_fh = a - h->fh_base < h->fh_len;
	if (lfpi_likely(in_fh)) {
		uint64_t w = lfp_load64_acquire(pm_slot(h, a)); /* P2: pairs with P1 */
		const lfp_pool_t *pool = pm_pool(w);
		/* A pool owns every page its word names: whole granules for a
		 * big one, whole pages for a small one (validate checks both).
		 * A pointer in its header or in the tail past its last block
		 * is the pool's to refuse (-EINVAL), never the fallback
		 * heap's, which would read the bytes before it as a header. */
		if (lfpi_likely(w != 0))
			return (struct owner){ DIR_POOL, pm_class(w), 0,
					       (void *)(uintptr_t)pool };
	}
	const struct dir *d = ptr_load_acquire(&h->dir); /* F4: pairs with F3 */
	const struct dir_entry *e = d ? dir_find(d, a) : NULL;
	if (e != NULL)
		return (struct owner){ e->kind, e->cls, e->hi, e->obj };
	return (struct owner){ in_fh ? OWN_FALLBACK : OWN_FOREIGN, 0, 0, NULL };
}

/* ---- public: create / destroy ---------------------------------------------------- */

static int check_config(const lfp_heap_config_t *cfg)
{
	if (cfg->fit > LFP_FIT_BEST ||
	    (cfg->flags & ~(unsigned)(LFP_HEAP_CHECKED | LFP_HEAP_ABORT_ON_BAD_FREE |
				      LFP_HEAP_POOL_STATS | LFP_HEAP_DEPOT | LFP_HEAP_OWNED |
				      LFP_HEAP_BINS)))
		return -EINVAL;
	if ((cfg->flags & LFP_HEAP_OWNED) && (cfg->flags & LFP_HEAP_BINS))
		return -EINVAL; /* two thread-cache modes at once */
	if (cfg->class_sizes == NULL && cfg->class_count != 0)
		return -EINVAL; /* a count of classes whose sizes are missing */
	if (cfg->class_sizes != NULL) {
		if (cfg->class_count == 0 || cfg->class_count > LFP_HEAP_MAX_CLASSES)
			return -EINVAL;
		for (size_t i = 0; i < cfg->class_count; i++) {
			size_t s = cfg->class_sizes[i];
			if (s == 0 || s > LFP_HEAP_MAX_CLASS_SIZE || (s != 8 && s % 16) ||
			    (i && s <= cfg->class_sizes[i - 1]))
				return -EINVAL;
		}
	}
	if (cfg->pool_max_bytes && cfg->pool_min_bytes > cfg->pool_max_bytes)
		return -EINVAL;
	/* A pool must fit in the reservation with room to spare: a first pool
	 * of 1 TiB made every small malloc fail with ENOMEM. */
	size_t reserve = cfg->reserve ? cfg->reserve : LFPI_FLHEAP_DEFAULT_RESERVE;
	if (cfg->pool_min_bytes > reserve / 4 || cfg->pool_max_bytes > reserve / 4)
		return -EINVAL;
	return 0;
}

lfp_heap_t *lfp_heap_create(const lfp_heap_config_t *cfg)
{
	lfp_heap_config_t def = { 0 };
	if (cfg == NULL)
		cfg = &def;
	int rc = check_config(cfg);
	if (rc != 0) {
		errno = -rc;
		return NULL;
	}
	const size_t *classes = cfg->class_sizes ? cfg->class_sizes : default_classes;
	size_t ncls = cfg->class_sizes ? cfg->class_count
				       : sizeof default_classes / sizeof default_classes[0];
	size_t max_class = classes[ncls - 1];
	size_t table = (max_class + 7) / 8 + 1;

	/* The metadata heap first: it holds this struct, the class table, the
	 * directory and the pool arrays, out of reach of lfp_heap_free. */
	lfp_flheap_config_t mc = { .reserve = META_RESERVE };
	lfp_flheap_t *meta = lfp_flheap_create(&mc);
	if (meta == NULL)
		return NULL;
	size_t hbytes = sizeof(lfp_heap_t) + sizeof(struct cls) * ncls;
	lfp_heap_t *h = lfp_flheap_malloc(meta, hbytes + table);
	if (h == NULL) {
		(void)lfp_flheap_destroy(meta);
		errno = ENOMEM;
		return NULL;
	}
	memset(h, 0, hbytes);
	h->meta = meta;
	/* Owned pools unless bins are asked for (LFP_HEAP_BINS, or
	 * LFP_HEAP_DEPOT without LFP_HEAP_OWNED); from here on the code tests
	 * LFP_HEAP_OWNED alone. */
	h->flags = cfg->flags;
	if (!(h->flags & (LFP_HEAP_BINS | LFP_HEAP_DEPOT)))
		h->flags |= LFP_HEAP_OWNED;
	if (h->flags & LFP_HEAP_OWNED)
		h->flags &= ~(unsigned)LFP_HEAP_BINS;
	if (h->flags & LFP_HEAP_CHECKED)
		h->flags &= ~(unsigned)LFP_HEAP_OWNED; /* no thread state in a checked heap */
	h->nclasses = (uint32_t)ncls;
	h->max_class = max_class;
	h->huge_threshold = cfg->huge_threshold ? cfg->huge_threshold : DEFAULT_HUGE;
	if (h->huge_threshold <= max_class)
		h->huge_threshold = max_class + 1;
	h->pool_min_bytes = cfg->pool_min_bytes ? cfg->pool_min_bytes : DEFAULT_POOL_MIN;
	h->pool_max_bytes = cfg->pool_max_bytes ? cfg->pool_max_bytes : DEFAULT_POOL_MAX;
	if (h->pool_max_bytes < h->pool_min_bytes)
		h->pool_max_bytes = h->pool_min_bytes;
	h->class_of = (uint8_t *)h + hbytes;
	for (size_t ci = 0, q = 0; q < table; q++) {
		while (classes[ci] < q * 8)
			ci++;
		h->class_of[q] = (uint8_t)ci;
	}
	lfp_flheap_config_t fc = {
		.fit = cfg->fit,
		.reserve = cfg->reserve,
		.flags = (cfg->flags & LFP_HEAP_CHECKED) ? LFP_FLHEAP_CHECKED : 0u,
	};
	h->fh = lfp_flheap_create(&fc);
	if (h->fh == NULL) {
		(void)lfp_flheap_destroy(meta);
		errno = ENOMEM;
		return NULL;
	}
	lfpi_flheap_range(h->fh, &h->fh_base, &h->fh_len);
	/* One word per granule of the fallback heap: address space only,
	 * touched where big pools live. */
	h->pagemap_bytes = ((h->fh_len >> PM_SHIFT) + 2) * sizeof(lfp_atomic_u64);
	h->pagemap_bytes = (h->pagemap_bytes + page_size() - 1) & ~(page_size() - 1);
	void *pm = mmap(NULL, h->pagemap_bytes, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (pm == MAP_FAILED) {
		(void)lfp_flheap_destroy(h->fh);
		(void)lfp_flheap_destroy(meta);
		errno = ENOMEM;
		return NULL;
	}
	/* Zero-filled pages are valid null pointers for the atomic words. */
	h->pagemap = pm;
	h->pm_bias = (uintptr_t)pm - (h->fh_base >> PM_SHIFT) * sizeof(lfp_atomic_u64);
	for (size_t i = 0; i < ncls; i++) {
		struct cls *c = &h->cls[i];
		c->size = classes[i];
		c->align = classes[i] < 16 ? 8 : 16;
		c->next_bytes = h->pool_min_bytes;
		uint64_t stride = (c->size + c->align - 1) & ~(uint64_t)(c->align - 1);
		uint32_t shift = (uint32_t)__builtin_ctzll(stride);
		uint64_t odd = stride >> shift, inv = odd; /* Newton: 3, 6, ... 96 bits */
		for (int it = 0; it < 5; it++)
			inv *= 2 - odd * inv;
		h->hot[i] = (struct cls_hot){ inv, shift, (uint32_t)stride };
		size_t cap = TC_STACK_BYTES / stride;
		c->tc_cap = (cfg->flags & LFP_HEAP_CHECKED) || stride > TC_MAX_BLOCK ? 0u
			    : (uint32_t)(cap > TC_STACK_MAX ? TC_STACK_MAX : cap < 2 ? 2 : cap);
		c->tc_fill = c->tc_cap < TC_FIRST_FILL ? c->tc_cap : TC_FIRST_FILL;
		lfp_init64(&c->pools, 0);
		lfp_init32(&c->hint, 0);
		lfp_init64(&c->unowned, 0);
		pthread_mutex_init(&c->grow_lock, NULL);
	}
	dep_create(h);
	lfp_init64(&h->dir, 0);
	lfp_init64(&h->pools_added, 0);
	lfp_init64(&h->pools_retired, 0);
	lfp_init64(&h->grows_since_trim, 0);
	lfp_init64(&h->pool_bytes, 0);
	lfp_init64(&h->huge_live, 0);
	lfp_init64(&h->huge_bytes, 0);
	lfp_init64(&h->bad_frees, 0);
	pthread_mutex_init(&h->dir_lock, NULL);
	pthread_mutex_init(&h->trim_lock, NULL);
	pthread_mutex_init(&h->gc_lock, NULL);
	h->id = gen_next();
	h->magic = LFPI_HEAP_MAGIC;
	pthread_mutex_lock(&tc_lock);
	h->tc_next = tc_heaps;
	tc_heaps = h;
	pthread_mutex_unlock(&tc_lock);
	return h;
}

int lfp_heap_destroy(lfp_heap_t *h)
{
	if (!heap_live(h))
		return -EINVAL;
	/* Off the live list first: no thread gives blocks back to h after
	 * this; their bins die with it. */
	pthread_mutex_lock(&tc_lock);
	for (lfp_heap_t **pp = &tc_heaps; *pp != NULL; pp = &(*pp)->tc_next)
		if (*pp == h) {
			*pp = h->tc_next;
			break;
		}
	pthread_mutex_unlock(&tc_lock);
	if (tc.id == h->id)
		tc_forget(); /* its blocks die with h */
	h->magic = 0;
	/* No other call may run (contract). */
	rcu_sync();
	for (uint32_t ci = 0; ci < h->nclasses; ci++) {
		const struct poolset *s = ptr_load_acquire(&h->cls[ci].pools); /* F2 */
		for (uint32_t k = 0; s && k < s->n; k++)
			(void)lfp_pool_destroy(s->pool[k]);
		pthread_mutex_destroy(&h->cls[ci].grow_lock);
	}
	const struct dir *d = ptr_load_acquire(&h->dir); /* F4 */
	for (uint32_t i = 0; d && i < d->n; i++)
		if (d->e[i].kind == DIR_HUGE)
			munmap((void *)d->e[i].lo, d->e[i].hi - d->e[i].lo);
	pthread_mutex_destroy(&h->dir_lock);
	pthread_mutex_destroy(&h->trim_lock);
	pthread_mutex_destroy(&h->gc_lock);
	munmap(h->pagemap, h->pagemap_bytes);
	if (h->dep_map != NULL)
		munmap(h->dep_map, h->dep_map_bytes);
	(void)lfp_flheap_destroy(h->fh);
	(void)lfp_flheap_destroy(h->meta); /* h lives there */
	return 0;
}

/* ---- public: allocation ------------------------------------------------------------ */

static FE_NOINLINE void *malloc_big(lfp_heap_t *h, size_t n)
{
	if (n < h->huge_threshold)
		return lfp_flheap_malloc(h->fh, n);
	return huge_alloc(h, n, 0);
}

static FE_NOINLINE void *malloc_bad_heap(void)
{
	errno = EINVAL;
	return NULL;
}

/* heap_malloc of a heap known to be live (the default heap is never
 * destroyed). */
static inline void *heap_malloc_live(lfp_heap_t *h, size_t n)
{
	if (h->flags & LFP_HEAP_OWNED)
		return own_malloc(h, n);
	if (lfpi_likely(n <= h->max_class)) {
		uint32_t ci = class_index(h, n); /* 0 maps to the first class */
		struct fe_bin *b = &tc.bin[ci];
		if (lfpi_likely(tc.id == h->id && b->an != 0)) {
			struct fe_ent *e = &b->av[--b->an];
			lfp_store32_relaxed(e->st, LFPI_ALLOC); /* K2: the caller's now */
			return e->p;
		}
		return tc_alloc_miss(h, ci);
	}
	return malloc_big(h, n);
}

static inline void *heap_malloc(lfp_heap_t *h, size_t n)
{
	if (lfpi_unlikely(!heap_live(h)))
		return malloc_bad_heap();
	return heap_malloc_live(h, n);
}

void *lfp_heap_malloc(lfp_heap_t *h, size_t n)
{
	return heap_malloc(h, n);
}

/* ---- free ------------------------------------------------------------------------ */

static FE_NOINLINE int tc_put_miss(lfp_heap_t *h, uint32_t ci, lfp_pool_t *pool, void *p,
				   lfp_atomic_u32 *st);

/* The index of block start a in pool (the class-ci pool a page-map word
 * or the directory named), or UINT64_MAX if a is no block start of a live
 * pool of class ci. */
static inline uint64_t block_index(const lfp_heap_t *h, uint32_t ci, const lfp_pool_t *pool,
				   uintptr_t a)
{
	const struct cls_hot *c = &h->hot[ci];
	uint64_t q = (uint64_t)(a - (uintptr_t)lfpi_blocks(pool)) * c->inv;
	q = q >> c->shift | q << ((64u - c->shift) & 63u); /* the index, if a is a block start */
	/* The stride check costs nothing measurable (benchmarks-heap.md
	 * section 11) and refuses a stale pointer whose pool was retired and
	 * whose address now starts a pool of another class. */
	if (lfpi_unlikely(q >= pool->count || pool->stride != c->stride ||
			  pool->magic != LFPI_POOL_MAGIC))
		return UINT64_MAX;
	return q;
}

/* The state word of block start a of pool, or NULL (as block_index). */
static inline lfp_atomic_u32 *block_word(const lfp_heap_t *h, uint32_t ci, const lfp_pool_t *pool,
					 uintptr_t a)
{
	uint64_t q = block_index(h, ci, pool, a);
	return q == UINT64_MAX ? NULL : &lfpi_next(pool)[q];
}

/* The free checks of tc_put and own_put: 0, p's state word in *st and its
 * block index in *ix if p is an allocated block start of a live class-ci
 * pool (pool); -EINVAL if it is no block start of one, -EALREADY if the
 * block is not allocated. */
static FE_INLINE int live_word(const lfp_heap_t *h, uint32_t ci, const lfp_pool_t *pool, const void *p,
			       lfp_atomic_u32 **st, uint32_t *ix)
{
	uint64_t q = block_index(h, ci, pool, (uintptr_t)p);
	if (lfpi_unlikely(q == UINT64_MAX))
		return -EINVAL;
	*ix = (uint32_t)q;
	*st = &lfpi_next(pool)[q];
	if (lfpi_unlikely(lfp_load32_relaxed(*st) != LFPI_ALLOC)) /* K2: the holder's mark */
		return -EALREADY;
	return 0;
}

/*
 * Take p, a pointer into pool (of class ci, by the page map or the
 * directory), into this thread's bin. 0; -EINVAL if p is not a block start
 * of that pool or the pool is not live or not of class ci; -EALREADY if
 * the block is not allocated (free, or held in a thread cache).
 * Concurrency: any thread; the block must not be freed by another thread at
 * the same moment (only LFP_HEAP_CHECKED catches that). Called inside a
 * read section (free_rest, free_slow); free_hit repeats these checks with
 * none: a live block pins its pool. A stale pointer there can meet a word
 * whose pool is being retired: the memory stays mapped (the fallback heap's
 * reservation) and the checks refuse it, unless the retirement and the
 * reuse of the region (as a pool of the same class at the same address)
 * both complete between the page-map load and the mark (docs/frontend.md,
 * "Bad frees").
 */
static inline int tc_put(lfp_heap_t *h, uint32_t ci, lfp_pool_t *pool, void *p)
{
	lfp_atomic_u32 *st;
	uint32_t i;
	int rc = live_word(h, ci, pool, p, &st, &i);
	if (lfpi_unlikely(rc != 0))
		return rc;
	struct fe_bin *b = &tc.bin[ci];
	if (lfpi_unlikely(tc.id != h->id || b->fn == b->cap))
		return tc_put_miss(h, ci, pool, p, st);
	lfp_store32_relaxed(st, LFPI_HELD); /* K2: held by this thread's bin */
	b->fr[b->fn++] = (struct fe_ent){ p, st };
	return 0;
}

static FE_NOINLINE int tc_put_miss(lfp_heap_t *h, uint32_t ci, lfp_pool_t *pool, void *p,
				   lfp_atomic_u32 *st)
{
	if (tc.id != h->id && !tc_attach(h))
		return lfp_pool_free(pool, p); /* no bins: the pool's own free */
	struct fe_bin *b = &tc.bin[ci];
	if (b->cap == 0)
		return lfp_pool_free(pool, p); /* a class without a bin */
	if (b->fn == b->cap)
		tc_spill(h, b, ci);
	lfp_store32_relaxed(st, LFPI_HELD); /* K2: held by this thread's bin */
	b->fr[b->fn++] = (struct fe_ent){ p, st };
	return 0;
}

/* Every free the page map does not settle, and every free of a checked
 * heap: the owner by the directory, inside a read section. */
static FE_NOINLINE int free_slow(lfp_heap_t *h, void *p)
{
	int rc;
	rcu_lock();
	struct owner o = owner_of(h, p);
	if (lfpi_likely(o.kind == DIR_POOL)) {
		rc = (h->flags & LFP_HEAP_CHECKED) ? lfp_pool_free(o.obj, p)
		     : (h->flags & LFP_HEAP_OWNED) ? own_put(h, o.cls, o.obj, p)
						   : tc_put(h, o.cls, o.obj, p);
		rcu_unlock();
		return rc;
	}
	rcu_unlock();
	if (o.kind == OWN_FALLBACK)
		rc = lfp_flheap_free(h->fh, p);
	else if (o.kind == DIR_HUGE)
		rc = huge_free(h, p);
	else
		rc = -EINVAL;
	return rc;
}

/* Everything but the thread cache's hit: tc_put's misses, the directory,
 * the fallback heap, huge blocks, errors (counted). h is live, p not NULL. */
static FE_NOINLINE int free_rest(lfp_heap_t *h, void *p)
{
	/* errno: the pool path never touches it; the fallback heap keeps it;
	 * only a huge free (munmap) saves it. */
	int rc = -EINVAL;
	uintptr_t a = (uintptr_t)p;
	if (a - h->fh_base < h->fh_len) {
		/* A read section from the page-map load on: tc_put's misses may
		 * free through the pool itself (a class without a bin, a checked
		 * heap), which can make the pool completely free before that
		 * call is done with it; the section keeps it from retirement. */
		rcu_lock();
		uint64_t w = lfp_load64_acquire(pm_slot(h, a)); /* P2: pairs with P1 */
		if (w != 0)
			rc = tc_put(h, pm_class(w), pm_pool(w), p);
		rcu_unlock();
	}
	/* -EINVAL: no word, or a stale one: the directory decides. */
	if (rc == -EINVAL)
		rc = free_slow(h, p);
	if (lfpi_unlikely(rc != 0))
		lfp_fetch_add64_relaxed(&h->bad_frees, 1); /* relaxed: stats */
	return rc;
}

/* free in owned mode, its page-map part (h live, p not NULL): 0 if the
 * page map's pool took p, else the code own_free_rest goes on from. */
static FE_INLINE int own_free_fast(lfp_heap_t *h, void *p)
{
	uintptr_t a = (uintptr_t)p;
	if (lfpi_likely(a - h->fh_base < h->fh_len)) {
		uint64_t w = lfp_load64_acquire(pm_slot(h, a)); /* P2: pairs with P1 */
		if (lfpi_likely(w != 0))
			return own_put(h, pm_class(w), pm_pool(w), p);
	}
	return -EINVAL;
}

/* The rest of own_free, given own_free_fast's result rc != 0. Out of line,
 * so that the fast path needs no stack frame. */
static FE_NOINLINE int own_free_rest(lfp_heap_t *h, void *p, int rc)
{
	if (rc == -EINVAL)
		rc = free_slow(h, p); /* no word, or a stale one: the directory decides */
	if (rc != 0)
		lfp_fetch_add64_relaxed(&h->bad_frees, 1); /* relaxed: stats */
	return rc;
}

/* free in owned mode (h live, p not NULL): the page map's pool, else the
 * directory, the fallback heap or a huge block (free_slow). Bad frees are
 * counted, as by free_rest. */
static FE_INLINE int own_free(lfp_heap_t *h, void *p)
{
	int rc = own_free_fast(h, p);
	return lfpi_likely(rc == 0) ? 0 : own_free_rest(h, p, rc);
}

/*
 * The thread cache's hit, inlined into lfp_free and lfp_heap_free: p is an
 * allocated block of the pool its page-map word names (tc_put's checks),
 * this thread's bins are h's and the class's fr has room. true if done.
 * Pools cover whole page-map pages (pool_config), so a word names the one
 * pool its page belongs to.
 */
static inline bool free_hit(lfp_heap_t *h, void *p)
{
	uintptr_t a = (uintptr_t)p;
	if (lfpi_unlikely(a - h->fh_base >= h->fh_len))
		return false;
	uint64_t w = lfp_load64_acquire(pm_slot(h, a)); /* P2: pairs with P1 */
	lfp_pool_t *pool = pm_pool(w);
	uint32_t ci = pm_class(w);
	if (lfpi_unlikely(w == 0))
		return false;
	lfp_atomic_u32 *st = block_word(h, ci, pool, a);
	struct fe_bin *b = &tc.bin[ci];
	if (lfpi_unlikely(st == NULL || lfp_load32_relaxed(st) != LFPI_ALLOC || /* K2: the holder's mark */
			  tc.id != h->id || b->fn == b->cap))
		return false;
	lfp_store32_relaxed(st, LFPI_HELD); /* K2: held by this thread's bin */
	b->fr[b->fn++] = (struct fe_ent){ p, st };
	return true;
}

/* lfp_heap_free's body, inlined into lfp_free too (exported functions are
 * interposable under -fPIC, so the compiler would not inline them). */
static inline int heap_free(lfp_heap_t *h, void *p)
{
	if (lfpi_unlikely(!heap_live(h)))
		return -EINVAL;
	if (h->flags & LFP_HEAP_OWNED)
		return p == NULL ? 0 : own_free(h, p);
	if (p == NULL || lfpi_likely(free_hit(h, p)))
		return 0;
	return free_rest(h, p);
}

int lfp_heap_free(lfp_heap_t *h, void *p)
{
	return heap_free(h, p);
}

void *lfp_heap_calloc(lfp_heap_t *h, size_t n, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	void *p = lfp_heap_malloc(h, total);
	/* A fresh huge mapping is already zero; everything else may be reused. */
	if (p != NULL && total < h->huge_threshold)
		memset(p, 0, total);
	return p;
}

/* p is an allocated block of class pool `pool` (the pool's own double-free
 * test, pool.c: its state word reads LFPI_ALLOC). A freed or cached block -
 * a stale pointer handed to realloc - reads LFPI_CACHED or a free link. */
static bool pool_block_live(const lfp_pool_t *pool, const void *p)
{
	int64_t i = lfp_pool_index(pool, p);
	/* K2: relaxed, as lfp_pool_free's check: the holder reads its own mark */
	return i >= 0 && lfp_load32_relaxed(&lfpi_next(pool)[i]) == LFPI_ALLOC;
}

size_t lfp_heap_usable_size(lfp_heap_t *h, const void *p)
{
	if (!heap_live(h) || p == NULL)
		return 0;
	size_t n = 0;
	rcu_lock();
	struct owner o = owner_of(h, p);
	if (o.kind == DIR_POOL) {
		if (pool_block_live(o.obj, p))
			n = lfp_pool_block_size(o.obj);
	} else if (o.kind == DIR_HUGE) {
		if (o.obj == p)
			n = o.hi - (uintptr_t)p;
	}
	rcu_unlock();
	if (o.kind == OWN_FALLBACK)
		n = lfp_flheap_usable_size(h->fh, p);
	return n;
}

/* realloc's move: a new block of n bytes, the first `keep` bytes of p
 * copied, p freed. NULL (ENOMEM) leaves p intact. */
static void *realloc_move(lfp_heap_t *h, void *p, size_t n, size_t keep)
{
	void *q = heap_malloc_live(h, n);
	if (q == NULL)
		return NULL;
	memcpy(q, p, keep < n ? keep : n);
	(void)heap_free(h, p);
	return q;
}

void *lfp_heap_realloc(lfp_heap_t *h, void *p, size_t n)
{
	if (!heap_live(h)) {
		errno = EINVAL;
		return NULL;
	}
	if (p == NULL)
		return lfp_heap_malloc(h, n);
	if (n == 0) {
		if (lfp_heap_free(h, p) != 0)
			errno = EINVAL;
		return NULL;
	}
	/* An allocated class block the page map names (most reallocs): the
	 * checks of free's fast path, and no read section, for the same
	 * reason (an allocated block pins its pool). Anything else, a bad
	 * pointer included, takes the directory below. */
	uintptr_t a = (uintptr_t)p;
	if (lfpi_likely(a - h->fh_base < h->fh_len)) {
		uint64_t w = lfp_load64_acquire(pm_slot(h, a)); /* P2: pairs with P1 */
		lfp_atomic_u32 *st;
		uint32_t ci = pm_class(w), i;
		if (w != 0 && live_word(h, ci, pm_pool(w), p, &st, &i) == 0) {
			if (n <= h->max_class && class_index(h, n) == ci)
				return p; /* served by the same class */
			return realloc_move(h, p, n, h->cls[ci].size);
		}
	}
	rcu_lock();
	struct owner o = owner_of(h, p);
	size_t old = 0;
	bool valid = false;
	if (o.kind == DIR_POOL) {
		valid = pool_block_live(o.obj, p);
		old = lfp_pool_block_size(o.obj);
	} else if (o.kind == DIR_HUGE) {
		valid = o.obj == p;
		old = o.hi - (uintptr_t)p;
	}
	rcu_unlock();
	if (o.kind == OWN_FOREIGN || ((o.kind == DIR_POOL || o.kind == DIR_HUGE) && !valid)) {
		errno = EINVAL;
		return NULL;
	}
	if (o.kind == DIR_POOL) {
		/* Served by the same class: nothing to do. (The block size of
		 * a pool is its class size.) */
		if (n <= h->max_class && class_index(h, n) == class_index(h, old))
			return p;
	} else if (o.kind == OWN_FALLBACK) {
		if (n < h->huge_threshold)
			return lfp_flheap_realloc(h->fh, p, n); /* in place if it can */
		old = lfp_flheap_usable_size(h->fh, p);
		if (old == 0) {
			errno = EINVAL;
			return NULL;
		}
	} else if (n >= h->huge_threshold) {
		if (n <= old && n >= old / 2)
			return p; /* stays huge and not much smaller: keep it */
		void *q = huge_resize(h, p, n);
		if (q != NULL)
			return q;
	}
	return realloc_move(h, p, n, old);
}

void *lfp_heap_aligned_alloc(lfp_heap_t *h, size_t align, size_t n)
{
	if (!heap_live(h) || align == 0 || (align & (align - 1)) || align > ((size_t)1 << 30)) {
		errno = EINVAL;
		return NULL;
	}
	if (align <= 16) {
		/* Class blocks are 16-aligned, except the 8-byte class. */
		if (align > 8 && n <= 8)
			n = 9;
		return lfp_heap_malloc(h, n);
	}
	size_t need;
	if (__builtin_add_overflow(n, align, &need)) {
		errno = ENOMEM;
		return NULL;
	}
	if (need < h->huge_threshold)
		return lfp_flheap_aligned_alloc(h->fh, align, n);
	return huge_alloc(h, n, align);
}

/* ---- trim, stats, validate --------------------------------------------------------- */

/* A pool is completely free: no block allocated (cached blocks count as
 * free). Exact once no thread can allocate from it any more. */
/* Completely free. In owned mode a trim candidate is also taken from the
 * threads first: own_tid goes 0 -> OWN_TRIM (O5), so no thread names it
 * (tc.own, a ready list) and none can claim it while it is out of its
 * class's pool array; a claim in that window would leave a pool that its
 * owner's disown scan cannot find. own_release_candidate gives it back. */
#define OWN_TRIM (UINT64_MAX - 1) /* no thread's tag (own_me) */
static bool pool_all_free(const lfp_heap_t *h, struct cls *c, lfp_pool_t *pool)
{
	if (h->flags & LFP_HEAP_OWNED) {
		uint64_t none = 0;
		/* Unowned and completely free stays completely free until a
		 * claim (nobody allocates from it; frees need a live block). */
		if (lfp_load64_relaxed(&pool->own_tid) != 0 || own_in_use(pool) != 0 || /* relaxed: a hint */
		    !lfp_cas64_acquire(&pool->own_tid, &none, OWN_TRIM)) /* O5: pairs with O2 */
			return false;
		lfp_fetch_sub64_relaxed(&c->unowned, 1); /* relaxed: a hint */
		return true;
	}
	return lfp_pool_free_count(pool) == lfp_pool_capacity(pool);
}

/* A trim candidate that stays (owned mode): unowned again. */
static void own_release_candidate(const lfp_heap_t *h, struct cls *c, lfp_pool_t *pool)
{
	if (h->flags & LFP_HEAP_OWNED) {
		lfp_fetch_add64_relaxed(&c->unowned, 1); /* relaxed: a hint; first, as in own_disown */
		lfp_store64_release(&pool->own_tid, 0); /* O2-like: back to the threads */
	}
}

static int trim_class(lfp_heap_t *h, struct cls *c)
{
	lfp_pool_t *cand[TRIM_BATCH];
	size_t nc = 0;
	int retired = 0;
	dep_drain(h, (uint32_t)(c - h->cls)); /* depot blocks pin their pools */
	pthread_mutex_lock(&c->grow_lock);
	rcu_lock();
	const struct poolset *s = ptr_load_acquire(&c->pools); /* F2 */
	for (uint32_t i = 0; s && i < s->n && nc < TRIM_BATCH; i++)
		if (pool_all_free(h, c, s->pool[i]))
			cand[nc++] = s->pool[i];
	rcu_unlock();
	if (nc == 0 || poolset_update(h, c, NULL, cand, nc) != 0) {
		for (size_t k = 0; k < nc; k++)
			own_release_candidate(h, c, cand[k]);
		pthread_mutex_unlock(&c->grow_lock);
		return 0;
	}
	rcu_sync(); /* 1: no refill holds a candidate now */
	for (size_t k = 0; k < nc; k++) {
		/* Owned mode: taken from the threads above, so still free. */
		if (!(h->flags & LFP_HEAP_OWNED) && !pool_all_free(h, c, cand[k])) {
			/* An allocator got a block in first: keep the pool. */
			while (poolset_update(h, c, cand[k], NULL, 0) != 0)
				;
			cand[k] = NULL;
		}
	}
	pthread_mutex_lock(&h->dir_lock);
	for (size_t k = 0; k < nc; k++)
		if (cand[k] != NULL)
			pool_unpublish(h, cand[k], pool_region_bytes(h, c, cand[k]));
	pthread_mutex_unlock(&h->dir_lock);
	rcu_sync(); /* 2: no free() is inside a candidate now */
	for (size_t k = 0; k < nc; k++) {
		if (cand[k] == NULL)
			continue;
		size_t bytes = pool_region_bytes(h, c, cand[k]);
		(void)lfp_pool_destroy(cand[k]);
		(void)lfpi_flheap_free_pinned(h->fh, cand[k]);
		lfp_fetch_add64_relaxed(&h->pools_retired, 1);  /* relaxed: stats */
		lfp_fetch_sub64_relaxed(&h->pool_bytes, bytes); /* relaxed: stats */
		retired++;
	}
	/* Start small again if the class has no pool left. */
	if (ptr_load_acquire(&c->pools) == NULL) /* F2 */
		c->next_bytes = h->pool_min_bytes;
	pthread_mutex_unlock(&c->grow_lock);
	gc_collect(h);
	return retired;
}

int lfp_heap_trim(lfp_heap_t *h)
{
	if (!heap_live(h))
		return -EINVAL;
	(void)lfp_heap_cache_flush(h); /* the caller's cached blocks count as free */
	pthread_mutex_lock(&h->trim_lock);
	int n = 0;
	for (uint32_t i = 0; i < h->nclasses; i++) {
		/* A pass takes at most TRIM_BATCH candidates: as many passes
		 * as the pools there are now need, and no more, so threads
		 * that keep adding pools cannot keep trim (and the class's
		 * growers, who wait on its grow_lock) going. */
		rcu_lock();
		const struct poolset *s = ptr_load_acquire(&h->cls[i].pools); /* F2: pairs with F1 */
		uint32_t passes = 1 + (s != NULL ? s->n : 0) / TRIM_BATCH;
		rcu_unlock();
		/* Go on while a pass retires any: one short of TRIM_BATCH may
		 * have given candidates back (a refill took a block) and left
		 * free pools past its batch. */
		int r;
		do
			n += r = trim_class(h, &h->cls[i]);
		while (r > 0 && --passes != 0);
	}
	(void)lfp_flheap_trim(h->fh);
	pthread_mutex_unlock(&h->trim_lock);
	return n;
}

int lfp_heap_stats(lfp_heap_t *h, lfp_heap_stats_t *out)
{
	if (!heap_live(h) || out == NULL)
		return -EINVAL;
	/* Relaxed loads: independent snapshots. Retired first: a pool is
	 * added before it is retired, so pools never reads below zero. */
	uint64_t retired = lfp_load64_relaxed(&h->pools_retired);
	uint64_t added = lfp_load64_relaxed(&h->pools_added); /* relaxed: as above */
	if (added < retired)
		added = retired;
	*out = (lfp_heap_stats_t){
		.classes = h->nclasses,
		.pools = added - retired,
		.pools_added = added,
		.pools_retired = retired,
		.pool_bytes = lfp_load64_relaxed(&h->pool_bytes),
		.huge_live = lfp_load64_relaxed(&h->huge_live),
		.huge_bytes = lfp_load64_relaxed(&h->huge_bytes),
		.bad_frees = lfp_load64_relaxed(&h->bad_frees),
	};
	for (uint32_t ci = 0; ci < h->nclasses; ci++)
		if (h->cls[ci].dep != NULL)
			out->depot_blocks += lfp_load64_relaxed(&h->cls[ci].dep->blocks); /* relaxed: stats */
	return lfp_flheap_stats(h->fh, &out->fallback);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* A quiescent class depot: both stacks end within DEP_STACKS steps on
 * bundles that were handed out, every parked entry is a block start of a
 * live class-ci pool marked LFPI_HELD, no block is parked twice, and the
 * count matches. NULL if so, else why not. */
static const char *dep_validate(lfp_heap_t *h, uint32_t ci)
{
	struct fe_depot *d = h->cls[ci].dep;
	if (d == NULL)
		return NULL;
	uint32_t fresh = lfp_load32_relaxed(&d->fresh); /* relaxed: quiescent */
	if (fresh > DEP_STACKS)
		fresh = DEP_STACKS;
	size_t cap = (size_t)fresh * h->cls[ci].tc_cap, got = 0;
	size_t bytes = (cap * sizeof(uint32_t) + page_size() - 1) & ~(page_size() - 1);
	uint32_t *all = NULL;
	if (cap != 0) {
		void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return "no memory to validate a class depot";
		all = m;
	}
	const char *w = NULL;
	uint32_t seen = 0;
	for (int full = 1; full >= 0 && !w; full--) {
		/* Acquire as D2: the links after the head, as a pop reads them. */
		uint32_t i = lfp_head_index(lfp_load64_acquire(full ? &d->full : &d->empty));
		for (; i != LFP_NIL && !w; seen++) {
			if (i >= fresh || seen >= fresh) {
				w = "a class depot's stack has a bad link or a cycle";
				break;
			}
			const struct fe_bundle *b = dep_bundle(d, i);
			for (uint32_t j = 0; full && j < b->n && !w; j++) {
				uintptr_t a = h->fh_base + ((uintptr_t)b->off[j] << 3);
				uint64_t pw = a - h->fh_base < h->fh_len ? lfp_load64_acquire(pm_slot(h, a)) : 0; /* P2 */
				lfp_atomic_u32 *st = pw != 0 && pm_class(pw) == ci ? block_word(h, ci, pm_pool(pw), a) : NULL;
				if (b->n > h->cls[ci].tc_cap || got >= cap)
					w = "a class depot's bundle is too big";
				else if (st == NULL || lfp_load32_relaxed(st) != LFPI_HELD) /* relaxed: quiescent */
					w = "a class depot holds a block that is not a held block of its class";
				else
					all[got++] = b->off[j];
			}
			i = lfp_load32_relaxed(&b->link); /* relaxed: after the acquire above */
		}
	}
	if (!w && got != lfp_load64_relaxed(&d->blocks)) /* relaxed: quiescent */
		w = "a class depot's block count is off";
	if (!w && got > 1) {
		qsort(all, got, sizeof *all, cmp_u32);
		for (size_t j = 1; j < got && !w; j++)
			if (all[j] == all[j - 1])
				w = "a class depot holds a block twice";
	}
	if (all != NULL)
		munmap(all, bytes);
	return w;
}

int lfp_heap_validate(lfp_heap_t *h, const char **why)
{
	const char *w = NULL;
	if (!heap_live(h)) {
		if (why)
			*why = "not a live heap";
		return -EINVAL;
	}
	const unsigned char *z = (const unsigned char *)&tc_none;
	for (size_t i = 0; i < sizeof tc_none && !w; i++)
		if (z[i] != 0)
			w = "the thread state of threads with none (tc_none) was written";
	rcu_lock();
	const struct dir *d = ptr_load_acquire(&h->dir); /* F4 */
	for (uint32_t i = 0; d && i < d->n && !w; i++) {
		const struct dir_entry *e = &d->e[i];
		if (e->lo >= e->hi || (i && d->e[i - 1].hi > e->lo))
			w = "directory entries overlap or are unsorted";
		else if (e->kind != DIR_HUGE)
			w = "the directory holds something other than huge blocks";
	}
	uint64_t mapped = 0;
	for (uint32_t ci = 0; ci < h->nclasses && !w; ci++) {
		const struct cls *c = &h->cls[ci];
		const struct poolset *s = ptr_load_acquire(&c->pools); /* F2 */
		for (uint32_t k = 0; s && k < s->n && !w; k++) {
			lfp_pool_t *pool = s->pool[k];
			uintptr_t lo = (uintptr_t)pool;
			size_t bytes = pool_region_bytes(h, c, pool);
			lfp_pool_report_t r;
			bool owned = h->flags & LFP_HEAP_OWNED;
			/* Owned mode: the owner's list is free too; O5 orders the
			 * last owner's words before ours (quiescent by contract). */
			uint64_t tid = owned ? lfp_load64_acquire(&pool->own_tid) : 0; /* O5 */
			uint32_t own = owned ? lfp_load32_relaxed(&pool->own_lhead) : LFP_NIL; /* O7 */
			if (lfpi_pool_validate_lists(pool, own, &r) != 0) {
				w = r.error ? r.error : "a pool does not validate";
			} else if (owned && tid == 0 && own != LFP_NIL) {
				w = "a pool no thread owns has an owner's free list";
			} else if (owned && r.allocated != own_in_use(pool)) {
				w = "an owned pool's count of blocks in use is off";
			} else if (lfp_pool_block_size(pool) != c->size) {
				w = "a pool's block size differs from its class";
			} else {
				uint64_t want = (uint64_t)lo | ci;
				uintptr_t plo = (lo + PM_PAGE - 1) & ~(uintptr_t)(PM_PAGE - 1);
				uintptr_t phi = (lo + bytes) & ~(uintptr_t)(PM_PAGE - 1);
				for (uintptr_t a = plo; a < phi && !w; a += PM_PAGE) {
					if (lfp_load64_acquire(pm_slot(h, a)) != want) /* P2 */
						w = "a pool's page is missing from the page map or has the wrong class";
					mapped++;
				}
				if (bytes >= GRAN && (lo & (GRAN - 1)))
					w = "a big pool is not granule-aligned";
				/* No page is shared: free's fast path trusts the word. */
				if ((lo | bytes) & (PM_PAGE - 1))
					w = "a pool region is not whole page-map pages";
			}
		}
	}
	for (uint32_t ci = 0; ci < h->nclasses && !w; ci++)
		w = dep_validate(h, ci);
	/* Every mapped page belongs to a listed pool: count the map's words. */
	pthread_mutex_lock(&h->dir_lock);
	uintptr_t pm_hi = h->pm_hi;
	pthread_mutex_unlock(&h->dir_lock);
	for (uintptr_t a = h->fh_base & ~(uintptr_t)(PM_PAGE - 1); !w && a < pm_hi; a += PM_PAGE)
		if (lfp_load64_relaxed(pm_slot(h, a)) != 0) /* relaxed: the caller keeps the heap
							     * quiescent */
			mapped--;
	if (!w && mapped != 0)
		w = "the page map names pages no class's pool covers";
	rcu_unlock();
	int rc = w ? -EUCLEAN : 0;
	if (rc == 0) {
		rc = lfp_flheap_validate(h->fh, &w);
		if (rc == 0)
			rc = lfp_flheap_validate(h->meta, &w);
	}
	if (why)
		*why = w;
	return rc;
}

/* ---- the process-wide default heap ---------------------------------------------------- */

static lfp_atomic_u64 default_heap;               /* lfp_heap_t * (F5/F6) */
static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;
static lfp_heap_config_t default_cfg;             /* default_lock */
static bool default_cfg_set;                      /* default_lock */

int lfp_default_heap_configure(const lfp_heap_config_t *cfg)
{
	if (cfg == NULL || check_config(cfg) != 0)
		return -EINVAL;
	pthread_mutex_lock(&default_lock);
	int rc = 0;
	if (lfp_load64_relaxed(&default_heap) != 0) /* relaxed: under the lock */
		rc = -EBUSY;
	else {
		default_cfg = *cfg;
		default_cfg_set = true;
	}
	pthread_mutex_unlock(&default_lock);
	return rc;
}

static FE_NOINLINE lfp_heap_t *default_heap_slow(void)
{
	pthread_mutex_lock(&default_lock);
	lfp_heap_t *h = ptr_load_acquire(&default_heap); /* F5 */
	if (h == NULL) {
		h = lfp_heap_create(default_cfg_set ? &default_cfg : NULL);
		if (h != NULL)
			ptr_store_release(&default_heap, h); /* F6: pairs with F5 */
	}
	pthread_mutex_unlock(&default_lock);
	if (h == NULL)
		errno = ENOMEM;
	return h;
}

static inline lfp_heap_t *default_heap_get(void)
{
	lfp_heap_t *h = ptr_load_acquire(&default_heap); /* F5: pairs with F6 */
	return lfpi_likely(h != NULL) ? h : default_heap_slow();
}

lfp_heap_t *lfp_default_heap(void)
{
	return default_heap_get();
}

/* lfp_malloc's first call (or one after the default heap could not be
 * made): out of line, so that the usual path needs no stack frame. */
static FE_NOINLINE void *lfp_malloc_first(size_t n)
{
	lfp_heap_t *h = default_heap_slow();
	return h ? heap_malloc_live(h, n) : NULL;
}

void *lfp_malloc(size_t n)
{
	lfp_heap_t *h = ptr_load_acquire(&default_heap); /* F5: pairs with F6 */
	return lfpi_likely(h != NULL) ? heap_malloc_live(h, n) : lfp_malloc_first(n);
}

/* A bad free through lfp_free: counted already; abort if the heap asks. */
static FE_NOINLINE void lfp_free_bad(const lfp_heap_t *h, void *p, int rc)
{
	if (h && (h->flags & LFP_HEAP_ABORT_ON_BAD_FREE)) {
		fprintf(stderr, "lfp_free(%p): %s\n", p,
			rc == -EALREADY ? "double free" : "not a block of the default heap");
		abort();
	}
}

static FE_NOINLINE void lfp_free_own_rest(lfp_heap_t *h, void *p, int rc)
{
	rc = own_free_rest(h, p, rc); /* keeps errno */
	if (lfpi_unlikely(rc != 0))
		lfp_free_bad(h, p, rc);
}

static FE_NOINLINE void lfp_free_rest(lfp_heap_t *h, void *p)
{
	int rc = h ? free_rest(h, p) : -EINVAL; /* keeps errno */
	if (lfpi_unlikely(rc != 0))
		lfp_free_bad(h, p, rc);
}

void lfp_free(void *p)
{
	if (p == NULL)
		return;
	lfp_heap_t *h = ptr_load_acquire(&default_heap); /* F5 */
	if (lfpi_likely(h != NULL) && (h->flags & LFP_HEAP_OWNED)) {
		int rc = own_free_fast(h, p); /* keeps errno */
		if (lfpi_unlikely(rc != 0))
			lfp_free_own_rest(h, p, rc);
		return;
	}
	if (lfpi_likely(h != NULL) && lfpi_likely(free_hit(h, p))) /* the default heap is never destroyed */
		return;
	lfp_free_rest(h, p);
}

void *lfp_calloc(size_t n, size_t size)
{
	lfp_heap_t *h = lfp_default_heap();
	return h ? lfp_heap_calloc(h, n, size) : NULL;
}

void *lfp_realloc(void *p, size_t n)
{
	lfp_heap_t *h = lfp_default_heap();
	return h ? lfp_heap_realloc(h, p, n) : NULL;
}

void *lfp_aligned_alloc(size_t align, size_t n)
{
	lfp_heap_t *h = lfp_default_heap();
	return h ? lfp_heap_aligned_alloc(h, align, n) : NULL;
}

int lfp_posix_memalign(void **out, size_t align, size_t n)
{
	int saved = errno;
	if (out == NULL || align < sizeof(void *) || (align & (align - 1)))
		return EINVAL;
	void *p = lfp_aligned_alloc(align, n);
	int rc = p ? 0 : (errno == EINVAL ? EINVAL : ENOMEM);
	if (p)
		*out = p;
	errno = saved;
	return rc;
}

size_t lfp_malloc_usable_size(const void *p)
{
	lfp_heap_t *h = ptr_load_acquire(&default_heap); /* F5 */
	return h ? lfp_heap_usable_size(h, p) : 0;
}
