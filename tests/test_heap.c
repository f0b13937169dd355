/*
 * tests/test_heap.c - the fallback free-list heap (lfp_flheap_*), Criterion.
 *
 * The edge-case checklist (SIZE_MAX, calloc overflow, alignment errors,
 * realloc content, free(NULL) and errno), bad frees in plain and checked
 * mode, in-place realloc, the caller region with a grow callback, the
 * coalescing invariant (free everything in random order -> one free block),
 * a randomized differential test against a shadow model for every policy,
 * and a replay of the Autolab corner-case traces (skipped when
 * ../shared/traces is absent). Random tests print their seed; rerun one with
 * LFP_SEED=<seed>.
 */
#include <criterion/criterion.h>
#include <lfpool.h>

#include "lfp_test.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static const unsigned fits[] = { LFP_FIT_SEGREGATED, LFP_FIT_FIRST, LFP_FIT_NEXT, LFP_FIT_BEST };
static const char *const fit_names[] = { "seg", "first", "next", "best" };

static lfp_flheap_t *mk(unsigned fit, unsigned flags, size_t align)
{
	lfp_flheap_config_t c = { .fit = fit, .flags = flags, .align = align, .reserve = (size_t)1 << 30 };
	lfp_flheap_t *h = lfp_flheap_create(&c);
	cr_assert_not_null(h, "create: %s", strerror(errno));
	return h;
}

static void assert_valid(lfp_flheap_t *h)
{
	const char *why = NULL;
	int rc = lfp_flheap_validate(h, &why);
	cr_assert_eq(rc, 0, "heap invalid: %s", why ? why : "?");
}

/* ---- configuration ---------------------------------------------------------- */

Test(flheap_config, bad_configs_are_einval)
{
	lfp_flheap_config_t c;
	size_t aligns[] = { 1, 4, 32, 64 };
	for (size_t i = 0; i < sizeof aligns / sizeof *aligns; i++) {
		c = (lfp_flheap_config_t){ .align = aligns[i] };
		errno = 0;
		cr_expect_null(lfp_flheap_create(&c), "align %zu", aligns[i]);
		cr_expect_eq(errno, EINVAL);
	}
	c = (lfp_flheap_config_t){ .fit = 9 };
	errno = 0;
	cr_expect_null(lfp_flheap_create(&c));
	cr_expect_eq(errno, EINVAL);
	c = (lfp_flheap_config_t){ .flags = 1u << 20 };
	cr_expect_null(lfp_flheap_create(&c));
	static char region[4096] __attribute__((aligned(16)));
	c = (lfp_flheap_config_t){ .region = region + 4, .region_size = 1024 };
	errno = 0;
	cr_expect_null(lfp_flheap_create(&c), "misaligned region");
	cr_expect_eq(errno, EINVAL);
	c = (lfp_flheap_config_t){ .region = region, .region_size = 2048, .region_max = 1024 };
	cr_expect_null(lfp_flheap_create(&c), "region_max < region_size");
	c = (lfp_flheap_config_t){ .region_size = 4096 };
	errno = 0;
	cr_expect_null(lfp_flheap_create(&c), "region_size without a region");
	cr_expect_eq(errno, EINVAL);
	c = (lfp_flheap_config_t){ .region_max = 4096 };
	cr_expect_null(lfp_flheap_create(&c), "region_max without a region");
	c = (lfp_flheap_config_t){ .min_split = 8 };
	cr_expect_null(lfp_flheap_create(&c), "min_split below the minimum block");
	cr_expect_eq(lfp_flheap_destroy(NULL), -EINVAL);
	errno = 0;
	cr_expect_null(lfp_flheap_malloc(NULL, 8));
	cr_expect_eq(errno, EINVAL);
	cr_expect_eq(lfp_flheap_free(NULL, region), -EINVAL);
}

/* ---- the edge-case checklist ---------------------------------------------- */

Test(flheap_edges, malloc_zero_is_unique_and_freeable)
{
	lfp_flheap_t *h = mk(LFP_FIT_SEGREGATED, 0, 0);
	void *a = lfp_flheap_malloc(h, 0), *b = lfp_flheap_malloc(h, 0);
	cr_assert(a && b && a != b);
	cr_expect_geq(lfp_flheap_usable_size(h, a), 1);
	cr_expect_eq(lfp_flheap_free(h, a), 0);
	cr_expect_eq(lfp_flheap_free(h, b), 0);
	assert_valid(h);
	lfp_flheap_destroy(h);
}

