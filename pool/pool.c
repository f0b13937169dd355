/*
 * pool/pool.c - the public alloc/free entry points and queries.
 *
 * alloc pops an index from the free stack (pool/stack.c) and marks its link
 * word LFPI_ALLOC; free checks that mark (the double-free check), then pushes.
 * In LFP_POOL_CHECKED mode the check is a CAS ALLOC -> FREEING, so of two
 * threads racing to free one block exactly one wins; otherwise it is a relaxed
 * load, which costs nothing and still catches every sequential double free.
 *
 * A pool with a per-thread cache (pool/cache.c) puts it in front: alloc and
 * free look up the calling thread's cache (a thread-local table) and go to
 * the shared stack only through it, or directly when the thread has no
 * cache slot.
 */
#include "internal.h"

void lfpi_count_alloc(lfp_pool_t *p)
{
	/* Relaxed: statistics order nothing. */
	uint64_t n = lfp_fetch_add64_relaxed(&p->n_alloc, 1) + 1;
	uint64_t in_use = n - lfp_load64_relaxed(&p->n_free); /* relaxed: statistics */
	uint64_t hw = lfp_load64_relaxed(&p->high_water);     /* relaxed: statistics */
	/* A lost race between two raisers keeps the larger value. */
	while (in_use > hw && in_use <= p->count &&
	       !lfp_cas64_weak_relaxed(&p->high_water, &hw, in_use)) /* relaxed: statistics */
		;
}

void *lfp_pool_alloc(lfp_pool_t *pool)
{
	if (lfpi_unlikely(!lfpi_live(pool))) {
		errno = EINVAL;
		return NULL;
	}
	if (pool->cache_slots) {
		struct lfp_cache *c = lfpi_cache_get(pool);
		if (lfpi_likely(c != NULL))
			return lfp_cache_alloc(c);
	}
	return lfpi_pool_alloc_uncached(pool);
}

void *lfpi_pool_alloc_uncached(lfp_pool_t *pool)
{
	uint32_t i = lfpi_stack_pop(pool);
	/* A thread without a cache slot may find the stack empty while other
	 * threads' home stacks hold free blocks: move some over and retry. */
	while (lfpi_unlikely(i == LFPI_POP_EMPTY) && pool->cache_slots && lfpi_cache_rescue(pool))
		i = lfpi_stack_pop(pool);
	if (lfpi_unlikely(i >= LFPI_POP_CORRUPT)) {
		lfp_fetch_add64_relaxed(&pool->n_fail, 1); /* relaxed: statistics */
		errno = i == LFPI_POP_EMPTY ? ENOMEM : EUCLEAN;
		return NULL;
	}
	/* Relaxed: the block is ours; this mark is read by our own free or by
	 * a thread we hand the block to (ordered by that hand-off). */
	lfp_store32_relaxed(&lfpi_next(pool)[i], LFPI_ALLOC);
	if (pool->flags & LFP_POOL_STATS)
		lfpi_count_alloc(pool);
	return lfpi_ptr(pool, i);
}

int lfp_pool_free(lfp_pool_t *pool, void *ptr)
{
	if (lfpi_unlikely(!lfpi_live(pool)))
		return -EINVAL;
	if (ptr == NULL)
		return 0;
	if (pool->cache_slots) {
		struct lfp_cache *c = lfpi_cache_get(pool);
		if (lfpi_likely(c != NULL))
			return lfp_cache_free(c, ptr);
	}
	return lfpi_pool_free_uncached(pool, ptr);
}

int lfpi_pool_free_uncached(lfp_pool_t *pool, void *ptr)
{
	int64_t i = lfpi_index(pool, ptr);
	if (lfpi_unlikely(i < 0))
		return -EINVAL;
	lfp_atomic_u32 *link = &lfpi_next(pool)[i];
	if (pool->flags & LFP_POOL_CHECKED) {
		uint32_t expect = LFPI_ALLOC;
		/* Relaxed: only atomicity matters, one freer wins; the push's
		 * R1 publishes everything else. */
		if (!lfp_cas32_relaxed(link, &expect, LFPI_FREEING))
			return -EALREADY;
	} else if (lfp_load32_relaxed(link) != LFPI_ALLOC) { /* relaxed: our own or handed-off mark */
		return -EALREADY;
	}
	if (pool->flags & LFP_POOL_STATS)
		lfp_fetch_add64_relaxed(&pool->n_free, 1); /* relaxed: statistics */
	lfpi_stack_push(pool, (uint32_t)i);
	return 0;
}

