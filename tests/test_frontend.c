/*
 * tests/test_frontend.c - the malloc-compatible front end (lfp_heap_*,
 * lfp_malloc & co.), Criterion.
 *
 * The edge-case checklist over all three owners (class pools, the fallback
 * heap, huge mappings): malloc(0), SIZE_MAX and SIZE_MAX-k, calloc overflow
 * pairs and zeroed reuse, every alignment error (aligned_alloc and
 * posix_memalign), realloc across owners with content checks, realloc(NULL)
 * and realloc(p, 0), free(NULL) and errno; bad frees in plain and checked
 * mode; class growth and pool retirement; a randomized differential test
 * against a shadow model (seed printed; LFP_SEED=<seed> reruns it); and the
 * Autolab corner traces through the front end (skipped without
 * ../shared/traces).
 */
#include <criterion/criterion.h>
#include <lfpool.h>

#include "lfp_test.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define HUGE_T ((size_t)256 << 10) /* the default huge threshold */

static lfp_heap_t *mk(unsigned flags)
{
	lfp_heap_config_t c = { .flags = flags, .reserve = (size_t)1 << 30 };
	lfp_heap_t *h = lfp_heap_create(&c);
	cr_assert_not_null(h, "create: %s", strerror(errno));
	return h;
}

static void assert_valid(lfp_heap_t *h)
{
	const char *why = NULL;
	int rc = lfp_heap_validate(h, &why);
	cr_assert_eq(rc, 0, "front end invalid: %s", why ? why : "?");
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(seed + i * 13);
}

static bool same(const unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(seed + i * 13))
			return false;
	return true;
}

/* Sizes that land in each owner: classes, the fallback heap, huge. */
static const size_t sizes[] = { 0, 1, 8, 9, 16, 17, 100, 1024, 4096, 16384, 16385, 100000,
				HUGE_T - 1, HUGE_T, 3 * HUGE_T + 5 };
#define NSIZES (sizeof sizes / sizeof *sizes)

/* ---- configuration ------------------------------------------------------------- */

Test(heap_config, bad_configs_are_einval)
{
	static const size_t not_ascending[] = { 16, 64, 32 };
	static const size_t odd[] = { 16, 24 };
	static const size_t too_big[] = { 16, 128 * 1024 };
	static const size_t zero[] = { 0, 16 };
	struct {
		lfp_heap_config_t c;
		const char *what;
	} bad[] = {
		{ { .class_sizes = not_ascending, .class_count = 3 }, "not ascending" },
		{ { .class_sizes = odd, .class_count = 2 }, "not a multiple of 16" },
		{ { .class_sizes = too_big, .class_count = 2 }, "above the largest class" },
		{ { .class_sizes = zero, .class_count = 2 }, "zero" },
		{ { .class_sizes = odd, .class_count = 0 }, "no classes" },
		{ { .class_sizes = odd, .class_count = LFP_HEAP_MAX_CLASSES + 1 }, "too many" },
		{ { .class_sizes = NULL, .class_count = 3 }, "a class count without sizes" },
		{ { .fit = 7 }, "fit" },
		{ { .flags = 1u << 9 }, "flag" },
		{ { .flags = LFP_HEAP_OWNED | LFP_HEAP_BINS }, "owned pools and bins at once" },
		{ { .pool_min_bytes = 8192, .pool_max_bytes = 4096 }, "pool_min > pool_max" },
		{ { .pool_min_bytes = (size_t)1 << 40 }, "a first pool bigger than the reservation" },
		{ { .reserve = (size_t)64 << 20, .pool_max_bytes = (size_t)32 << 20 }, "pool_max > reserve / 4" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		errno = 0;
		cr_expect_null(lfp_heap_create(&bad[i].c), "%s", bad[i].what);
		cr_expect_eq(errno, EINVAL, "%s", bad[i].what);
	}
	cr_expect_eq(lfp_heap_destroy(NULL), -EINVAL);
	errno = 0;
	cr_expect_null(lfp_heap_malloc(NULL, 8));
	cr_expect_eq(errno, EINVAL);
	cr_expect_eq(lfp_heap_free(NULL, (void *)8), -EINVAL);
	cr_expect_eq(lfp_heap_trim(NULL), -EINVAL);
	cr_expect_eq(lfp_default_heap_configure(NULL), -EINVAL);
}

Test(heap_config, custom_classes_are_used)
{
	static const size_t cls[] = { 8, 32, 96, 1024 };
	lfp_heap_config_t c = { .class_sizes = cls, .class_count = 4 };
	lfp_heap_t *h = lfp_heap_create(&c);
	cr_assert_not_null(h);
	size_t want[][2] = { { 1, 8 }, { 8, 8 }, { 9, 32 }, { 33, 96 }, { 97, 1024 }, { 1024, 1024 } };
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		void *p = lfp_heap_malloc(h, want[i][0]);
		cr_expect_eq(lfp_heap_usable_size(h, p), want[i][1], "size %zu", want[i][0]);
		lfp_heap_free(h, p);
	}
	void *p = lfp_heap_malloc(h, 1025); /* above the last class: fallback heap */
	cr_expect_geq(lfp_heap_usable_size(h, p), 1025);
	lfp_heap_free(h, p);
	assert_valid(h);
	lfp_heap_destroy(h);
}

/* ---- the edge-case checklist ---------------------------------------------------- */

Test(heap_edges, malloc_zero)
{
	lfp_heap_t *h = mk(0);
	void *a = lfp_heap_malloc(h, 0), *b = lfp_heap_malloc(h, 0);
	cr_assert(a && b && a != b, "malloc(0) gives distinct blocks");
	cr_expect_geq(lfp_heap_usable_size(h, a), 1);
	cr_expect_eq(lfp_heap_free(h, a), 0);
	cr_expect_eq(lfp_heap_free(h, b), 0);
	void *c = lfp_malloc(0);
	cr_expect_not_null(c);
	lfp_free(c);
	lfp_heap_destroy(h);
}

Test(heap_edges, sizes_near_size_max_fail_cleanly)
{
	lfp_heap_t *h = mk(LFP_HEAP_CHECKED);
	unsigned char *keep = lfp_heap_malloc(h, 100);
	fill(keep, 100, 5);
	size_t ks[] = { 0, 1, 7, 8, 15, 16, 17, 4095, 4096, (size_t)1 << 20, (size_t)1 << 31 };
	for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
		size_t n = SIZE_MAX - ks[i];
		errno = 0;
		cr_expect_null(lfp_heap_malloc(h, n), "malloc(SIZE_MAX-%zu)", ks[i]);
		cr_expect_eq(errno, ENOMEM);
		errno = 0;
		cr_expect_null(lfp_malloc(n));
		cr_expect_eq(errno, ENOMEM);
		errno = 0;
		cr_expect_null(lfp_heap_aligned_alloc(h, 4096, n));
		cr_expect_eq(errno, ENOMEM);
		errno = 0;
		cr_expect_null(lfp_heap_realloc(h, keep, n), "realloc to SIZE_MAX-%zu", ks[i]);
		cr_expect_eq(errno, ENOMEM);
		cr_assert(same(keep, 100, 5), "a failed realloc left p intact");
	}
	lfp_heap_stats_t st;
	lfp_heap_stats(h, &st);
	cr_expect_eq(st.huge_live, 0, "no mapping leaked");
	cr_expect_eq(lfp_heap_free(h, keep), 0);
	assert_valid(h);
	lfp_heap_destroy(h);
}

Test(heap_edges, calloc_overflow_and_zeroed_reuse)
{
	lfp_heap_t *h = mk(0);
	size_t pairs[][2] = { { SIZE_MAX, 2 }, { 2, SIZE_MAX }, { SIZE_MAX / 2 + 1, 2 },
			      { (size_t)1 << 32, (size_t)1 << 32 }, { SIZE_MAX, SIZE_MAX },
			      { 3, SIZE_MAX / 3 + 1 }, { (size_t)1 << 33, (size_t)1 << 31 } };
	for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
		errno = 0;
		cr_expect_null(lfp_heap_calloc(h, pairs[i][0], pairs[i][1]), "pair %zu", i);
		cr_expect_eq(errno, ENOMEM);
		errno = 0;
		cr_expect_null(lfp_calloc(pairs[i][0], pairs[i][1]), "pair %zu", i);
		cr_expect_eq(errno, ENOMEM);
	}
	for (size_t i = 0; i < NSIZES; i++) {
		size_t n = sizes[i];
		for (int round = 0; round < 3; round++) {
			unsigned char *p = lfp_heap_malloc(h, n);
			cr_assert_not_null(p);
			memset(p, 0xEE, lfp_heap_usable_size(h, p));
			lfp_heap_free(h, p);
		}
		unsigned char *q = lfp_heap_calloc(h, 1, n);
		cr_assert_not_null(q, "calloc %zu", n);
		for (size_t k = 0; k < n; k++)
			cr_assert_eq(q[k], 0, "calloc(1, %zu): byte %zu of a reused block", n, k);
		lfp_heap_free(h, q);
	}
	assert_valid(h);
	lfp_heap_destroy(h);
}