Test(flheap_edges, sizes_near_size_max_fail_cleanly)
{
	lfp_flheap_t *h = mk(LFP_FIT_SEGREGATED, LFP_FLHEAP_CHECKED, 0);
	void *keep = lfp_flheap_malloc(h, 100);
	memset(keep, 0x5A, 100);
	size_t ks[] = { 0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 4096, (size_t)1 << 20 };
	for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
		errno = 0;
		cr_expect_null(lfp_flheap_malloc(h, SIZE_MAX - ks[i]), "malloc(SIZE_MAX-%zu)", ks[i]);
		cr_expect_eq(errno, ENOMEM);
		errno = 0;
		cr_expect_null(lfp_flheap_aligned_alloc(h, 64, SIZE_MAX - ks[i]));
		cr_expect_eq(errno, ENOMEM);
		errno = 0;
		cr_expect_null(lfp_flheap_realloc(h, keep, SIZE_MAX - ks[i]));
		cr_expect_eq(errno, ENOMEM, "failed realloc sets ENOMEM");
	}
	/* Blocks stay below 4 GiB: a 4 GiB request fails instead of wrapping. */
	errno = 0;
	cr_expect_null(lfp_flheap_malloc(h, (size_t)UINT32_MAX + 1));
	cr_expect_eq(errno, ENOMEM);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(((unsigned char *)keep)[i], 0x5A, "failed realloc changed the block");
	assert_valid(h);
	lfp_flheap_destroy(h);
}

Test(flheap_edges, calloc_overflow_pairs)
{
	lfp_flheap_t *h = mk(LFP_FIT_SEGREGATED, 0, 0);
	size_t pairs[][2] = { { SIZE_MAX, 2 }, { 2, SIZE_MAX }, { SIZE_MAX / 2 + 1, 2 },
			      { (size_t)1 << 32, (size_t)1 << 32 }, { SIZE_MAX, SIZE_MAX },
			      { 3, SIZE_MAX / 3 + 1 } };
	for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
		errno = 0;
		cr_expect_null(lfp_flheap_calloc(h, pairs[i][0], pairs[i][1]), "pair %zu", i);
		cr_expect_eq(errno, ENOMEM);
	}
	void *z = lfp_flheap_calloc(h, 0, 5), *y = lfp_flheap_calloc(h, 5, 0);
	cr_expect(z && y, "calloc of 0 bytes gives a block");
	lfp_flheap_free(h, z);
	lfp_flheap_free(h, y);
	assert_valid(h);
	lfp_flheap_destroy(h);
}

Test(flheap_edges, calloc_zeroes_reused_blocks)
{
	for (size_t f = 0; f < 4; f++) {
		lfp_flheap_t *h = mk(fits[f], 0, 0);
		size_t sizes[] = { 1, 24, 200, 4000, 70000 };
		for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
			unsigned char *p = lfp_flheap_malloc(h, sizes[i]);
			memset(p, 0xAB, lfp_flheap_usable_size(h, p));
			lfp_flheap_free(h, p);
			unsigned char *q = lfp_flheap_calloc(h, 1, sizes[i]);
			cr_assert_not_null(q);
			for (size_t k = 0; k < sizes[i]; k++)
				cr_assert_eq(q[k], 0, "%s: byte %zu of a reused %zu-byte block", fit_names[f], k,
					     sizes[i]);
			lfp_flheap_free(h, q);
		}
		assert_valid(h);
		lfp_flheap_destroy(h);
	}
}