int64_t lfp_pool_index(const lfp_pool_t *pool, const void *ptr)
{
	if (!lfpi_live(pool) || ptr == NULL)
		return -EINVAL;
	return lfpi_index(pool, ptr);
}

void *lfp_pool_ptr(const lfp_pool_t *pool, uint32_t index)
{
	if (!lfpi_live(pool) || index >= pool->count)
		return NULL;
	return lfpi_ptr(pool, index);
}

bool lfp_pool_contains(const lfp_pool_t *pool, const void *ptr)
{
	if (!lfpi_live(pool))
		return false;
	uintptr_t lo = (uintptr_t)lfpi_blocks(pool);
	return (uintptr_t)ptr >= lo && (uintptr_t)ptr - lo < pool->stride * pool->count;
}

size_t lfp_pool_capacity(const lfp_pool_t *pool)
{
	return lfpi_live(pool) ? (size_t)pool->count : 0;
}

size_t lfp_pool_block_size(const lfp_pool_t *pool)
{
	return lfpi_live(pool) ? (size_t)pool->stride : 0;
}

/* Length of the free stack by a walk bounded by count: while others run it
 * may follow a stale link, so it is a snapshot; quiescent, it is exact. */
static uint64_t walk_free(const lfp_pool_t *p)
{
	const lfp_atomic_u32 *next = lfpi_next(p);
	uint32_t i = lfp_head_index(lfp_load64_acquire(&p->head)); /* A1: pairs with R1 */
	uint64_t n = 0;
	while (i < p->count && n < p->count) {
		n++;
		i = lfp_load32_relaxed(&next[i]); /* relaxed: a snapshot */
	}
	return n;
}

size_t lfp_pool_free_count(const lfp_pool_t *pool)
{
	if (!lfpi_live(pool))
		return 0;
	/* With LFP_POOL_STATS the counters count the callers' allocs and frees
	 * (cached ones too), so cached blocks are free in both branches. */
	if (pool->flags & LFP_POOL_STATS) {
		/* Relaxed: a snapshot; read frees first so in_use never
		 * underflows from our own ordering of the two loads. */
		uint64_t f = lfp_load64_relaxed(&pool->n_free);
		uint64_t a = lfp_load64_relaxed(&pool->n_alloc); /* relaxed: a snapshot */
		uint64_t in_use = a >= f ? a - f : 0;
		return in_use >= pool->count ? 0 : (size_t)(pool->count - in_use);
	}
	uint64_t n = walk_free(pool) + (pool->cache_slots ? lfpi_cache_count(pool) : 0);
	return (size_t)(n < pool->count ? n : pool->count);
}

int lfp_pool_stats(const lfp_pool_t *pool, lfp_pool_stats_t *out)
{
	if (!lfpi_live(pool) || out == NULL)
		return -EINVAL;
	/* Relaxed loads throughout: counters are independent snapshots. */
	out->frees = lfp_load64_relaxed(&pool->n_free);
	out->allocs = lfp_load64_relaxed(&pool->n_alloc);        /* relaxed: a snapshot */
	out->failures = lfp_load64_relaxed(&pool->n_fail);       /* relaxed: a snapshot */
	out->high_water = lfp_load64_relaxed(&pool->high_water); /* relaxed: a snapshot */
	out->in_use = out->allocs >= out->frees ? out->allocs - out->frees : 0;
	out->capacity = pool->count;
	out->free = lfp_pool_free_count(pool);
	out->cached = pool->cache_slots ? lfpi_cache_count(pool) : 0;
	if (!(pool->flags & LFP_POOL_STATS))
		out->in_use = pool->count - out->free;
	return 0;
}
