/*
 * pool/bulk.c - lfp_pool_alloc_bulk / lfp_pool_free_bulk: many blocks, few
 * CAS.
 *
 * With a per-thread cache both go through the calling thread's magazines
 * (pool/cache.c), so whole magazines move with one CAS each. Without one
 * (LFP_POOL_NO_CACHE, or no free slot), alloc pops chains of up to CHUNK
 * blocks off the free stack with one CAS each (lfpi_stack_pop_chain), and
 * free links the whole batch into one chain and pushes it with one CAS.
 *
 * Free is all-or-nothing: every pointer is range-checked first, then every
 * block's state word goes LFPI_ALLOC -> (LFPI_CACHED or LFPI_FREEING) one by
 * one; a block already free, or named twice, stops that pass and the words
 * changed so far are put back, so nothing changes hands on an error.
 *
 * Labels: K2 (pool/cache.c) for the state words; the chain push is R1
 * (pool/stack.c), which publishes the links and the blocks' contents.
 */
#include "internal.h"

#define CHUNK 256u

/* Does the calling thread put freed blocks into a cache of p? */
static bool thread_cached(lfp_pool_t *p)
{
	if (p->cache_slots == 0)
		return false;
	/* An empty put only looks the thread's cache up (making it if need be). */
	return lfpi_cache_put(p, NULL, 0) == 0;
}

int64_t lfp_pool_alloc_bulk(lfp_pool_t *pool, void **out, size_t n)
{
	uint32_t idx[CHUNK];
	size_t got = 0;
	int err = 0;

	if (!lfpi_live(pool) || (out == NULL && n > 0))
		return -EINVAL;
	lfp_atomic_u32 *next = lfpi_next(pool);
	while (got < n) {
		uint32_t want = n - got < CHUNK ? (uint32_t)(n - got) : CHUNK, k;
		int64_t t = pool->cache_slots ? lfpi_cache_take(pool, idx, want, &err) : -1;
		if (t >= 0) {
			k = (uint32_t)t;
		} else {
			k = lfpi_stack_pop_chain(pool, idx, want);
			while (k == 0 && pool->cache_slots && lfpi_cache_rescue(pool))
				k = lfpi_stack_pop_chain(pool, idx, want);
			if (k == LFPI_POP_CORRUPT) {
				err = EUCLEAN;
				k = 0;
			} else if (k < want) {
				err = ENOMEM;
			}
			for (uint32_t j = 0; j < k; j++)
				lfp_store32_relaxed(&next[idx[j]], LFPI_ALLOC); /* K2: as lfp_pool_alloc's mark */
		}
		for (uint32_t j = 0; j < k; j++)
			out[got + j] = lfpi_ptr(pool, idx[j]);
		got += k;
		if (k < want)
			break;
	}
	if (got != 0 && (pool->flags & LFP_POOL_STATS)) {
		lfp_fetch_add64_relaxed(&pool->n_alloc, got - 1); /* relaxed: statistics */
		lfpi_count_alloc(pool);                           /* the last one, and the high-water mark */
	}
	if (got < n) {
		lfp_fetch_add64_relaxed(&pool->n_fail, 1); /* relaxed: statistics */
		errno = err ? err : ENOMEM;
	}
	return (int64_t)got;
}

/* Put back the state words of ptrs[0..upto) changed by the mark pass. */
static void unmark(lfp_pool_t *p, void *const *ptrs, size_t upto)
{
	lfp_atomic_u32 *next = lfpi_next(p);
	for (size_t j = 0; j < upto; j++)
		if (ptrs[j] != NULL)
			lfp_store32_relaxed(&next[lfpi_index(p, ptrs[j])], LFPI_ALLOC); /* K2: ours again */
}

int lfp_pool_free_bulk(lfp_pool_t *pool, void *const *ptrs, size_t n)
{
	if (!lfpi_live(pool) || (ptrs == NULL && n > 0))
		return -EINVAL;
	for (size_t j = 0; j < n; j++)
		if (ptrs[j] != NULL && lfpi_index(pool, ptrs[j]) < 0)
			return -EINVAL;

	const bool cached = thread_cached(pool);
	const uint32_t mark = cached ? LFPI_CACHED : LFPI_FREEING;
	lfp_atomic_u32 *next = lfpi_next(pool);
	size_t freed = 0;
	for (size_t j = 0; j < n; j++) {
		if (ptrs[j] == NULL)
			continue;
		lfp_atomic_u32 *link = &next[lfpi_index(pool, ptrs[j])];
		bool ok;
		if (pool->flags & LFP_POOL_CHECKED) {
			uint32_t expect = LFPI_ALLOC;
			ok = lfp_cas32_relaxed(link, &expect, mark); /* K2: one racing freer wins */
		} else {
			ok = lfp_load32_relaxed(link) == LFPI_ALLOC; /* K2 */
			if (ok)
				lfp_store32_relaxed(link, mark); /* K2 */
		}
		if (!ok) {
			unmark(pool, ptrs, j);
			return -EALREADY;
		}
		freed++;
	}
	if (freed == 0)
		return 0;
	if (pool->flags & LFP_POOL_STATS)
		lfp_fetch_add64_relaxed(&pool->n_free, freed); /* relaxed: statistics */

	if (cached) {
		uint32_t idx[CHUNK], k = 0;
		for (size_t j = 0; j < n; j++) {
			if (ptrs[j] == NULL)
				continue;
			idx[k++] = (uint32_t)lfpi_index(pool, ptrs[j]);
			if (k == CHUNK) {
				(void)lfpi_cache_put(pool, idx, k); /* the slot cannot go away meanwhile */
				k = 0;
			}
		}
		if (k)
			(void)lfpi_cache_put(pool, idx, k);
		return 0;
	}
	/* One chain, linked here, pushed with one CAS. */
	uint32_t first = LFP_NIL, last = LFP_NIL;
	for (size_t j = 0; j < n; j++) {
		if (ptrs[j] == NULL)
			continue;
		uint32_t i = (uint32_t)lfpi_index(pool, ptrs[j]);
		if (last != LFP_NIL)
			lfp_store32_relaxed(&next[last], i); /* relaxed: published by R1 */
		else
			first = i;
		last = i;
	}
	lfpi_stack_push_chain(pool, first, last);
	return 0;
}
