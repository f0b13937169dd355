/*
 * lfpool.h - lock-free fixed-size pool allocators for SMP machines.
 *
 * A pool is one region of N equal blocks. Free blocks are kept on a lock-free
 * stack of 32-bit block indices (a Treiber stack whose links live in an index
 * array outside the blocks; the head packs {index, ABA tag} in one 64-bit
 * word). The region holds offsets and indices only, never pointers, so the
 * same pool works in private memory, in caller-provided memory and in shared
 * memory mapped at different addresses by several processes.
 *
 * Error rule (kept by every function in this header):
 *   - constructors return NULL and set errno;
 *   - control functions return 0 (or a count) on success, a negative errno
 *     on failure;
 *   - lfp_pool_alloc returns NULL when the pool is empty and sets errno to
 *     ENOMEM (only on that failure path; success never touches errno).
 *
 * Which calls may run concurrently on one pool:
 *
 *   | call                         | concurrent with                           |
 *   |------------------------------|-------------------------------------------|
 *   | lfp_pool_alloc / _free       | each other, any query; never with destroy |
 *   | lfp_pool_alloc_bulk/_free_bulk| as lfp_pool_alloc / _free                |
 *   | lfp_cache_alloc / _free      | as alloc/free, but only by the thread that|
 *   |                              | got the handle from lfp_pool_cache()      |
 *   | lfp_pool_cache, _cache_flush | as alloc/free (they touch the calling     |
 *   |                              | thread's own cache only)                  |
 *   | lfp_pool_index/_ptr/_contains| anything but destroy (read-only, immutable)|
 *   | lfp_pool_capacity/_block_size| anything but destroy                      |
 *   | lfp_pool_free_count, _stats  | anything but destroy (approximate while   |
 *   |                              | allocs/frees run, exact when quiescent)   |
 *   | lfp_pool_validate            | nothing: caller makes the pool quiescent  |
 *   | lfp_pool_init / _destroy     | nothing on that pool                      |
 *
 * Progress: alloc and free are lock-free (a thread's CAS fails only because
 * another thread's succeeded); queries are wait-free; validate is O(N).
 *
 * Per-thread cache (docs/caches.md): unless LFP_POOL_NO_CACHE is set (or the
 * pool is small, see lfp_pool_config_t.cache_slots), lfp_pool_alloc and
 * lfp_pool_free go through a cache of the calling thread: magazines of block
 * indices kept inside the pool region, refilled and flushed whole with one
 * CAS each. A cache hit is wait-free and does no atomic read-modify-write.
 */
#ifndef LFPOOL_H
#define LFPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LFP_VERSION_MAJOR 0
#define LFP_VERSION_MINOR 2
#define LFP_VERSION_PATCH 1

#if defined(__GNUC__) || defined(__clang__)
#define LFP_API __attribute__((visibility("default")))
#define LFP_MALLOC_LIKE __attribute__((malloc))
#define LFP_WARN_UNUSED __attribute__((warn_unused_result))
#define LFP_NONNULL(...) __attribute__((nonnull(__VA_ARGS__)))
#else
#define LFP_API
#define LFP_MALLOC_LIKE
#define LFP_WARN_UNUSED
#define LFP_NONNULL(...)
#endif

/** Alignment that caller-provided memory must have (and more if the block
 * alignment is larger): one cache line. */
#define LFP_REGION_ALIGN 64u
/** Largest block count: indices are 32 bits and a few values are reserved. */
#define LFP_POOL_MAX_BLOCKS UINT32_C(0xFFFFFFF0)

/** Pool flags (lfp_pool_config_t.flags). */
enum {
	/** Detect double frees even when two threads race to free one block
	 * (one atomic RMW per free on the block's link word). Without it a
	 * sequential double free is still detected by a plain state check. */
	LFP_POOL_CHECKED = 1u << 0,
	/** Keep allocation/free counters and the high-water mark (two relaxed
	 * atomic adds per pair on a counter line shared by all threads). */
	LFP_POOL_STATS = 1u << 1,
	/** No per-thread cache: every alloc and free works on the shared free
	 * stack, and the region has no cache area. */
	LFP_POOL_NO_CACHE = 1u << 2,
};

