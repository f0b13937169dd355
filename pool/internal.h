/*
 * pool/internal.h - the pool region's layout, shared by every pool/ file.
 *
 * A region is, at offsets from its start (all multiples of 64):
 *
 *   [ struct lfp_pool header | next[count] (uint32 links) | blocks ]
 *
 * Only offsets and indices are stored, so the region is position independent.
 *
 * Link word states, next[i]:
 *   0..count-1   i is free and the next free block below it is next[i]
 *   LFP_NIL      i is free and is the bottom of the free stack
 *   LFPI_ALLOC   i is allocated (written by the popper after its CAS)
 *   LFPI_FREEING i is being freed (checked mode, between the state CAS and
 *                the push)
 *   LFPI_CACHED  i is free and sits in a cache magazine (pool/cache.c)
 *   LFPI_HELD    i is allocated to the front end's thread cache
 *                (pool/frontend.c); counts as allocated
 * In the front end's owned mode (LFP_HEAP_OWNED) a second list runs through
 * next[] too: the owner's free list from own_lhead, with the same link
 * values; its blocks are free (lfpi_pool_validate_lists).
 *
 * Invariant (quiescent): |blocks reachable from head| + |blocks marked
 * LFPI_CACHED| + |blocks marked LFPI_ALLOC| = count, the walk from head
 * reaches LFP_NIL in at most count steps, and the blocks marked LFPI_CACHED
 * are exactly the entries of the cache's magazines (pool/cache.c).
 */
#ifndef LFP_POOL_INTERNAL_H
#define LFP_POOL_INTERNAL_H

#include "../atomics/lfp_atomic.h"
#include "../include/lfpool.h"

#include <errno.h>

#if defined(__GNUC__) || defined(__clang__)
#define LFPI_HIDDEN __attribute__((visibility("hidden")))
#define lfpi_likely(x) __builtin_expect(!!(x), 1)
#define lfpi_unlikely(x) __builtin_expect(!!(x), 0)
#else
#define LFPI_HIDDEN
#define lfpi_likely(x) (x)
#define lfpi_unlikely(x) (x)
#endif

#define LFPI_POOL_MAGIC UINT64_C(0x4c46504f4f4c3031) /* "LFPOOL01" */
#define LFPI_POOL_DEAD UINT64_C(0x4c46504445414421)  /* "LFPDEAD!" */
#define LFPI_LAYOUT_VERSION 3u /* 2: the front end's owner line in the header;
				* 3: own_tid and own_rfreed beside head */

#define LFPI_ALLOC UINT32_C(0xFFFFFFFE)
#define LFPI_FREEING UINT32_C(0xFFFFFFFD)
/* In a cache magazine; equals LFP_CACHE_MARK_CACHED in the public header,
 * which the inline fast path writes. */
#define LFPI_CACHED UINT32_C(0xFFFFFFFB)
/* Allocated as far as the pool goes, but held in the front end's thread
 * cache (pool/frontend.c): neither live nor free; a free of it is refused. */
#define LFPI_HELD UINT32_C(0xFFFFFFF9)
/* Transient mark of lfpi_cache_sweep() (quiescent recovery only). */
#define LFPI_SEEN UINT32_C(0xFFFFFFFA)

/* Internal flags, above the public ones. */
#define LFPI_OWNS_MAPPING (1u << 31)
/* The region is mapped by several processes: after fork() a child forgets
 * (without draining) the cache slots its parent's thread held in it. */
#define LFPI_POOL_SHARED (1u << 30)

struct lfp_pool {
	/* Immutable after init (written before the handle is published). */
	uint64_t magic;
	uint32_t version;
	uint32_t flags;
	uint64_t block_size;  /* as configured */
	uint64_t stride;      /* block_size rounded up to align */
	uint64_t count;
	uint64_t align;
	uint64_t next_off;    /* offset of next[] from the region start */
	uint64_t blocks_off;  /* offset of block 0 from the region start */
	uint64_t region_size; /* bytes the layout needs */
	uint64_t map_lead;    /* created pools: bytes mapped before the region */
	uint64_t map_size;    /* created pools: bytes mapped in all */
	uint32_t stride_shift; /* log2(stride) if a power of two, else 0xFF */
	uint32_t reserved0;
	/* Per-thread cache (pool/cache.c); all zero when the pool has none
	 * (cache_slots == 0). Immutable after init, like the fields above. */
	uint64_t cache_off;    /* slot table: cache_slots x struct lfpi_slot */
	uint64_t mag_next_off; /* mag_next[n_mags]: links of the magazine stacks */
	uint64_t mags_off;     /* magazines: n_mags x mag_stride bytes */
	uint64_t instance;     /* tells this pool from an earlier one at the same
				* address (thread-local cache keys) */
	uint32_t cache_slots;  /* S: threads that can hold a cache at once */
	uint32_t cache_size;   /* k: block indices per magazine */
	uint32_t n_mags;       /* M = 2 S + depot */
	uint32_t mag_stride;   /* bytes per magazine, a multiple of 64 */

