/*
 * pool/validate.c - full consistency check of a quiescent pool.
 *
 * Walk the free stack from the head (and, for an owned pool of the front
 * end, the owner's list too): every link must be a block index or
 * NIL, and NIL must come within count steps (a singly linked list over count
 * distinct indices that runs longer has a cycle, and an index on it twice
 * implies a cycle, so the step bound checks both). Then every block off the
 * stack must be marked allocated or cached, the cached ones must be exactly
 * the entries of the cache's magazines (pool/cache.c checks those), and
 * free (stacked + cached) + allocated = capacity.
 */
#include "internal.h"

static int fail(lfp_pool_report_t *r, const char *why, uint32_t idx)
{
	r->error = why;
	r->bad_index = idx;
	return -EUCLEAN;
}

int lfp_pool_validate(const lfp_pool_t *pool, lfp_pool_report_t *report)
{
	return lfpi_pool_validate_lists(pool, LFP_NIL, report);
}

int lfpi_pool_validate_lists(const lfp_pool_t *pool, uint32_t list, lfp_pool_report_t *report)
{
	lfp_pool_report_t local, *r = report ? report : &local;
	*r = (lfp_pool_report_t){ .bad_index = UINT32_MAX };
	if (!lfpi_live(pool)) {
		r->error = "not a live pool";
		return -EINVAL;
	}
	const lfp_atomic_u32 *next = lfpi_next(pool);
	const uint64_t count = pool->count;
	r->capacity = count;

	/* Quiescent by contract: relaxed loads see the final values. */
	/* Both lists together hold at most count blocks. Two lists that share
	 * a block share everything after it, their last block too: compare
	 * the last blocks. */
	uint64_t steps = 0;
	uint32_t tail[2] = { LFP_NIL, LFP_NIL };
	for (int k = 0; k < 2; k++) {
		uint32_t i = k == 0 ? lfp_head_index(lfp_load64_acquire(&pool->head)) /* A1: pairs with R1 */
				    : list;
		while (i != LFP_NIL) {
			if (i >= count)
				return fail(r, "free stack link out of range", i);
			if (++steps > count)
				return fail(r, "free stack has a cycle (an index is on it twice)", i);
			tail[k] = i;
			i = lfp_load32_relaxed(&next[i]); /* relaxed: quiescent */
		}
	}
	if (tail[0] != LFP_NIL && tail[0] == tail[1])
		return fail(r, "a block is on both the free stack and the owner's list", tail[0]);
	r->free = steps;
	uint64_t cached_marks = 0, entries = 0, mark_digest = 0, entry_digest = 0, heads = 0;
	for (uint64_t b = 0; b < count; b++) {
		uint32_t v = lfp_load32_relaxed(&next[b]); /* relaxed: quiescent */
		if (v == LFPI_ALLOC || v == LFPI_HELD) /* HELD: in a front-end thread cache */
			r->allocated++;
		else if (v == LFPI_CACHED) {
			cached_marks++;
			mark_digest += lfpi_index_hash((uint32_t)b);
		}
		else if (v == LFPI_FREEING)
			return fail(r, "block caught mid-free (pool not quiescent?)", (uint32_t)b);
	}
	if (pool->cache_slots) {
		int rc = lfpi_cache_validate(pool, r, &entries, &entry_digest, &heads);
		if (rc < 0)
			return rc;
	}
	if (entries != cached_marks || entry_digest != mark_digest)
		return fail(r, "blocks marked cached != magazine entries (a cached block is lost "
			       "or held twice)", UINT32_MAX);
	r->cached = entries + heads;
	r->free += entries + heads;
	/* A stacked block marked allocated failed the walk above, so
	 * free + allocated <= count here. */
	r->other = count - r->free - r->allocated;
	if (r->free + r->allocated > count || r->other != 0)
		return fail(r, "free + allocated != capacity (a block is lost)",
			    UINT32_MAX);
	return 0;
}
