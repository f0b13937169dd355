/*
 * tests/test_cache.c - the per-thread cache and the bulk API, single-thread
 * contract plus the few cross-thread facts that need only a join (Criterion).
 *
 * Suites: layout (defaults, limits, NO_CACHE), cached (alloc/free through the
 * cache, errors, double free, modes), handle (lfp_pool_cache and the inline
 * path), flush (blocks flushed by one thread reused by another), exit (a
 * thread that exits with a full cache loses nothing; destroy while a thread
 * keeps a cache), bulk (n = 0, n > free, partial results, all-or-nothing
 * free), recovery (the hidden hooks for shared memory: reclaim a dead slot,
 * sweep orphans) and validate (it catches a planted inconsistency).
 */
#include <criterion/criterion.h>

#include "../pool/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static lfp_pool_config_t cfg(size_t size, size_t count)
{
	return (lfp_pool_config_t){ .block_size = size, .block_count = count };
}

static lfp_pool_t *make(lfp_pool_config_t c)
{
	lfp_pool_t *p = lfp_pool_create(&c);
	cr_assert_not_null(p, "create: %s", strerror(errno));
	return p;
}

static void assert_valid(const lfp_pool_t *p, uint64_t free_expected)
{
	lfp_pool_report_t r;
	int rc = lfp_pool_validate(p, &r);
	cr_assert_eq(rc, 0, "validate: %s (index %u)", r.error ? r.error : "-", r.bad_index);
	cr_assert_eq(r.free, free_expected, "validate free %llu != %llu", (unsigned long long)r.free,
		     (unsigned long long)free_expected);
	cr_assert_eq(lfp_pool_free_count(p), free_expected);
}

/* Take n blocks (into a[]), then give them back in the same order: the
 * frees fill this thread's magazines, home stack and batches. */
static void take_then_give(lfp_pool_t *p, void **a, int n)
{
	for (int i = 0; i < n; i++)
		cr_assert_not_null(a[i] = lfp_pool_alloc(p));
	for (int i = 0; i < n; i++)
		cr_assert_eq(lfp_pool_free(p, a[i]), 0);
}

/* Take every block (one thread), check they are distinct, then the pool is
 * empty (NULL + ENOMEM); give them all back. */
static void cycle_all(lfp_pool_t *p, size_t n)
{
	void **all = calloc(n, sizeof *all);
	cr_assert_not_null(all);
	for (size_t i = 0; i < n; i++) {
		all[i] = lfp_pool_alloc(p);
		cr_assert_not_null(all[i], "alloc %zu of %zu: %s", i, n, strerror(errno));
		int64_t ix = lfp_pool_index(p, all[i]);
		cr_assert_geq(ix, 0);
		memset(all[i], 0xA5, lfp_pool_block_size(p));
	}
	/* distinct: sort-free check through the state words is not public, so
	 * use the indices */
	char *seen = calloc(n, 1);
	for (size_t i = 0; i < n; i++) {
		int64_t ix = lfp_pool_index(p, all[i]);
		cr_assert_eq(seen[ix], 0, "block %lld handed out twice", (long long)ix);
		seen[ix] = 1;
	}
	free(seen);
	errno = 0;
	cr_assert_null(lfp_pool_alloc(p));
	cr_assert_eq(errno, ENOMEM);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(lfp_pool_free(p, all[i]), 0);
	free(all);
}

/* ======================================================================== */
TestSuite(layout);

Test(layout, small_pools_get_no_cache_by_default)
{
	lfp_pool_config_t a = cfg(64, 255), b = cfg(64, 255);
	b.flags = LFP_POOL_NO_CACHE;
	cr_assert_eq(lfp_pool_region_size(&a), lfp_pool_region_size(&b));
	lfp_pool_t *p = make(a);
	cr_assert_eq(p->cache_slots, 0);
	cycle_all(p, 255);
	assert_valid(p, 255);
	lfp_pool_destroy(p);
}

Test(layout, default_cache_shape_and_region_size)
{
	lfp_pool_config_t a = cfg(64, 10000), b = cfg(64, 10000);
	b.flags = LFP_POOL_NO_CACHE;
	size_t with = lfp_pool_region_size(&a), without = lfp_pool_region_size(&b);
	cr_assert_gt(with, without);
	lfp_pool_t *p = make(a);
	cr_assert_eq(p->cache_slots, 9);   /* 10000 / 1024 */
	cr_assert_eq(p->cache_size, 128);  /* pow2_floor(10000 / (8 * 9)) */
	cr_assert_eq(p->n_mags, 79);       /* magazines for the whole pool: ceil(10000 / 128) */
	/* hoard bound: 2 k S <= count / 4 */
	cr_assert_leq(2 * 128 * 9, 10000 / 4);
	/* The documented size of the cache area: slots * 64 + magazines *
	 * (4 + round64(4 + 4 k)), plus alignment. */
	cr_assert_leq(with - without, (size_t)(9 * 64 + 79 * (4 + 576)) + 128);
	lfp_pool_destroy(p);
}

Test(layout, explicit_shape_is_used)
{
	lfp_pool_config_t a = cfg(16, 100);
	a.cache_slots = 3;
	a.cache_size = 7;
	a.cache_depot = 5;
	lfp_pool_t *p = make(a);
	cr_assert_eq(p->cache_slots, 3);
	cr_assert_eq(p->cache_size, 7);
	cr_assert_eq(p->n_mags, 11);
	cycle_all(p, 100);
	assert_valid(p, 100);
	lfp_pool_destroy(p);
}

Test(layout, limits_are_einval)
{
	lfp_pool_config_t a = cfg(16, 1000);
	a.cache_size = LFP_CACHE_MAX_SIZE + 1;
	errno = 0;
	cr_assert_eq(lfp_pool_region_size(&a), 0);
	cr_assert_eq(errno, EINVAL);
	a = cfg(16, 1000);
	a.cache_slots = LFP_CACHE_MAX_SLOTS + 1;
	cr_assert_null(lfp_pool_create(&a));
	cr_assert_eq(errno, EINVAL);
	a = cfg(16, 1000);
	a.cache_slots = 4000;
	a.cache_depot = 60000; /* 2 * 4000 + 60000 > 65535 magazines */
	cr_assert_eq(lfp_pool_region_size(&a), 0);
	cr_assert_eq(errno, EINVAL);
	/* NO_CACHE wins over an explicit shape */
	lfp_pool_config_t b = cfg(16, 1000), c = cfg(16, 1000);
	b.flags = c.flags = LFP_POOL_NO_CACHE;
	b.cache_slots = 8;
	cr_assert_eq(lfp_pool_region_size(&b), lfp_pool_region_size(&c));
}

/* An explicit cache_slots with the default depot stays valid on a big pool:
 * the depot grown to cover the pool is cut to the magazine limit, not
 * refused (it was EINVAL between 0.2.0's depot change and this test). */
Test(layout, explicit_slots_with_the_default_depot_fit_a_big_pool)
{
	lfp_pool_config_t a = cfg(16, (size_t)1 << 20);
	a.cache_slots = 8;
	a.cache_size = 4; /* ceil(count / k) = 262144 magazines wanted */
	lfp_pool_t *p = make(a);
	cr_expect_eq(p->cache_slots, 8);
	cr_expect_eq(p->n_mags, 65535, "the depot is cut to the magazine limit");
	lfp_pool_destroy(p);
	lfp_pool_config_t b = cfg(16, (size_t)1 << 25);
	b.cache_slots = 4;
	errno = 0;
	cr_expect_gt(lfp_pool_region_size(&b), 0, "errno %d", errno);
	/* An explicit depot that does not fit is still refused. */
	b.cache_depot = 65535;
	cr_expect_eq(lfp_pool_region_size(&b), 0);
	cr_expect_eq(errno, EINVAL);
}

Test(layout, init_in_caller_memory_keeps_the_cache_inside)
{
	lfp_pool_config_t c = cfg(32, 1000);
	size_t size = lfp_pool_region_size(&c);
	void *mem = aligned_alloc(64, (size + 63) & ~(size_t)63);
	lfp_pool_t *p;
	cr_assert_eq(lfp_pool_init(mem, size, &c, &p), 0);
	cr_assert_gt(p->cache_slots, 0);
	cr_assert_leq(p->blocks_off + p->count * p->stride, size);
	cr_assert_geq(p->cache_off, p->next_off + 4 * p->count);
	cr_assert_leq(p->mags_off + (uint64_t)p->n_mags * p->mag_stride, p->blocks_off);
	cycle_all(p, 1000);
	assert_valid(p, 1000);
	cr_assert_eq(lfp_pool_destroy(p), 0);
	free(mem);
}

/* ======================================================================== */
TestSuite(cached);

Test(cached, lifo_reuse_hits_the_cache)
{
	lfp_pool_t *p = make(cfg(64, 4096));
	void *a = lfp_pool_alloc(p);
	cr_assert_eq(lfp_pool_free(p, a), 0);
	void *b = lfp_pool_alloc(p);
	cr_assert_eq(a, b, "the block just freed comes back first");
	lfp_pool_stats_t st;
	cr_assert_eq(lfp_pool_stats(p, &st), 0);
	cr_assert_eq(st.free, 4095);
	cr_assert_gt(st.cached, 0, "the refill put blocks in this thread's magazine");
	cr_assert_eq(lfp_pool_free(p, b), 0);
	assert_valid(p, 4096);
	lfp_pool_destroy(p);
}