	/* The free-stack head {tag:32 | index:32}: CAS by alloc (A2) and
	 * free (R1); on its own line so counters never false-share with it.
	 * The front end's owned mode (pool/frontend.c, LFP_HEAP_OWNED) keeps
	 * beside it what another thread's free touches: the tag of the one
	 * thread that allocates from this pool (read by every free, written
	 * only when a thread claims or gives up the pool) and the count of
	 * other threads' frees, so such a free (R1 + O3) touches this line
	 * alone and never the owner's line below. Zero in other pools.
	 * Process-private pools only (a thread tag, no pointers). */
	LFP_CACHE_ALIGNED lfp_atomic_u64 head;
	lfp_atomic_u64 own_tid;    /* 0: no owner (O1/O2) */
	lfp_atomic_u64 own_rfreed; /* frees by other threads (O3/O4) */

	/* Counters: relaxed, they order nothing (statistics only). */
	LFP_CACHE_ALIGNED lfp_atomic_u64 n_alloc;
	lfp_atomic_u64 n_free;
	lfp_atomic_u64 n_fail;
	lfp_atomic_u64 high_water;

	/* The cache's shared magazine stacks {tag:32 | magazine:32}: full
	 * (non-empty) and empty magazines no thread holds (K3/K4 in
	 * pool/cache.c). One line: a hand-off touches both. */
	LFP_CACHE_ALIGNED lfp_atomic_u64 depot_full;
	lfp_atomic_u64 depot_empty;
	/* Batches kept in the blocks themselves {tag | head carrier} (pool/
	 * cache.c, K3/K4 over next[]), and how many blocks the depot's batches
	 * hold (relaxed: a statistic; slots count their own). */
	lfp_atomic_u64 depot_batch;
	lfp_atomic_u64 batched;
	/* Slots claimed now (relaxed: a hint; claims and releases move it):
	 * bounds how many empty magazines a thread parks at home. */
	lfp_atomic_u32 claimed;

	/* Owned mode, the owner's line: written on its every malloc and
	 * free, never touched by other threads' frees. Zero in other pools. */
	LFP_CACHE_ALIGNED lfp_atomic_u64 own_live; /* owners' allocs minus their
						    * own frees (owner only:
						    * relaxed, handed on by O1/O2) */
	lfp_atomic_u32 own_lhead;  /* the owner's free list through next[], or
				    * LFP_NIL (owner only, as own_live) */
	lfp_atomic_u32 own_ready;  /* owner only: noted (current, on its ready
				    * list, or noted while the list was full) */
};

#define LFPI_HEADER_SIZE ((sizeof(struct lfp_pool) + 63u) & ~(size_t)63u)

struct lfpi_layout {
	uint64_t stride, align, next_off, blocks_off, region_size;
	uint32_t stride_shift;
	/* the cache (all 0 without one) */
	uint32_t cache_slots, cache_size, n_mags, mag_stride;
	uint64_t cache_off, mag_next_off, mags_off;
};

/* lfp_pool_validate, with a second free list (LFP_NIL: none) whose blocks
 * count as free too: an owned pool's own list (pool/frontend.c). */
LFPI_HIDDEN int lfpi_pool_validate_lists(const lfp_pool_t *pool, uint32_t list,
					 lfp_pool_report_t *report);

/* Compute the layout of cfg; 0 or -EINVAL / -EOVERFLOW. */
LFPI_HIDDEN int lfpi_layout(const lfp_pool_config_t *cfg, struct lfpi_layout *lay);