Test(heap_edges, every_alignment_error)
{
	lfp_heap_t *h = mk(0);
	size_t bad[] = { 0, 3, 5, 6, 7, 12, 24, 48, 96, ((size_t)1 << 30) + 1, (size_t)1 << 31, SIZE_MAX };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		errno = 0;
		cr_expect_null(lfp_heap_aligned_alloc(h, bad[i], 64), "align %zu", bad[i]);
		cr_expect_eq(errno, EINVAL, "align %zu", bad[i]);
		errno = 0;
		cr_expect_null(lfp_aligned_alloc(bad[i], 64));
		cr_expect_eq(errno, EINVAL);
	}
	/* posix_memalign: a power-of-two multiple of sizeof(void *), returned,
	 * not set in errno; *out untouched on error. */
	size_t pbad[] = { 0, 1, 2, 4, 3, 12, 24, 48, ((size_t)1 << 30) + 8 };
	for (size_t i = 0; i < sizeof pbad / sizeof *pbad; i++) {
		void *out = (void *)0x1234;
		errno = 777;
		cr_expect_eq(lfp_posix_memalign(&out, pbad[i], 64), EINVAL, "align %zu", pbad[i]);
		cr_expect_eq(errno, 777, "posix_memalign keeps errno");
		cr_expect_eq(out, (void *)0x1234, "*out untouched");
	}
	void *out = (void *)0x1234;
	errno = 777;
	cr_expect_eq(lfp_posix_memalign(&out, 64, SIZE_MAX - 8), ENOMEM);
	cr_expect_eq(errno, 777);
	cr_expect_eq(out, (void *)0x1234);
	cr_expect_eq(lfp_posix_memalign(NULL, 64, 8), EINVAL);
	size_t good[] = { 1, 2, 4, 8, 16, 32, 64, 512, 4096, 65536, (size_t)1 << 21 };
	for (size_t i = 0; i < sizeof good / sizeof *good; i++)
		for (size_t j = 0; j < NSIZES; j++) {
			char *p = lfp_heap_aligned_alloc(h, good[i], sizes[j]);
			cr_assert_not_null(p, "align %zu size %zu", good[i], sizes[j]);
			cr_expect_eq((uintptr_t)p % good[i], 0, "align %zu size %zu", good[i], sizes[j]);
			cr_expect_geq(lfp_heap_usable_size(h, p), sizes[j]);
			memset(p, 1, sizes[j]);
			cr_expect_eq(lfp_heap_free(h, p), 0);
			if (good[i] >= sizeof(void *)) {
				void *q = NULL;
				errno = 777;
				cr_expect_eq(lfp_posix_memalign(&q, good[i], sizes[j]), 0);
				cr_expect_eq(errno, 777);
				cr_expect_eq((uintptr_t)q % good[i], 0);
				lfp_free(q);
			}
		}
	/* 16-byte alignment even for tiny sizes (the 8-byte class is only
	 * 8-aligned). */
	for (int k = 0; k < 64; k++) {
		void *p = lfp_heap_aligned_alloc(h, 16, 1);
		cr_expect_eq((uintptr_t)p % 16, 0);
		lfp_heap_free(h, p);
	}
	assert_valid(h);
	lfp_heap_destroy(h);
}

Test(heap_edges, realloc_across_owners_keeps_content)
{
	lfp_heap_t *h = mk(LFP_HEAP_CHECKED);
	/* A walk through classes, the fallback heap, huge and back. */
	size_t steps[] = { 10, 12, 16, 40, 1000, 16384, 20000, 200000, HUGE_T + 1, 5 * HUGE_T,
			   3 * HUGE_T, 100000, 64, 8, 2 * HUGE_T, 1 };
	unsigned char *p = lfp_heap_realloc(h, NULL, 5); /* realloc(NULL) = malloc */
	cr_assert_not_null(p);
	fill(p, 5, 77);
	size_t cur = 5;
	for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
		unsigned char *q = lfp_heap_realloc(h, p, steps[i]);
		cr_assert_not_null(q, "realloc %zu -> %zu", cur, steps[i]);
		cr_assert(same(q, cur < steps[i] ? cur : steps[i], 77), "content lost %zu -> %zu", cur,
			  steps[i]);
		cr_expect_geq(lfp_heap_usable_size(h, q), steps[i]);
		if (cur == 10 && steps[i] == 12)
			cr_expect_eq(q, p, "same class: stays in place");
		if (cur == 5 * HUGE_T && steps[i] == 3 * HUGE_T)
			cr_expect_eq(q, p, "huge shrink that stays huge: in place");
		fill(q, steps[i], 77);
		p = q;
		cur = steps[i];
		assert_valid(h);
	}
	errno = 999;
	cr_expect_null(lfp_heap_realloc(h, p, 0), "realloc(p, 0) frees");
	cr_expect_eq(errno, 999, "... without touching errno");
	cr_expect_neq(lfp_heap_free(h, p), 0, "p is gone");
	int local;
	errno = 0;
	cr_expect_null(lfp_heap_realloc(h, &local, 10), "realloc of a foreign pointer");
	cr_expect_eq(errno, EINVAL);
	lfp_heap_stats_t st;
	lfp_heap_stats(h, &st);
	cr_expect_eq(st.huge_live, 0);
	assert_valid(h);
	lfp_heap_destroy(h);
}

/* Regression (R2 review): realloc of a class block that was already freed
 * returned it again (same class) or copied from it (another class), so the
 * block had two owners: the free pool and the caller. It must be refused
 * with EINVAL like any pointer that is not a live block, in plain and
 * checked mode, and usable_size of it must be 0. */
Test(heap_edges, realloc_of_freed_class_block_is_einval)
{
	static const unsigned modes[] = { 0, LFP_HEAP_CHECKED, LFP_HEAP_BINS };
	static const size_t to[] = { 100, 90, 5000, 100000, 3 * HUGE_T };
	for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
		lfp_heap_t *h = mk(modes[m]);
		void *keep = lfp_heap_malloc(h, 100);
		void *p = lfp_heap_malloc(h, 100);
		cr_assert(keep != NULL && p != NULL);
		cr_assert_eq(lfp_heap_free(h, p), 0);
		for (size_t i = 0; i < sizeof to / sizeof *to; i++) {
			errno = 0;
			cr_expect_null(lfp_heap_realloc(h, p, to[i]), "mode %u: realloc(freed, %zu)",
				       modes[m], to[i]);
			cr_expect_eq(errno, EINVAL, "mode %u: realloc(freed, %zu)", modes[m], to[i]);
			/* Nor a pointer into a live block that is not its start. */
			errno = 0;
			cr_expect_null(lfp_heap_realloc(h, (char *)keep + 16, to[i]),
				       "mode %u: realloc(interior, %zu)", modes[m], to[i]);
			cr_expect_eq(errno, EINVAL, "mode %u: realloc(interior, %zu)", modes[m], to[i]);
		}
		cr_expect_eq(lfp_heap_usable_size(h, p), 0, "mode %u: usable_size(freed)", modes[m]);
		lfp_heap_stats_t st;
		lfp_heap_stats(h, &st);
		cr_expect_eq(st.bad_frees, 0, "mode %u: nothing was freed twice", modes[m]);
		assert_valid(h);
		cr_expect_eq(lfp_heap_free(h, keep), 0);
		lfp_heap_destroy(h);
	}
}

Test(heap_edges, free_null_and_errno_in_every_owner)
{
	lfp_heap_t *h = mk(0);
	errno = 4242;
	cr_expect_eq(lfp_heap_free(h, NULL), 0);
	lfp_free(NULL);
	cr_expect_eq(errno, 4242);
	for (size_t i = 0; i < NSIZES; i++) {
		void *p = lfp_heap_malloc(h, sizes[i]);
		errno = 4242;
		cr_expect_eq(lfp_heap_free(h, p), 0);
		cr_expect_eq(errno, 4242, "free of a %zu-byte block keeps errno", sizes[i]);
		p = lfp_malloc(sizes[i]);
		errno = 4242;
		lfp_free(p);
		cr_expect_eq(errno, 4242, "lfp_free of a %zu-byte block keeps errno", sizes[i]);
	}
	int local;
	errno = 4242;
	cr_expect_eq(lfp_heap_free(h, &local), -EINVAL);
	cr_expect_eq(errno, 4242, "a bad free keeps errno");
	lfp_heap_destroy(h);
}

/* ---- bad frees ----------------------------------------------------------------------- */

static void bad_frees(unsigned flags)
{
	lfp_heap_t *h = mk(flags);
	int local;
	uint64_t expect_bad = 0;
	char *cls = lfp_heap_malloc(h, 48), *mid = lfp_heap_malloc(h, 50000);
	char *big = lfp_heap_malloc(h, 2 * HUGE_T);
	char *cls2 = lfp_heap_malloc(h, 48);
	cr_expect_eq(lfp_heap_free(h, &local), -EINVAL, "stack pointer");
	cr_expect_eq(lfp_heap_free(h, cls + 8), -EINVAL, "inside a class block");
	cr_expect_eq(lfp_heap_free(h, big + 4096), -EINVAL, "inside a huge block");
	expect_bad += 3;
	if (flags & LFP_HEAP_CHECKED) {
		cr_expect_eq(lfp_heap_free(h, mid + 16), -EINVAL, "inside a fallback block");
		expect_bad++;
	}
	cr_expect_eq(lfp_heap_free(h, cls), 0);
	cr_expect_eq(lfp_heap_free(h, cls), -EALREADY, "double free in a pool");
	cr_expect_eq(lfp_heap_free(h, mid), 0);
	cr_expect_eq(lfp_heap_free(h, mid), -EALREADY, "double free in the fallback heap");
	cr_expect_eq(lfp_heap_free(h, big), 0);
	cr_expect_eq(lfp_heap_free(h, big), -EINVAL, "double free of a huge block: mapping gone");
	expect_bad += 3;
	lfp_heap_stats_t st;
	lfp_heap_stats(h, &st);
	cr_expect_eq(st.bad_frees, expect_bad);
	cr_expect_eq(lfp_heap_usable_size(h, &local), 0);
	cr_expect_eq(lfp_heap_usable_size(h, cls2 + 1), 0);
	assert_valid(h);
	cr_expect_eq(lfp_heap_free(h, cls2), 0);
	assert_valid(h);
	lfp_heap_destroy(h);
}