/** What a pool is made of. Zero-initialise, then set what you need. */
typedef struct lfp_pool_config {
	size_t block_size;  /**< bytes per block, >= 1 */
	size_t block_count; /**< blocks, 1 .. LFP_POOL_MAX_BLOCKS */
	size_t block_align; /**< power of two; 0 = alignof(max_align_t) */
	unsigned flags;     /**< LFP_POOL_* */
	/* The per-thread cache (ignored with LFP_POOL_NO_CACHE; docs/caches.md).
	 * All 0 = defaults: no cache below 256 blocks; else
	 * slots = clamp(count / 1024, 1, 1024),
	 * size = clamp(pow2_floor(count / (8 * slots)), 4, 256) and
	 * depot = max(2 * slots, ceil(count / size) - 2 * slots), magazines
	 * for the whole pool (spare ones cost address space until used), cut
	 * so that 2 * slots + depot <= 65535. A
	 * thread's hoard (blocks no other thread can reach) is at most
	 * 2 * size, so all slots together hold at most a quarter of the pool
	 * by default. */
	size_t cache_size;  /**< blocks per magazine, 1..LFP_CACHE_MAX_SIZE; 0 = default */
	size_t cache_slots; /**< threads that can hold a cache at once,
			     *   0..LFP_CACHE_MAX_SLOTS; 0 = default; other
			     *   threads use the shared stack directly */
	size_t cache_depot; /**< spare magazines shared by all threads; 0 =
			     *   default; 2 * slots + depot <= 65535 */
} lfp_pool_config_t;

/** Largest cache_size (blocks per magazine). */
#define LFP_CACHE_MAX_SIZE 4096u
/** Largest cache_slots. */
#define LFP_CACHE_MAX_SLOTS 4096u

/** Opaque pool handle; its address is the start of the pool's region. */
typedef struct lfp_pool lfp_pool_t;

/** Counters; see LFP_POOL_STATS for which are kept always. */
typedef struct lfp_pool_stats {
	uint64_t allocs;     /**< successful allocations (LFP_POOL_STATS) */
	uint64_t frees;      /**< successful frees (LFP_POOL_STATS) */
	uint64_t failures;   /**< allocations that found the pool empty (always) */
	uint64_t in_use;     /**< blocks allocated now (LFP_POOL_STATS) */
	uint64_t high_water; /**< most blocks in use at once (LFP_POOL_STATS); may
			      *   overestimate by the frees racing with an alloc */
	uint64_t capacity;   /**< block count */
	uint64_t free;       /**< as lfp_pool_free_count() */
	uint64_t cached;     /**< of those free, blocks in cache magazines */
} lfp_pool_stats_t;

/** What lfp_pool_validate found. */
typedef struct lfp_pool_report {
	uint64_t capacity;  /**< block count */
	uint64_t free;      /**< free blocks: on the free stack or cached */
	uint64_t allocated; /**< blocks marked allocated */
	uint64_t other;     /**< blocks neither free nor allocated (a leak) */
	uint32_t bad_index; /**< first index involved in an error, or UINT32_MAX */
	const char *error;  /**< NULL if valid, else a static description */
	uint64_t cached;    /**< of the free blocks, those in cache magazines */
} lfp_pool_report_t;

/**
 * Bytes of region a pool with this config needs (header, link array, cache
 * area, blocks).
 * @return the size, or 0 with errno EINVAL (NULL cfg, bad config, unknown
 *         flag bits) or EOVERFLOW (the size does not fit in size_t).
 * Concurrency: pure. Ordering: none. Progress: wait-free.
 */
LFP_API size_t lfp_pool_region_size(const lfp_pool_config_t *cfg);