Test(cached, errors_are_documented)
{
	lfp_pool_t *p = make(cfg(64, 1024));
	char *a = lfp_pool_alloc(p);
	cr_assert_eq(lfp_pool_free(p, NULL), 0);
	cr_assert_eq(lfp_pool_free(p, a + 1), -EINVAL);
	cr_assert_eq(lfp_pool_free(p, a + 64 * 2048), -EINVAL);
	int outside;
	cr_assert_eq(lfp_pool_free(p, &outside), -EINVAL);
	cr_assert_eq(lfp_pool_free(p, a), 0);
	cr_assert_eq(lfp_pool_free(p, a), -EALREADY, "double free into the cache");
	/* a block still on the shared stack (never allocated) */
	cr_assert_eq(lfp_pool_free(p, lfp_pool_ptr(p, 1000)), -EALREADY);
	assert_valid(p, 1024);
	lfp_pool_destroy(p);
}

static void modes_case(unsigned flags, size_t bsize)
{
	lfp_pool_config_t c = cfg(bsize, 2000);
	c.flags = flags;
	c.block_align = 8;
	lfp_pool_t *p = make(c);
	cycle_all(p, 2000);
	assert_valid(p, 2000);
	void *a = lfp_pool_alloc(p);
	cr_assert_eq(lfp_pool_free(p, a), 0);
	cr_assert_eq(lfp_pool_free(p, a), -EALREADY);
	if (flags & LFP_POOL_STATS) {
		lfp_pool_stats_t st;
		lfp_pool_stats(p, &st);
		cr_assert_eq(st.allocs, 2001);
		cr_assert_eq(st.frees, 2001);
		cr_assert_eq(st.in_use, 0);
		cr_assert_eq(st.high_water, 2000);
		cr_assert_eq(st.failures, 1);
		cr_assert_eq(st.free, 2000);
	}
	assert_valid(p, 2000);
	lfp_pool_destroy(p);
}

Test(cached, checked_mode) { modes_case(LFP_POOL_CHECKED, 64); }
Test(cached, stats_mode) { modes_case(LFP_POOL_STATS, 64); }
Test(cached, checked_and_stats) { modes_case(LFP_POOL_CHECKED | LFP_POOL_STATS, 64); }
Test(cached, stride_not_a_power_of_two) { modes_case(0, 40); }
Test(cached, one_byte_blocks) { modes_case(0, 1); }

Test(cached, blocks_too_small_for_batches_spill_chains)
{
	/* stride 4: no room for an in-band batch, so an overflowing magazine
	 * goes back to the free stack as one chain. */
	lfp_pool_config_t c = cfg(4, 600);
	c.block_align = 4;
	c.cache_slots = 1;
	c.cache_size = 8;
	c.cache_depot = 1;
	lfp_pool_t *p = make(c);
	cr_assert_eq(p->stride, 4);
	for (int r = 0; r < 3; r++)
		cycle_all(p, 600);
	assert_valid(p, 600);
	lfp_pool_destroy(p);
}

Test(cached, batches_hold_what_magazines_cannot)
{
	/* 2 slots x 2 magazines + 1 spare of 16: most of the 3000 blocks freed
	 * by one thread travel as in-band batches; validate accounts for them
	 * and another thread gets every block back. */
	lfp_pool_config_t c = cfg(64, 3000);
	c.cache_slots = 2;
	c.cache_size = 16;
	c.cache_depot = 1;
	lfp_pool_t *p = make(c);
	void **all = calloc(3000, sizeof *all);
	take_then_give(p, all, 3000);
	lfp_pool_report_t r;
	cr_assert_eq(lfp_pool_validate(p, &r), 0, "%s", r.error ? r.error : "-");
	cr_assert_eq(r.free, 3000);
	cr_assert_gt(r.cached, 2 * 16 * 2 + 16, "batches hold the rest: cached %llu",
		     (unsigned long long)r.cached);
	lfp_pool_stats_t st;
	lfp_pool_stats(p, &st);
	cr_assert_eq(st.cached, r.cached, "the batch counter agrees when quiescent");
	cr_assert_eq(lfpi_cache_sweep(p), 0, "nothing orphaned");
	assert_valid(p, 3000);
	cycle_all(p, 3000);
	free(all);
	lfp_pool_destroy(p);
}

Test(cached, tiny_magazines_and_depot_overflow)
{
	/* 1-entry magazines, two spare magazines: every flush spills a
	 * chain. (Depot 0 would mean the default: magazines for the whole
	 * pool, 300 of them here.) */
	lfp_pool_config_t c = cfg(16, 300);
	c.cache_slots = 1;
	c.cache_size = 1;
	c.cache_depot = 2;
	lfp_pool_t *p = make(c);
	cr_assert_eq(p->n_mags, 2 + 2);
	for (int r = 0; r < 3; r++)
		cycle_all(p, 300);
	assert_valid(p, 300);
	lfp_pool_destroy(p);
}

static uint64_t batched_blocks(const lfp_pool_t *p)
{
	uint64_t n = lfp_load64_relaxed(&p->batched);
	for (uint32_t s = 0; s < p->cache_slots; s++)
		n += lfp_load64_relaxed(&lfpi_slot_at(p, s)->batched);
	return n;
}

Test(cached, magazines_of_free_slots_serve_the_running_thread)
{
	/* 8 slots x 2 + 1 spare = 17 magazines of 8. Free slots hold none, so
	 * one thread can keep 17 x 8 = 136 freed blocks in magazines, not just
	 * the 3 x 8 of its own two and the spare, and writes no in-band batch
	 * (each batch costs a pack and an unpack of its indices). */
	lfp_pool_config_t c = cfg(64, 400);
	c.cache_slots = 8;
	c.cache_size = 8;
	c.cache_depot = 1;
	lfp_pool_t *p = make(c);
	cr_assert_eq(p->n_mags, 17);
	void *all[136];
	take_then_give(p, all, 136);
	cr_assert_eq(batched_blocks(p), 0, "%llu blocks went to in-band batches",
		     (unsigned long long)batched_blocks(p));
	lfp_pool_report_t r;
	cr_assert_eq(lfp_pool_validate(p, &r), 0, "%s", r.error ? r.error : "-");
	cr_assert_eq(r.cached, 136);
	for (uint32_t s = 0; s < p->cache_slots; s++) {
		const struct lfpi_slot *sl = lfpi_slot_at(p, s);
		if (lfp_load64_relaxed(&sl->owner) == 0) {
			cr_assert_eq(lfp_load32_relaxed(&sl->loaded), LFP_NIL, "free slot %u", s);
			cr_assert_eq(lfp_load32_relaxed(&sl->prev), LFP_NIL, "free slot %u", s);
		}
	}
	cycle_all(p, 400);
	assert_valid(p, 400);
	lfp_pool_destroy(p);
}

static void *claim_and_cycle(void *v)
{
	lfp_pool_t *p = v;
	void *b[40];
	lfp_cache_t *h = lfp_pool_cache(p);
	if (h == NULL)
		return (void *)1;
	uint32_t claimed = 0;
	for (uint32_t s = 0; s < p->cache_slots; s++)
		claimed += lfp_load64_relaxed(&lfpi_slot_at(p, s)->owner) != 0;
	if (claimed != 2)
		return (void *)2; /* this thread did not get the second slot */
	for (int i = 0; i < 40; i++)
		if ((b[i] = lfp_cache_alloc(h)) == NULL)
			return (void *)3;
	for (int i = 0; i < 40; i++)
		if (lfp_cache_free(h, b[i]) != 0)
			return (void *)4;
	return NULL;
}

Test(cached, a_claim_when_every_spare_magazine_is_full)
{
	/* 2 slots x 2 + 1 = 5 magazines of 8. This thread fills all five (its
	 * two, three on its home stack) and more as batches; a second thread
	 * still gets a slot: its claim empties a full magazine into a batch. */
	lfp_pool_config_t c = cfg(64, 600);
	c.cache_slots = 2;
	c.cache_size = 8;
	c.cache_depot = 1;
	lfp_pool_t *p = make(c);
	void *all[200];
	take_then_give(p, all, 200);
	cr_assert_eq(lfp_head_index(lfp_load64_relaxed(&p->depot_empty)), LFP_NIL,
		     "no spare empty magazine left");
	pthread_t t;
	void *rc;
	pthread_create(&t, NULL, claim_and_cycle, p);
	pthread_join(t, &rc);
	cr_assert_null(rc, "second thread: step %d failed", (int)(intptr_t)rc);
	assert_valid(p, 600);
	cycle_all(p, 600);
	assert_valid(p, 600);
	lfp_pool_destroy(p);
}

static uint32_t stack_len(const lfp_pool_t *p, const lfp_atomic_u64 *head)
{
	uint32_t n = 0;
	for (uint32_t m = lfp_head_index(lfp_load64_relaxed(head)); m < p->n_mags && n <= p->n_mags;
	     m = lfp_load32_relaxed(&lfpi_mag_next(p)[m]))
		n++;
	return n;
}

static struct lfpi_slot *the_claimed_slot(const lfp_pool_t *p)
{
	for (uint32_t s = 0; s < p->cache_slots; s++)
		if (lfp_load64_relaxed(&lfpi_slot_at(p, s)->owner) != 0)
			return lfpi_slot_at(p, s);
	cr_assert_fail("no claimed slot");
	return NULL;
}