Test(heap_bad_free, plain_mode)
{
	bad_frees(0);
}

Test(heap_bad_free, checked_mode)
{
	bad_frees(LFP_HEAP_CHECKED);
}

Test(heap_bad_free, bins_mode)
{
	bad_frees(LFP_HEAP_BINS);
}

Test(heap_bad_free, lfp_free_counts_and_ignores)
{
	lfp_heap_t *d = lfp_default_heap();
	cr_assert_not_null(d);
	lfp_heap_stats_t a, b;
	lfp_heap_stats(d, &a);
	int local;
	void *p = lfp_malloc(32);
	lfp_free(p);
	lfp_free(p);      /* double */
	lfp_free(&local); /* foreign */
	lfp_heap_stats(d, &b);
	cr_expect_eq(b.bad_frees, a.bad_frees + 2);
	assert_valid(d);
	cr_expect_eq(lfp_default_heap_configure(&(lfp_heap_config_t){ 0 }), -EBUSY,
		     "too late to configure the default heap");
}

/* The pointer just past the last block of a class's first pool lies in
 * the tail of the pool's last page: the page map names the pool there, and
 * the pool must refuse it. With small pools out of the directory, a check
 * that sent such a pointer on to the fallback heap read the last block's
 * final bytes as a fallback header: with the right bytes there, free
 * returned 0 and corrupted the fallback heap. Every mode; the last block
 * ends in a fake header (size 32, allocated). */
static lfp_heap_stats_t stats_of(lfp_heap_t *h);

static int past_the_last_block(unsigned flags)
{
	static const size_t cls_sizes[] = { 48, 80, 112, 208, 304, 400 };
	int tails = 0;
	for (size_t k = 0; k < sizeof cls_sizes / sizeof *cls_sizes; k++) {
		lfp_heap_config_t c = { .flags = flags, .reserve = (size_t)1 << 30 };
		lfp_heap_t *h = lfp_heap_create(&c);
		cr_assert_not_null(h);
		size_t sz = cls_sizes[k];
		enum { MAXB = 4096 };
		static char *v[MAXB];
		int n = 0;
		char *last = NULL;
		/* The blocks of the class's first pool: until a second one. */
		while (n < MAXB) {
			v[n] = lfp_heap_malloc(h, sz);
			cr_assert_not_null(v[n]);
			if (stats_of(h).pools > 1)
				break;
			if (last == NULL || v[n] > last)
				last = v[n];
			n++;
		}
		size_t usable = lfp_heap_usable_size(h, last);
		char *past = last + usable;
		if (((uintptr_t)past & 511) != 0) { /* in the tail of the pool's page */
			tails++;
			uint32_t fake = 32 | 1;
			memcpy(past - 4, &fake, sizeof fake);
			errno = 0;
			cr_expect_eq(lfp_heap_usable_size(h, past), 0, "flags %#x, %zu B", flags, sz);
			cr_expect_null(lfp_heap_realloc(h, past, 8), "flags %#x, %zu B", flags, sz);
			cr_expect_eq(errno, EINVAL, "flags %#x, %zu B: realloc", flags, sz);
			cr_expect_eq(lfp_heap_free(h, past), -EINVAL, "flags %#x, %zu B: free", flags, sz);
			assert_valid(h);
		}
		for (int i = 0; i <= n && i < MAXB; i++)
			cr_assert_eq(lfp_heap_free(h, v[i]), 0);
		assert_valid(h);
		lfp_heap_destroy(h);
	}
	return tails;
}

Test(heap_bad_free, the_tail_past_a_small_pools_last_block_is_refused)
{
	static const unsigned modes[] = { 0, LFP_HEAP_BINS, LFP_HEAP_CHECKED };
	for (size_t m = 0; m < sizeof modes / sizeof *modes; m++)
		cr_expect_gt(past_the_last_block(modes[m]), 0, "flags %#x: no class had a tail to test",
			     modes[m]);
}

/* ---- the thread cache (struct fe_tc in pool/frontend.c) ------------------------------- */

struct tc_job {
	lfp_heap_t *h, *h2;
	void *p;
	int rc;
	pthread_barrier_t *gate; /* NULL: none */
};

static void *tc_free_other(void *arg)
{
	struct tc_job *j = arg;
	j->rc = lfp_heap_free(j->h, j->p);
	return NULL;
}

static void run_thread(void *(*fn)(void *), void *j)
{
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, fn, j), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
}

Test(heap_tcache, double_free_of_a_cached_block_from_another_thread)
{
	lfp_heap_t *h = mk(LFP_HEAP_BINS);
	void *p = lfp_heap_malloc(h, 48);
	cr_assert_not_null(p);
	cr_assert_eq(lfp_heap_free(h, p), 0); /* into this thread's cache */
	struct tc_job j = { .h = h, .p = p };
	run_thread(tc_free_other, &j);
	cr_expect_eq(j.rc, -EALREADY, "a block in another thread's cache is not live (%d)", j.rc);
	cr_expect_eq(lfp_heap_realloc(h, p, 40), NULL, "nor can it be resized");
	cr_expect_eq(lfp_heap_usable_size(h, p), 0);
	/* It is handed out once, not twice. */
	enum { N = 200 };
	void *v[N];
	int seen = 0;
	for (int i = 0; i < N; i++) {
		v[i] = lfp_heap_malloc(h, 48);
		cr_assert_not_null(v[i]);
		seen += v[i] == p;
	}
	cr_expect_eq(seen, 1, "the block came back %d times", seen);
	for (int i = 0; i < N; i++)
		cr_expect_eq(lfp_heap_free(h, v[i]), 0);
	assert_valid(h);
	lfp_heap_destroy(h);
}

Test(heap_tcache, a_never_allocated_block_start_is_refused)
{
	lfp_heap_t *h = mk(LFP_HEAP_BINS);
	char *p = lfp_heap_malloc(h, 48);
	cr_assert_not_null(p);
	/* The first refill takes a few blocks; block 15 of the same pool stays
	 * on the pool's free stack, never handed out. */
	char *q = p + 15 * 48;
	cr_expect_eq(lfp_heap_usable_size(h, q), 0, "not a live block");
	cr_expect_eq(lfp_heap_free(h, q), -EALREADY, "a free block start is not freeable");
	enum { N = 100 };
	void *v[N];
	int seen = 0;
	for (int i = 0; i < N; i++) {
		v[i] = lfp_heap_malloc(h, 48);
		cr_assert_not_null(v[i]);
		seen += v[i] == (void *)q;
	}
	cr_expect_leq(seen, 1, "q handed out %d times", seen);
	for (int i = 0; i < N; i++)
		cr_expect_eq(lfp_heap_free(h, v[i]), 0);
	cr_expect_eq(lfp_heap_free(h, p), 0);
	assert_valid(h);
	lfp_heap_destroy(h);
}

static void *tc_churn(void *arg)
{
	struct tc_job *j = arg;
	enum { N = 3000 };
	static _Thread_local void *v[N];
	for (int round = 0; round < 2; round++) {
		lfp_heap_t *h = round ? j->h2 : j->h;
		if (h == NULL)
			break;
		for (int i = 0; i < N; i++)
			if ((v[i] = lfp_heap_malloc(h, 16 + (size_t)(i % 3) * 48)) == NULL)
				j->rc = -ENOMEM;
		for (int i = 0; i < N; i++)
			if (lfp_heap_free(h, v[(i * 7) % N]) != 0)
				j->rc = -EINVAL;
	}
	return NULL;
}

static void *tc_trim(void *arg)
{
	struct tc_job *j = arg;
	j->rc = lfp_heap_trim(j->h);
	return NULL;
}

static uint64_t pools_of(lfp_heap_t *h)
{
	lfp_heap_stats_t st;
	cr_assert_eq(lfp_heap_stats(h, &st), 0);
	return st.pools;
}

Test(heap_tcache, thread_exit_gives_cached_blocks_back)
{
	lfp_heap_t *h = mk(LFP_HEAP_BINS);
	struct tc_job j = { .h = h };
	run_thread(tc_churn, &j);
	cr_assert_eq(j.rc, 0);
	cr_expect_gt(pools_of(h), 0);
	struct tc_job t = { .h = h };
	run_thread(tc_trim, &t); /* another thread: its own cache is empty */
	cr_expect_eq(pools_of(h), 0, "the exited thread's cache still pins %llu pools",
		     (unsigned long long)pools_of(h));
	assert_valid(h);
	lfp_heap_destroy(h);
}