/**
 * Lay a pool out in caller-provided memory: a static array, a hugepage, a
 * shared mapping. Nothing is allocated; the pool lives entirely in mem.
 * @param mem   start of the region; aligned to LFP_REGION_ALIGN and to
 *              cfg->block_align, whichever is larger
 * @param size  bytes available at mem, >= lfp_pool_region_size(cfg)
 * @param out   receives the handle (equal to mem)
 * @return 0; -EINVAL for NULL arguments, a bad config or misaligned mem;
 *         -EOVERFLOW if the region size overflows; -ENOSPC if size is short.
 *         On error mem is not written.
 * fork(): a child keeps its thread's cache slots (docs/caches.md), which is
 * right for private memory; for a region the child shares with its parent
 * (a MAP_SHARED mapping), set LFP_POOL_NO_CACHE.
 * Concurrency: nothing may use the region meanwhile. Ordering: a handle
 * passed to other threads after return (by any synchronizing means) is
 * usable by them. Progress: O(N), wait-free.
 */
LFP_API int lfp_pool_init(void *mem, size_t size, const lfp_pool_config_t *cfg,
			  lfp_pool_t **out) LFP_WARN_UNUSED;

/**
 * Create a pool in memory of its own (anonymous mmap).
 * @return the pool, or NULL with errno EINVAL (NULL or bad config),
 *         EOVERFLOW, or ENOMEM (the mapping failed).
 * Concurrency: independent calls may run at once. Ordering: as
 * lfp_pool_init. Progress: blocking (mmap).
 */
LFP_API lfp_pool_t *lfp_pool_create(const lfp_pool_config_t *cfg) LFP_WARN_UNUSED;

/**
 * End a pool. Every thread's cached blocks go back to the region first; a
 * created pool's memory is then unmapped; an initialised one's region is
 * marked dead and handed back to the caller (calls on it then fail with
 * EINVAL, and cache handles of it with EINVAL too).
 * @return 0; -EINVAL if pool is NULL or not a live pool (destroying a
 *         created pool twice touches unmapped memory: undefined).
 * Concurrency: no other call on this pool may run or follow; other threads
 * may still hold lfp_pool_cache() handles of it (they become invalid, and
 * their thread exit does not touch the pool). Ordering: the caller must
 * have synchronized with every thread's last call on the pool. Progress:
 * blocking (takes the cache registry mutex; munmap).
 */
LFP_API int lfp_pool_destroy(lfp_pool_t *pool);

/**
 * Take a block. Constant time.
 * @return a block aligned to the pool's alignment, or NULL with errno ENOMEM
 *         when the pool is empty, EINVAL when pool is not a live pool,
 *         EUCLEAN when the free stack is found corrupt.
 * Concurrency: any number of threads. Ordering: the contents written before
 * the block was freed (by any thread) are visible to the caller.
 * Progress: lock-free.
 */
LFP_API void *lfp_pool_alloc(lfp_pool_t *pool) LFP_MALLOC_LIKE LFP_WARN_UNUSED;

/**
 * Give a block back. Constant time. free(pool, NULL) is a no-op returning 0.
 * @return 0; -EINVAL if ptr is not the start of a block of this pool (or pool
 *         is not a live pool); -EALREADY if the block is already free (double
 *         free). On error nothing changes.
 * Concurrency: any number of threads. Ordering: writes made to the block
 * before free are visible to its next allocator. Progress: lock-free.
 */
LFP_API int lfp_pool_free(lfp_pool_t *pool, void *ptr);

/*
 * Queries. They read only the immutable header (index, ptr, contains,
 * capacity, block_size) or relaxed snapshots (free_count, stats).
 * Concurrency: any call but destroy. Ordering: none (nothing is acquired).
 * Progress: wait-free (free_count without LFP_POOL_STATS: O(N + magazines),
 * bounded).
 */
/** Block index of ptr. @return 0..capacity-1; -EINVAL if pool is not live or
 * ptr is NULL, outside the blocks or not a block start. */
LFP_API int64_t lfp_pool_index(const lfp_pool_t *pool, const void *ptr);
/** Address of block index in this process. @return the block; NULL if pool
 * is not live or index >= capacity (errno untouched). */
