/*
 * lfpool/heap.h - included by lfpool.h; do not include directly.
 *
 * Two allocators for sizes the fixed-size pools do not fit:
 *
 *   lfp_flheap_*  the fallback free-list heap: boundary tags, immediate
 *                 coalescing, splitting, in-place realloc, aligned
 *                 allocation, four placement policies. One mutex (or none,
 *                 if the caller serializes). Memory comes from an mmap
 *                 reservation or from a caller region that a callback grows
 *                 (a simulated sbrk heap, shared memory, bare metal).
 *
 *   lfp_heap_*    the malloc-compatible front end: size classes served by
 *                 growing lfp_pool_t pools (with their per-thread caches),
 *                 mid sizes by one lfp_flheap, huge sizes by direct mmap.
 *                 free() finds a pointer's owner in an RCU-protected pool
 *                 directory (liburcu, bulletproof flavour) without a lock.
 *   lfp_malloc... the same on a process-wide default heap.
 *
 * Error rule (as in lfpool.h): constructors return NULL and set errno;
 * control functions return 0 or a negative errno; allocation calls return
 * NULL and set errno (ENOMEM, EINVAL) and leave errno alone on success.
 *
 * Semantics shared by lfp_flheap_* and lfp_heap_* / lfp_malloc:
 *   - malloc(0) returns a unique, freeable pointer to a minimum block (its
 *     usable size is >= 1); it never returns NULL for 0 unless memory is out.
 *   - realloc(NULL, n) is malloc(n). realloc(p, 0) frees p and returns NULL
 *     without touching errno (the glibc behaviour; mdriver requires it).
 *   - A failed realloc returns NULL with errno ENOMEM and leaves p intact.
 *   - calloc(n, m) with n*m overflowing returns NULL with ENOMEM; every byte
 *     calloc returns is zero, including reused blocks.
 *   - aligned_alloc(a, n): a must be a power of two (EINVAL otherwise);
 *     n need not be a multiple of a. posix_memalign returns EINVAL for an
 *     alignment that is not a power-of-two multiple of sizeof(void *), and
 *     never touches errno.
 *   - free preserves errno.
 *   - A size so large that rounding it up would overflow fails with ENOMEM
 *     (no wrap-around to a small block).
 *
 * Bad frees (a pointer this heap did not return, or one already freed):
 *   - lfp_flheap_free / lfp_heap_free return -EINVAL (not ours) or -EALREADY
 *     (already free) and change nothing. With the *_CHECKED flag every such
 *     free is detected, even a pointer into the middle of a live block or a
 *     block freed and coalesced long ago; without it the cheap checks (range,
 *     alignment, header state) catch out-of-range pointers and a repeated
 *     free of a block whose header is still intact, and anything else is
 *     undefined, as for malloc.
 *   - lfp_free has no return value: it counts the bad free (lfp_heap_stats
 *     bad_frees) and ignores it, leaving the heap intact, unless the default
 *     heap was configured with LFP_HEAP_ABORT_ON_BAD_FREE (then it prints one
 *     line to stderr and calls abort(), as glibc does).
 *
 * Which calls may run concurrently:
 *
 *   | call                                  | concurrent with                  |
 *   |---------------------------------------|----------------------------------|
 *   | lfp_heap_malloc/_free/_realloc/...    | each other, any query, _trim;    |
 *   |                                       | never with lfp_heap_destroy      |
 *   | lfp_heap_trim                         | everything but destroy           |
 *   | lfp_flheap_* (locked heap)            | each other but destroy           |
 *   | lfp_flheap_* (LFP_FLHEAP_UNLOCKED)    | nothing: the caller serializes   |
 *   | lfp_flheap_validate                   | other calls (it takes the lock)  |
 *   | *_destroy                             | nothing on that heap             |
 *
 * Progress: lfp_heap_malloc/free of a class size is lock-free when the pool
 * has a block (the pool's own alloc/free plus a wait-free RCU read section);
 * growing a class, mid sizes (the fallback heap) and huge sizes block on a
 * mutex or the kernel.
 */
#ifndef LFPOOL_HEAP_H
#define LFPOOL_HEAP_H