static uint32_t held_count(const lfp_pool_t *p, const lfp_atomic_u32 *which)
{
	return lfp_load32_relaxed(&lfpi_mag_at(p, lfp_load32_relaxed(which))->count);
}

Test(cached, exchanges_move_two_magazines_per_cas)
{
	/* One slot, magazines of 8. When loaded and prev are both empty, a
	 * refill takes the top two full magazines of home_full with one CAS
	 * (its tag moves by 1) and parks both empties on home_empty; when both
	 * are full and two empties wait at home, a flush pushes both full ones
	 * as one chain with one CAS. */
	lfp_pool_config_t c = cfg(64, 1000);
	c.cache_slots = 1;
	c.cache_size = 8;
	c.cache_depot = 8;
	lfp_pool_t *p = make(c);
	void *a[48];
	take_then_give(p, a, 48);
	struct lfpi_slot *sl = the_claimed_slot(p);
	cr_assert_eq(stack_len(p, &sl->home_full), 4, "48 = 16 held + 4 full at home");
	for (int i = 0; i < 16; i++) /* drain loaded and prev */
		cr_assert_not_null(a[i] = lfp_pool_alloc(p));
	uint32_t tag = lfp_head_tag(lfp_load64_relaxed(&sl->home_full));
	cr_assert_not_null(a[16] = lfp_pool_alloc(p)); /* the refill */
	cr_assert_eq(lfp_head_tag(lfp_load64_relaxed(&sl->home_full)), tag + 1, "one CAS");
	cr_assert_eq(stack_len(p, &sl->home_full), 2, "two magazines left home_full");
	cr_assert_eq(held_count(p, &sl->loaded), 7);
	cr_assert_eq(held_count(p, &sl->prev), 8, "prev is the second full magazine");
	cr_assert_eq(stack_len(p, &sl->home_empty), 2, "both empties parked at home");
	cr_assert_eq(lfp_pool_free(p, a[16]), 0); /* loaded full again, prev full */
	tag = lfp_head_tag(lfp_load64_relaxed(&sl->home_full));
	cr_assert_eq(lfp_pool_free(p, a[15]), 0); /* the flush */
	cr_assert_eq(lfp_head_tag(lfp_load64_relaxed(&sl->home_full)), tag + 1, "one CAS");
	cr_assert_eq(stack_len(p, &sl->home_full), 4, "both full magazines went home");
	cr_assert_eq(stack_len(p, &sl->home_empty), 0);
	cr_assert_eq(held_count(p, &sl->loaded), 1);
	cr_assert_eq(held_count(p, &sl->prev), 0);
	for (int i = 0; i < 15; i++)
		cr_assert_eq(lfp_pool_free(p, a[i]), 0);
	assert_valid(p, 1000);
	cycle_all(p, 1000);
	assert_valid(p, 1000);
	lfp_pool_destroy(p);
}

Test(cached, past_the_share_empties_cross_the_depot_two_per_cas)
{
	/* One slot, magazines of 8, 6 magazines in all: the share,
	 * (6 - 2) / (1 + 1) = 2, leaves no room at home, so every empty goes
	 * through depot_empty. A refill that takes two full magazines parks
	 * both empties there as one chain (the depot's tag moves by 1); a
	 * flush with nothing at home takes two from there with one CAS. */
	lfp_pool_config_t c = cfg(64, 1000);
	c.cache_slots = 1;
	c.cache_size = 8;
	c.cache_depot = 4;
	lfp_pool_t *p = make(c);
	void *a[48];
	take_then_give(p, a, 48);
	struct lfpi_slot *sl = the_claimed_slot(p);
	cr_assert_eq(stack_len(p, &sl->home_full), 4, "48 = 16 held + 4 full at home");
	cr_assert_eq(stack_len(p, &sl->home_empty), 0, "no room at home");
	cr_assert_eq(stack_len(p, &p->depot_empty), 0);
	for (int i = 0; i < 16; i++) /* drain loaded and prev */
		cr_assert_not_null(a[i] = lfp_pool_alloc(p));
	uint32_t tag = lfp_head_tag(lfp_load64_relaxed(&p->depot_empty));
	cr_assert_not_null(a[16] = lfp_pool_alloc(p)); /* the refill */
	cr_assert_eq(lfp_head_tag(lfp_load64_relaxed(&p->depot_empty)), tag + 1, "one CAS");
	cr_assert_eq(stack_len(p, &p->depot_empty), 2, "both empties on the depot");
	cr_assert_eq(stack_len(p, &sl->home_empty), 0);
	cr_assert_eq(held_count(p, &sl->prev), 8, "prev is the second full magazine");
	cr_assert_eq(lfp_pool_free(p, a[16]), 0); /* loaded and prev full again */
	tag = lfp_head_tag(lfp_load64_relaxed(&p->depot_empty));
	uint32_t ftag = lfp_head_tag(lfp_load64_relaxed(&sl->home_full));
	cr_assert_eq(lfp_pool_free(p, a[15]), 0); /* the flush */
	cr_assert_eq(lfp_head_tag(lfp_load64_relaxed(&p->depot_empty)), tag + 1, "one CAS");
	cr_assert_eq(stack_len(p, &p->depot_empty), 0, "both empties came from the depot");
	cr_assert_eq(lfp_head_tag(lfp_load64_relaxed(&sl->home_full)), ftag + 1, "one CAS");
	cr_assert_eq(stack_len(p, &sl->home_full), 4);
	cr_assert_eq(held_count(p, &sl->loaded), 1);
	for (int i = 0; i < 15; i++)
		cr_assert_eq(lfp_pool_free(p, a[i]), 0);
	assert_valid(p, 1000);
	cycle_all(p, 1000);
	assert_valid(p, 1000);
	lfp_pool_destroy(p);
}

struct hoarder {
	lfp_pool_t *p;
	pthread_barrier_t *gate;
	int rc;
};

/* Take every block, free them all (into this thread's magazines and home
 * stack), then wait while the main thread steals, then leave. */
static void *hoard_all(void *v)
{
	struct hoarder *h = v;
	void *a[64];
	for (int i = 0; i < 64; i++)
		if ((a[i] = lfp_pool_alloc(h->p)) == NULL)
			h->rc = -1;
	for (int i = 0; i < 64; i++)
		if (h->rc == 0 && lfp_pool_free(h->p, a[i]) != 0)
			h->rc = -2;
	pthread_barrier_wait(h->gate); /* 1: hoarded */
	pthread_barrier_wait(h->gate); /* 2: stolen from */
	return NULL;
}

Test(cached, a_steal_takes_two_full_magazines_per_cas)
{
	/* 64 blocks, magazines of 8, two slots. Another thread holds every
	 * block: 16 in its loaded and prev, 48 in six full magazines on its
	 * home stack. This thread's first alloc finds nothing of its own, no
	 * depot magazine and an empty free stack, so it steals: the victim's
	 * home_full tag moves by 1 and loses two magazines, and this thread
	 * holds both (loaded 7 after the alloc, prev 8). */
	lfp_pool_config_t c = cfg(64, 64);
	c.cache_slots = 2;
	c.cache_size = 8;
	c.cache_depot = 8;
	lfp_pool_t *p = make(c);
	pthread_barrier_t gate;
	cr_assert_eq(pthread_barrier_init(&gate, NULL, 2), 0);
	struct hoarder h = { p, &gate, 0 };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, hoard_all, &h), 0);
	pthread_barrier_wait(&gate);
	cr_assert_eq(h.rc, 0);
	struct lfpi_slot *vs = the_claimed_slot(p);
	cr_assert_eq(stack_len(p, &vs->home_full), 6);
	uint32_t tag = lfp_head_tag(lfp_load64_relaxed(&vs->home_full));
	void *b = lfp_pool_alloc(p);
	cr_assert_not_null(b);
	cr_assert_eq(lfp_head_tag(lfp_load64_relaxed(&vs->home_full)), tag + 1, "one CAS");
	cr_assert_eq(stack_len(p, &vs->home_full), 4, "two magazines stolen");
	struct lfpi_slot *me = NULL;
	for (uint32_t s = 0; s < p->cache_slots; s++)
		if (lfpi_slot_at(p, s) != vs && lfp_load64_relaxed(&lfpi_slot_at(p, s)->owner) != 0)
			me = lfpi_slot_at(p, s);
	cr_assert_not_null(me, "this thread claimed the other slot");
	cr_assert_eq(held_count(p, &me->loaded), 7);
	cr_assert_eq(held_count(p, &me->prev), 8, "the second stolen magazine is prev");
	cr_assert_eq(lfp_pool_free(p, b), 0);
	pthread_barrier_wait(&gate);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(lfp_pool_cache_flush(p), 0);
	assert_valid(p, 64);
	cycle_all(p, 64);
	pthread_barrier_destroy(&gate);
	lfp_pool_destroy(p);
}

static uint32_t word_of(const lfp_pool_t *p, uint32_t block, uint32_t w)
{
	uint32_t v;
	memcpy(&v, (const char *)lfpi_ptr(p, block) + 4 * w, sizeof v);
	return v;
}