Test(heap_tcache, flush_and_heap_switch_give_blocks_back)
{
	lfp_heap_t *h = mk(LFP_HEAP_BINS), *h2 = mk(LFP_HEAP_BINS);
	enum { N = 500 };
	void *v[N];
	for (int i = 0; i < N; i++)
		cr_assert_not_null(v[i] = lfp_heap_malloc(h, 64));
	for (int i = 0; i < N; i++)
		cr_assert_eq(lfp_heap_free(h, v[i]), 0);
	struct tc_job t = { .h = h };
	run_thread(tc_trim, &t);
	cr_expect_gt(pools_of(h), 0, "this thread's cached blocks keep their pool");
	cr_expect_eq(lfp_heap_cache_flush(h), 0);
	run_thread(tc_trim, &t);
	cr_expect_eq(pools_of(h), 0, "flushed: the pool retires");
	/* Cache blocks of h, then use h2: h's blocks go back on the switch. */
	for (int i = 0; i < N; i++)
		cr_assert_not_null(v[i] = lfp_heap_malloc(h, 64));
	for (int i = 0; i < N; i++)
		cr_assert_eq(lfp_heap_free(h, v[i]), 0);
	void *q = lfp_heap_malloc(h2, 64);
	cr_assert_not_null(q);
	run_thread(tc_trim, &t);
	cr_expect_eq(pools_of(h), 0, "switching heaps gave h's cached blocks back");
	cr_expect_eq(lfp_heap_free(h2, q), 0);
	cr_expect_eq(lfp_heap_cache_flush(NULL), -EINVAL);
	assert_valid(h);
	assert_valid(h2);
	lfp_heap_destroy(h);
	lfp_heap_destroy(h2);
}

static void *tc_park(void *arg)
{
	struct tc_job *j = arg;
	void *p = lfp_heap_malloc(j->h, 32);
	if (p == NULL || lfp_heap_free(j->h, p) != 0) /* p now in this thread's cache */
		j->rc = -1;
	pthread_barrier_wait(j->gate); /* 1: cached */
	pthread_barrier_wait(j->gate); /* 2: h destroyed */
	/* Using another heap must forget h's cache, not touch h's memory. */
	void *q = lfp_heap_malloc(j->h2, 32);
	if (q == NULL || lfp_heap_free(j->h2, q) != 0)
		j->rc = -2;
	return NULL;
}

Test(heap_tcache, destroying_a_heap_other_threads_cache)
{
	pthread_barrier_t gate;
	cr_assert_eq(pthread_barrier_init(&gate, NULL, 2), 0);
	struct tc_job j = { .h = mk(LFP_HEAP_BINS), .h2 = mk(LFP_HEAP_BINS), .gate = &gate };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, tc_park, &j), 0);
	pthread_barrier_wait(&gate);
	cr_expect_eq(lfp_heap_destroy(j.h), 0);
	pthread_barrier_wait(&gate);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_expect_eq(j.rc, 0);
	assert_valid(j.h2);
	lfp_heap_destroy(j.h2);
	pthread_barrier_destroy(&gate);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LFP_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LFP_TEST_SANITIZED 1
#endif
#endif

/* Not under sanitizers: their own mappings need the address space this test
 * caps (and Criterion's skip leaks 48 bytes that LeakSanitizer reports). */
#ifndef LFP_TEST_SANITIZED
/* The thread cache's storage cannot be mapped (the address space is capped
 * at what is mapped now): malloc and free still succeed through the pools
 * and leave errno alone. Runs in its own thread: Criterion's worker process
 * is this test's alone, so the cap stays here. */
static void *tc_no_memory(void *arg)
{
	struct tc_job *j = arg;
	int x = 0;
	(void)lfp_heap_usable_size(j->h, &x); /* liburcu-bp registers this thread first */
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f == NULL || fscanf(f, "%ld %ld", &pages, &rss) != 2) {
		j->rc = -1;
		if (f)
			fclose(f);
		return NULL;
	}
	fclose(f);
	struct rlimit rl = { (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE), RLIM_INFINITY };
	if (setrlimit(RLIMIT_AS, &rl) != 0) {
		j->rc = -2;
		return NULL;
	}
	errno = 1234;
	void *p = lfp_heap_malloc(j->h, 16);
	if (p == NULL || errno != 1234)
		j->rc = -3;
	errno = 4321;
	if (lfp_heap_free(j->h, j->p) != 0 || errno != 4321)
		j->rc = -4;
	if (p != NULL && lfp_heap_free(j->h, p) != 0)
		j->rc = -5;
	return NULL;
}

static void no_memory_case(unsigned flags)
{
	struct tc_job j = { .h = mk(flags) };
	j.p = lfp_heap_malloc(j.h, 16); /* the class's first pool exists */
	cr_assert_not_null(j.p);
	run_thread(tc_no_memory, &j); /* caps this process's address space */
	cr_expect_eq(j.rc, 0, "flags %#x: step %d failed (-3: malloc, -4: free of main's block)", flags,
		     j.rc);
}

Test(heap_tcache, no_memory_for_the_cache_keeps_errno)
{
	no_memory_case(LFP_HEAP_BINS);
}

/* The same with owned pools (the default): the thread state cannot be
 * mapped, so the thread's small requests go to the fallback heap. */
Test(heap_owned, no_memory_for_the_thread_state_keeps_errno)
{
	no_memory_case(0);
}
#endif

/* ---- growth and retirement -------------------------------------------------------------- */

/* ---- which thread cache a heap gets ------------------------------------------------- */

static void *tc_free_then_malloc(void *arg)
{
	struct tc_job *j = arg;
	j->rc = lfp_heap_free(j->h, j->p);
	void *q = lfp_heap_malloc(j->h, 48);
	j->p = q;
	if (q != NULL && lfp_heap_free(j->h, q) != 0)
		j->rc = -1;
	return NULL;
}

/* Thread A allocates p, thread B frees it and allocates the same class.
 * With bins, B's free lands in B's bin and B's malloc takes it back: the
 * same block. With owned pools, B's free is a remote free into A's pool,
 * which B may not allocate from: another block. So the default (0) and
 * LFP_HEAP_OWNED must give another block, LFP_HEAP_BINS and LFP_HEAP_DEPOT
 * the same one. */
Test(heap_config, the_default_is_owned_pools_and_bins_are_on_request)
{
	static const struct {
		unsigned flags;
		bool bins;
	} m[] = { { 0, false },
		  { LFP_HEAP_OWNED, false },
		  { LFP_HEAP_OWNED | LFP_HEAP_DEPOT, false },
		  { LFP_HEAP_BINS, true },
		  { LFP_HEAP_DEPOT, true },
		  { LFP_HEAP_BINS | LFP_HEAP_DEPOT, true } };
	for (size_t i = 0; i < sizeof m / sizeof *m; i++) {
		lfp_heap_t *h = mk(m[i].flags);
		void *p = lfp_heap_malloc(h, 48);
		cr_assert_not_null(p);
		struct tc_job j = { .h = h, .p = p };
		run_thread(tc_free_then_malloc, &j);
		cr_expect_eq(j.rc, 0, "flags %#x: the free and the malloc", m[i].flags);
		if (m[i].bins)
			cr_expect_eq(j.p, p, "flags %#x: bins reuse the block the thread freed",
				     m[i].flags);
		else
			cr_expect(j.p != NULL && j.p != p,
				  "flags %#x: an owned pool's block is not reused by another thread",
				  m[i].flags);
		assert_valid(h);
		lfp_heap_destroy(h);
	}
}

/* ---- LFP_HEAP_DEPOT: full cache stacks parked per class ---------------- */

static uint64_t depot_of(lfp_heap_t *h)
{
	lfp_heap_stats_t st;
	cr_assert_eq(lfp_heap_stats(h, &st), 0);
	return st.depot_blocks;
}

/* malloc n blocks of 64 bytes, free them all (through this thread's bins:
 * every full free stack parks its alloc stack in the depot), exit. */
static void *depot_churn(void *arg)
{
	struct tc_job *j = arg;
	enum { N = 600 };
	static _Thread_local void *v[N];
	for (int i = 0; i < N; i++)
		if ((v[i] = lfp_heap_malloc(j->h, 64)) == NULL)
			j->rc = -ENOMEM;
	for (int i = 0; i < N && j->rc == 0; i++)
		if (lfp_heap_free(j->h, v[(i * 7) % N]) != 0)
			j->rc = -EINVAL;
	return NULL;
}

/* malloc n 64-byte blocks into v (each written), and check that no block
 * was handed out twice. */
static void malloc_distinct(lfp_heap_t *h, void **v, int n)
{
	for (int i = 0; i < n; i++) {
		cr_assert_not_null(v[i] = lfp_heap_malloc(h, 64));
		memset(v[i], i & 0xff, 64);
	}
	for (int i = 0; i < n; i++)
		for (int k = 0; k < i; k++)
			cr_assert_neq(v[i], v[k], "block %d handed out twice", i);
}

static void free_all(lfp_heap_t *h, void **v, int n)
{
	for (int i = 0; i < n; i++)
		cr_assert_eq(lfp_heap_free(h, v[i]), 0);
}