#ifndef LFPOOL_H
#error "include <lfpool.h>, not <lfpool/heap.h>"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/*  The fallback free-list heap                                             */
/* ======================================================================== */

/** Placement policies (lfp_flheap_config_t.fit). */
enum lfp_fit {
	/** Segregated fits: free blocks binned by size (exact bins for small
	 * sizes, four bins per power of two above), best fit within the first
	 * bin that can serve. The default: best measured utilization and
	 * throughput (docs/benchmarks-heap.md). */
	LFP_FIT_SEGREGATED = 0,
	/** One free list, newest first; take the first block that fits. */
	LFP_FIT_FIRST = 1,
	/** One free list; resume the search where the last one stopped. */
	LFP_FIT_NEXT = 2,
	/** One free list; take the smallest block that fits (exact fit stops). */
	LFP_FIT_BEST = 3,
};

/** Fallback heap flags (lfp_flheap_config_t.flags). */
enum {
	/** Detect every foreign and double free (one bit per granule of the
	 * heap, kept outside the heap's memory). */
	LFP_FLHEAP_CHECKED = 1u << 0,
	/** No lock: the caller serializes every call (single-threaded use). */
	LFP_FLHEAP_UNLOCKED = 1u << 1,
	/** Keep the placement simple: always carve the block from the low end
	 * of a free block and extend the heap by exactly what is missing
	 * (turns off the size-segregating split and the growth chunk; for the
	 * policy comparison). */
	LFP_FLHEAP_PLAIN_SPLIT = 1u << 2,
};

/**
 * Grow callback for a caller region: make the region [base, base+new_size)
 * usable (new_size > the size it has now). A simulated sbrk heap just
 * checks new_size against its capacity and moves its break.
 * @return 0, or a negative errno (the allocation that needed it then fails
 *         with ENOMEM and the heap is unchanged).
 * Concurrency: called with the heap's lock held (if it has one).
 */
typedef int (*lfp_flheap_grow_fn)(void *ctx, void *base, size_t new_size);

/** What a fallback heap is made of. Zero-initialise, then set what you need. */
typedef struct lfp_flheap_config {
	unsigned fit;       /**< enum lfp_fit */
	unsigned flags;     /**< LFP_FLHEAP_* */
	size_t align;       /**< payload alignment: 8 or 16; 0 = 16 */
	size_t min_split;   /**< smallest free remainder worth splitting off:
			       0 = the minimum block (16 bytes); 16 to 1 MiB */
	size_t grow_chunk;  /**< heap growth beyond the need when a request is
			       placed at the end of the heap: 0 = adaptive
			       (docs/frontend.md); LFP_FLHEAP_PLAIN_SPLIT
			       forces exact growth */
	/* Memory source A (region == NULL): an anonymous mmap reservation of
	 * `reserve` bytes (0 = 16 GiB of address space), committed as the
	 * heap grows. */
	size_t reserve;
	/* Memory source B (region != NULL): caller memory. The heap uses
	 * [region, region+region_size) and asks grow() for more, up to
	 * region_max bytes (0 = region_size). region is aligned to `align`. */
	void *region;
	size_t region_size;
	size_t region_max;
	lfp_flheap_grow_fn grow; /**< NULL: the region cannot grow */
	void *grow_ctx;
} lfp_flheap_config_t;

/** Opaque fallback heap handle. */
typedef struct lfp_flheap lfp_flheap_t;

/** Counters and shape of a fallback heap (exact while it is quiescent). */
typedef struct lfp_flheap_stats {
	uint64_t extent;        /**< bytes of the region in use (the "brk") */
	uint64_t committed;     /**< bytes usable without growing */
	uint64_t alloc_blocks;  /**< allocated blocks */
	uint64_t alloc_bytes;   /**< bytes in allocated blocks (with headers) */
	uint64_t free_blocks;   /**< free blocks */
	uint64_t free_bytes;    /**< bytes in free blocks */
	uint64_t largest_free;  /**< the largest free block */
	uint64_t meta_bytes;    /**< control block (outside the region) */
	uint64_t check_bytes;   /**< checked-mode bitmap size (outside, lazily
				     touched) */
	uint64_t grows;         /**< successful growth requests */
	uint64_t bad_frees;     /**< frees refused as foreign or double */
} lfp_flheap_stats_t;