Test(flheap_edges, every_alignment_error)
{
	lfp_flheap_t *h = mk(LFP_FIT_SEGREGATED, 0, 0);
	size_t bad[] = { 0, 3, 5, 6, 12, 24, 48, 100, ((size_t)1 << 30) + 1, (size_t)1 << 31, SIZE_MAX };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		errno = 0;
		cr_expect_null(lfp_flheap_aligned_alloc(h, bad[i], 64), "align %zu", bad[i]);
		cr_expect_eq(errno, EINVAL, "align %zu", bad[i]);
	}
	size_t good[] = { 1, 2, 8, 16, 32, 64, 256, 4096, 65536, (size_t)1 << 20 };
	size_t sizes[] = { 0, 1, 17, 1000, 100000 };
	void *keep[64];
	size_t nk = 0;
	for (size_t i = 0; i < sizeof good / sizeof *good; i++)
		for (size_t j = 0; j < sizeof sizes / sizeof *sizes; j++) {
			char *p = lfp_flheap_aligned_alloc(h, good[i], sizes[j]);
			cr_assert_not_null(p, "align %zu size %zu", good[i], sizes[j]);
			cr_expect_eq((uintptr_t)p % good[i], 0, "align %zu", good[i]);
			cr_expect_geq(lfp_flheap_usable_size(h, p), sizes[j]);
			memset(p, 1, sizes[j]);
			keep[nk++] = p;
		}
	assert_valid(h);
	for (size_t i = 0; i < nk; i++)
		cr_expect_eq(lfp_flheap_free(h, keep[i]), 0);
	assert_valid(h);
	lfp_flheap_destroy(h);
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(seed + i * 7);
}

static bool same(const unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(seed + i * 7))
			return false;
	return true;
}

Test(flheap_edges, realloc_shrink_and_grow_keep_content)
{
	for (size_t f = 0; f < 4; f++) {
		lfp_flheap_t *h = mk(fits[f], LFP_FLHEAP_CHECKED, 0);
		unsigned char *p = lfp_flheap_realloc(h, NULL, 300); /* realloc(NULL) = malloc */
		cr_assert_not_null(p);
		fill(p, 300, 11);
		void *other = lfp_flheap_malloc(h, 50); /* something after it */
		size_t steps[] = { 301, 1000, 5000, 64, 20000, 7, 100000, 3000 };
		size_t cur = 300;
		for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
			p = lfp_flheap_realloc(h, p, steps[i]);
			cr_assert_not_null(p, "%s: realloc to %zu", fit_names[f], steps[i]);
			size_t keep = cur < steps[i] ? cur : steps[i];
			cr_assert(same(p, keep, 11), "%s: content lost at step %zu", fit_names[f], i);
			fill(p, steps[i], 11);
			cur = steps[i];
			assert_valid(h);
		}
		int e = 1234;
		errno = e;
		cr_expect_null(lfp_flheap_realloc(h, p, 0), "realloc(p, 0) frees and returns NULL");
		cr_expect_eq(errno, e, "realloc(p, 0) keeps errno");
		cr_expect_eq(lfp_flheap_free(h, p), -EALREADY, "p was freed by realloc(p, 0)");
		lfp_flheap_free(h, other);
		assert_valid(h);
		lfp_flheap_destroy(h);
	}
}

Test(flheap_edges, free_null_and_errno)
{
	lfp_flheap_t *h = mk(LFP_FIT_SEGREGATED, 0, 0);
	errno = 4321;
	cr_expect_eq(lfp_flheap_free(h, NULL), 0);
	cr_expect_eq(errno, 4321);
	void *p = lfp_flheap_malloc(h, 40);
	errno = 4321;
	cr_expect_eq(lfp_flheap_free(h, p), 0);
	cr_expect_eq(errno, 4321, "a good free keeps errno");
	int local;
	errno = 4321;
	cr_expect_eq(lfp_flheap_free(h, &local), -EINVAL);
	cr_expect_eq(errno, 4321, "a bad free keeps errno");
	assert_valid(h);
	lfp_flheap_destroy(h);
}

/* ---- bad frees ----------------------------------------------------------------- */

Test(flheap_bad_free, plain_mode_catches_repeat_and_foreign)
{
	lfp_flheap_t *h = mk(LFP_FIT_SEGREGATED, 0, 0);
	char *a = lfp_flheap_malloc(h, 64), *b = lfp_flheap_malloc(h, 64);
	int local;
	cr_expect_eq(lfp_flheap_free(h, &local), -EINVAL, "stack pointer");
	cr_expect_eq(lfp_flheap_free(h, a + 1), -EINVAL, "misaligned");
	cr_expect_eq(lfp_flheap_free(h, b), 0);
	cr_expect_eq(lfp_flheap_free(h, b), -EALREADY, "repeat free of an intact block");
	lfp_flheap_stats_t st;
	lfp_flheap_stats(h, &st);
	cr_expect_eq(st.bad_frees, 3);
	cr_expect_eq(st.alloc_blocks, 1);
	assert_valid(h);
	lfp_flheap_destroy(h);
}