Test(heap_depot, a_parked_stack_serves_another_thread)
{
	lfp_heap_t *h = mk(LFP_HEAP_DEPOT);
	cr_assert_eq(depot_of(h), 0);
	struct tc_job j = { .h = h };
	run_thread(depot_churn, &j);
	cr_assert_eq(j.rc, 0);
	uint64_t parked = depot_of(h);
	/* 600 frees through 64-entry stacks: at least 7 full alloc stacks
	 * parked (the last ones stay in the bins and go back at exit). */
	cr_expect_geq(parked, 7 * 64, "only %llu blocks parked", (unsigned long long)parked);
	cr_expect_leq(parked, 600);
	assert_valid(h);
	/* This thread's first refills take whole stacks from the depot. */
	enum { N = 300 };
	void *v[N];
	malloc_distinct(h, v, N);
	cr_expect_leq(depot_of(h), parked - 256, "refills did not take from the depot");
	free_all(h, v, N);
	assert_valid(h);
	lfp_heap_destroy(h);
}

Test(heap_depot, a_parked_block_cannot_be_freed_again)
{
	lfp_heap_t *h = mk(LFP_HEAP_DEPOT);
	enum { N = 400 };
	void *v[N];
	malloc_distinct(h, v, N);
	free_all(h, v, N);
	cr_assert_gt(depot_of(h), 0);
	/* Every block is in this thread's bins or in the depot: none is live. */
	for (int i = 0; i < N; i++) {
		struct tc_job j = { .h = h, .p = v[i] };
		if (i % 50 == 0)
			run_thread(tc_free_other, &j); /* another thread, now and then */
		else
			j.rc = lfp_heap_free(h, v[i]);
		cr_expect_eq(j.rc, -EALREADY, "second free of block %d: %d", i, j.rc);
	}
	/* ... and each comes back once. */
	void *w[N];
	malloc_distinct(h, w, N);
	free_all(h, w, N);
	assert_valid(h);
	lfp_heap_destroy(h);
}

Test(heap_depot, trim_empties_the_depot_and_retires_the_pools)
{
	lfp_heap_t *h = mk(LFP_HEAP_DEPOT);
	struct tc_job j = { .h = h };
	run_thread(depot_churn, &j);
	cr_assert_eq(j.rc, 0);
	cr_assert_gt(depot_of(h), 0);
	cr_assert_gt(pools_of(h), 0);
	struct tc_job t = { .h = h };
	run_thread(tc_trim, &t);
	cr_expect_eq(depot_of(h), 0, "trim left %llu blocks parked", (unsigned long long)depot_of(h));
	cr_expect_eq(pools_of(h), 0, "parked blocks still pin %llu pools", (unsigned long long)pools_of(h));
	assert_valid(h);
	lfp_heap_destroy(h);
}

Test(heap_depot, a_full_depot_sends_stacks_back_to_the_pools)
{
	/* 20 000 frees of 16-byte blocks through 64-entry stacks: the depot
	 * takes 256 stacks (all but the first one full), then every further
	 * stack goes back to its pools; validate walks all 256 bundles. */
	lfp_heap_t *h = mk(LFP_HEAP_DEPOT);
	enum { N = 20000 };
	void **v = calloc(N, sizeof *v);
	cr_assert_not_null(v);
	for (int i = 0; i < N; i++)
		cr_assert_not_null(v[i] = lfp_heap_malloc(h, 16));
	for (int i = 0; i < N; i++)
		cr_assert_eq(lfp_heap_free(h, v[(i * 7919) % N]), 0);
	uint64_t parked = depot_of(h);
	cr_expect_leq(parked, 256 * 64, "%llu parked", (unsigned long long)parked);
	cr_expect_geq(parked, 255 * 64, "%llu parked", (unsigned long long)parked);
	assert_valid(h);
	for (int i = 0; i < N; i++)
		cr_assert_not_null(v[i] = lfp_heap_malloc(h, 16));
	cr_expect_eq(depot_of(h), 0, "a malloc burst this big takes every bundle");
	for (int i = 0; i < N; i++)
		cr_assert_eq(lfp_heap_free(h, v[i]), 0);
	assert_valid(h);
	cr_assert_eq(lfp_heap_cache_flush(h), 0);
	struct tc_job t = { .h = h };
	run_thread(tc_trim, &t);
	cr_expect_eq(depot_of(h), 0);
	cr_expect_eq(pools_of(h), 0);
	free(v);
	lfp_heap_destroy(h);
}

Test(heap_depot, without_the_flag_nothing_is_parked)
{
	lfp_heap_t *h = mk(LFP_HEAP_BINS);
	struct tc_job j = { .h = h };
	run_thread(depot_churn, &j);
	cr_assert_eq(j.rc, 0);
	cr_expect_eq(depot_of(h), 0);
	lfp_heap_destroy(h);
}

/* A retired pool leaves no page-map word behind: the fallback heap's blocks
 * later placed on its pages are freed normally. In a checked heap the pools
 * have a cache, whose area made a pool's region smaller than the pages it
 * was given, so 64 of 3000 such blocks were refused (and validate failed). */
static void retired_pages_serve_the_fallback_heap(unsigned flags)
{
	static const size_t classes[] = { 8 };
	lfp_heap_config_t c = { .flags = flags, .class_sizes = classes, .class_count = 1 };
	lfp_heap_t *h = lfp_heap_create(&c);
	cr_assert_not_null(h);
	enum { N = 600, M = 3000 };
	static void *b[N], *m[M];
	for (int i = 0; i < N; i++)
		cr_assert_not_null(b[i] = lfp_heap_malloc(h, 8));
	for (int i = 0; i < N; i++)
		cr_assert_eq(lfp_heap_free(h, b[i]), 0);
	cr_assert_eq(lfp_heap_cache_flush(h), 0);
	cr_expect_gt(lfp_heap_trim(h), 0, "flags %#x: the class's pools retire", flags);
	assert_valid(h);
	for (int i = 0; i < M; i++)
		cr_assert_not_null(m[i] = lfp_heap_malloc(h, 24)); /* the fallback heap */
	int refused = 0;
	for (int i = 0; i < M; i++)
		refused += lfp_heap_free(h, m[i]) != 0;
	cr_expect_eq(refused, 0, "flags %#x: %d of %d fallback blocks refused", flags, refused, M);
	assert_valid(h);
	lfp_heap_destroy(h);
}

Test(heap_pools, retired_pages_serve_the_fallback_heap)
{
	retired_pages_serve_the_fallback_heap(0);
	retired_pages_serve_the_fallback_heap(LFP_HEAP_BINS);
	retired_pages_serve_the_fallback_heap(LFP_HEAP_CHECKED);
}

/* A small reservation is a memory cap: a class that can no longer grow a
 * pool is served by the fallback heap, so 32-byte requests fail only when
 * the reservation is used up. Before, 64 MiB ran out with 3-4 MiB still free
 * in pieces too small for another pool. */
static void full_reservation(unsigned flags)
{
	lfp_heap_config_t c = { .reserve = (size_t)64 << 20, .flags = flags };
	lfp_heap_t *h = lfp_heap_create(&c);
	cr_assert_not_null(h);
	size_t cap = (size_t)4 << 20, n = 0;
	void **v = malloc(cap * sizeof *v);
	cr_assert_not_null(v);
	while (n < cap && (v[n] = lfp_heap_malloc(h, 32)) != NULL)
		n++;
	cr_assert_lt(n, cap, "flags %#x: 64 MiB never ran out", flags);
	cr_expect_eq(errno, ENOMEM, "flags %#x", flags);
	lfp_heap_stats_t st;
	cr_assert_eq(lfp_heap_stats(h, &st), 0);
	cr_expect_lt(st.fallback.free_bytes, 64 * 1024, "flags %#x: %llu bytes free at ENOMEM (%zu blocks)",
		     flags, (unsigned long long)st.fallback.free_bytes, n);
	assert_valid(h);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(lfp_heap_free(h, v[i]), 0, "flags %#x: block %zu", flags, i);
	assert_valid(h);
	free(v);
	lfp_heap_destroy(h);
}

Test(heap_pools, a_full_reservation_serves_small_blocks_to_the_end, .timeout = 60)
{
	full_reservation(0);
	full_reservation(LFP_HEAP_BINS);
	full_reservation(LFP_HEAP_CHECKED);
}