/**
 * Make a fallback heap; cfg NULL (or all zero) gives the defaults.
 * @return the heap, or NULL with errno EINVAL (bad config: align not 8 or
 *         16, min_split outside 16 bytes to 1 MiB, a misaligned region,
 *         region_max < region_size, region_size, region_max or grow without
 *         a region, an unknown fit or flag), ENOMEM (no memory for the control block or the
 *         reservation, or a caller region too small for the empty heap
 *         that grow() cannot enlarge).
 * Concurrency: independent calls may run at once. Progress: blocking (mmap).
 */
LFP_API lfp_flheap_t *lfp_flheap_create(const lfp_flheap_config_t *cfg) LFP_WARN_UNUSED;

/**
 * End a heap; a reservation is unmapped, a caller region handed back.
 * @return 0; -EINVAL for NULL or a handle that is not a live heap (its
 *         magic is checked). The control block is unmapped, so any later
 *         call on the handle, destroy included, is a use after free.
 * Concurrency: nothing else may run on this heap or follow.
 */
LFP_API int lfp_flheap_destroy(lfp_flheap_t *h);

/**
 * Allocate n bytes aligned to the heap's alignment. n == 0 gives a minimum
 * block. @return the block, or NULL with errno ENOMEM (no room, the region
 * cannot grow, or n too large: blocks are below 4 GiB) or EINVAL (h bad).
 * Concurrency: as the table above. Ordering: the heap's lock orders
 * everything (a block freed by one thread and reused by another carries the
 * first thread's writes). Progress: blocking (lock; O(free blocks) search for
 * the first/next/best policies, O(bin) for segregated fits).
 */
LFP_API void *lfp_flheap_malloc(lfp_flheap_t *h, size_t n) LFP_MALLOC_LIKE LFP_WARN_UNUSED;

/** calloc: NULL + ENOMEM on n*size overflow; the block is zeroed.
 * Concurrency, Ordering, Progress: as lfp_flheap_malloc. */
LFP_API void *lfp_flheap_calloc(lfp_flheap_t *h, size_t n, size_t size)
	LFP_MALLOC_LIKE LFP_WARN_UNUSED;

/**
 * Give a block back; it coalesces with free neighbours at once. NULL is a
 * no-op returning 0. errno is never touched.
 * @return 0; -EINVAL if p is not a block of this heap (or h is bad);
 *         -EALREADY if p is already free. On error nothing changes.
 * Concurrency: as lfp_flheap_malloc. Ordering: the lock orders the caller's
 * writes to the block before its next allocator's reads. Progress: blocking
 * (lock), O(1); a block of 256 KiB or more also madvises its pages away.
 */
LFP_API int lfp_flheap_free(lfp_flheap_t *h, void *p);

/**
 * Resize in place when it can: shrink by splitting, grow into a free next
 * neighbour or the end of the heap, or slide into a free previous
 * neighbour; else allocate, copy and free. See the shared semantics above.
 * @return the (possibly moved) block; NULL with errno ENOMEM (p intact) or
 *         EINVAL (p not a live block of h, nothing changes); NULL without
 *         errno for n == 0 (p freed).
 * Concurrency, Ordering: as lfp_flheap_malloc. Progress: blocking (lock),
 * plus a copy when the block moves.
 */
LFP_API void *lfp_flheap_realloc(lfp_flheap_t *h, void *p, size_t n) LFP_WARN_UNUSED;

/**
 * Allocate n bytes aligned to `align` (a power of two; below the heap's
 * alignment it is raised to it). @return the block or NULL with errno
 * EINVAL (align not a power of two or above 1 GiB) or ENOMEM.
 * Concurrency, Ordering, Progress: as lfp_flheap_malloc.
 */
LFP_API void *lfp_flheap_aligned_alloc(lfp_flheap_t *h, size_t align, size_t n)
	LFP_MALLOC_LIKE LFP_WARN_UNUSED;

/** Usable bytes of live block p (>= the size asked for), or 0 if p is not
 * a live block of h (checked heaps; unchecked ones trust p) or NULL.
 * Concurrency: as lfp_flheap_malloc (takes the lock). Progress: blocking. */
