/*
 * pool/stack.c - the lock-free free-index stack (a Treiber stack).
 *
 * Links live in next[], outside the blocks, so a stale reader never touches a
 * block another thread owns, and the head word {tag:32 | index:32} changes
 * with every successful push or pop. A CAS that saw head {i, t} succeeds only
 * if no push or pop happened since (the tag would have moved), which rules
 * out ABA as long as the tag does not wrap all the way round while one thread
 * sits between its load and its CAS: 2^32 head updates (docs/design.md).
 *
 * Labels (docs/memory-order.md):
 *   R1  push CAS, release: publishes next[i] and the block's contents.
 *   A1  pop's head load, acquire: pairs with R1, so next[head] is current.
 *   A2  pop's CAS (success and failure), acquire: pairs with R1; on failure
 *       the refreshed head is read with acquire so its next[] is current too.
 *   A3  pop's no-op CAS on an out-of-range link (rare path), acq_rel: tells a
 *       stale read from real corruption.
 */
#include "internal.h"

uint32_t lfpi_stack_pop(lfp_pool_t *p)
{
	lfp_atomic_u32 *next = lfpi_next(p);
	const uint64_t count = p->count;
	unsigned spins = 0;
	uint64_t old = lfp_load64_acquire(&p->head); /* A1: pairs with R1 */

	for (;;) {
		uint32_t i = lfp_head_index(old);
		if (i == LFP_NIL)
			return LFPI_POP_EMPTY;
		if (lfpi_unlikely(i >= count))
			return LFPI_POP_CORRUPT;
		/* Relaxed: A1/A2 made the pusher's link store visible; a newer
		 * value only means the head moved and the CAS below fails. */
		uint32_t n = lfp_load32_relaxed(&next[i]);
		if (lfpi_unlikely(n >= count && n != LFP_NIL)) {
			/* A stale head whose block was popped meanwhile (its
			 * link is now LFPI_ALLOC), or a corrupt link. A plain
			 * re-read of the head may legally return the same old
			 * value even though we saw the popper's later store, so
			 * ask with an RMW, which reads the latest head: if a
			 * no-op CAS still succeeds, nobody moved the head since
			 * we read the link, and the link really is corrupt.
			 * A3: acq_rel, so a popper whose CAS follows ours
			 * synchronizes with it and cannot have written the link
			 * we read; pairs with A2/R1. */
			if (lfp_cas64_acq_rel(&p->head, &old, old))
				return LFPI_POP_CORRUPT;
			continue;
		}
		if (lfp_cas64_weak_acquire(&p->head, &old, lfp_head_next(old, n))) /* A2: pairs with R1 */
			return i;
		lfp_backoff(&spins);
	}
}

void lfpi_tagged_push_chain(lfp_atomic_u32 *links, lfp_atomic_u64 *head, uint32_t first,
			    uint32_t last)
{
	unsigned spins = 0;
	/* Relaxed: the value is only the CAS's expectation; R1 publishes. */
	uint64_t old = lfp_load64_relaxed(head);

	for (;;) {
		/* Relaxed: published by the release CAS below (R1). */
		lfp_store32_relaxed(&links[last], lfp_head_index(old));
		if (lfp_cas64_weak_release(head, &old, lfp_head_next(old, first))) /* R1: pairs with A1/A2 (K3/K4 on cache stacks) */
			return;
		lfp_backoff(&spins);
	}
}

void lfpi_stack_push_chain(lfp_pool_t *p, uint32_t first, uint32_t last)
{
	lfpi_tagged_push_chain(lfpi_next(p), &p->head, first, last);
}

void lfpi_stack_push(lfp_pool_t *p, uint32_t i)
{
	lfpi_stack_push_chain(p, i, i);
}