Test(flheap_bad_free, checked_mode_catches_everything)
{
	lfp_flheap_t *h = mk(LFP_FIT_SEGREGATED, LFP_FLHEAP_CHECKED | LFP_FLHEAP_PLAIN_SPLIT, 0);
	char *a = lfp_flheap_malloc(h, 64), *b = lfp_flheap_malloc(h, 64), *c = lfp_flheap_malloc(h, 64);
	char *d = lfp_flheap_malloc(h, 64);
	memset(c, 0, 64);
	/* b freed, then a: they coalesce, b's header is gone; b again is
	 * still refused, and so is a. */
	cr_expect_eq(lfp_flheap_free(h, b), 0);
	cr_expect_eq(lfp_flheap_free(h, a), 0);
	lfp_flheap_stats_t before, after;
	lfp_flheap_stats(h, &before);
	cr_expect_neq(lfp_flheap_free(h, b), 0, "double free inside a coalesced block");
	cr_expect_neq(lfp_flheap_free(h, a), 0, "double free of the coalesced block");
	/* A fake header inside a live block does not fool the bitmap. */
	uint32_t fake = 64 | 1u; /* size 64, allocated */
	memcpy(c + 12, &fake, 4);
	cr_expect_eq(lfp_flheap_free(h, c + 16), -EINVAL, "interior pointer with a fake header");
	cr_expect_eq(lfp_flheap_free(h, c + 8), -EINVAL);
	cr_expect_eq(lfp_flheap_usable_size(h, c + 16), 0);
	cr_expect_null(lfp_flheap_realloc(h, c + 16, 10));
	lfp_flheap_stats(h, &after);
	cr_expect_eq(after.alloc_blocks, before.alloc_blocks, "nothing changed");
	cr_expect_eq(after.free_blocks, before.free_blocks);
	cr_expect_eq(after.bad_frees, before.bad_frees + 4);
	assert_valid(h);
	cr_expect_eq(lfp_flheap_free(h, c), 0);
	cr_expect_eq(lfp_flheap_free(h, d), 0);
	assert_valid(h);
	lfp_flheap_destroy(h);
}

/* ---- in-place realloc --------------------------------------------------------------- */

Test(flheap_realloc, grows_and_shrinks_in_place)
{
	lfp_flheap_t *h = mk(LFP_FIT_SEGREGATED, LFP_FLHEAP_PLAIN_SPLIT, 0);
	char *a = lfp_flheap_malloc(h, 100), *b = lfp_flheap_malloc(h, 100), *c = lfp_flheap_malloc(h, 100);
	fill((unsigned char *)a, 100, 3);
	cr_assert_eq(lfp_flheap_free(h, b), 0);
	cr_expect_eq(lfp_flheap_realloc(h, a, 180), a, "grows into the free next block");
	cr_expect(same((unsigned char *)a, 100, 3));
	cr_expect_eq(lfp_flheap_realloc(h, a, 20), a, "shrinks in place");
	lfp_flheap_stats_t st;
	lfp_flheap_stats(h, &st);
	cr_expect_eq(st.free_blocks, 1, "the tail came back as one free block");
	/* The last block grows into the end of the heap. */
	char *last = lfp_flheap_malloc(h, 100);
	lfp_flheap_stats(h, &st);
	if (last > c) {
		cr_expect_eq(lfp_flheap_realloc(h, last, 100000), last, "grows at the end of the heap");
	}
	assert_valid(h);
	lfp_flheap_destroy(h);
	/* A free previous block takes a sliding realloc (fresh heap: x, y, z
	 * are adjacent). */
	h = mk(LFP_FIT_SEGREGATED, LFP_FLHEAP_PLAIN_SPLIT, 0);
	char *x = lfp_flheap_malloc(h, 200), *y = lfp_flheap_malloc(h, 100), *z = lfp_flheap_malloc(h, 50);
	fill((unsigned char *)y, 100, 9);
	lfp_flheap_free(h, x);
	char *y2 = lfp_flheap_realloc(h, y, 280);
	cr_expect_eq(y2, x, "slid back into the free previous block");
	cr_expect(same((unsigned char *)y2, 100, 9));
	(void)z;
	assert_valid(h);
	lfp_flheap_destroy(h);
}