/* A created pool's own memory (pool/layout.c): map is what mmap gave, base
 * the region start in it (aligned to the block alignment), size the bytes
 * mapped. lfpi_map_region maps room for lay (anonymous, private; 0 or
 * -EOVERFLOW / -ENOMEM); lfpi_adopt_mapping, after init, makes
 * lfp_pool_destroy unmap it (owner only: before the handle is published). */
struct lfpi_mapping {
	char *map, *base;
	uint64_t size;
};
LFPI_HIDDEN int lfpi_map_region(const struct lfpi_layout *lay, struct lfpi_mapping *m);
LFPI_HIDDEN void lfpi_unmap_region(const struct lfpi_mapping *m);
/* size bytes of fresh zeroed private memory (a per-thread block: the front
 * end's thread state, the cache's table), or NULL; errno is left as it was
 * (the caller goes on without the block). */
LFPI_HIDDEN void *lfpi_map_zeroed(size_t size);
LFPI_HIDDEN void lfpi_adopt_mapping(lfp_pool_t *p, const struct lfpi_mapping *m);

static inline lfp_atomic_u32 *lfpi_next(const lfp_pool_t *p)
{
	return (lfp_atomic_u32 *)(uintptr_t)((const char *)p + p->next_off);
}

static inline char *lfpi_blocks(const lfp_pool_t *p)
{
	return (char *)(uintptr_t)((const char *)p + p->blocks_off);
}

static inline bool lfpi_live(const lfp_pool_t *p)
{
	return p != NULL && p->magic == LFPI_POOL_MAGIC;
}

static inline void *lfpi_ptr(const lfp_pool_t *p, uint32_t i)
{
	return lfpi_blocks(p) + (uint64_t)i * p->stride;
}

/* Index of ptr, or -EINVAL if ptr is not a block start of p. */
static inline int64_t lfpi_index(const lfp_pool_t *p, const void *ptr)
{
	uintptr_t off = (uintptr_t)ptr - (uintptr_t)lfpi_blocks(p);
	uint64_t i;
	if (lfpi_unlikely((uintptr_t)ptr < (uintptr_t)lfpi_blocks(p)))
		return -EINVAL;
	if (lfpi_likely(p->stride_shift != 0xFF)) {
		if (off & (p->stride - 1))
			return -EINVAL;
		i = off >> p->stride_shift;
	} else {
		if (off % p->stride)
			return -EINVAL;
		i = off / p->stride;
	}
	return i < p->count ? (int64_t)i : -EINVAL;
}

/* The free-index stack (pool/stack.c). */
LFPI_HIDDEN uint32_t lfpi_stack_pop(lfp_pool_t *p);
LFPI_HIDDEN void lfpi_stack_push(lfp_pool_t *p, uint32_t i);
/* Push a chain first..last, already linked through links[], on any tagged
 * stack (the free stack; the cache's magazine and batch stacks) in one CAS. */
LFPI_HIDDEN void lfpi_tagged_push_chain(lfp_atomic_u32 *links, lfp_atomic_u64 *head,
					uint32_t first, uint32_t last);
/* Push a chain first..last already linked through next[] in one CAS. */
LFPI_HIDDEN void lfpi_stack_push_chain(lfp_pool_t *p, uint32_t first, uint32_t last);

#define LFPI_POP_EMPTY LFP_NIL
#define LFPI_POP_CORRUPT UINT32_C(0xFFFFFFFC)

/* ---- the per-thread cache (pool/cache.c, docs/caches.md) -------------------
 * Region part, after next[]:
 *   [ slot table: cache_slots x 64 B | mag_next[n_mags] | magazines ]
 * Magazine m holds up to cache_size block indices. Every magazine is, at any
 * time, a slot's `loaded` or `prev`, or on exactly one magazine stack (a
 * slot's home_full/home_empty or the pool's depot_full/depot_empty), or in
 * the hands of the one thread moving it between those. All start on
 * depot_empty; a claimed slot takes two, a freed slot gives them back (a
 * free slot's loaded and prev are LFP_NIL).
 *
 * In-band batches: when a full magazine finds no empty one to swap with, its
 * indices are written into the memory of its own (free) blocks - a chain of
 * directories {count, next directory, sub-carrier indices} whose
 * sub-carriers hold {count, indices} (pool/cache.c) - and the first
 * directory is pushed on a batch stack (a slot's home_batch or depot_batch)
 * whose links are that block's next[] word. Carriers' memory
 * is written before the push (K3) and read only by the thread whose pop won
 * (K4); stale poppers read only next[].
 */