Test(cached, an_in_band_batch_lists_its_carriers_in_one_directory)
{
	/* 64-byte blocks: a directory lists up to 14 sub-carriers of 15
	 * indices each, so a 64-block batch is one directory and 4 sub-carriers
	 * (4 + 4 x 15 >= 63): an unpacker learns all four from one read. A
	 * planted bad count in a sub-carrier is reported by validate. */
	lfp_pool_config_t c = cfg(64, 2000);
	c.cache_slots = 1;
	c.cache_size = 64;
	c.cache_depot = 1;
	lfp_pool_t *p = make(c);
	void *a[256];
	take_then_give(p, a, 256);
	struct lfpi_slot *sl = the_claimed_slot(p);
	uint32_t d = lfp_head_index(lfp_load64_relaxed(&sl->home_batch));
	cr_assert_lt(d, p->count, "a batch was written");
	cr_assert_eq(word_of(p, d, 0), 4, "one directory, 4 sub-carriers");
	cr_assert_eq(word_of(p, d, 1), LFP_NIL, "no second directory");
	uint32_t total = 1;
	for (uint32_t j = 0; j < 4; j++) {
		uint32_t sc = word_of(p, d, 2 + j);
		cr_assert_lt(sc, p->count);
		cr_assert_eq(lfp_load32_relaxed(&lfpi_next(p)[sc]), LFPI_CACHED);
		total += 1 + word_of(p, sc, 0);
	}
	cr_assert_eq(total, 64, "the batch holds one magazine");
	assert_valid(p, 2000);
	uint32_t sc = word_of(p, d, 2), keep = word_of(p, sc, 0), bad = 999;
	memcpy(lfpi_ptr(p, sc), &bad, sizeof bad);
	lfp_pool_report_t r;
	cr_assert_eq(lfp_pool_validate(p, &r), -EUCLEAN, "a malformed batch must be seen");
	memcpy(lfpi_ptr(p, sc), &keep, sizeof keep);
	assert_valid(p, 2000);
	cycle_all(p, 2000);
	assert_valid(p, 2000);
	lfp_pool_destroy(p);
}

/* ======================================================================== */
TestSuite(handle);

Test(handle, inline_path_and_errors)
{
	lfp_pool_t *p = make(cfg(64, 4096));
	errno = 0;
	cr_assert_null(lfp_pool_cache(NULL));
	cr_assert_eq(errno, EINVAL);
	lfp_cache_t *c = lfp_pool_cache(p);
	cr_assert_not_null(c);
	cr_assert_eq(lfp_pool_cache(p), c, "one handle per thread and pool");
	void *held[600];
	for (int i = 0; i < 600; i++) {
		held[i] = lfp_cache_alloc(c);
		cr_assert_not_null(held[i]);
	}
	for (int i = 0; i < 600; i++)
		cr_assert_eq(lfp_cache_free(c, held[i]), 0);
	cr_assert_eq(lfp_cache_free(c, held[5]), -EALREADY);
	cr_assert_eq(lfp_cache_free(c, (char *)held[5] + 8), -EINVAL);
	cr_assert_eq(lfp_cache_free(c, NULL), 0);
	/* mixing the handle and lfp_pool_* on one thread */
	void *a = lfp_pool_alloc(p);
	cr_assert_eq(lfp_cache_free(c, a), 0);
	a = lfp_cache_alloc(c);
	cr_assert_eq(lfp_pool_free(p, a), 0);
	assert_valid(p, 4096);
	lfp_pool_destroy(p);
}

/* ABI 2: the inline path takes any stride (index by the inverse of the
 * stride's odd part), and still refuses every pointer that is not a block
 * start of the pool. */
Test(handle, inline_path_any_stride)
{
	static const size_t sizes[] = { 48, 80, 96, 24, 40, 3, 1, 112, 4096 + 16 };
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		lfp_pool_config_t cc = cfg(sizes[s], 2000);
		cc.block_align = sizes[s] < 8 ? 1 : 8;
		lfp_pool_t *p = make(cc);
		lfp_cache_t *c = lfp_pool_cache(p);
		cr_assert_not_null(c);
		cr_assert_eq(c->nblocks, 2000, "size %zu: inline path on", sizes[s]);
		size_t stride = lfp_pool_block_size(p);
		char *held[300];
		for (int i = 0; i < 300; i++) {
			held[i] = lfp_cache_alloc(c);
			cr_assert_not_null(held[i]);
			cr_assert_geq(lfp_pool_index(p, held[i]), 0, "size %zu: a block start", sizes[s]);
			for (int j = 0; j < i; j++)
				cr_assert_neq(held[i], held[j]);
		}
		char *b0 = lfp_pool_ptr(p, 0);
		for (size_t k = 1; k < stride && k < 200; k++)
			cr_assert_eq(lfp_cache_free(c, held[7] + k), -EINVAL, "size %zu off %zu", sizes[s], k);
		cr_assert_eq(lfp_cache_free(c, b0 + stride * 2000), -EINVAL, "one past the last block");
		cr_assert_eq(lfp_cache_free(c, b0 - stride), -EINVAL, "before block 0");
		for (int i = 0; i < 300; i++)
			cr_assert_eq(lfp_cache_free(c, held[i]), 0);
		cr_assert_eq(lfp_cache_free(c, held[9]), -EALREADY, "size %zu", sizes[s]);
		assert_valid(p, 2000);
		lfp_pool_destroy(p);
	}
}

Test(handle, pool_without_cache_still_gives_a_working_handle)
{
	lfp_pool_config_t cc = cfg(64, 4096);
	cc.flags = LFP_POOL_NO_CACHE;
	lfp_pool_t *p = make(cc);
	lfp_cache_t *c = lfp_pool_cache(p);
	cr_assert_not_null(c);
	void *a = lfp_cache_alloc(c);
	cr_assert_not_null(a);
	cr_assert_eq(lfp_cache_free(c, a), 0);
	cr_assert_eq(lfp_cache_free(c, a), -EALREADY);
	lfp_pool_stats_t st;
	lfp_pool_stats(p, &st);
	cr_assert_eq(st.cached, 0);
	assert_valid(p, 4096);
	lfp_pool_destroy(p);
}

Test(handle, many_pools_per_thread)
{
	enum { N = 80 };
	lfp_pool_t *p[N];
	int enospc = 0;
	for (int i = 0; i < N; i++) {
		p[i] = make(cfg(32, 512));
		errno = 0;
		lfp_cache_t *c = lfp_pool_cache(p[i]);
		if (c == NULL) {
			cr_assert_eq(errno, ENOSPC);
			enospc++;
		} else {
			void *b = lfp_cache_alloc(c);
			cr_assert_not_null(b);
			cr_assert_eq(lfp_cache_free(c, b), 0);
		}
	}
	cr_assert_geq(enospc, N - 64, "64 entries at most");
	/* lfp_pool_alloc works for every pool, cached or not */
	for (int r = 0; r < 3; r++)
		for (int i = 0; i < N; i++) {
			void *b = lfp_pool_alloc(p[i]);
			cr_assert_not_null(b);
			cr_assert_eq(lfp_pool_free(p[i], b), 0);
		}
	for (int i = 0; i < N; i++) {
		assert_valid(p[i], 512);
		cr_assert_eq(lfp_pool_destroy(p[i]), 0);
	}
}

Test(handle, destroyed_and_recreated_at_the_same_address)
{
	lfp_pool_config_t c1 = cfg(64, 2000), c2 = cfg(128, 1000);
	size_t size = lfp_pool_region_size(&c1);
	if (lfp_pool_region_size(&c2) > size)
		size = lfp_pool_region_size(&c2);
	void *mem = aligned_alloc(64, (size + 63) & ~(size_t)63);
	lfp_pool_t *p;
	cr_assert_eq(lfp_pool_init(mem, size, &c1, &p), 0);
	void *a = lfp_pool_alloc(p);
	cr_assert_eq(lfp_pool_free(p, a), 0);
	cr_assert_eq(lfp_pool_destroy(p), 0);
	cr_assert_eq(lfp_pool_init(mem, size, &c2, &p), 0);
	/* the thread's entry for the old pool must not be taken for the new */
	cycle_all(p, 1000);
	void *b = lfp_pool_alloc(p);
	cr_assert_eq(lfp_pool_block_size(p), 128);
	cr_assert_eq(lfp_pool_index(p, b) >= 0, true);
	cr_assert_eq(lfp_pool_free(p, b), 0);
	assert_valid(p, 1000);
	cr_assert_eq(lfp_pool_destroy(p), 0);
	free(mem);
}

/* ======================================================================== */
TestSuite(flush);

struct flush_arg {
	lfp_pool_t *p;
	void **blocks;
	size_t n;
	bool do_flush;
	pthread_barrier_t *bar;
};

static void *alloc_free_and_flush(void *v)
{
	struct flush_arg *a = v;
	for (size_t i = 0; i < a->n; i++)
		a->blocks[i] = lfp_pool_alloc(a->p);
	for (size_t i = 0; i < a->n; i++)
		if (lfp_pool_free(a->p, a->blocks[i]) != 0)
			return (void *)1;
	if (a->do_flush && lfp_pool_cache_flush(a->p) != 0)
		return (void *)2;
	if (a->bar) {
		pthread_barrier_wait(a->bar); /* flushed; main takes over */
		pthread_barrier_wait(a->bar); /* main is done */
	}
	return NULL;
}