LFP_API size_t lfp_flheap_usable_size(lfp_flheap_t *h, const void *p);

/** True if p points into the heap's region (any block, live or free).
 * Wait-free; may run concurrently with anything but destroy. */
LFP_API bool lfp_flheap_contains(const lfp_flheap_t *h, const void *p);

/** Fill *out. @return 0 or -EINVAL. Takes the lock. */
LFP_API int lfp_flheap_stats(lfp_flheap_t *h, lfp_flheap_stats_t *out);

/**
 * Give the pages inside every free block back to the kernel (reservation
 * heaps only; a caller region is left alone). Frees of blocks of 256 KiB
 * and more do this for their own pages already.
 * @return 0 or -EINVAL. Concurrency: takes the lock. Progress: O(free
 * blocks) plus one madvise per large free block.
 */
LFP_API int lfp_flheap_trim(lfp_flheap_t *h);

/**
 * Full consistency check: every block's tags, no two free neighbours (the
 * coalescing invariant), prev-allocated bits, each free block on the right
 * list exactly once with consistent links, counters, the checked bitmap.
 * @param why optional; receives a static description of the first error
 * @return 0 if valid; -EINVAL bad handle; -EUCLEAN corrupt.
 * Concurrency: takes the lock. Progress: O(blocks).
 */
LFP_API int lfp_flheap_validate(lfp_flheap_t *h, const char **why);

/* ======================================================================== */
/*  The malloc-compatible front end                                         */
/* ======================================================================== */

/** Most size classes a front end can have. */
#define LFP_HEAP_MAX_CLASSES 64u
/** Largest class size (bigger sizes go to the fallback heap or mmap). */
#define LFP_HEAP_MAX_CLASS_SIZE (64u * 1024u)

/** Front-end flags (lfp_heap_config_t.flags). */
enum {
	/** Pools in LFP_POOL_CHECKED mode and a checked fallback heap: every
	 * double or foreign free is detected, even between racing threads. */
	LFP_HEAP_CHECKED = 1u << 0,
	/** lfp_free aborts on a bad free instead of counting and ignoring it
	 * (lfp_heap_free always returns the error instead). */
	LFP_HEAP_ABORT_ON_BAD_FREE = 1u << 1,
	/** Pass LFP_POOL_STATS to every pool (shared counters: slower). The
	 * counters see only the calls that reach a pool's own alloc and free:
	 * a checked heap's, and the refills and give-backs of bins; the owned
	 * pools' fast paths (the default) do not count. */
	LFP_HEAP_POOL_STATS = 1u << 2,
	/** Per-thread bins over shared pools (LFP_HEAP_BINS) with a depot per
	 * size class where a thread's full cache stack parks whole, for any
	 * thread's next refill: faster than plain bins for programs that free
	 * and allocate in bursts, at the price of up to 256 stacks per class
	 * (256 x 4 KiB of blocks) held back from the pools until lfp_heap_trim,
	 * and up to 256 x 264 bytes of offsets per class that only
	 * lfp_heap_destroy returns (docs/frontend.md, "The class depot"). If
	 * that memory cannot be mapped the heap works without depots. Implies
	 * LFP_HEAP_BINS unless LFP_HEAP_OWNED is set too (then ignored).
	 * Ignored with LFP_HEAP_CHECKED (no thread caches). */
	LFP_HEAP_DEPOT = 1u << 3,
	/** Thread-owned pools: the default since 0.2, and this flag only says
	 * so explicitly. A thread allocates only from class pools it owns, and
	 * its frees of their blocks go to the pool's own free list with no
	 * atomic read-modify-write; a free by any other thread goes to the
	 * pool's shared stack (one CAS) and comes back to the owner whole.
	 * The price is memory: a thread's free blocks stay in its pools until
	 * it exits, uses another heap, or calls lfp_heap_cache_flush or
	 * lfp_heap_trim, so an idle thread can hold whole pools
	 * (docs/frontend.md, "Owned pools"). Overrides LFP_HEAP_DEPOT; with
	 * LFP_HEAP_BINS it is EINVAL; ignored with LFP_HEAP_CHECKED. */
	LFP_HEAP_OWNED = 1u << 4,
	/** Per-thread bins over shared pools instead of thread-owned pools
	 * (the default before 0.2): a thread caches at most two stacks of
	 * 4 KiB (and at least 2 blocks each) per class and hands the rest back to shared pools, so an idle
	 * thread holds little, and a block freed by another thread is reused
	 * by that thread at once. Slower where threads free what they allocate
	 * (real-program traces: 0.6x the owned pools, docs/benchmarks-heap.md
	 * section 12), faster for a producer/consumer hand-off. Ignored with
	 * LFP_HEAP_CHECKED. */
	LFP_HEAP_BINS = 1u << 5,
};

