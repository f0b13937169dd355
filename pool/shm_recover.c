/*
 * pool/shm_recover.c - counting a segment, and recovering what dead
 * participants held.
 *
 * Exact mode (LFP_SHM_EXACT, LFP_SHM_RECOVER):
 *   1. take the segment's recovery lock (S7): a CAS from 0 to our identity,
 *      or from the identity of a dead holder (a recoverer that died: its
 *      work is redone, recovery is idempotent);
 *   2. set STOP on every slot's gate (S5), so no participant enters a
 *      shared-stack operation;
 *   3. classify slots: free, live, dead (process gone, zombie, or pid reused),
 *      departed (detached while owning blocks);
 *   4. wait (bounded) until no live participant is inside the gate; a dead
 *      one's count is its in-flight journal;
 *   5. walk the free stack into a bitmap, then read every owner word. With
 *      nobody inside the gate each block is exactly one of: on the stack,
 *      recorded for a slot, or an orphan (owner 0, off the stack) - and an
 *      orphan can only be a dead participant's in-flight block (see
 *      pool/shm_internal.h);
 *   6. with RECOVER: set the owner of every orphan and of every block held
 *      by a dead, departed or free slot to 0, chain them through next[] and
 *      push the chain in one CAS; reset and free those slots (S10);
 *   7. run lfp_pool_validate() while the world is still stopped;
 *   8. clear every STOP (S6) and release the lock (S8).
 * Nothing is changed if the scan finds corruption (a bad free-stack link, a
 * block on the stack that also has an owner) or a live participant stays
 * inside an operation past the timeout.
 *
 * Snapshot mode (no flag): steps 3 and 5 only, without stopping anyone. The
 * figures are a snapshot; "orphans" then include live operations in flight.
 *
 * Labels (docs/memory-order.md):
 *   S5  STOP fetch_or, acq_rel, then acquire loads of the count: pair with
 *       S4 (the participants' release decrements) - their writes before
 *       leaving the gate happen before our scan.
 *   S6  STOP clear, acq_rel CAS (release part): pairs with S3 in the
 *       participants - our reclaim happens before their next operation.
 *   S7  lock CAS, acq_rel: acquire pairs with S8 of the previous holder.
 *   S8  lock release store, release: pairs with S7 and the gate waiters'
 *       acquire load of the lock.
 *   S10 slot freed, release store: pairs with S9 in the next claimer.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "shm_internal.h"

#include <stdlib.h>
#include <string.h>

/* Negative-control builds only (mk/shm.mk, test-shm-negative): 1 forgets
 * orphans, 2 does not stop the world. The tests must catch both. */
#ifndef LFP_SHM_TEST_BREAK
#define LFP_SHM_TEST_BREAK 0
#endif

struct slot_scan {
	uint64_t ident;
	uint32_t state;
	uint32_t in_flight;
	uint32_t last_op;
	uint64_t owned, cached, orphans;
};

static int lock_take(lfp_shm_t *s, bool *interrupted)
{
	lfp_atomic_u64 *lock = &s->shdr->recovery_lock;
	uint64_t cur = 0;

	if (lfp_cas64_acq_rel(lock, &cur, s->ident)) /* S7: pairs with S8 */
		return 0;
	if (cur == s->ident || lfpi_shm_ident_alive(cur))
		return -EBUSY; /* another thread of ours, or a live process */
	if (lfp_cas64_acq_rel(lock, &cur, s->ident)) { /* S7: take over from the dead */
		*interrupted = true;
		return 0;
	}
	return -EBUSY;
}

static void lock_release(lfp_shm_t *s)
{
	lfp_store64_release(&s->shdr->recovery_lock, 0); /* S8: pairs with S7 */
}

static void stop_all(lfp_shm_t *s)
{
	if (LFP_SHM_TEST_BREAK == 2)
		return;
	for (uint32_t i = 0; i < s->hdr.max_parts; i++)
		lfp_fetch_or32_acq_rel(&s->parts[i].gate, LFPI_GATE_STOP); /* S5: pairs with S4 */
}