/* ---- caller region with a grow callback (a simulated sbrk heap) ------------------ */

struct sbrk_sim {
	size_t cap, brk;
	bool fail;
	unsigned calls;
};

static int sim_grow(void *ctx, void *base, size_t new_size)
{
	struct sbrk_sim *s = ctx;
	(void)base;
	s->calls++;
	if (s->fail || new_size > s->cap)
		return -ENOMEM;
	cr_assert_gt(new_size, s->brk, "grow asks for more than it has");
	s->brk = new_size;
	return 0;
}

Test(flheap_region, sbrk_simulation_grows_and_fails_cleanly)
{
	size_t cap = (size_t)1 << 20;
	char *mem = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	struct sbrk_sim s = { .cap = cap };
	lfp_flheap_config_t c = { .region = mem, .region_max = cap, .grow = sim_grow, .grow_ctx = &s,
				  .flags = LFP_FLHEAP_UNLOCKED | LFP_FLHEAP_CHECKED, .align = 8 };
	lfp_flheap_t *h = lfp_flheap_create(&c);
	cr_assert_not_null(h);
	void *blk[4096];
	size_t n = 0;
	for (; n < 4096; n++) {
		blk[n] = lfp_flheap_malloc(h, 1000);
		if (blk[n] == NULL)
			break;
		cr_assert((char *)blk[n] >= mem && (char *)blk[n] + 1000 <= mem + s.brk,
			  "block outside the break");
		cr_assert_eq((uintptr_t)blk[n] % 8, 0);
	}
	cr_expect_eq(errno, ENOMEM);
	cr_expect_gt(n, 900, "most of the region was used (%zu blocks)", n);
	assert_valid(h);
	lfp_flheap_stats_t st;
	lfp_flheap_stats(h, &st);
	cr_expect_eq(st.extent, s.brk, "the extent is the break");
	cr_expect_lt(st.extent - 8 - n * 1008, 1008 + cap / 64, "no large waste");
	for (size_t i = 0; i < n; i += 2)
		lfp_flheap_free(h, blk[i]);
	s.fail = true;
	cr_expect_null(lfp_flheap_malloc(h, 600000), "growth refused by the callback");
	cr_expect_eq(errno, ENOMEM);
	assert_valid(h);
	for (size_t i = 1; i < n; i += 2)
		lfp_flheap_free(h, blk[i]);
	lfp_flheap_stats(h, &st);
	cr_expect_eq(st.free_blocks, 1);
	cr_expect_eq(st.alloc_blocks, 0);
	assert_valid(h);
	lfp_flheap_destroy(h);
	munmap(mem, cap);
}

/* ---- coalescing ---------------------------------------------------------------------------- */

Test(flheap_coalesce, free_everything_in_random_order_leaves_one_block)
{
	uint64_t seed = lfpt_seed_pick("flheap_coalesce", NULL);
	for (size_t f = 0; f < 4; f++)
		for (size_t align = 8; align <= 16; align += 8) {
			lfp_flheap_t *h = mk(fits[f], f == 1 ? LFP_FLHEAP_CHECKED : 0, align);
			lfpt_rng_t r;
			lfpt_rng_init(&r, seed, f * 2 + align / 8);
			enum { N = 3000 };
			static void *v[N];
			for (size_t i = 0; i < N; i++) {
				size_t n = lfpt_rng_below(&r, 8) == 0 ? lfpt_rng_below(&r, 40000)
								    : lfpt_rng_below(&r, 300);
				v[i] = lfpt_rng_below(&r, 10) == 0 ? lfp_flheap_aligned_alloc(h, 256, n)
								   : lfp_flheap_malloc(h, n);
				cr_assert_not_null(v[i]);
				/* some churn so free blocks exist while allocating */
				if (i > 10 && lfpt_rng_below(&r, 4) == 0) {
					size_t k = lfpt_rng_below(&r, i);
					if (v[k]) {
						lfp_flheap_free(h, v[k]);
						v[k] = NULL;
					}
				}
			}
			for (size_t i = N - 1; i > 0; i--) { /* shuffle */
				size_t k = lfpt_rng_below(&r, i + 1);
				void *t = v[i];
				v[i] = v[k];
				v[k] = t;
			}
			for (size_t i = 0; i < N; i++)
				if (v[i])
					cr_assert_eq(lfp_flheap_free(h, v[i]), 0);
			assert_valid(h);
			lfp_flheap_stats_t st;
			lfp_flheap_stats(h, &st);
			cr_expect_eq(st.alloc_blocks, 0, "%s align %zu", fit_names[f], align);
			cr_expect_eq(st.free_blocks, 1, "%s align %zu: %llu free blocks", fit_names[f],
				     align, (unsigned long long)st.free_blocks);
			cr_expect_eq(st.free_bytes, st.extent - align, "one block spans the heap");
			cr_expect_eq(st.largest_free, st.free_bytes);
			lfp_flheap_destroy(h);
		}
}