/** What a front end is made of. Zero-initialise, then set what you need. */
typedef struct lfp_heap_config {
	/** Ascending class sizes; each is 8 or a multiple of 16 up to
	 * LFP_HEAP_MAX_CLASS_SIZE (16-byte alignment needs that). NULL: the
	 * default classes (docs/frontend.md, chosen from trace profiles). */
	const size_t *class_sizes;
	size_t class_count;
	size_t pool_min_bytes;   /**< block bytes of a class's first pool
				    (0 = 1 KiB; at least 2 blocks); each
				    later pool doubles: per class with bins,
				    per thread and class with owned pools;
				    at most pool_max_bytes and reserve / 4 */
	size_t pool_max_bytes;   /**< where the doubling stops (0 = 1 MiB;
				    a size that is not pool_min_bytes times a
				    power of two can be passed by up to 2x);
				    at most reserve / 4 */
	size_t huge_threshold;   /**< requests at least this big are mmapped
				    directly (0 = 256 KiB) */
	unsigned fit;            /**< fallback heap policy (enum lfp_fit) */
	unsigned flags;          /**< LFP_HEAP_* */
	size_t reserve;          /**< fallback heap address space (0 = 16 GiB) */
} lfp_heap_config_t;

/** Opaque front-end handle. */
typedef struct lfp_heap lfp_heap_t;

/** Front-end counters (relaxed snapshots while calls run). */
typedef struct lfp_heap_stats {
	uint64_t classes;      /**< size classes */
	uint64_t pools;        /**< pools alive */
	uint64_t pools_added;  /**< pools ever added */
	uint64_t pools_retired;/**< pools retired and freed */
	uint64_t pool_bytes;   /**< bytes of pool regions alive */
	uint64_t huge_live;    /**< huge mappings alive */
	uint64_t huge_bytes;   /**< bytes mapped for them */
	uint64_t bad_frees;    /**< frees refused (foreign or double) */
	uint64_t depot_blocks; /**< blocks parked in the class depots
				  (LFP_HEAP_DEPOT; lfp_heap_trim empties them) */
	lfp_flheap_stats_t fallback; /**< the fallback heap's own stats */
} lfp_heap_stats_t;

/**
 * Make a front end; cfg NULL (or all zero) gives the defaults. @return the
 * heap, or NULL with errno EINVAL (classes not ascending, too many, a bad
 * size, class_count without class_sizes, pool_min_bytes above
 * pool_max_bytes, either above reserve / 4, a bad fit or flag) or ENOMEM.
 * A class that cannot grow a pool (the reservation is full, or what is left
 * is too fragmented for one) is served by the fallback heap while it has
 * room, so small requests fail only when the reservation is used up (such
 * blocks have the fallback heap's double-free check: exact only with
 * LFP_HEAP_CHECKED).
 * Concurrency: independent calls may run at once. Progress: blocking.
 */
LFP_API lfp_heap_t *lfp_heap_create(const lfp_heap_config_t *cfg) LFP_WARN_UNUSED;

/**
 * End a front end and return all its memory (every pool, the fallback heap,
 * every huge mapping). Blocks still allocated die with it.
 * @return 0; -EINVAL for NULL or a handle that is not a live front end (its
 *         magic is checked). Its memory is returned, so any later call on
 *         the handle, destroy included, is a use after free.
 * Concurrency: nothing else may run on this heap or follow. Progress:
 * blocking (waits for an RCU grace period).
 */
LFP_API int lfp_heap_destroy(lfp_heap_t *h);