Test(flush, blocks_flushed_by_one_thread_are_reused_by_another)
{
	lfp_pool_t *p = make(cfg(64, 8192));
	const size_t n = 64; /* four magazines of 16 */
	void *mine[64], *theirs[64];
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, 2);
	struct flush_arg a = { p, mine, n, true, &bar };
	pthread_t t;
	pthread_create(&t, NULL, alloc_free_and_flush, &a);
	pthread_barrier_wait(&bar);
	/* The other thread is alive and keeps its slot; what it flushed sits on
	 * the depot, and this thread's first refills take exactly those. */
	lfp_pool_stats_t st;
	lfp_pool_stats(p, &st);
	cr_assert_eq(st.free, 8192);
	size_t reused = 0;
	for (size_t i = 0; i < n; i++) {
		theirs[i] = lfp_pool_alloc(p);
		for (size_t j = 0; j < n; j++)
			reused += theirs[i] == mine[j];
	}
	cr_assert_eq(reused, n, "only %zu of %zu flushed blocks were reused", reused, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(lfp_pool_free(p, theirs[i]), 0);
	pthread_barrier_wait(&bar);
	void *rc;
	pthread_join(t, &rc);
	cr_assert_null(rc);
	assert_valid(p, 8192);
	pthread_barrier_destroy(&bar);
	lfp_pool_destroy(p);
}

Test(flush, without_flush_the_hoard_is_bounded)
{
	/* A live thread that does not flush keeps at most 2 k blocks (loaded and
	 * prev); everything else it freed is reachable by others. */
	lfp_pool_t *p = make(cfg(64, 4096));
	const uint32_t k = p->cache_size;
	void **mine = calloc(4096, sizeof *mine);
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, 2);
	struct flush_arg a = { p, mine, 4096, false, &bar };
	pthread_t t;
	pthread_create(&t, NULL, alloc_free_and_flush, &a);
	pthread_barrier_wait(&bar);
	size_t got = 0;
	void **all = calloc(4096, sizeof *all);
	while ((all[got] = lfp_pool_alloc(p)) != NULL)
		got++;
	cr_assert_geq(got, 4096 - 2 * (size_t)k, "got %zu of 4096 with k = %u", got, k);
	cr_assert_eq(errno, ENOMEM);
	for (size_t i = 0; i < got; i++)
		cr_assert_eq(lfp_pool_free(p, all[i]), 0);
	pthread_barrier_wait(&bar);
	pthread_join(t, NULL);
	/* the thread has exited: now every block is reachable */
	cycle_all(p, 4096);
	assert_valid(p, 4096);
	free(all);
	free(mine);
	pthread_barrier_destroy(&bar);
	lfp_pool_destroy(p);
}

Test(flush, a_thread_without_a_slot_reaches_cached_blocks)
{
	/* One slot: the other thread holds it and frees everything into its
	 * home stacks (magazines and in-band batches); this thread has no
	 * slot, works on the free stack, and still gets all but the holder's
	 * hoard (2 k) back. */
	lfp_pool_config_t c = cfg(64, 3000);
	c.cache_slots = 1;
	c.cache_size = 16;
	c.cache_depot = 1;
	lfp_pool_t *p = make(c);
	void **mine = calloc(3000, sizeof *mine);
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, 2);
	struct flush_arg a = { p, mine, 3000, false, &bar };
	pthread_t t;
	pthread_create(&t, NULL, alloc_free_and_flush, &a);
	pthread_barrier_wait(&bar);
	void **all = calloc(3000, sizeof *all);
	size_t got = 0;
	while ((all[got] = lfp_pool_alloc(p)) != NULL)
		got++;
	cr_assert_geq(got, 3000 - 2 * 16, "got %zu", got);
	cr_assert_eq(lfp_pool_free_bulk(p, all, got), 0);
	pthread_barrier_wait(&bar);
	pthread_join(t, NULL);
	assert_valid(p, 3000);
	free(all);
	free(mine);
	pthread_barrier_destroy(&bar);
	lfp_pool_destroy(p);
}

Test(flush, flush_of_a_thread_without_cache_is_a_noop)
{
	lfp_pool_t *p = make(cfg(64, 1024));
	cr_assert_eq(lfp_pool_cache_flush(p), 0);
	cr_assert_eq(lfp_pool_cache_flush(NULL), -EINVAL);
	lfp_pool_destroy(p);
}

/* ======================================================================== */
TestSuite(exit);

Test(exit, thread_exit_with_full_cache_loses_nothing)
{
	lfp_pool_t *p = make(cfg(64, 4096));
	for (int round = 0; round < 5; round++) {
		struct flush_arg a[4];
		pthread_t t[4];
		for (int i = 0; i < 4; i++) {
			a[i] = (struct flush_arg){ p, calloc(1000, sizeof(void *)), 1000, false, NULL };
			pthread_create(&t[i], NULL, alloc_free_and_flush, &a[i]);
		}
		for (int i = 0; i < 4; i++) {
			void *rc;
			pthread_join(t[i], &rc);
			cr_assert_null(rc);
			free(a[i].blocks);
		}
		/* every slot was released at exit (this thread holds one after
		 * its first cycle_all) */
		uint32_t owned = 0;
		for (uint32_t s = 0; s < p->cache_slots; s++)
			owned += lfp_load64_relaxed(&lfpi_slot_at(p, s)->owner) != 0;
		cr_assert_eq(owned, round == 0 ? 0u : 1u, "round %d: %u slots owned", round, owned);
		assert_valid(p, 4096);
		cycle_all(p, 4096);
	}
	lfp_pool_destroy(p);
}

static void *hold_cache_then_wait(void *v)
{
	struct flush_arg *a = v;
	void *b = lfp_pool_alloc(a->p);
	lfp_pool_free(a->p, b);
	pthread_barrier_wait(a->bar); /* main destroys the pool */
	pthread_barrier_wait(a->bar);
	/* exit: the destructor must not touch the unmapped pool */
	return NULL;
}

/* Big pools give a slot to many threads: slots = count / 1024 up to 1024
 * (it was capped at 64, and the threads past the 64th ran on the shared
 * stack: 256 threads on 16 cores paid 8x per pair, docs/benchmarks.md).
 * 150 threads each take and give a block and wait; all 150 must hold a
 * slot, and at 2^21 blocks the cap is 1024. */
static void *take_give_and_wait(void *v)
{
	struct flush_arg *a = v;
	void *b = lfp_pool_alloc(a->p);
	if (b == NULL || lfp_pool_free(a->p, b) != 0)
		a->n = 1; /* reported by the main thread */
	pthread_barrier_wait(a->bar); /* main counts the claimed slots */
	pthread_barrier_wait(a->bar);
	return NULL;
}

Test(layout, big_pools_give_a_slot_to_many_threads)
{
	enum { T = 150, COUNT = 200 * 1024 };
	lfp_pool_t *p = make(cfg(16, COUNT));
	cr_assert_eq(p->cache_slots, 200u, "slots %u", p->cache_slots);
	pthread_barrier_t bar;
	cr_assert_eq(pthread_barrier_init(&bar, NULL, T + 1), 0);
	static struct flush_arg a[T];
	static pthread_t t[T];
	for (int i = 0; i < T; i++) {
		a[i] = (struct flush_arg){ p, NULL, 0, false, &bar };
		cr_assert_eq(pthread_create(&t[i], NULL, take_give_and_wait, &a[i]), 0);
	}
	pthread_barrier_wait(&bar);
	uint32_t owned = 0;
	for (uint32_t s = 0; s < p->cache_slots; s++)
		owned += lfp_load64_relaxed(&lfpi_slot_at(p, s)->owner) != 0;
	pthread_barrier_wait(&bar);
	for (int i = 0; i < T; i++) {
		cr_assert_eq(pthread_join(t[i], NULL), 0);
		cr_expect_eq(a[i].n, 0, "thread %d: take or give failed", i);
	}
	cr_expect_eq(owned, (uint32_t)T, "%u of %d threads held a slot", owned, T);
	assert_valid(p, COUNT);
	lfp_pool_destroy(p);

	lfp_pool_t *q = make(cfg(16, (size_t)1 << 21));
	cr_expect_eq(q->cache_slots, 1024u, "the default cap");
	cr_expect_eq(q->n_mags, 8192u, "magazines for the whole pool: 2^21 / 256");
	lfp_pool_destroy(q);
}

Test(exit, destroy_while_a_thread_keeps_its_cache)
{
	lfp_pool_t *p = make(cfg(64, 4096));
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, 2);
	struct flush_arg a = { p, NULL, 0, false, &bar };
	pthread_t t;
	pthread_create(&t, NULL, hold_cache_then_wait, &a);
	pthread_barrier_wait(&bar);
	cr_assert_eq(lfp_pool_destroy(p), 0);
	pthread_barrier_wait(&bar);
	pthread_join(t, NULL);
}

/* ======================================================================== */
TestSuite(bulk);