static void release_all(lfp_shm_t *s)
{
	for (uint32_t i = 0; i < s->hdr.max_parts; i++) {
		lfp_atomic_u32 *g = &s->parts[i].gate;
		uint32_t v = lfp_load32_relaxed(g); /* relaxed: the CAS's expectation */
		/* S6: an RMW, not a store: a participant that left a just
		 * freed slot may still be decrementing its count. acq_rel's
		 * release part pairs with S3; failure retries. */
		while (!lfp_cas32_acq_rel(g, &v, v & ~LFPI_GATE_STOP))
			;
	}
}

static void classify(lfp_shm_t *s, struct slot_scan *sl)
{
	for (uint32_t i = 0; i < s->hdr.max_parts; i++) {
		struct lfpi_shm_part *pt = &s->parts[i];
		uint64_t id = lfp_load64_acquire(&pt->ident); /* S10': pairs with S9/S10 */
		sl[i].ident = id;
		if (id == 0)
			sl[i].state = LFP_SHM_PART_FREE;
		else if (id & LFPI_ID_DEPARTED)
			sl[i].state = LFP_SHM_PART_DEPARTED;
		else if ((int)i == s->self || lfpi_shm_ident_alive(id))
			sl[i].state = LFP_SHM_PART_LIVE;
		else
			sl[i].state = LFP_SHM_PART_DEAD;
		sl[i].last_op = lfp_load32_relaxed(&pt->op); /* relaxed: diagnostic */
	}
}

/* Wait until no live participant is inside the gate. 0 or -ETIMEDOUT. */
static int drain(lfp_shm_t *s, struct slot_scan *sl)
{
	uint64_t deadline = lfpi_shm_now_ns() + (uint64_t)s->timeout_ms * 1000000u;
	for (uint32_t i = 0; i < s->hdr.max_parts; i++) {
		unsigned round = 0;
		if (sl[i].state != LFP_SHM_PART_LIVE || LFP_SHM_TEST_BREAK == 2)
			continue;
		/* S5: acquire; pairs with S4 (release decrements). */
		while (lfp_load32_acquire(&s->parts[i].gate) & LFPI_GATE_COUNT) {
			if ((int)i != s->self && !lfpi_shm_ident_alive(sl[i].ident)) {
				sl[i].state = LFP_SHM_PART_DEAD; /* died while we waited */
				break;
			}
			if (lfpi_shm_now_ns() > deadline)
				return -ETIMEDOUT;
			lfpi_shm_pause(&round);
		}
	}
	for (uint32_t i = 0; i < s->hdr.max_parts; i++)
		if (sl[i].state == LFP_SHM_PART_DEAD) /* relaxed: a dead process writes no more */
			sl[i].in_flight = lfp_load32_relaxed(&s->parts[i].gate) & LFPI_GATE_COUNT;
	return 0;
}

static bool slot_gone(uint32_t state)
{
	return state != LFP_SHM_PART_LIVE;
}

/* Does block b go back to the stack? (o: its owner word; not on the stack) */
static bool to_reclaim(const struct slot_scan *sl, uint32_t np, uint32_t o)
{
	uint32_t tag = o & LFPI_OWN_TAG_MASK;
	if (o == 0)
		return LFP_SHM_TEST_BREAK != 1; /* an orphan */
	if ((o & ~(LFPI_OWN_TAG_MASK | LFPI_OWN_CACHED)) || tag == 0 || tag > np)
		return true; /* a word no participant could write */
	return slot_gone(sl[tag - 1].state);
}

static const char *scan_blocks(lfp_shm_t *s, struct slot_scan *sl, const uint64_t *onstack,
			       bool exact, lfp_shm_report_t *rep)
{
	const uint32_t np = s->hdr.max_parts;
	const char *err = NULL;

	for (uint64_t b = 0; b < s->count; b++) {
		/* relaxed: exact mode reads after S5 made every writer's
		 * last store visible; a snapshot is only a snapshot */
		uint32_t o = lfp_load32_relaxed(&s->owner[b]);
		uint32_t tag = o & LFPI_OWN_TAG_MASK;
		if (onstack[b / 64] >> (b % 64) & 1) {
			if (o != 0 && exact && err == NULL)
				err = "a block on the free stack also has an owner";
			continue;
		}
		if (o == 0) {
			rep->orphans++;
			continue;
		}
		if ((o & ~(LFPI_OWN_TAG_MASK | LFPI_OWN_CACHED)) || tag == 0 || tag > np ||
		    sl[tag - 1].state == LFP_SHM_PART_FREE) {
			rep->unexplained++; /* a stray owner word */
			continue;
		}
		struct slot_scan *p = &sl[tag - 1];
		bool cached = (o & LFPI_OWN_CACHED) != 0;
		if (cached)
			p->cached++;
		else
			p->owned++;
		if (p->state == LFP_SHM_PART_LIVE) {
			if (cached)
				rep->cached++;
			else
				rep->owned++;
		} else if (cached) {
			rep->dead_cached++;
		} else {
			rep->dead_owned++;
		}
	}
	return err;
}