LFP_API void *lfp_pool_ptr(const lfp_pool_t *pool, uint32_t index);
/** @return true if ptr points anywhere into the pool's block area (interior
 * pointers too); false otherwise or if pool is not live. */
LFP_API bool lfp_pool_contains(const lfp_pool_t *pool, const void *ptr);
/** @return the block count; 0 if pool is not live. */
LFP_API size_t lfp_pool_capacity(const lfp_pool_t *pool);
/** @return usable bytes per block (the block size rounded up to the
 * alignment); 0 if pool is not live. */
LFP_API size_t lfp_pool_block_size(const lfp_pool_t *pool);
/**
 * Free blocks (cached ones included). Exact when no alloc/free runs; while
 * they run, a snapshot that may be off by the operations in flight, never
 * above capacity. O(1) with LFP_POOL_STATS, else a bounded O(N) walk of the
 * free stack plus one relaxed load per magazine.
 * @return the count; 0 if pool is not live.
 */
LFP_API size_t lfp_pool_free_count(const lfp_pool_t *pool);

/** Fill *out (values as lfp_pool_free_count: snapshots while running).
 * @return 0; -EINVAL if pool is not live or out is NULL (nothing written). */
LFP_API int lfp_pool_stats(const lfp_pool_t *pool, lfp_pool_stats_t *out);

/**
 * Full consistency check of a quiescent pool: the free stack is acyclic, every
 * link is in range, no index is on it twice, and free + allocated = capacity.
 * @param report optional; filled either way
 * @return 0 if valid; -EINVAL for a bad handle; -EUCLEAN if corrupt.
 * Concurrency: none; the caller stops all allocs and frees. Ordering: the
 * caller must have synchronized with every thread's last alloc/free (a
 * join). Progress: wait-free, O(N + magazines).
 */
LFP_API int lfp_pool_validate(const lfp_pool_t *pool, lfp_pool_report_t *report);

/* ==========================================================================
 * Bulk transfer: one CAS for many blocks.
 * ========================================================================== */

/**
 * Take up to n blocks into out[0..). With a cache, whole magazines move (one
 * CAS per magazine); without, each batch of up to 256 blocks is popped with
 * one CAS.
 * @return how many blocks were stored (0..n; fewer than n only when the pool
 *         ran out, and then errno is ENOMEM, or EUCLEAN for a corrupt free
 *         stack); -EINVAL if pool is not a live pool or out is NULL with
 *         n > 0. n = 0 returns 0.
 * Concurrency, Ordering, Progress: as lfp_pool_alloc, per block.
 */
LFP_API int64_t lfp_pool_alloc_bulk(lfp_pool_t *pool, void **out, size_t n) LFP_WARN_UNUSED;

/**
 * Give back n blocks (NULL entries are skipped). All-or-nothing: every
 * pointer is checked before any block changes hands.
 * @return 0; -EINVAL if pool is not live, ptrs is NULL with n > 0, or a
 *         pointer is not a block start of this pool; -EALREADY if a block is
 *         already free or appears twice in ptrs. On error no block is freed.
 * Concurrency, Ordering: as lfp_pool_free, per block. Progress: lock-free;
 * without a cache the whole batch is pushed with one CAS.
 */
LFP_API int lfp_pool_free_bulk(lfp_pool_t *pool, void *const *ptrs, size_t n);

/* ==========================================================================
 * The per-thread cache (docs/caches.md).
 *
 * lfp_pool_alloc and lfp_pool_free already use it. A thread that wants the
 * last nanosecond asks once for its handle, then calls the inline
 * lfp_cache_alloc / lfp_cache_free, which touch only memory this thread owns
 * and fall back to an out-of-line call when the magazine is empty or full
 * (or the handle is NULL or stale: EINVAL, never a crash while the handle's
 * thread lives).
 *
 *     lfp_cache_t *c = lfp_pool_cache(pool);      // once per thread
 *     void *p = lfp_cache_alloc(c);
 *     ...
 *     lfp_cache_free(c, p);                       // any block of pool
 *
 * A handle belongs to the thread that got it: it must not be passed to or
 * used by another thread, and it is invalid after that thread exits or after
 * lfp_pool_destroy(pool). Blocks themselves may be freed by any thread.
 * ========================================================================== */