Test(heap_pools, classes_grow_and_empty_pools_retire)
{
	lfp_heap_config_t c = { .pool_min_bytes = 512, .pool_max_bytes = 1 << 17 };
	lfp_heap_t *h = lfp_heap_create(&c);
	cr_assert_not_null(h);
	enum { N = 30000 };
	static void *v[N];
	for (size_t i = 0; i < N; i++) {
		v[i] = lfp_heap_malloc(h, 48 + (i % 3) * 16);
		cr_assert_not_null(v[i]);
		memset(v[i], (int)i, 48);
	}
	lfp_heap_stats_t st;
	lfp_heap_stats(h, &st);
	cr_expect_gt(st.pools, 6, "three classes grew to several pools each (%llu)",
		     (unsigned long long)st.pools);
	assert_valid(h);
	cr_expect_eq(lfp_heap_trim(h), 0, "nothing to retire while every block is live");
	for (size_t i = 0; i < N; i += 2)
		lfp_heap_free(h, v[i]);
	assert_valid(h);
	for (size_t i = 1; i < N; i += 2)
		lfp_heap_free(h, v[i]);
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	for (size_t i = 0; i < N; i++) {
		lo = (uintptr_t)v[i] < lo ? (uintptr_t)v[i] : lo;
		hi = (uintptr_t)v[i] > hi ? (uintptr_t)v[i] : hi;
	}
	errno = 4242;
	int n = lfp_heap_trim(h);
	cr_expect_eq(errno, 4242, "trim keeps errno (%d)", errno);
	/* The retired pools' pages went back to the kernel (until 0.2.1 the
	 * fallback heap's madvise always failed and kept them all). */
	long span = (long)((hi - lo) / (uintptr_t)sysconf(_SC_PAGESIZE));
	long res = lfpt_resident_pages((void *)lo, hi - lo);
	cr_expect(res >= 0 && res <= span / 10, "%ld of %ld pages where the pools were still resident",
		  res, span);
	lfp_heap_stats(h, &st);
	cr_expect_eq((uint64_t)n, st.pools_retired);
	cr_expect_eq(st.pools, 0, "every pool was free and retired (%llu left)",
		     (unsigned long long)st.pools);
	cr_expect_eq(st.pool_bytes, 0);
	cr_expect_eq(st.fallback.alloc_blocks, 0, "pool regions went back to the fallback heap");
	assert_valid(h);
	for (size_t i = 0; i < 1000; i++) { /* and the classes grow again */
		v[i] = lfp_heap_malloc(h, 48);
		cr_assert_not_null(v[i]);
	}
	assert_valid(h);
	for (size_t i = 0; i < 1000; i++)
		lfp_heap_free(h, v[i]);
	lfp_heap_destroy(h);
}

/* ---- differential test against a shadow model ----------------------------------------- */

struct shadow {
	unsigned char *p;
	size_t n;
	unsigned tag;
};

static void diff_run(unsigned flags, uint64_t seed, unsigned ops)
{
	lfp_heap_config_t c = { .flags = flags, .pool_min_bytes = 256, .pool_max_bytes = 1 << 16 };
	lfp_heap_t *h = lfp_heap_create(&c);
	cr_assert_not_null(h);
	enum { SLOTS = 700 };
	static struct shadow s[SLOTS];
	memset(s, 0, sizeof s);
	lfpt_rng_t r;
	lfpt_rng_init(&r, seed, flags);
	unsigned tag = 1;
	for (unsigned op = 0; op < ops; op++) {
		struct shadow *x = &s[lfpt_rng_below(&r, SLOTS)];
		unsigned what = (unsigned)lfpt_rng_below(&r, 12);
		uint64_t k = lfpt_rng_below(&r, 1000);
		size_t n = k < 700 ? lfpt_rng_below(&r, 257)
			 : k < 950 ? lfpt_rng_below(&r, 20000)
			 : k < 998 ? lfpt_rng_below(&r, HUGE_T)
				   : HUGE_T + lfpt_rng_below(&r, 3 * HUGE_T);
		if (x->p == NULL) {
			size_t a = 16;
			if (what == 0) {
				a = (size_t)1 << (lfpt_rng_below(&r, 14));
				x->p = lfp_heap_aligned_alloc(h, a, n);
			} else if (what == 1) {
				x->p = lfp_heap_calloc(h, n, 1);
				cr_assert_not_null(x->p);
				for (size_t i = 0; i < n; i++)
					cr_assert_eq(x->p[i], 0, "op %u: calloc byte %zu", op, i);
			} else {
				x->p = lfp_heap_malloc(h, n);
			}
			cr_assert_not_null(x->p, "op %u: alloc %zu: %s", op, n, strerror(errno));
			size_t need = n >= 16 || a > 16 ? a : 8;
			cr_assert_eq((uintptr_t)x->p % (need < a ? need : a), 0, "op %u: misaligned", op);
			cr_assert_geq(lfp_heap_usable_size(h, x->p), n);
			x->n = n;
			x->tag = tag++;
			fill(x->p, n, x->tag);
		} else if (what < 4) {
			cr_assert(same(x->p, x->n, x->tag), "op %u: block overwritten", op);
			unsigned char *q = lfp_heap_realloc(h, x->p, n);
			if (n == 0) {
				cr_assert_null(q);
				x->p = NULL;
				continue;
			}
			cr_assert_not_null(q, "op %u: realloc %zu", op, n);
			cr_assert(same(q, x->n < n ? x->n : n, x->tag), "op %u: realloc lost content", op);
			x->p = q;
			x->n = n;
			fill(q, n, x->tag);
		} else {
			cr_assert(same(x->p, x->n, x->tag), "op %u: block overwritten before free", op);
			cr_assert_eq(lfp_heap_free(h, x->p), 0, "op %u", op);
			x->p = NULL;
		}
		if (op % 5000 == 0) {
			assert_valid(h);
			for (size_t i = 0; i < SLOTS; i++)
				if (s[i].p)
					cr_assert(same(s[i].p, s[i].n, s[i].tag), "op %u: slot %zu", op, i);
			if (op % 20000 == 0)
				(void)lfp_heap_trim(h);
		}
	}
	for (size_t i = 0; i < SLOTS; i++)
		if (s[i].p) {
			cr_assert(same(s[i].p, s[i].n, s[i].tag));
			cr_assert_eq(lfp_heap_free(h, s[i].p), 0);
		}
	assert_valid(h);
	lfp_heap_trim(h);
	lfp_heap_stats_t st;
	lfp_heap_stats(h, &st);
	cr_expect_eq(st.pools, 0, "all retired after everything was freed");
	cr_expect_eq(st.huge_live, 0);
	cr_expect_eq(st.fallback.alloc_blocks, 0);
	cr_expect_eq(st.bad_frees, 0);
	lfp_heap_destroy(h);
}

Test(heap_diff, random_ops_match_the_shadow, .timeout = 120)
{
	uint64_t seed = lfpt_seed_pick("heap_diff", NULL);
	diff_run(0, seed, 60000);
	diff_run(LFP_HEAP_CHECKED, seed + 1, 30000);
	diff_run(LFP_HEAP_BINS, seed + 2, 30000);
}

/* ---- traces (skipped without ../shared/traces) ------------------------------------------- */

static void *trace_malloc(void *h, size_t n)
{
	return lfp_heap_malloc(h, n);
}

static void *trace_realloc(void *h, void *p, size_t n)
{
	return lfp_heap_realloc(h, p, n);
}

static int trace_free(void *h, void *p)
{
	return lfp_heap_free(h, p);
}

Test(heap_traces, corner_traces_replay_cleanly)
{
	static const char *const names[] = { "malloclab-autolab/corners.rep",
					     "malloclab-autolab/malloc-free.rep",
					     "malloclab-autolab/malloc.rep", "malloclab/short1-bal.rep",
					     "malloclab/short2-bal.rep" };
	static struct lfpt_trace_op ops[64];
	char why[512] = "";
	int ran = 0;
	for (size_t t = 0; t < sizeof names / sizeof *names; t++) {
		long n = lfpt_trace_read(names[t], ops, 64, why, sizeof why);
		if (n == -1)
			continue;
		cr_assert_geq(n, 0, "%s", why);
		ran++;
		lfp_heap_t *h = mk(LFP_HEAP_CHECKED);
		const struct lfpt_trace_heap a = { trace_malloc, trace_realloc, trace_free, h };
		cr_assert_eq(lfpt_trace_replay(ops, n, &a, why, sizeof why), 0, "%s: %s", names[t], why);
		assert_valid(h);
		lfp_heap_destroy(h);
	}
	if (ran == 0)
		cr_skip_test("../shared/traces absent (LFP_TRACES=%s)", getenv("LFP_TRACES") ? getenv("LFP_TRACES") : "");
}

/* ---- owned pools (LFP_HEAP_OWNED) ---------------------------------------------- */

static lfp_heap_stats_t stats_of(lfp_heap_t *h)
{
	lfp_heap_stats_t st;
	cr_assert_eq(lfp_heap_stats(h, &st), 0);
	return st;
}

struct own_job {
	lfp_heap_t *h;
	lfp_heap_t *h2; /* own_free_these_after_bins: a heap with bins */
	void **v;
	int n;
	int rc;
	pthread_barrier_t *gate; /* NULL: none */
};

static void *own_free_these(void *arg)
{
	struct own_job *j = arg;
	for (int i = 0; i < j->n; i++)
		if (lfp_heap_free(j->h, j->v[i]) != 0)
			j->rc = -EINVAL;
	return NULL;
}

Test(heap_owned, the_owner_reuses_its_own_frees_first)
{
	lfp_heap_t *h = mk(LFP_HEAP_OWNED);
	void *p = lfp_heap_malloc(h, 48);
	cr_assert_not_null(p);
	for (int i = 0; i < 1000; i++) {
		cr_assert_eq(lfp_heap_free(h, p), 0);
		void *q = lfp_heap_malloc(h, 48);
		cr_assert_eq(q, p, "round %d: the block just freed comes back first", i);
	}
	cr_assert_eq(lfp_heap_free(h, p), 0);
	cr_assert_eq(stats_of(h).pools_added, 1);
	assert_valid(h);
	lfp_heap_destroy(h);
}