static void bulk_cases(unsigned flags)
{
	lfp_pool_config_t c = cfg(64, 1000);
	c.flags = flags;
	lfp_pool_t *p = make(c);
	void **out = calloc(1100, sizeof *out);

	cr_assert_eq(lfp_pool_alloc_bulk(p, out, 0), 0);
	cr_assert_eq(lfp_pool_alloc_bulk(p, NULL, 0), 0);
	cr_assert_eq(lfp_pool_alloc_bulk(p, NULL, 3), -EINVAL);
	cr_assert_eq(lfp_pool_alloc_bulk(NULL, out, 3), -EINVAL);
	cr_assert_eq(lfp_pool_free_bulk(p, NULL, 0), 0);
	cr_assert_eq(lfp_pool_free_bulk(p, NULL, 2), -EINVAL);

	/* n > free: a partial result, ENOMEM */
	errno = 0;
	int64_t got = lfp_pool_alloc_bulk(p, out, 1100);
	cr_assert_eq(got, 1000);
	cr_assert_eq(errno, ENOMEM);
	errno = 0;
	cr_assert_eq(lfp_pool_alloc_bulk(p, out + 1000, 5), 0);
	cr_assert_eq(errno, ENOMEM);
	for (int i = 0; i < 1000; i++)
		cr_assert_geq(lfp_pool_index(p, out[i]), 0);
	assert_valid(p, 0);

	/* all-or-nothing free: a bad pointer, a duplicate */
	void *bad[3] = { out[0], (char *)out[1] + 1, out[2] };
	cr_assert_eq(lfp_pool_free_bulk(p, bad, 3), -EINVAL);
	void *dup[4] = { out[0], out[1], out[0], out[3] };
	cr_assert_eq(lfp_pool_free_bulk(p, dup, 4), -EALREADY);
	assert_valid(p, 0); /* nothing changed hands */

	/* NULL entries are skipped; then the rest, in pieces */
	void *some[3] = { out[0], NULL, out[1] };
	cr_assert_eq(lfp_pool_free_bulk(p, some, 3), 0);
	assert_valid(p, 2);
	cr_assert_eq(lfp_pool_free_bulk(p, some, 3), -EALREADY, "already free");
	cr_assert_eq(lfp_pool_free_bulk(p, out + 2, 998), 0);
	assert_valid(p, 1000);

	/* exactly all, twice round */
	for (int r = 0; r < 2; r++) {
		cr_assert_eq(lfp_pool_alloc_bulk(p, out, 1000), 1000);
		cr_assert_eq(lfp_pool_free_bulk(p, out, 1000), 0);
	}
	/* partial batches mixed with single calls */
	cr_assert_eq(lfp_pool_alloc_bulk(p, out, 37), 37);
	void *single = lfp_pool_alloc(p);
	cr_assert_not_null(single);
	cr_assert_eq(lfp_pool_free_bulk(p, out, 37), 0);
	cr_assert_eq(lfp_pool_free(p, single), 0);
	if (flags & LFP_POOL_STATS) {
		lfp_pool_stats_t st;
		lfp_pool_stats(p, &st);
		cr_assert_eq(st.allocs, st.frees);
		cr_assert_eq(st.in_use, 0);
		cr_assert_eq(st.high_water, 1000);
	}
	cycle_all(p, 1000);
	assert_valid(p, 1000);
	free(out);
	lfp_pool_destroy(p);
}

Test(bulk, cached) { bulk_cases(0); }
Test(bulk, uncached) { bulk_cases(LFP_POOL_NO_CACHE); }
Test(bulk, cached_checked_stats) { bulk_cases(LFP_POOL_CHECKED | LFP_POOL_STATS); }
Test(bulk, uncached_checked_stats) { bulk_cases(LFP_POOL_NO_CACHE | LFP_POOL_CHECKED | LFP_POOL_STATS); }

/* ======================================================================== */
TestSuite(recovery);

static void *fill_and_die(void *v)
{
	struct flush_arg *a = v;
	for (size_t i = 0; i < a->n; i++)
		a->blocks[i] = lfp_pool_alloc(a->p);
	for (size_t i = 0; i < a->n; i++)
		lfp_pool_free(a->p, a->blocks[i]);
	lfpi_cache_abandon(a->p); /* "dies": slot stays claimed, nothing drained */
	return NULL;
}

Test(recovery, reclaim_a_dead_threads_slot)
{
	lfp_pool_t *p = make(cfg(64, 4096));
	void **blocks = calloc(40, sizeof *blocks);
	struct flush_arg a = { p, blocks, 40, false, NULL };
	pthread_t t;
	pthread_create(&t, NULL, fill_and_die, &a);
	pthread_join(t, NULL);
	/* its blocks are still accounted (cached, in its slot) */
	assert_valid(p, 4096);
	uint32_t dead = UINT32_MAX;
	for (uint32_t s = 0; s < p->cache_slots; s++)
		if (lfp_load64_relaxed(&lfpi_slot_at(p, s)->owner) != 0)
			dead = s;
	cr_assert_neq(dead, UINT32_MAX, "the dead thread's slot is claimed");
	cr_assert_eq(lfpi_cache_reclaim_slot(p, dead), 0);
	cr_assert_eq(lfpi_cache_reclaim_slot(p, dead), -EINVAL, "now free");
	cr_assert_eq(lfpi_cache_reclaim_slot(p, p->cache_slots), -EINVAL);
	cr_assert_eq(lfp_load64_relaxed(&lfpi_slot_at(p, dead)->owner), 0);
	assert_valid(p, 4096);
	cycle_all(p, 4096);
	free(blocks);
	lfp_pool_destroy(p);
}

Test(recovery, reclaiming_owners_that_died_mid_claim_keeps_the_claim_count)
{
	/* Two owners that won their slot's owner CAS and died before they
	 * counted themselves in `claimed`. Reclaiming both must not take the
	 * count below zero: wrapped, the next claim makes it UINT32_MAX and
	 * home_room divides by claimed + 1 = 0 (SIGFPE). */
	lfp_pool_t *p = make(cfg(64, 4096));
	cr_assert_geq(p->cache_slots, 2);
	cr_assert_eq(lfp_load32_relaxed(&p->claimed), 0);
	for (uint32_t s = 0; s < 2; s++)
		lfp_store64_release(&lfpi_slot_at(p, s)->owner, UINT64_C(0xdead) + s); /* K8-like */
	for (uint32_t s = 0; s < 2; s++)
		cr_assert_eq(lfpi_cache_reclaim_slot(p, s), 0);
	cr_assert_eq(lfp_load32_relaxed(&p->claimed), 0, "claimed went below zero: %u",
		     lfp_load32_relaxed(&p->claimed));
	assert_valid(p, 4096);
	cycle_all(p, 4096); /* this thread claims a slot and parks empties */
	assert_valid(p, 4096);
	lfp_pool_destroy(p);
}

Test(recovery, a_slot_naming_one_magazine_twice_is_drained_once)
{
	/* An owner that dies inside a swap or an install leaves its slot
	 * naming one magazine as both loaded and prev (and the other one in
	 * no place). Reclaim must push it once: twice would put a cycle on a
	 * depot stack, or one full magazine in two places. The sweep then
	 * returns the magazine left in no place. */
	lfp_pool_t *p = make(cfg(64, 4096));
	void **blocks = calloc(40, sizeof *blocks);
	struct flush_arg a = { p, blocks, 40, false, NULL };
	pthread_t t;
	pthread_create(&t, NULL, fill_and_die, &a);
	pthread_join(t, NULL);
	struct lfpi_slot *sl = the_claimed_slot(p);
	uint32_t dead = (uint32_t)(((uintptr_t)sl - (uintptr_t)lfpi_slot_at(p, 0)) / sizeof *sl);
	cr_assert_gt(held_count(p, &sl->loaded), 0, "the dead thread's blocks are in loaded");
	lfp_store32_relaxed(&sl->prev, lfp_load32_relaxed(&sl->loaded));
	cr_assert_eq(lfpi_cache_reclaim_slot(p, dead), 0);
	(void)lfpi_cache_sweep(p);
	assert_valid(p, 4096);
	cycle_all(p, 4096);
	assert_valid(p, 4096);
	free(blocks);
	lfp_pool_destroy(p);
}

Test(recovery, sweep_returns_a_block_caught_between_mark_and_count)
{
	lfp_pool_t *p = make(cfg(64, 2048));
	void *b = lfp_pool_alloc(p);
	int64_t i = lfp_pool_index(p, b);
	/* Plant the crash window of a free: the state word says cached, but the
	 * block never reached a magazine's count. */
	lfp_store32_relaxed(&lfpi_next(p)[i], LFPI_CACHED);
	lfp_pool_report_t r;
	cr_assert_eq(lfp_pool_validate(p, &r), -EUCLEAN, "validate must see the orphan");
	cr_assert_eq(lfpi_cache_sweep(p), 1);
	assert_valid(p, 2048);
	cycle_all(p, 2048);
	lfp_pool_destroy(p);
}

/* ======================================================================== */
TestSuite(validate);