/**
 * Allocate n bytes, aligned to 16 (8 for n <= 8). See the shared semantics.
 * @return the block, or NULL with errno ENOMEM or EINVAL (h bad).
 * Concurrency: any threads. Ordering: writes made to a block before it was
 * freed (by any thread) are visible to its next allocator. Progress:
 * lock-free for class sizes while the class has a free block; blocking when
 * a class grows, for mid sizes and for huge sizes.
 */
LFP_API void *lfp_heap_malloc(lfp_heap_t *h, size_t n) LFP_MALLOC_LIKE LFP_WARN_UNUSED;

/**
 * Free p (NULL: no-op). errno is never touched.
 * @return 0; -EINVAL p is not a block of h; -EALREADY p is already free
 *         (always detected in a class pool; in the fallback heap with
 *         LFP_HEAP_CHECKED). On error nothing changes.
 * Concurrency, Ordering: as lfp_heap_malloc. Progress: lock-free for class
 * sizes (one RCU read section, a directory search, the pool's free).
 */
LFP_API int lfp_heap_free(lfp_heap_t *h, void *p);

/** calloc on h: ENOMEM on overflow; the block reads as zero.
 * Concurrency, Ordering, Progress: as lfp_heap_malloc. */
LFP_API void *lfp_heap_calloc(lfp_heap_t *h, size_t n, size_t size)
	LFP_MALLOC_LIKE LFP_WARN_UNUSED;

/**
 * realloc on h (shared semantics above). Stays in place when the new size
 * is served by the same class, or by the fallback heap in place; a huge
 * block is resized with mremap (no copy).
 * @return the block, or NULL: ENOMEM (p intact), EINVAL (p not a live
 *         block of h, nothing changes), or n == 0 (p freed, errno intact).
 * Concurrency, Ordering: as lfp_heap_malloc. Progress: as malloc + free,
 * plus a copy when the block changes owner or class.
 */
LFP_API void *lfp_heap_realloc(lfp_heap_t *h, void *p, size_t n) LFP_WARN_UNUSED;

/**
 * aligned_alloc on h: align a power of two (EINVAL otherwise, or above
 * 1 GiB); any n. Alignments up to 16 come from the classes, larger ones
 * from the fallback heap or an aligned mapping. @return the block or NULL
 * with errno. Concurrency, Ordering: as lfp_heap_malloc. Progress: lock-free
 * up to 16-byte alignment for class sizes, else blocking.
 */
LFP_API void *lfp_heap_aligned_alloc(lfp_heap_t *h, size_t align, size_t n)
	LFP_MALLOC_LIKE LFP_WARN_UNUSED;

/** Usable bytes of live block p (>= the size asked for); 0 for NULL or a
 * pointer that is not a block of h. Concurrency: any. Progress: lock-free
 * for class blocks, blocking (lock) for fallback-heap blocks. */
LFP_API size_t lfp_heap_usable_size(lfp_heap_t *h, const void *p);

/**
 * Retire every class pool that is completely free (its memory goes back to
 * the fallback heap, which returns large free ranges to the kernel) and
 * release free pages of the fallback heap. With LFP_HEAP_DEPOT the class
 * depots are emptied into the pools first. The caller's own cache is
 * flushed first; pools that other threads own (the default mode) or whose
 * blocks sit in other threads' bins are not retired until those threads
 * give them up (lfp_heap_cache_flush, a heap switch, or their exit).
 * @return the number of pools retired, or -EINVAL.
 * Concurrency: any (serialized internally). Progress: blocking (waits for
 * RCU grace periods).
 */
LFP_API int lfp_heap_trim(lfp_heap_t *h);

/**
 * Give the calling thread's cache of h back. With owned pools (the
 * default) the thread gives up every pool it owns: each pool's own free
 * list goes onto its shared stack (a walk of the list and one CAS), and
 * any thread may then claim the pool or trim retire it. With bins
 * (LFP_HEAP_BINS) the few freed blocks per class it keeps go back to their
 * pools (one CAS per pool). The thread does this by itself at exit and when
 * it switches to another heap, and lfp_heap_trim flushes its caller's cache
 * first (docs/frontend.md, "The thread cache"). Call it before a thread
 * parks for long, so that trim can retire what it holds; the next call
 * after it claims or grows pools again, so do not call it in a loop.
 * @return 0, or -EINVAL (h not a live heap).
 * Concurrency: any thread, for itself. Progress: lock-free (one CAS per
 * pool; owned pools: plus a walk of each own list).
 */