Test(heap_owned, a_second_free_is_refused_on_either_list)
{
	lfp_heap_t *h = mk(LFP_HEAP_OWNED);
	enum { N = 64 };
	void *v[N];
	malloc_distinct(h, v, N);
	/* Half freed by the owner (its own list), half by another thread
	 * (the pool's shared stack). */
	struct own_job j = { .h = h, .v = v + N / 2, .n = N / 2 };
	free_all(h, v, N / 2);
	run_thread(own_free_these, &j);
	cr_assert_eq(j.rc, 0);
	for (int i = 0; i < N; i++) {
		cr_expect_eq(lfp_heap_free(h, v[i]), -EALREADY, "owner's second free of %d", i);
		struct tc_job k = { .h = h, .p = v[i] };
		run_thread(tc_free_other, &k);
		cr_expect_eq(k.rc, -EALREADY, "another thread's second free of %d", i);
		cr_expect_eq(lfp_heap_usable_size(h, v[i]), 0, "a free block has no usable size");
	}
	cr_assert_eq(stats_of(h).bad_frees, 2 * N);
	assert_valid(h);
	/* Each block comes back exactly once. */
	void *w[N];
	malloc_distinct(h, w, N);
	free_all(h, w, N);
	assert_valid(h);
	lfp_heap_destroy(h);
}

Test(heap_owned, blocks_another_thread_frees_come_back_to_the_owner)
{
	lfp_heap_t *h = mk(LFP_HEAP_OWNED);
	enum { N = 500, M = 4 * N };
	static void *v[N], *w[M];
	malloc_distinct(h, v, N);
	uint64_t added = stats_of(h).pools_added;
	struct own_job j = { .h = h, .v = v, .n = N };
	run_thread(own_free_these, &j);
	cr_assert_eq(j.rc, 0);
	assert_valid(h);
	/* The owner's misses take the shared stacks whole: after the never
	 * used rest of its current pool, every remote free comes back, and
	 * the class does not grow meanwhile. */
	static bool back[N];
	int m = 0, nback = 0;
	while (nback < N && m < M) {
		cr_assert_not_null(w[m] = lfp_heap_malloc(h, 64));
		for (int k = 0; k < N; k++)
			if (w[m] == v[k] && !back[k]) {
				back[k] = true;
				nback++;
			}
		m++;
	}
	cr_assert_eq(nback, N, "only %d of %d remote frees came back in %d mallocs", nback, N, m);
	cr_assert_eq(stats_of(h).pools_added, added, "the class grew instead of reusing");
	free_all(h, w, m);
	assert_valid(h);
	lfp_heap_destroy(h);
}

static bool among(const void *p, void *const *v, int n)
{
	for (int i = 0; i < n; i++)
		if (v[i] == p)
			return true;
	return false;
}

Test(heap_owned, a_completely_free_pool_comes_back_in_address_order)
{
	lfp_heap_t *h = mk(LFP_HEAP_OWNED);
	enum { CAP = 8192 };
	static void *v[CAP], *w[CAP], *mine[CAP], *theirs[CAP];
	/* Fill the class's first pool: allocate until the class grows a
	 * second one. The last block is the second pool's. */
	int n = 0;
	while (stats_of(h).pools_added < 2) {
		cr_assert_lt(n, CAP);
		cr_assert_not_null(v[n++] = lfp_heap_malloc(h, 64));
	}
	int n1 = n - 1;
	/* Free the first pool's blocks in a fixed shuffled order: half by
	 * the owner (its own list), half by another thread (the pool's
	 * shared stack). */
	uint64_t x = 42;
	for (int i = n1 - 1; i > 0; i--) {
		x = x * 6364136223846793005u + 1442695040888963407u;
		int k = (int)((x >> 33) % (uint64_t)(i + 1));
		void *t = v[i];
		v[i] = v[k];
		v[k] = t;
	}
	int nm = 0, nt = 0;
	for (int i = 0; i < n1; i++) {
		if (i % 2)
			theirs[nt++] = v[i];
		else
			mine[nm++] = v[i];
	}
	free_all(h, mine, nm);
	struct own_job j = { .h = h, .v = theirs, .n = nt };
	run_thread(own_free_these, &j);
	cr_assert_eq(j.rc, 0);
	assert_valid(h);
	/* Use up the second pool. Then the first one comes back relinked:
	 * its blocks in ascending address order, each once, before the
	 * class grows. */
	int m = 0, first = -1;
	while (first < 0) {
		cr_assert_lt(m, CAP - n1);
		cr_assert_not_null(w[m] = lfp_heap_malloc(h, 64));
		if (among(w[m], v, n1))
			first = m;
		m++;
	}
	for (int k = 1; k < n1; k++, m++)
		cr_assert_not_null(w[m] = lfp_heap_malloc(h, 64));
	for (int k = 0; k < n1; k++) {
		cr_assert(among(w[first + k], v, n1), "malloc %d of the first pool is not its block", k);
		if (k > 0)
			cr_assert_gt((uintptr_t)w[first + k], (uintptr_t)w[first + k - 1],
				     "malloc %d of the relinked pool goes backwards", k);
	}
	cr_assert_eq(stats_of(h).pools_added, 2, "the class grew instead of reusing");
	assert_valid(h);
	free_all(h, w, m);
	free_all(h, v + n1, 1);
	assert_valid(h);
	lfp_heap_destroy(h);
}

Test(heap_owned, pools_past_a_full_ready_list_are_found_before_the_class_grows)
{
	/* 1 KiB pools of 96-byte blocks: many pools, so that more than the
	 * ready list's 8 get a free while another one is current. */
	lfp_heap_config_t c = { .flags = LFP_HEAP_OWNED, .reserve = (size_t)1 << 30,
				.pool_min_bytes = 1024, .pool_max_bytes = 1024 };
	lfp_heap_t *h = lfp_heap_create(&c);
	cr_assert_not_null(h);
	enum { N = 400 };
	static void *v[N];
	for (int i = 0; i < N; i++)
		cr_assert_not_null(v[i] = lfp_heap_malloc(h, 96));
	uint64_t added = stats_of(h).pools_added;
	cr_assert_gt(added, 20, "only %" PRIu64 " pools", added);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) /* 157 is prime: every block once */
			cr_assert_eq(lfp_heap_free(h, v[(i * 157) % N]), 0);
		assert_valid(h);
		for (int i = 0; i < N; i++)
			cr_assert_not_null(v[i] = lfp_heap_malloc(h, 96));
		cr_assert_eq(stats_of(h).pools_added, added,
			     "round %d: the class grew while its pools had free blocks", round);
		for (int i = 0; i < N; i++)
			for (int k = 0; k < i; k++)
				cr_assert_neq(v[i], v[k], "round %d: block %d handed out twice", round, i);
	}
	free_all(h, v, N);
	assert_valid(h);
	lfp_heap_destroy(h);
}

static void *own_alloc_half_and_exit(void *arg)
{
	struct own_job *j = arg;
	for (int i = 0; i < j->n; i++)
		if ((j->v[i] = lfp_heap_malloc(j->h, 96)) == NULL)
			j->rc = -ENOMEM;
	for (int i = 0; i < j->n && j->rc == 0; i += 2)
		if (lfp_heap_free(j->h, j->v[i]) != 0)
			j->rc = -EINVAL;
	return NULL; /* the exit destructor gives up its pools */
}

Test(heap_owned, a_thread_that_exits_gives_up_its_pools)
{
	lfp_heap_t *h = mk(LFP_HEAP_OWNED);
	enum { N = 400 };
	void *v[N];
	struct own_job j = { .h = h, .v = v, .n = N };
	run_thread(own_alloc_half_and_exit, &j);
	cr_assert_eq(j.rc, 0);
	assert_valid(h); /* its own lists went onto the shared stacks */
	uint64_t added = stats_of(h).pools_added;
	/* This thread claims those pools and gets the freed half back. */
	void *w[N / 2];
	for (int i = 0; i < N / 2; i++)
		cr_assert_not_null(w[i] = lfp_heap_malloc(h, 96));
	cr_assert_eq(stats_of(h).pools_added, added, "grew instead of claiming the dead thread's pools");
	for (int i = 1; i < N; i += 2)
		cr_assert_eq(lfp_heap_free(h, v[i]), 0);
	for (int i = 0; i < N / 2; i++)
		cr_assert_eq(lfp_heap_free(h, w[i]), 0);
	assert_valid(h);
	cr_assert_gt(lfp_heap_trim(h), 0);
	cr_assert_eq(stats_of(h).pools, 0, "every pool retired once the caller gave up its own");
	assert_valid(h);
	lfp_heap_destroy(h);
}

static void *own_idle_owner(void *arg)
{
	struct own_job *j = arg;
	for (int i = 0; i < j->n; i++)
		if ((j->v[i] = lfp_heap_malloc(j->h, 200)) == NULL)
			j->rc = -ENOMEM;
	for (int i = 0; i < j->n; i++)
		if (lfp_heap_free(j->h, j->v[i]) != 0)
			j->rc = -EINVAL;
	pthread_barrier_wait(j->gate); /* 1: idle, owning completely free pools */
	pthread_barrier_wait(j->gate); /* 2: the main thread has trimmed */
	for (int i = 0; i < j->n; i++) /* its pools must still be there */
		if ((j->v[i] = lfp_heap_malloc(j->h, 200)) == NULL)
			j->rc = -ENOMEM;
	for (int i = 0; i < j->n; i++)
		if (lfp_heap_free(j->h, j->v[i]) != 0)
			j->rc = -EINVAL;
	return NULL;
}