Test(validate, catches_a_magazine_entry_held_twice_or_lost)
{
	lfp_pool_t *p = make(cfg(64, 2048));
	void *a = lfp_pool_alloc(p), *b = lfp_pool_alloc(p);
	cr_assert_eq(lfp_pool_free(p, a), 0);
	cr_assert_eq(lfp_pool_free(p, b), 0);
	assert_valid(p, 2048);
	/* find this thread's loaded magazine: the one holding b's index */
	uint32_t bi = (uint32_t)lfp_pool_index(p, b), hit = UINT32_MAX;
	for (uint32_t m = 0; m < p->n_mags && hit == UINT32_MAX; m++) {
		struct lfpi_mag *g = lfpi_mag_at(p, m);
		uint32_t n = lfp_load32_relaxed(&g->count);
		if (n >= 2 && g->ent[n - 1] == bi)
			hit = m;
	}
	cr_assert_neq(hit, UINT32_MAX);
	struct lfpi_mag *g = lfpi_mag_at(p, hit);
	uint32_t n = lfp_load32_relaxed(&g->count), saved = g->ent[n - 2];
	g->ent[n - 2] = bi; /* b twice, a lost */
	lfp_pool_report_t r;
	int vrc = lfp_pool_validate(p, &r);
	cr_assert_eq(vrc, -EUCLEAN, "rc %d %s", vrc, r.error ? r.error : "-");
	g->ent[n - 2] = saved;
	lfp_store32_relaxed(&g->count, n + 1); /* an entry beyond the real ones */
	cr_assert_eq(lfp_pool_validate(p, &r), -EUCLEAN);
	lfp_store32_relaxed(&g->count, n);
	assert_valid(p, 2048);
	lfp_pool_destroy(p);
}

/* ======================================================================== */
/* Review R1: bad input on every public call, and stale cache handles. */
TestSuite(bad_input);

/* A pool laid out in caller memory and then destroyed: the region stays
 * mapped, so every call must notice the dead magic instead of using it. */
struct dead_region {
	void *mem;
	lfp_pool_t *p;
	void *blk; /* a block address of the dead pool */
};

static struct dead_region dead_region_make(unsigned flags)
{
	lfp_pool_config_t c = cfg(64, 1024);
	c.flags = flags;
	size_t size = lfp_pool_region_size(&c);
	struct dead_region d = { aligned_alloc(64, (size + 63) & ~(size_t)63), NULL, NULL };
	cr_assert_not_null(d.mem);
	cr_assert_eq(lfp_pool_init(d.mem, size, &c, &d.p), 0);
	d.blk = lfp_pool_alloc(d.p);
	cr_assert_not_null(d.blk);
	cr_assert_eq(lfp_pool_free(d.p, d.blk), 0);
	cr_assert_eq(lfp_pool_destroy(d.p), 0);
	return d;
}

/* One row per public call taking a pool: what it must return for a pool
 * that is not live (NULL, or destroyed with its memory still mapped). */
struct bad_row {
	const char *call;
	bool (*ok)(lfp_pool_t *p, void *blk); /* true: the documented error */
};

static bool row_alloc(lfp_pool_t *p, void *b)
{
	(void)b;
	errno = 0;
	return lfp_pool_alloc(p) == NULL && errno == EINVAL;
}
static bool row_free(lfp_pool_t *p, void *b) { return lfp_pool_free(p, b) == -EINVAL; }
static bool row_free_null(lfp_pool_t *p, void *b)
{
	(void)b;
	return lfp_pool_free(p, NULL) == -EINVAL;
}
static bool row_destroy(lfp_pool_t *p, void *b)
{
	(void)b;
	return lfp_pool_destroy(p) == -EINVAL;
}
static bool row_index(lfp_pool_t *p, void *b) { return lfp_pool_index(p, b) == -EINVAL; }
static bool row_ptr(lfp_pool_t *p, void *b)
{
	(void)b;
	return lfp_pool_ptr(p, 0) == NULL;
}
static bool row_contains(lfp_pool_t *p, void *b) { return !lfp_pool_contains(p, b); }
static bool row_capacity(lfp_pool_t *p, void *b)
{
	(void)b;
	return lfp_pool_capacity(p) == 0 && lfp_pool_block_size(p) == 0;
}
static bool row_free_count(lfp_pool_t *p, void *b)
{
	(void)b;
	return lfp_pool_free_count(p) == 0;
}
static bool row_stats(lfp_pool_t *p, void *b)
{
	lfp_pool_stats_t st;
	(void)b;
	return lfp_pool_stats(p, &st) == -EINVAL && lfp_pool_stats(p, NULL) == -EINVAL;
}
static bool row_validate(lfp_pool_t *p, void *b)
{
	lfp_pool_report_t r;
	(void)b;
	return lfp_pool_validate(p, &r) == -EINVAL && r.error != NULL &&
	       lfp_pool_validate(p, NULL) == -EINVAL;
}
static bool row_alloc_bulk(lfp_pool_t *p, void *b)
{
	void *out[4] = { b, b, b, b };
	return lfp_pool_alloc_bulk(p, out, 4) == -EINVAL && out[0] == b &&
	       lfp_pool_alloc_bulk(p, out, 0) == -EINVAL &&
	       lfp_pool_alloc_bulk(p, NULL, SIZE_MAX) == -EINVAL;
}
static bool row_free_bulk(lfp_pool_t *p, void *b)
{
	void *in[2] = { b, NULL };
	return lfp_pool_free_bulk(p, in, 2) == -EINVAL && lfp_pool_free_bulk(p, NULL, SIZE_MAX) == -EINVAL;
}
static bool row_cache(lfp_pool_t *p, void *b)
{
	(void)b;
	errno = 0;
	return lfp_pool_cache(p) == NULL && errno == EINVAL;
}
static bool row_cache_flush(lfp_pool_t *p, void *b)
{
	(void)b;
	return lfp_pool_cache_flush(p) == -EINVAL;
}

static const struct bad_row bad_rows[] = {
	{ "lfp_pool_alloc", row_alloc },
	{ "lfp_pool_free", row_free },
	{ "lfp_pool_free(NULL)", row_free_null },
	{ "lfp_pool_destroy", row_destroy },
	{ "lfp_pool_index", row_index },
	{ "lfp_pool_ptr", row_ptr },
	{ "lfp_pool_contains", row_contains },
	{ "lfp_pool_capacity/_block_size", row_capacity },
	{ "lfp_pool_free_count", row_free_count },
	{ "lfp_pool_stats", row_stats },
	{ "lfp_pool_validate", row_validate },
	{ "lfp_pool_alloc_bulk", row_alloc_bulk },
	{ "lfp_pool_free_bulk", row_free_bulk },
	{ "lfp_pool_cache", row_cache },
	{ "lfp_pool_cache_flush", row_cache_flush },
};

/* A thread that parked every empty magazine on its own home stack (it
 * allocated, freed and allocated every block) and then idles must not leave
 * a later thread without a cache slot: a claim takes parked empties. */
enum { PARK_N = 4096 };
static lfp_pool_t *park_pool;
static void *park_blk[PARK_N];
static pthread_barrier_t park_bar;
static int park_fail;

static void *park_hoarder(void *arg)
{
	(void)arg;
	for (int r = 0; r < 3 && !park_fail; r++)
		for (int i = 0; i < PARK_N; i++) {
			if (r == 1) {
				if (lfp_pool_free(park_pool, park_blk[i]) != 0)
					park_fail = 1;
			} else if ((park_blk[i] = lfp_pool_alloc(park_pool)) == NULL) {
				park_fail = 2;
			}
		}
	pthread_barrier_wait(&park_bar); /* 1: every block out, empties parked */
	pthread_barrier_wait(&park_bar); /* 2: the late thread has looked */
	return NULL;
}

static void *park_late(void *arg)
{
	int *got_slot = arg;
	pthread_barrier_wait(&park_bar);
	lfp_cache_t *c = lfp_pool_cache(park_pool);
	*got_slot = c != NULL && c->nblocks != 0; /* nblocks 0: no slot, no inline path */
	for (int i = 0; i < PARK_N; i++) /* give the hoarder's blocks back */
		if (lfp_pool_free(park_pool, park_blk[i]) != 0)
			park_fail = 3;
	pthread_barrier_wait(&park_bar);
	return NULL;
}

Test(cache, a_late_thread_gets_a_slot_when_another_parked_every_empty)
{
	lfp_pool_config_t cfg = { .block_size = 64, .block_count = PARK_N, .cache_slots = 4,
				  .cache_size = 16 };
	park_pool = lfp_pool_create(&cfg);
	cr_assert_not_null(park_pool);
	cr_assert_eq(pthread_barrier_init(&park_bar, NULL, 2), 0);
	int got_slot = 0;
	pthread_t a, b;
	cr_assert_eq(pthread_create(&a, NULL, park_hoarder, NULL), 0);
	cr_assert_eq(pthread_create(&b, NULL, park_late, &got_slot), 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	cr_expect_eq(park_fail, 0, "an alloc or free failed (%d)", park_fail);
	cr_expect(got_slot, "the late thread got no cache slot");
	lfp_pool_report_t r;
	cr_expect_eq(lfp_pool_validate(park_pool, &r), 0, "%s", r.error ? r.error : "");
	pthread_barrier_destroy(&park_bar);
	lfp_pool_destroy(park_pool);
}

Test(bad_input, every_call_on_a_null_or_destroyed_pool_gives_its_documented_error)
{
	static const unsigned modes[] = { 0, LFP_POOL_NO_CACHE, LFP_POOL_CHECKED | LFP_POOL_STATS };
	for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
		struct dead_region d = dead_region_make(modes[m]);
		for (size_t r = 0; r < sizeof bad_rows / sizeof bad_rows[0]; r++) {
			cr_assert(bad_rows[r].ok(NULL, d.blk), "%s(NULL pool)", bad_rows[r].call);
			cr_assert(bad_rows[r].ok(d.p, d.blk), "%s(destroyed pool, flags %#x)",
				  bad_rows[r].call, modes[m]);
		}
		/* the dead region is still dead, not half-revived */
		cr_assert_eq(((struct lfp_pool *)d.mem)->magic, LFPI_POOL_DEAD);
		free(d.mem);
	}
}