/* Free-stack walk into the bitmap. NULL or why it is broken. */
static const char *walk_stack(lfp_shm_t *s, uint64_t *onstack, uint64_t *free_out)
{
	const lfp_atomic_u32 *next = lfpi_next(s->pool);
	uint32_t i = lfp_head_index(lfp_load64_acquire(&s->pool->head)); /* A1: pairs with R1 */
	uint64_t steps = 0;

	*free_out = 0;
	while (i != LFP_NIL) {
		if (i >= s->count)
			return "free stack link out of range";
		if (onstack[i / 64] >> (i % 64) & 1)
			return "free stack has a cycle (an index is on it twice)";
		onstack[i / 64] |= UINT64_C(1) << (i % 64);
		steps++;
		i = lfp_load32_relaxed(&next[i]); /* relaxed: stopped world, or a snapshot */
	}
	*free_out = steps;
	return NULL;
}

/* Step 6: push every block to_reclaim() picks, in one chain. */
static uint64_t reclaim(lfp_shm_t *s, const struct slot_scan *sl, const uint64_t *onstack)
{
	lfp_atomic_u32 *next = lfpi_next(s->pool);
	uint32_t first = LFP_NIL, prev = LFP_NIL;
	uint64_t n = 0;

	for (uint64_t b = 0; b < s->count; b++) {
		if (onstack[b / 64] >> (b % 64) & 1)
			continue;
		uint32_t o = lfp_load32_relaxed(&s->owner[b]); /* relaxed: stopped world */
		if (!to_reclaim(sl, s->hdr.max_parts, o))
			continue;
		/* A kill of this recoverer from here on leaves orphans that
		 * the next recovery (taking over our lock) finds again. */
		lfp_store32_relaxed(&s->owner[b], 0); /* relaxed: published by R1 and S6 */
		if (prev != LFP_NIL)
			lfp_store32_relaxed(&next[prev], (uint32_t)b); /* relaxed: published by R1 */
		else
			first = (uint32_t)b;
		prev = (uint32_t)b;
		n++;
	}
	if (n > 0)
		lfpi_stack_push_chain(s->pool, first, prev);
	return n;
}