/**
 * ABI (version 2; docs/caches.md): the fields the inline fast path reads
 * and writes. Applications must not touch them; they are here only so that
 * lfp_cache_alloc/_free can be inlined. The magazine's entries, its count
 * and the marks array live in the pool region; everything else in this
 * struct is private to the calling thread.
 * Version 2 (was 1: shift/mask/span, power-of-two strides only): any stride.
 * A block's index is found without a division: with stride = odd << shift
 * and inv the inverse of odd modulo 2^64, off is i * stride for some
 * i < nblocks exactly when rotr64(off * inv, shift) < nblocks, and that
 * value is i (the divisibility test of Granlund and Montgomery; nblocks *
 * stride < 2^64 keeps every non-multiple above nblocks).
 */
#define LFP_CACHE_ABI_VERSION 2
/** State word of a block sitting in a magazine (ABI). */
#define LFP_CACHE_MARK_CACHED 0xFFFFFFFBu
typedef struct lfp_cache {
	uint32_t *top;       /**< next free entry of the loaded magazine */
	uint32_t *base;      /**< its first entry (top == base: empty) */
	uint32_t *end;       /**< one past its last entry (top == end: full) */
	uint32_t *count;     /**< the magazine's count word in the region */
	uint32_t *marks;     /**< the pool's per-block state words */
	char *blocks;        /**< block 0, in this process */
	uint64_t stride;     /**< bytes from one block to the next */
	uint64_t inv;        /**< inverse of (stride >> shift) modulo 2^64 */
	uint64_t nblocks;    /**< blocks the inline free accepts (0: none) */
	uint32_t shift;      /**< trailing zero bits of stride */
	uint32_t mark_alloc; /**< state word of an allocated block */
} lfp_cache_t;

/**
 * The calling thread's cache handle for pool, made on first use. A pool
 * without a cache (LFP_POOL_NO_CACHE), or one whose cache slots are all
 * taken, still gives a handle: its calls then go to the shared stack.
 * @return the handle; NULL with errno EINVAL (pool not live), ENOSPC (this
 *         thread already holds handles for too many pools: 64 at most,
 *         fewer when their hashes collide) or ENOMEM (no memory for this
 *         thread's table of caches).
 * Concurrency: any thread, for itself. Ordering: none (no block changes
 * hands). Progress: lock-free, except that a thread's first use of a pool's
 * cache takes a process-wide mutex once.
 */
LFP_API lfp_cache_t *lfp_pool_cache(lfp_pool_t *pool) LFP_WARN_UNUSED;

/** Out-of-line halves of lfp_cache_alloc / lfp_cache_free: same contract
 * (errors, Concurrency, Ordering, Progress; a NULL or stale handle gives
 * EINVAL). Call the inline functions instead. */
LFP_API void *lfp_cache_alloc_slow(lfp_cache_t *cache) LFP_MALLOC_LIKE LFP_WARN_UNUSED;
LFP_API int lfp_cache_free_slow(lfp_cache_t *cache, void *ptr);

/**
 * Return the calling thread's cached blocks of pool to the shared structures
 * (as whole magazines), where any thread's next refill finds them. The
 * thread keeps its cache slot. A thread with no cache of pool: no-op.
 * @return 0; -EINVAL if pool is not live.
 * Concurrency: as lfp_pool_free. Ordering: as lfp_pool_free of each block.
 * Progress: lock-free, O(magazines held).
 */
LFP_API int lfp_pool_cache_flush(lfp_pool_t *pool);