/* ---- differential test against a shadow model ------------------------------------ */

struct shadow {
	unsigned char *p;
	size_t n;
	size_t align;
	unsigned tag;
};

static void diff_run(unsigned fit, unsigned flags, size_t align, uint64_t seed, unsigned ops)
{
	lfp_flheap_t *h = mk(fit, flags, align);
	enum { SLOTS = 512 };
	static struct shadow s[SLOTS];
	memset(s, 0, sizeof s);
	lfpt_rng_t r;
	lfpt_rng_init(&r, seed, fit * 4 + flags + align);
	unsigned tag = 1;
	for (unsigned op = 0; op < ops; op++) {
		struct shadow *x = &s[lfpt_rng_below(&r, SLOTS)];
		unsigned what = (unsigned)lfpt_rng_below(&r, 10);
		size_t n = lfpt_rng_below(&r, 16) == 0 ? lfpt_rng_below(&r, 100000)
			  : lfpt_rng_below(&r, 4) == 0 ? lfpt_rng_below(&r, 3000)
						      : lfpt_rng_below(&r, 200);
		if (x->p == NULL) {
			size_t a = 0;
			if (what == 0) {
				a = (size_t)1 << (3 + lfpt_rng_below(&r, 10));
				x->p = lfp_flheap_aligned_alloc(h, a, n);
			} else if (what == 1) {
				x->p = lfp_flheap_calloc(h, 1, n);
				cr_assert_not_null(x->p);
				for (size_t i = 0; i < n; i++)
					cr_assert_eq(x->p[i], 0, "calloc byte %zu (op %u)", i, op);
			} else {
				x->p = lfp_flheap_malloc(h, n);
			}
			cr_assert_not_null(x->p, "op %u: alloc %zu: %s", op, n, strerror(errno));
			cr_assert_eq((uintptr_t)x->p % (a > align ? a : align), 0, "op %u: misaligned", op);
			cr_assert_geq(lfp_flheap_usable_size(h, x->p), n);
			x->n = n;
			x->tag = tag++;
			fill(x->p, n, x->tag);
		} else if (what < 4) {
			cr_assert(same(x->p, x->n, x->tag), "op %u: block overwritten", op);
			unsigned char *q = lfp_flheap_realloc(h, x->p, n);
			if (n == 0) {
				cr_assert_null(q);
				x->p = NULL;
				continue;
			}
			cr_assert_not_null(q, "op %u: realloc %zu", op, n);
			cr_assert(same(q, x->n < n ? x->n : n, x->tag), "op %u: realloc lost content", op);
			cr_assert_eq((uintptr_t)q % align, 0);
			x->p = q;
			x->n = n;
			fill(q, n, x->tag);
		} else {
			cr_assert(same(x->p, x->n, x->tag), "op %u: block overwritten before free", op);
			cr_assert_eq(lfp_flheap_free(h, x->p), 0, "op %u", op);
			x->p = NULL;
		}
		if (op % 2000 == 0) {
			assert_valid(h);
			for (size_t i = 0; i < SLOTS; i++)
				if (s[i].p)
					cr_assert(same(s[i].p, s[i].n, s[i].tag), "op %u: slot %zu", op, i);
		}
	}
	for (size_t i = 0; i < SLOTS; i++)
		if (s[i].p) {
			cr_assert(same(s[i].p, s[i].n, s[i].tag));
			cr_assert_eq(lfp_flheap_free(h, s[i].p), 0);
		}
	assert_valid(h);
	lfp_flheap_stats_t st;
	lfp_flheap_stats(h, &st);
	cr_expect_eq(st.alloc_blocks, 0);
	cr_expect_eq(st.free_blocks, 1);
	lfp_flheap_destroy(h);
}