int lfpi_shm_scan(lfp_shm_t *s, unsigned flags, lfp_shm_report_t *rep)
{
	if (!lfpi_shm_usable(s) || rep == NULL ||
	    (flags & ~(unsigned)(LFP_SHM_EXACT | LFP_SHM_RECOVER)))
		return -EINVAL;
	if (flags & LFP_SHM_RECOVER)
		flags |= LFP_SHM_EXACT;
	const bool exact = flags & LFP_SHM_EXACT, recover = flags & LFP_SHM_RECOVER;
	const uint32_t np = s->hdr.max_parts;
	lfp_shm_part_info_t *parts = rep->parts;
	size_t parts_cap = rep->parts ? rep->parts_cap : 0;
	bool interrupted = false, locked = false;
	const char *err = NULL;
	int rc = 0;

	*rep = (lfp_shm_report_t){ .parts = parts, .parts_cap = parts_cap,
				   .capacity = s->count, .exact = exact, .validate = -EAGAIN };
	struct slot_scan *sl = calloc(np, sizeof *sl);
	uint64_t *onstack = calloc((size_t)((s->count + 63) / 64), sizeof *onstack);
	if (sl == NULL || onstack == NULL) {
		rc = -ENOMEM;
		rep->error = "out of memory for the scan";
		goto out;
	}
	if (exact) {
		rc = lock_take(s, &interrupted);
		if (rc < 0) {
			rep->error = "another live process is recovering";
			goto out;
		}
		locked = true;
		stop_all(s);
	}
	classify(s, sl);
	if (exact) {
		rc = drain(s, sl);
		if (rc < 0) {
			rep->error = "a live participant stayed inside an operation past the timeout";
			goto out;
		}
	}
	err = walk_stack(s, onstack, &rep->free);
	if (err != NULL && !exact) {
		/* A running pool moved under the walk: count what we have. */
		err = NULL;
	}
	if (err == NULL)
		err = scan_blocks(s, sl, onstack, exact, rep);
	if (err != NULL) {
		rc = -EUCLEAN;
		rep->error = err;
		goto out;
	}

	/* Attribute orphans (exact: they can only be dead participants' in-flight
	 * blocks, or an interrupted recovery's). */
	uint32_t with_flight = 0, last = 0;
	for (uint32_t i = 0; i < np; i++)
		if (sl[i].state == LFP_SHM_PART_DEAD && sl[i].in_flight > 0) {
			with_flight++;
			last = i;
		}
	if (exact && rep->orphans > 0) {
		if (with_flight == 1)
			sl[last].orphans = rep->orphans;
		else if (with_flight == 0 && !interrupted)
			rep->unexplained += rep->orphans;
	}

	if (recover) {
		uint64_t n = reclaim(s, sl, onstack);
		rep->reclaimed = n;
		rep->free += n;
		for (uint32_t i = 0; i < np; i++) {
			if (!slot_gone(sl[i].state) || sl[i].state == LFP_SHM_PART_FREE)
				continue;
			struct lfpi_shm_part *pt = &s->parts[i];
			/* Drop the dead one's count; STOP stays until S6. */
			lfp_store32_relaxed(&pt->gate, LFPI_GATE_STOP); /* relaxed: published by S10 */
			lfp_store32_relaxed(&pt->op, LFP_SHM_OP_NONE); /* relaxed: diagnostic */
			lfp_store64_release(&pt->ident, 0); /* S10: pairs with S9 */
		}
		lfp_fetch_add64_relaxed(&s->shdr->recoveries, 1); /* relaxed: statistics */
		lfp_fetch_add64_relaxed(&s->shdr->reclaimed, n);  /* relaxed: statistics */
	}
	/* Orphans keep stale links until reclaimed, so validate only then. */
	if (exact && (recover || rep->orphans == 0)) {
		lfp_pool_report_t pr;
		rep->validate = lfp_pool_validate(s->pool, &pr);
		if (rep->validate < 0) {
			rc = -EUCLEAN;
			rep->error = pr.error;
		}
	}
	if (rc == 0 && exact && rep->unexplained > 0)
		rep->error = "blocks neither free nor owned that no dead participant accounts for";

out:
	if (sl != NULL) {
		for (uint32_t i = 0; i < np; i++) {
			if (sl[i].state == LFP_SHM_PART_FREE)
				continue;
			rep->live += sl[i].state == LFP_SHM_PART_LIVE;
			rep->dead += sl[i].state == LFP_SHM_PART_DEAD;
			rep->departed += sl[i].state == LFP_SHM_PART_DEPARTED;
			if (rep->parts_len < parts_cap)
				parts[rep->parts_len] = (lfp_shm_part_info_t){
					.id = i,
					.state = sl[i].state,
					.pid = (int64_t)(sl[i].ident & LFPI_ID_PID_MASK),
					.start_time = (sl[i].ident >> LFPI_ID_PID_BITS) &
						      LFPI_ID_START_MASK,
					.owned = sl[i].owned,
					.cached = sl[i].cached,
					.orphans = sl[i].orphans,
					.in_flight = sl[i].in_flight,
					.last_op = sl[i].last_op,
					.reclaimed = recover && rc == 0 && slot_gone(sl[i].state),
				};
			rep->parts_len++;
		}
	}
	if (locked) {
		release_all(s);
		lock_release(s);
	}
	free(sl);
	free(onstack);
	return rc;
}

int lfp_shm_inspect(lfp_shm_t *s, unsigned flags, lfp_shm_report_t *rep)
{
	return lfpi_shm_scan(s, flags, rep);
}

int lfp_shm_recover(lfp_shm_t *s, lfp_shm_report_t *rep)
{
	lfp_shm_report_t local = { 0 };
	return lfpi_shm_scan(s, LFP_SHM_RECOVER, rep ? rep : &local);
}
