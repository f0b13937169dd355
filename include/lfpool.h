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
 *   | lfp_pool_index/_ptr/_contains| anything but destroy (read-only, immutable)|
 *   | lfp_pool_capacity/_block_size| anything but destroy                      |
 *   | lfp_pool_free_count, _stats  | anything but destroy (approximate while   |
 *   |                              | allocs/frees run, exact when quiescent)   |
 *   | lfp_pool_validate            | nothing: caller makes the pool quiescent  |
 *   | lfp_pool_init / _destroy     | nothing on that pool                      |
 *
 * Progress: alloc and free are lock-free (a thread's CAS fails only because
 * another thread's succeeded); queries are wait-free; validate is O(N).
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
#define LFP_VERSION_MINOR 1
#define LFP_VERSION_PATCH 0

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
};

/** What a pool is made of. Zero-initialise, then set what you need. */
typedef struct lfp_pool_config {
	size_t block_size;  /**< bytes per block, >= 1 */
	size_t block_count; /**< blocks, 1 .. LFP_POOL_MAX_BLOCKS */
	size_t block_align; /**< power of two; 0 = alignof(max_align_t) */
	unsigned flags;     /**< LFP_POOL_* */
} lfp_pool_config_t;

/** Opaque pool handle; its address is the start of the pool's region. */
typedef struct lfp_pool lfp_pool_t;

/** Counters; see LFP_POOL_STATS for which are kept always. */
typedef struct lfp_pool_stats {
	uint64_t allocs;     /**< successful allocations (LFP_POOL_STATS) */
	uint64_t frees;      /**< successful frees (LFP_POOL_STATS) */
	uint64_t failures;   /**< allocations that found the pool empty (always) */
	uint64_t in_use;     /**< blocks allocated now (LFP_POOL_STATS) */
	uint64_t high_water; /**< most blocks in use at once (LFP_POOL_STATS) */
	uint64_t capacity;   /**< block count */
	uint64_t free;       /**< as lfp_pool_free_count() */
} lfp_pool_stats_t;

/** What lfp_pool_validate found. */
typedef struct lfp_pool_report {
	uint64_t capacity;  /**< block count */
	uint64_t free;      /**< blocks reachable from the free stack */
	uint64_t allocated; /**< blocks marked allocated */
	uint64_t other;     /**< blocks neither free nor allocated (a leak) */
	uint32_t bad_index; /**< first index involved in an error, or UINT32_MAX */
	const char *error;  /**< NULL if valid, else a static description */
} lfp_pool_report_t;

/**
 * Bytes of region a pool with this config needs (header, link array, blocks).
 * @return the size, or 0 with errno EINVAL (bad config) or EOVERFLOW (the
 *         size does not fit in size_t).
 * Concurrency: pure. Progress: wait-free.
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
 * Concurrency: nothing may use the region meanwhile. Ordering: a handle
 * passed to other threads after return (by any synchronizing means) is
 * usable by them. Progress: O(N), wait-free.
 */
LFP_API int lfp_pool_init(void *mem, size_t size, const lfp_pool_config_t *cfg,
			  lfp_pool_t **out) LFP_WARN_UNUSED;

/**
 * Create a pool in memory of its own (anonymous mmap).
 * @return the pool, or NULL with errno EINVAL (bad config), EOVERFLOW, or
 *         ENOMEM (the mapping failed).
 * Concurrency: independent calls may run at once. Progress: blocking (mmap).
 */
LFP_API lfp_pool_t *lfp_pool_create(const lfp_pool_config_t *cfg) LFP_WARN_UNUSED;

/**
 * End a pool. A created pool's memory is unmapped; an initialised one's region
 * is marked dead and handed back to the caller.
 * @return 0; -EINVAL if pool is NULL or not a live pool.
 * Concurrency: no other call on this pool may run or follow.
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

/** Block index of ptr (which must be a block start), or -EINVAL. Wait-free. */
LFP_API int64_t lfp_pool_index(const lfp_pool_t *pool, const void *ptr);
/** Address of block index in this process, or NULL if out of range. */
LFP_API void *lfp_pool_ptr(const lfp_pool_t *pool, uint32_t index);
/** True if ptr points anywhere into the pool's block area. Wait-free. */
LFP_API bool lfp_pool_contains(const lfp_pool_t *pool, const void *ptr);
/** Block count, or 0 for a bad handle. */
LFP_API size_t lfp_pool_capacity(const lfp_pool_t *pool);
/** Usable bytes per block (the block size rounded up to the alignment). */
LFP_API size_t lfp_pool_block_size(const lfp_pool_t *pool);
/**
 * Free blocks. Exact when no alloc/free runs; while they run, a snapshot that
 * may be off by the operations in flight. O(1) with LFP_POOL_STATS, else a
 * bounded O(N) walk of the free stack.
 */
LFP_API size_t lfp_pool_free_count(const lfp_pool_t *pool);

/** Fill *out. @return 0 or -EINVAL. Concurrency: any; values as free_count. */
LFP_API int lfp_pool_stats(const lfp_pool_t *pool, lfp_pool_stats_t *out);

/**
 * Full consistency check of a quiescent pool: the free stack is acyclic, every
 * link is in range, no index is on it twice, and free + allocated = capacity.
 * @param report optional; filled either way
 * @return 0 if valid; -EINVAL for a bad handle; -EUCLEAN if corrupt.
 * Concurrency: none; the caller stops all allocs and frees. Progress: O(N).
 */
LFP_API int lfp_pool_validate(const lfp_pool_t *pool, lfp_pool_report_t *report);

#ifdef __cplusplus
}
#endif

/* Topics past a screenful each live in their own file (installed together). */
#include "lfpool/shm.h"  /* named pools in shared memory */
#include "lfpool/heap.h" /* malloc-compatible front end and fallback heap */
#include "lfpool/numa.h" /* NUMA placement (hwloc) */

#endif /* LFPOOL_H */