struct lfpi_slot {
	lfp_atomic_u64 owner;      /* 0 free, else an owner tag: claim CAS (K7),
				    * release store (K8) */
	lfp_atomic_u32 loaded;     /* magazine ids; written by the owner
				    * (relaxed), read by validate/recovery */
	lfp_atomic_u32 prev;
	lfp_atomic_u64 home_full;  /* the owner's full magazines; thieves pop
				    * them too (K3/K4) */
	lfp_atomic_u64 home_empty; /* the owner's empty ones: owner only (K11) */
	lfp_atomic_u64 home_batch; /* the owner's in-band batches (K3/K4) */
	lfp_atomic_u64 batched;    /* blocks in them (relaxed: a statistic, kept
				    * per slot so the count never bounces) */
	uint64_t reserved[2];
};
_Static_assert(sizeof(struct lfpi_slot) == 64, "a slot is one cache line");

struct lfpi_mag {
	lfp_atomic_u32 count; /* entries in use: written by the holder only
			       * (K1, relaxed), read by anyone (stats) */
	uint32_t ent[];       /* block indices; plain: only the holder touches
			       * them, hand-overs are ordered by K3/K4 */
};

static inline struct lfpi_slot *lfpi_slot_at(const lfp_pool_t *p, uint32_t s)
{
	return (struct lfpi_slot *)(uintptr_t)((const char *)p + p->cache_off) + s;
}

static inline lfp_atomic_u32 *lfpi_mag_next(const lfp_pool_t *p)
{
	return (lfp_atomic_u32 *)(uintptr_t)((const char *)p + p->mag_next_off);
}

static inline struct lfpi_mag *lfpi_mag_at(const lfp_pool_t *p, uint32_t m)
{
	return (struct lfpi_mag *)(uintptr_t)((const char *)p + p->mags_off +
					     (uint64_t)m * p->mag_stride);
}

/* Defaults and limits of the cache config (lfpi_layout). */
#define LFPI_CACHE_MIN_BLOCKS 256u /* default: smaller pools get no cache */
#define LFPI_CACHE_DEF_SLOTS 1024u /* default slots: count / 1024, at most this */
#define LFPI_CACHE_DEF_SIZE 256u
#define LFPI_CACHE_MAX_MAGS 65535u /* validate keeps a bitmap on its stack */

/* Lay the cache area out in a fresh region (lfp_pool_init). */
LFPI_HIDDEN void lfpi_cache_init(lfp_pool_t *p);
/* lfp_pool_destroy: forget every thread's cache (or cacheless handle) of p
 * in this process and drain every claimed slot (the pool is quiescent by
 * contract). Any pool, with or without a cache area. */
LFPI_HIDDEN void lfpi_cache_destroy(lfp_pool_t *p);
/* The calling thread's cache of p, made on first use; NULL if the thread
 * cannot have one (then the caller takes the uncached path). */
LFPI_HIDDEN struct lfp_cache *lfpi_cache_lookup(lfp_pool_t *p);
/* The thread's last lookup, so lfp_pool_alloc/_free skip the table: owner
 * thread only (plain). Valid while {pool, instance} match: a destroyed pool's
 * instance never returns, and the thread clears it when it evicts or
 * releases that entry itself. Initial-exec: one TLS access, no call. */
struct lfpi_last {
	const lfp_pool_t *pool;
	uint64_t instance;
	struct lfp_cache *cache;
};
extern LFPI_HIDDEN _Thread_local struct lfpi_last lfpi_last
#if defined(__GNUC__) || defined(__clang__)
	__attribute__((tls_model("initial-exec")))
#endif
	;

static inline struct lfp_cache *lfpi_cache_get(lfp_pool_t *p)
{
	if (lfpi_likely(lfpi_last.pool == p && lfpi_last.instance == p->instance))
		return lfpi_last.cache;
	return lfpi_cache_lookup(p);
}
/* Free blocks in magazines: a snapshot while threads run, exact when
 * quiescent. O(n_mags). */