/* Each thread takes 4 blocks of 4 classes and holds them at the gate. */
static void *own_hold_four_classes(void *arg)
{
	struct own_job *j = arg;
	static const size_t sz[4] = { 24, 100, 300, 900 };
	for (int i = 0; i < 16; i++)
		if ((j->v[i] = lfp_heap_malloc(j->h, sz[i / 4])) == NULL)
			j->rc = -ENOMEM;
	pthread_barrier_wait(j->gate); /* 1: all hold their blocks */
	pthread_barrier_wait(j->gate); /* 2: counted */
	for (int i = 0; i < 16; i++)
		if (j->v[i] != NULL && lfp_heap_free(j->h, j->v[i]) != 0)
			j->rc = -EINVAL;
	return NULL;
}

/* Many threads that each use a class a little must not each get a pool of
 * the size the class has grown to: a thread's first pool of a class is the
 * smallest, and later ones double its own. Before, 64 threads holding 4
 * blocks of 4 classes held about 250 MiB of pools (every growth doubled the
 * class's next size, up to 1 MiB). And one trim retires them all, past its
 * 64 candidates per pass. */
Test(heap_owned, many_threads_each_start_with_small_pools, .timeout = 60)
{
	enum { T = 64 };
	lfp_heap_t *h = mk(0);
	pthread_barrier_t gate;
	cr_assert_eq(pthread_barrier_init(&gate, NULL, T + 1), 0);
	static void *v[T][16];
	static struct own_job j[T];
	static pthread_t t[T];
	for (int i = 0; i < T; i++) {
		j[i] = (struct own_job){ .h = h, .v = v[i], .n = 16, .gate = &gate };
		cr_assert_eq(pthread_create(&t[i], NULL, own_hold_four_classes, &j[i]), 0);
	}
	pthread_barrier_wait(&gate);
	lfp_heap_stats_t st = stats_of(h);
	pthread_barrier_wait(&gate);
	for (int i = 0; i < T; i++) {
		cr_assert_eq(pthread_join(t[i], NULL), 0);
		cr_expect_eq(j[i].rc, 0, "thread %d", i);
	}
	/* At most two small pools per thread and class (a page each, or a
	 * few for the 900-byte class): 4 MiB is 16x that; the old sizing
	 * needed 60x more. */
	cr_expect_leq(st.pool_bytes, (uint64_t)4 << 20, "%d threads x 4 classes hold %llu KiB of pools",
		      T, (unsigned long long)(st.pool_bytes >> 10));
	assert_valid(h);
	uint64_t pools = stats_of(h).pools;
	/* The 900-byte class alone has about two pools per thread, 128: more
	 * than one trim pass takes. */
	cr_expect_gt(pools, 64u, "more pools than one trim pass takes");
	cr_expect_eq((uint64_t)lfp_heap_trim(h), pools, "one trim retires every free pool");
	cr_expect_eq(stats_of(h).pools, 0);
	lfp_heap_destroy(h);
}

Test(heap_owned, an_idle_owners_pools_are_not_retired_under_it)
{
	lfp_heap_t *h = mk(LFP_HEAP_OWNED);
	enum { N = 300 };
	void *v[N];
	pthread_barrier_t gate;
	pthread_barrier_init(&gate, NULL, 2);
	struct own_job j = { .h = h, .v = v, .n = N, .gate = &gate };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, own_idle_owner, &j), 0);
	pthread_barrier_wait(&gate);
	uint64_t pools = stats_of(h).pools;
	cr_assert_gt(pools, 0);
	cr_assert_eq(lfp_heap_trim(h), 0, "a trim retired pools a live thread owns");
	cr_assert_eq(stats_of(h).pools, pools);
	assert_valid(h);
	pthread_barrier_wait(&gate);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(j.rc, 0);
	cr_assert_gt(lfp_heap_trim(h), 0, "its pools retire once it has exited");
	cr_assert_eq(stats_of(h).pools, 0);
	pthread_barrier_destroy(&gate);
	lfp_heap_destroy(h);
}

/* own_free_these, by a thread that first attaches to a heap with bins
 * (j->h2): it has thread state, but still no owned-mode tag. */
static void *own_free_these_after_bins(void *arg)
{
	struct own_job *j = arg;
	void *q = lfp_heap_malloc(j->h2, 48);
	if (q == NULL || lfp_heap_free(j->h2, q) != 0)
		j->rc = -ENOMEM;
	return own_free_these(arg);
}

/* A thread that never allocated from an owned heap has no tag yet. Its
 * free of a block in a pool that nobody owns (given up by a flush while the
 * block was out) must go to the pool's shared stack, not to an owner's
 * list: owned free tests only "own_tid == this thread's tag", so a thread
 * with no tag must not match an unowned pool's 0. Two such threads: one
 * with no thread state at all, one attached to a heap with bins. */
Test(heap_owned, a_thread_with_no_tag_frees_into_an_unowned_pool_as_a_remote_free)
{
	lfp_heap_t *bins = mk(LFP_HEAP_BINS);
	for (int shape = 0; shape < 2; shape++) {
		lfp_heap_t *h = mk(LFP_HEAP_OWNED);
		enum { N = 500 };
		static void *v[N], *w[N];
		malloc_distinct(h, v, N);
		cr_assert_eq(lfp_heap_cache_flush(h), 0); /* gives the pools up, blocks out */
		uint64_t added = stats_of(h).pools_added;
		struct own_job j = { .h = h, .h2 = bins, .v = v, .n = N };
		run_thread(shape == 0 ? own_free_these : own_free_these_after_bins, &j);
		cr_assert_eq(j.rc, 0, "shape %d", shape);
		assert_valid(h); /* "a pool no thread owns has an owner's free list" */
		cr_assert_eq(stats_of(h).bad_frees, 0, "shape %d", shape);
		/* The blocks come back to the next owner; the class does not grow. */
		malloc_distinct(h, w, N);
		cr_assert_eq(stats_of(h).pools_added, added, "shape %d: the class grew", shape);
		free_all(h, w, N);
		assert_valid(h);
		lfp_heap_destroy(h);
	}
	lfp_heap_destroy(bins);
}

Test(heap_owned, flush_and_trim_return_the_callers_pools)
{
	lfp_heap_t *h = mk(LFP_HEAP_OWNED);
	enum { N = 2000 };
	static void *v[N];
	for (int i = 0; i < N; i++)
		cr_assert_not_null(v[i] = lfp_heap_malloc(h, 16 + (size_t)(i % 40) * 16));
	for (int i = 0; i < N; i++)
		cr_assert_eq(lfp_heap_free(h, v[(i * 7) % N]), 0);
	cr_assert_gt(stats_of(h).pools, 0);
	cr_assert_eq(lfp_heap_cache_flush(h), 0);
	assert_valid(h);
	cr_assert_gt(lfp_heap_trim(h), 0);
	cr_assert_eq(stats_of(h).pools, 0);
	/* And the heap works on afterwards. */
	void *p = lfp_heap_malloc(h, 64);
	cr_assert_not_null(p);
	cr_assert_eq(lfp_heap_free(h, p), 0);
	assert_valid(h);
	lfp_heap_destroy(h);
}

Test(heap_owned, bad_input_and_errno_as_without_the_flag)
{
	lfp_heap_t *h = mk(LFP_HEAP_OWNED);
	errno = 1234;
	cr_assert_eq(lfp_heap_free(h, NULL), 0);
	void *p = lfp_heap_malloc(h, 100);
	cr_assert_not_null(p);
	cr_assert_eq(lfp_heap_free(h, p), 0);
	cr_assert_eq(errno, 1234, "free keeps errno");
	cr_assert_eq(lfp_heap_free(h, (char *)p + 8), -EINVAL, "not a block start");
	int local;
	cr_assert_eq(lfp_heap_free(h, &local), -EINVAL, "foreign pointer");
	errno = 0;
	cr_assert_null(lfp_heap_malloc(h, SIZE_MAX));
	cr_assert_eq(errno, ENOMEM);
	void *q = lfp_heap_realloc(h, NULL, 40);
	cr_assert_not_null(q);
	memset(q, 0x5a, 40);
	q = lfp_heap_realloc(h, q, 3000);
	cr_assert_not_null(q);
	for (int i = 0; i < 40; i++)
		cr_assert_eq(((unsigned char *)q)[i], 0x5a);
	cr_assert_eq(lfp_heap_free(h, q), 0);
	assert_valid(h);
	lfp_heap_destroy(h);
}

Test(heap_owned, a_checked_heap_ignores_the_flag)
{
	lfp_heap_t *h = mk(LFP_HEAP_OWNED | LFP_HEAP_CHECKED);
	void *p = lfp_heap_malloc(h, 64);
	cr_assert_not_null(p);
	cr_assert_eq(lfp_heap_free(h, p), 0);
	cr_assert_eq(lfp_heap_free(h, p), -EALREADY);
	assert_valid(h);
	lfp_heap_destroy(h);
}