LFP_API int lfp_heap_cache_flush(lfp_heap_t *h);

/** Fill *out. @return 0 or -EINVAL. Concurrency: any (relaxed snapshots).
 * Progress: blocking (the fallback heap's lock). */
LFP_API int lfp_heap_stats(lfp_heap_t *h, lfp_heap_stats_t *out);

/** Full check of a quiescent front end: every pool validates, the
 * directory and page map match the class lists, the fallback and metadata
 * heaps validate. @return 0, -EINVAL, or -EUCLEAN (why set if not NULL).
 * Concurrency: none (the caller stops every other call). Progress: O(blocks). */
LFP_API int lfp_heap_validate(lfp_heap_t *h, const char **why);

/* ---- the process-wide default heap --------------------------------------
 * Created on first use with the default configuration (or the one given to
 * lfp_default_heap_configure before that use). Never destroyed.
 */

/**
 * Configure the default heap before its first use.
 * @return 0; -EBUSY if it already exists; -EINVAL for a bad config.
 */
LFP_API int lfp_default_heap_configure(const lfp_heap_config_t *cfg);
/** The default heap (created now if needed), or NULL with errno ENOMEM. */
LFP_API lfp_heap_t *lfp_default_heap(void);

/**
 * malloc on the default heap (lfp_heap_malloc; n == 0 gives a minimum block).
 * @return the block, or NULL with errno ENOMEM (also when the default heap
 *         cannot be created).
 * Concurrency, Ordering, Progress: as lfp_heap_malloc.
 */
LFP_API void *lfp_malloc(size_t n) LFP_MALLOC_LIKE LFP_WARN_UNUSED;
/**
 * free on the default heap; NULL is a no-op and errno is preserved. A bad
 * free is counted and ignored (or aborts with LFP_HEAP_ABORT_ON_BAD_FREE);
 * the heap stays intact.
 * Concurrency, Ordering, Progress: as lfp_heap_free.
 */
LFP_API void lfp_free(void *p);
/**
 * calloc on the default heap: every byte reads as zero, reused blocks too.
 * @return the block, or NULL with errno ENOMEM (n * size overflows, or no
 *         memory).
 * Concurrency, Ordering, Progress: as lfp_heap_calloc.
 */
LFP_API void *lfp_calloc(size_t n, size_t size) LFP_MALLOC_LIKE LFP_WARN_UNUSED;
/**
 * realloc on the default heap (lfp_heap_realloc): realloc(NULL, n) is
 * malloc(n); realloc(p, 0) frees p and returns NULL with errno untouched.
 * @return the block, or NULL with errno ENOMEM (p intact) or EINVAL (p not a
 *         live block; nothing changes).
 * Concurrency, Ordering, Progress: as lfp_heap_realloc.
 */
LFP_API void *lfp_realloc(void *p, size_t n) LFP_WARN_UNUSED;
/**
 * aligned_alloc on the default heap: align a power of two up to 1 GiB, any n.
 * @return the block, or NULL with errno EINVAL (bad align) or ENOMEM.
 * Concurrency, Ordering, Progress: as lfp_heap_aligned_alloc.
 */
LFP_API void *lfp_aligned_alloc(size_t align, size_t n) LFP_MALLOC_LIKE LFP_WARN_UNUSED;
/**
 * posix_memalign on the default heap; *out untouched on error, errno never
 * touched.
 * @return 0, EINVAL (align not a power-of-two multiple of sizeof(void *))
 *         or ENOMEM.
 * Concurrency, Ordering, Progress: as lfp_heap_aligned_alloc.
 */
LFP_API int lfp_posix_memalign(void **out, size_t align, size_t n);
/**
 * malloc_usable_size on the default heap: usable bytes of a live block (at
 * least the size asked for).
 * @return that, or 0 for NULL or a pointer that is not a block.
 * Concurrency, Progress: as lfp_heap_usable_size.
 */
LFP_API size_t lfp_malloc_usable_size(const void *p);

#ifdef __cplusplus
}
#endif

#endif /* LFPOOL_HEAP_H */