#if (defined(__GNUC__) || defined(__clang__)) && !defined(LFP_NO_INLINE_CACHE)
#define LFP_CACHE_LIKELY(x) __builtin_expect(!!(x), 1)
/* The two stores and the load below are the only atomics outside atomics/:
 * relaxed GCC/Clang builtins, because this public header may not include
 * <stdatomic.h>. Labels as in docs/memory-order.md:
 *   K1 relaxed store of the magazine's count: only accounting readers
 *      (stats, validate, recovery) look at it, and they order nothing by it.
 *   K2 relaxed load/store of the block's state word: a block's state is read
 *      by its own holder, or by a thread that got the block through a
 *      hand-off that already orders it; stale poppers of the free stack only
 *      compare it with the block count (pairs with nothing). */
#endif

/**
 * Take a block from this thread's cache (inline; a hit is a few plain
 * instructions and two relaxed stores).
 * @return a block, or NULL with errno as lfp_pool_alloc; EINVAL also for a
 *         NULL handle or one whose pool was destroyed.
 * Concurrency: only the handle's thread. Ordering: as lfp_pool_alloc.
 * Progress: wait-free on a hit; lock-free on a refill.
 */
static inline void *lfp_cache_alloc(lfp_cache_t *cache)
{
#ifdef LFP_CACHE_LIKELY
	uint32_t *t = cache != NULL ? cache->top : NULL; /* NULL: the slow path's EINVAL */
	if (LFP_CACHE_LIKELY(t != NULL && t != cache->base)) {
		uint32_t i = *--t;
		cache->top = t;
		__atomic_store_n(cache->count, (uint32_t)(t - cache->base), __ATOMIC_RELAXED); /* K1 */
		__atomic_store_n(&cache->marks[i], cache->mark_alloc, __ATOMIC_RELAXED); /* K2 */
		return cache->blocks + (size_t)i * cache->stride;
	}
#endif
	return lfp_cache_alloc_slow(cache);
}

/**
 * Give a block back through this thread's cache (inline). Any block of the
 * handle's pool may be given, whichever thread allocated it.
 * @return 0, or as lfp_pool_free (-EINVAL, -EALREADY; NULL ptr is a no-op);
 *         -EINVAL for a NULL handle or one whose pool was destroyed.
 * Double free: a block given twice in a row is refused with -EALREADY by the
 * state-word check (one load, one store per free); two threads racing to
 * free one block are caught only with LFP_POOL_CHECKED (then every call
 * takes the out-of-line path, which uses a CAS).
 * Concurrency: only the handle's thread. Ordering: as lfp_pool_free.
 * Progress: wait-free on a hit; lock-free on a flush.
 */
static inline int lfp_cache_free(lfp_cache_t *cache, void *ptr)
{
#ifdef LFP_CACHE_LIKELY
	if (LFP_CACHE_LIKELY(cache != NULL)) { /* NULL: the slow path's EINVAL */
		uint64_t q = (uint64_t)((uintptr_t)ptr - (uintptr_t)cache->blocks) * cache->inv;
		uint32_t *t = cache->top;
		q = q >> cache->shift | q << ((64u - cache->shift) & 63u); /* the block index, if any */
		if (LFP_CACHE_LIKELY(q < cache->nblocks && t != cache->end)) {
			uint32_t i = (uint32_t)q;
			uint32_t *m = &cache->marks[i];
			if (LFP_CACHE_LIKELY(__atomic_load_n(m, __ATOMIC_RELAXED) == cache->mark_alloc)) { /* K2 */
				__atomic_store_n(m, LFP_CACHE_MARK_CACHED, __ATOMIC_RELAXED); /* K2 */
				*t++ = i;
				cache->top = t;
				__atomic_store_n(cache->count, (uint32_t)(t - cache->base), __ATOMIC_RELAXED); /* K1 */
				return 0;
			}
		}
	}
#endif
	return lfp_cache_free_slow(cache, ptr);
}

#ifdef __cplusplus
}
#endif

/* Topics past a screenful each live in their own file (installed together). */
#include "lfpool/shm.h"  /* named pools in shared memory */
#include "lfpool/heap.h" /* malloc-compatible front end and fallback heap */
#include "lfpool/numa.h" /* NUMA placement (hwloc) */

#endif /* LFPOOL_H */