LFPI_HIDDEN uint64_t lfpi_cache_count(const lfp_pool_t *p);
/* Quiescent check of the cache structures for lfp_pool_validate: every
 * magazine in exactly one place, counts in range, every entry a block index
 * marked LFPI_CACHED. Sets *entries to the number of cached blocks; 0 or
 * -EUCLEAN with r->error set; *digest gets the entries' digest. Batches:
 * their blocks count as entries, except each batch's head carrier, whose
 * state word is a stack link: those are counted in *heads. */
LFPI_HIDDEN int lfpi_cache_validate(const lfp_pool_t *p, lfp_pool_report_t *r,
				    uint64_t *entries, uint64_t *digest, uint64_t *heads);
/* Digest of a set of block indices: the sum of lfpi_index_hash over it. The
 * set of blocks marked LFPI_CACHED and the multiset of magazine entries have
 * equal sizes and digests only if they are equal (but with chance 2^-64), so
 * validate catches a block held twice even when another is lost. */
static inline uint64_t lfpi_index_hash(uint32_t i)
{
	uint64_t z = (uint64_t)i * UINT64_C(0x9E3779B97F4A7C15) + UINT64_C(0x632BE59BD9B4E019);
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}
/* Bulk helpers (pool/bulk.c). take: up to n indices out of the calling
 * thread's cache, refilling as needed, marked LFPI_ALLOC; returns how many
 * (0 with *err = ENOMEM or EUCLEAN), or -1 if the thread has no cache slot.
 * put: n indices already marked LFPI_CACHED into the thread's cache; -1 if
 * it has no slot (nothing done), else 0. */
LFPI_HIDDEN int64_t lfpi_cache_take(lfp_pool_t *p, uint32_t *idx, uint32_t n, int *err);
LFPI_HIDDEN int lfpi_cache_put(lfp_pool_t *p, const uint32_t *idx, uint32_t n);
/* The free stack is empty but cached blocks may sit on magazine or batch
 * stacks: move one magazine's or batch's worth onto the free stack (for a
 * thread without a cache slot). True if something moved. */
LFPI_HIDDEN bool lfpi_cache_rescue(lfp_pool_t *p);
/* Pop up to max blocks off the shared free stack with one CAS (walking their
 * links), into out[]; their link words are left as they were. Returns the
 * count, or LFPI_POP_CORRUPT if the stack is corrupt. */
LFPI_HIDDEN uint32_t lfpi_stack_pop_chain(lfp_pool_t *p, uint32_t *out, uint32_t max);

/* The uncached alloc and free (pool/pool.c), as lfp_pool_alloc/_free on a
 * pool without a cache; the caller has checked that p is live. */
LFPI_HIDDEN void *lfpi_pool_alloc_uncached(lfp_pool_t *p);
LFPI_HIDDEN int lfpi_pool_free_uncached(lfp_pool_t *p, void *ptr);
/* LFP_POOL_STATS bookkeeping of one allocation (pool/pool.c). */
LFPI_HIDDEN void lfpi_count_alloc(lfp_pool_t *p);

/* ---- recovery hooks for shared memory (issue 4) ---------------------------
 * Owner tags: (participant << 32) | thread serial. A shared-memory layer
 * that knows this process's participant id for a pool installs the hook
 * before any thread touches the pool's cache; without it the id is 0. */
extern LFPI_HIDDEN uint32_t (*lfpi_cache_participant_hook)(const lfp_pool_t *p);
/* Slot s's owner is known dead (and nobody else uses the slot): return its
 * cached blocks (entries still marked LFPI_CACHED) and home magazines to the
 * shared structures and free the slot. 0, or -EINVAL (no such slot or not
 * claimed). Runs concurrently with other threads' allocs and frees. */
LFPI_HIDDEN int lfpi_cache_reclaim_slot(lfp_pool_t *p, uint32_t s);
/* Quiescent only (nobody allocates or frees): blocks marked LFPI_CACHED that
 * are in no magazine (a thread died between marking a block and counting it)
 * go back to the free stack, duplicate magazine entries are dropped, and
 * magazines found nowhere return, emptied, to depot_empty. Returns the
 * number of blocks recovered. */
LFPI_HIDDEN uint64_t lfpi_cache_sweep(lfp_pool_t *p);
/* Test hook: the calling thread forgets its cache of p without draining it
 * or freeing its slot, exactly as if it had died. */
LFPI_HIDDEN void lfpi_cache_abandon(lfp_pool_t *p);

#endif /* LFP_POOL_INTERNAL_H */