/* Pointers a live pool must refuse with -EINVAL (free, index, bulk free)
 * and leave the pool as it was. */
Test(bad_input, foreign_interior_and_misaligned_pointers_change_nothing)
{
	static const unsigned modes[] = { 0, LFP_POOL_NO_CACHE, LFP_POOL_CHECKED | LFP_POOL_STATS };
	for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
		lfp_pool_config_t c = cfg(40, 1024);
		c.flags = modes[m];
		c.block_align = 8;
		lfp_pool_t *p = make(c), *q = make(c);
		char *a = lfp_pool_alloc(p), *other = lfp_pool_alloc(q);
		cr_assert_not_null(a);
		int stack_word;
		char *const bad[] = {
			a + 1, a + 8, a + 39, /* inside a block, aligned or not */
			a - 8, (char *)p,      /* before the blocks: the header */
			other,                 /* a block of another pool */
			(char *)&stack_word,   /* not a pool at all */
			(char *)lfp_pool_ptr(p, 1023) + 40, /* one past the end */
			(char *)(uintptr_t)UINTPTR_MAX,
		};
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			cr_assert_eq(lfp_pool_free(p, bad[i]), -EINVAL, "free bad[%zu] flags %#x", i, modes[m]);
			cr_assert_eq(lfp_pool_index(p, bad[i]), -EINVAL, "index bad[%zu]", i);
			void *pair[2] = { a, bad[i] };
			cr_assert_eq(lfp_pool_free_bulk(p, pair, 2), -EINVAL, "bulk bad[%zu]", i);
			lfp_cache_t *h = lfp_pool_cache(p);
			cr_assert_not_null(h);
			cr_assert_eq(lfp_cache_free(h, bad[i]), -EINVAL, "cache free bad[%zu]", i);
		}
		assert_valid(p, 1023);
		cr_assert_eq(lfp_pool_free(p, a), 0);
		cr_assert_eq(lfp_pool_free(q, other), 0);
		assert_valid(p, 1024);
		assert_valid(q, 1024);
		lfp_pool_destroy(p);
		lfp_pool_destroy(q);
	}
}

/* Bug: lfp_cache_alloc / lfp_cache_free (inline) dereferenced a NULL
 * handle, which is what lfp_pool_cache returns on ENOSPC/EINVAL. */
Test(bad_input, null_cache_handle_inline_calls_are_einval)
{
	int x;
	errno = 0;
	cr_assert_null(lfp_cache_alloc(NULL));
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(lfp_cache_free(NULL, &x), -EINVAL);
	cr_assert_eq(lfp_cache_free(NULL, NULL), -EINVAL);
	errno = 0;
	cr_assert_null(lfp_cache_alloc_slow(NULL));
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(lfp_cache_free_slow(NULL, &x), -EINVAL);
}

/* Bug: after lfp_pool_destroy of an lfp_pool_init'ed region (still mapped),
 * a kept lfp_pool_cache() handle's inline path went on popping blocks out of
 * the dead region's magazine and pushing into it. */
Test(bad_input, stale_handle_after_destroy_of_an_initialised_region_is_einval)
{
	lfp_pool_config_t c = cfg(64, 1024);
	size_t size = lfp_pool_region_size(&c);
	void *mem = aligned_alloc(64, (size + 63) & ~(size_t)63);
	lfp_pool_t *p;
	cr_assert_eq(lfp_pool_init(mem, size, &c, &p), 0);
	lfp_cache_t *h = lfp_pool_cache(p);
	cr_assert_not_null(h);
	void *a = lfp_cache_alloc(h), *b = lfp_cache_alloc(h);
	cr_assert_not_null(b);
	cr_assert_eq(lfp_cache_free(h, b), 0); /* the magazine holds blocks */
	cr_assert_eq(lfp_pool_destroy(p), 0);
	errno = 0;
	cr_assert_null(lfp_cache_alloc(h), "a block out of a destroyed pool");
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(lfp_cache_free(h, a), -EINVAL, "a free into a destroyed pool");
	cr_assert_eq(((struct lfp_pool *)mem)->magic, LFPI_POOL_DEAD);
	/* a new pool in the same memory is not reached through the old handle */
	cr_assert_eq(lfp_pool_init(mem, size, &c, &p), 0);
	errno = 0;
	cr_assert_null(lfp_cache_alloc(h));
	cr_assert_eq(errno, EINVAL);
	assert_valid(p, 1024);
	cr_assert_eq(lfp_pool_destroy(p), 0);
	free(mem);
}

struct stale_arg {
	lfp_pool_t *p;
	pthread_barrier_t *bar;
	void *got;
	int alloc_errno, free_rc;
};

static void *use_handle_after_destroy(void *v)
{
	struct stale_arg *a = v;
	lfp_cache_t *h = lfp_pool_cache(a->p);
	void *x = lfp_cache_alloc(h), *y = lfp_cache_alloc(h);
	lfp_cache_free(h, y);
	pthread_barrier_wait(a->bar); /* main destroys the pool */
	pthread_barrier_wait(a->bar);
	errno = 0;
	a->got = lfp_cache_alloc(h);
	a->alloc_errno = errno;
	a->free_rc = lfp_cache_free(h, x);
	return NULL;
}

/* The same bug, with the handle held by another thread than the destroyer. */
Test(bad_input, stale_handle_of_another_thread_after_destroy_is_einval)
{
	lfp_pool_config_t c = cfg(64, 1024);
	size_t size = lfp_pool_region_size(&c);
	void *mem = aligned_alloc(64, (size + 63) & ~(size_t)63);
	lfp_pool_t *p;
	cr_assert_eq(lfp_pool_init(mem, size, &c, &p), 0);
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, 2);
	struct stale_arg a = { p, &bar, NULL, 0, 0 };
	pthread_t t;
	pthread_create(&t, NULL, use_handle_after_destroy, &a);
	pthread_barrier_wait(&bar);
	cr_assert_eq(lfp_pool_destroy(p), 0);
	pthread_barrier_wait(&bar);
	pthread_join(t, NULL);
	cr_assert_null(a.got, "a block out of a destroyed pool");
	cr_assert_eq(a.alloc_errno, EINVAL);
	cr_assert_eq(a.free_rc, -EINVAL);
	pthread_barrier_destroy(&bar);
	free(mem);
}

/* Bug: in a fork child, the kept lfp_pool_cache() handle of a shared pool
 * (whose slot belongs to the parent's thread and is forgotten in the child)
 * still pointed at the parent's loaded magazine, so child and parent popped
 * the same blocks. The child's handle must now refuse with EINVAL. */
Test(bad_input, fork_child_handle_of_a_shared_pool_is_einval)
{
	lfp_pool_config_t c = cfg(64, 1024);
	size_t size = lfp_pool_region_size(&c);
	void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	lfp_pool_t *p;
	cr_assert_eq(lfp_pool_init(mem, size, &c, &p), 0);
	p->flags |= LFPI_POOL_SHARED; /* as the shared-memory layer marks it */
	lfp_cache_t *h = lfp_pool_cache(p);
	cr_assert_not_null(h);
	void *a = lfp_cache_alloc(h), *b = lfp_cache_alloc(h);
	cr_assert_not_null(b);
	cr_assert_eq(lfp_cache_free(h, b), 0); /* the parent's magazine holds blocks */
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		errno = 0;
		void *x = lfp_cache_alloc(h);
		int e = errno;
		_exit(x == NULL && e == EINVAL && lfp_cache_free(h, a) == -EINVAL ? 0 : 1);
	}
	int st = 0;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child used the parent's magazine");
	cr_assert_eq(lfp_cache_free(h, a), 0);
	assert_valid(p, 1024);
	cr_assert_eq(lfp_pool_destroy(p), 0);
	munmap(mem, size);
}

/* Bug: lfp_pool_destroy forgot the thread-table entries only of pools with
 * a cache area, so each lfp_pool_cache() handle of a destroyed
 * LFP_POOL_NO_CACHE pool stayed pinned with a stale key, and after a few
 * pools at one address the thread got ENOSPC. */
Test(bad_input, handles_of_destroyed_no_cache_pools_do_not_fill_the_table)
{
	lfp_pool_config_t c = cfg(64, 64);
	c.flags = LFP_POOL_NO_CACHE;
	size_t size = lfp_pool_region_size(&c);
	void *mem = aligned_alloc(64, (size + 63) & ~(size_t)63);
	for (int r = 0; r < 100; r++) {
		lfp_pool_t *p;
		cr_assert_eq(lfp_pool_init(mem, size, &c, &p), 0);
		errno = 0;
		lfp_cache_t *h = lfp_pool_cache(p);
		cr_assert_not_null(h, "round %d: %s", r, strerror(errno));
		void *a = lfp_cache_alloc(h);
		cr_assert_not_null(a);
		cr_assert_eq(lfp_cache_free(h, a), 0);
		cr_assert_eq(lfp_pool_destroy(p), 0);
		errno = 0;
		cr_assert_null(lfp_cache_alloc(h), "round %d: stale handle", r);
		cr_assert_eq(errno, EINVAL);
	}
	free(mem);
}