Test(flheap_diff, random_ops_match_the_shadow, .timeout = 120)
{
	uint64_t seed = lfpt_seed_pick("flheap_diff", NULL);
	for (size_t f = 0; f < 4; f++) {
		diff_run(fits[f], 0, 16, seed, f == LFP_FIT_SEGREGATED ? 40000 : 15000);
		diff_run(fits[f], LFP_FLHEAP_CHECKED, 8, seed + 1, 10000);
	}
	diff_run(LFP_FIT_SEGREGATED, LFP_FLHEAP_PLAIN_SPLIT, 16, seed + 2, 20000);
}

/* ---- trim ------------------------------------------------------------------------------------- */

Test(flheap_trim, trim_after_large_frees)
{
	lfp_flheap_t *h = mk(LFP_FIT_SEGREGATED, 0, 0);
	void *v[8];
	for (int i = 0; i < 8; i++) {
		v[i] = lfp_flheap_malloc(h, 1 << 20);
		memset(v[i], 1, 1 << 20);
	}
	errno = 4242;
	for (int i = 0; i < 8; i += 2)
		lfp_flheap_free(h, v[i]);
	/* A free of 256 KiB or more gives its pages back at once; until
	 * 0.2.1 every madvise failed (an unaligned address) and kept them. */
	for (int i = 0; i < 8; i += 2)
		cr_expect_eq(lfpt_resident_pages(v[i], 1 << 20), 0, "block %d: pages still resident", i);
	cr_expect_eq(lfp_flheap_trim(h), 0);
	cr_expect_eq(errno, 4242, "free and trim keep errno (%d)", errno);
	assert_valid(h);
	for (int i = 0; i < 8; i += 2) { /* released pages come back zeroed and usable */
		v[i] = lfp_flheap_malloc(h, 1 << 20);
		memset(v[i], 2, 1 << 20);
	}
	for (int i = 0; i < 8; i++)
		lfp_flheap_free(h, v[i]);
	assert_valid(h);
	cr_expect_eq(lfp_flheap_trim(NULL), -EINVAL);
	lfp_flheap_destroy(h);
}

/* ---- traces (skipped without ../shared/traces) ------------------------------------------- */

static void *trace_malloc(void *h, size_t n)
{
	return lfp_flheap_malloc(h, n);
}

static void *trace_realloc(void *h, void *p, size_t n)
{
	return lfp_flheap_realloc(h, p, n);
}

static int trace_free(void *h, void *p)
{
	return lfp_flheap_free(h, p);
}

Test(flheap_traces, corner_traces_replay_cleanly)
{
	static const char *const names[] = { "malloclab-autolab/corners.rep",
					     "malloclab-autolab/malloc-free.rep",
					     "malloclab/short1-bal.rep", "malloclab/short2-bal.rep" };
	static struct lfpt_trace_op ops[64];
	char why[512] = "";
	int ran = 0;
	for (size_t t = 0; t < sizeof names / sizeof *names; t++) {
		long n = lfpt_trace_read(names[t], ops, 64, why, sizeof why);
		if (n == -1)
			continue;
		cr_assert_geq(n, 0, "%s", why);
		ran++;
		lfp_flheap_t *h = mk(LFP_FIT_SEGREGATED, LFP_FLHEAP_CHECKED, 8);
		const struct lfpt_trace_heap a = { trace_malloc, trace_realloc, trace_free, h };
		cr_assert_eq(lfpt_trace_replay(ops, n, &a, why, sizeof why), 0, "%s: %s", names[t], why);
		assert_valid(h);
		lfp_flheap_destroy(h);
	}
	if (ran == 0)
		cr_skip_test("../shared/traces absent (LFP_TRACES=%s)", getenv("LFP_TRACES") ? getenv("LFP_TRACES") : "");
}
