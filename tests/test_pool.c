/*
 * tests/test_pool.c - Criterion unit tests pinning the single-thread contract
 * of the core pool (include/lfpool.h): every rule and every errno.
 *
 * Suites: region_size, init, lifecycle (create/destroy), alloc (alignment,
 * exhaustion), free (NULL, invalid pointers, double free), queries, stats,
 * validate (good and deliberately corrupted pools, crafted through
 * pool/internal.h), position (a pool copied to another address keeps
 * working; a pool in a static array), model (a seeded random sequence checked
 * against a model of which blocks are held).
 *
 * "Pool unchanged" after a rejected call is checked as: validate() passes,
 * the free count is the same, and the blocks the test holds are still held
 * (they free with 0 afterwards).
 */
#include "../pool/internal.h"
#include "lfp_test.h"

#include <criterion/criterion.h>
#include <stdalign.h>

#define DEFAULT_ALIGN alignof(max_align_t)

static lfp_pool_config_t config(size_t size, size_t count, size_t align, unsigned flags)
{
	return (lfp_pool_config_t){ .block_size = size, .block_count = count,
				    .block_align = align, .flags = flags };
}

/* region_size with errno cleared first; *err gets errno afterwards. */
static size_t region_size_err(lfp_pool_config_t c, int *err)
{
	errno = 0;
	size_t s = lfp_pool_region_size(&c);
	*err = errno;
	return s;
}

/* A zeroed buffer aligned to align (>= 64), freed with free(). */
static void *aligned_buffer(size_t align, size_t size)
{
	if (align < LFP_REGION_ALIGN)
		align = LFP_REGION_ALIGN;
	size_t rounded = (size + align - 1) / align * align;
	void *p = aligned_alloc(align, rounded);
	cr_assert_not_null(p, "aligned_alloc(%zu, %zu)", align, rounded);
	memset(p, 0, rounded);
	return p;
}

/* A pool laid out by lfp_pool_init in its own heap buffer. */
struct init_pool {
	void *mem;
	size_t size;
	lfp_pool_t *pool;
};

static struct init_pool init_pool(lfp_pool_config_t c)
{
	struct init_pool ip;
	ip.size = lfp_pool_region_size(&c);
	cr_assert_neq(ip.size, 0, "region_size: %s", strerror(errno));
	ip.mem = aligned_buffer(c.block_align, ip.size);
	int rc = lfp_pool_init(ip.mem, ip.size, &c, &ip.pool);
	cr_assert_eq(rc, 0, "init: %d", rc);
	cr_assert_eq((void *)ip.pool, ip.mem);
	return ip;
}

static void init_pool_end(struct init_pool *ip)
{
	cr_assert_eq(lfp_pool_destroy(ip->pool), 0);
	free(ip->mem);
}

static void expect_valid(const lfp_pool_t *p, uint64_t free_blocks, uint64_t allocated)
{
	lfp_pool_report_t r;
	int rc = lfp_pool_validate(p, &r);
	cr_assert_eq(rc, 0, "validate: %d (%s)", rc, r.error ? r.error : "-");
	cr_assert_null(r.error);
	cr_assert_eq(r.free, free_blocks, "report.free %" PRIu64 " != %" PRIu64, r.free, free_blocks);
	cr_assert_eq(r.allocated, allocated, "report.allocated %" PRIu64 " != %" PRIu64, r.allocated,
		     allocated);
	cr_assert_eq(r.other, 0);
	cr_assert_eq(r.capacity, lfp_pool_capacity(p));
	cr_assert_eq(r.bad_index, UINT32_MAX);
	cr_assert_eq(lfp_pool_free_count(p), free_blocks);
}

/* ======================================================================== */
/* lfp_pool_region_size                                                      */
/* ======================================================================== */

Test(region_size, zero_size_or_count_is_einval)
{
	int err;
	cr_assert_eq(region_size_err(config(0, 10, 0, 0), &err), 0);
	cr_assert_eq(err, EINVAL);
	cr_assert_eq(region_size_err(config(10, 0, 0, 0), &err), 0);
	cr_assert_eq(err, EINVAL);
	cr_assert_eq(region_size_err(config(0, 0, 0, 0), &err), 0);
	cr_assert_eq(err, EINVAL);
}

Test(region_size, null_config_is_einval)
{
	errno = 0;
	cr_assert_eq(lfp_pool_region_size(NULL), 0);
	cr_assert_eq(errno, EINVAL);
}

Test(region_size, count_beyond_index_range_is_einval)
{
	int err;
	cr_assert_eq(region_size_err(config(1, (size_t)LFP_POOL_MAX_BLOCKS + 1, 0, 0), &err), 0);
	cr_assert_eq(err, EINVAL);
	cr_assert_eq(region_size_err(config(1, UINT32_MAX, 0, 0), &err), 0);
	cr_assert_eq(err, EINVAL);
	cr_assert_eq(region_size_err(config(1, SIZE_MAX, 0, 0), &err), 0);
	cr_assert_eq(err, EINVAL);
	/* The largest count is accepted (the size fits 64 bits). */
	size_t s = region_size_err(config(1, LFP_POOL_MAX_BLOCKS, 0, 0), &err);
	cr_assert_eq(err, 0);
	cr_assert_geq(s, (uint64_t)LFP_POOL_MAX_BLOCKS * (4 + DEFAULT_ALIGN));
}

Test(region_size, alignment_not_power_of_two_is_einval)
{
	static const size_t bad[] = { 3, 5, 6, 12, 24, 48, 96, 100, 4095, 4097, SIZE_MAX };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int err;
		cr_assert_eq(region_size_err(config(8, 4, bad[i], 0), &err), 0, "align %zu", bad[i]);
		cr_assert_eq(err, EINVAL, "align %zu: errno %d", bad[i], err);
	}
}

Test(region_size, every_power_of_two_alignment_up_to_1g)
{
	for (unsigned b = 0; b <= 30; b++) {
		size_t a = (size_t)1 << b;
		int err;
		size_t s = region_size_err(config(1, 3, a, 0), &err);
		cr_assert_eq(err, 0, "align %zu: errno %d", a, err);
		/* Three blocks of at least max(1, a) bytes each fit. */
		cr_assert_geq(s, 3 * a, "align %zu: region %zu", a, s);
	}
}

Test(region_size, huge_alignment_is_einval)
{
	static const size_t huge[] = { (size_t)1 << 31, (size_t)1 << 40, (size_t)1 << 63 };
	for (size_t i = 0; i < 3; i++) {
		int err;
		cr_assert_eq(region_size_err(config(8, 4, huge[i], 0), &err), 0);
		cr_assert_eq(err, EINVAL, "align %zu: errno %d", huge[i], err);
	}
}

Test(region_size, overflowing_size_times_count_is_eoverflow)
{
	struct {
		size_t size, count, align;
	} cases[] = {
		{ SIZE_MAX, 1, 0 },                  /* rounding the size up overflows */
		{ SIZE_MAX - 7, 1, 64 },             /* same, larger alignment */
		{ SIZE_MAX / 2, 4, 0 },              /* stride * count overflows */
		{ (size_t)1 << 33, (size_t)1 << 31, 0 }, /* exactly 2^64 */
		{ SIZE_MAX - 63, 1, 64 },            /* blocks fit, header + blocks do not */
		{ (size_t)1 << 40, (size_t)1 << 30, 4096 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int err;
		size_t s = region_size_err(config(cases[i].size, cases[i].count, cases[i].align, 0), &err);
		cr_assert_eq(s, 0, "case %zu: size %zu", i, s);
		cr_assert_eq(err, EOVERFLOW, "case %zu: errno %d", i, err);
	}
}

Test(region_size, default_alignment_is_max_align_t)
{
	int e1, e2;
	size_t a = region_size_err(config(5, 10, 0, 0), &e1);
	size_t b = region_size_err(config(5, 10, DEFAULT_ALIGN, 0), &e2);
	cr_assert(e1 == 0 && e2 == 0);
	cr_assert_eq(a, b);
}

Test(region_size, covers_links_and_blocks_and_grows_with_count)
{
	size_t prev = 0;
	for (size_t n = 1; n < 200; n++) {
		lfp_pool_config_t c = config(100, n, 0, 0);
		size_t s = lfp_pool_region_size(&c);
		cr_assert_geq(s, n * 4 + n * 100, "count %zu: %zu", n, s);
		cr_assert_geq(s, prev, "count %zu", n);
		prev = s;
	}
	/* Flags do not change the layout. */
	lfp_pool_config_t c0 = config(24, 7, 8, 0), c1 = config(24, 7, 8, LFP_POOL_CHECKED | LFP_POOL_STATS);
	cr_assert_eq(lfp_pool_region_size(&c0), lfp_pool_region_size(&c1));
}

/* ======================================================================== */
/* lfp_pool_init                                                             */
/* ======================================================================== */

Test(init, null_arguments_are_einval)
{
	lfp_pool_config_t c = config(32, 4, 0, 0);
	size_t size = lfp_pool_region_size(&c);
	void *mem = aligned_buffer(64, size);
	lfp_pool_t *p = NULL;
	cr_assert_eq(lfp_pool_init(NULL, size, &c, &p), -EINVAL);
	cr_assert_eq(lfp_pool_init(mem, size, &c, NULL), -EINVAL);
	cr_assert_eq(lfp_pool_init(mem, size, NULL, &p), -EINVAL);
	cr_assert_null(p);
	free(mem);
}

Test(init, bad_config_gives_the_region_size_errno)
{
	void *mem = aligned_buffer(64, 4096);
	lfp_pool_t *p;
	lfp_pool_config_t zero = config(0, 4, 0, 0), nocount = config(4, 0, 0, 0),
			  align3 = config(4, 4, 3, 0), toomany = config(1, (size_t)LFP_POOL_MAX_BLOCKS + 1, 0, 0),
			  huge = config(SIZE_MAX / 2, 4, 0, 0), hugealign = config(4, 4, (size_t)1 << 31, 0);
	cr_assert_eq(lfp_pool_init(mem, 4096, &zero, &p), -EINVAL);
	cr_assert_eq(lfp_pool_init(mem, 4096, &nocount, &p), -EINVAL);
	cr_assert_eq(lfp_pool_init(mem, 4096, &align3, &p), -EINVAL);
	cr_assert_eq(lfp_pool_init(mem, 4096, &toomany, &p), -EINVAL);
	cr_assert_eq(lfp_pool_init(mem, 4096, &huge, &p), -EOVERFLOW);
	cr_assert_eq(lfp_pool_init(mem, 4096, &hugealign, &p), -EINVAL);
	/* Rejected inits leave the memory untouched (it was zeroed). */
	for (size_t i = 0; i < 4096; i++)
		cr_assert_eq(((unsigned char *)mem)[i], 0, "byte %zu written", i);
	free(mem);
}

Test(init, misaligned_memory_is_einval_and_untouched)
{
	lfp_pool_config_t c = config(32, 4, 0, 0);
	size_t size = lfp_pool_region_size(&c);
	unsigned char *buf = aligned_buffer(4096, size + 4096);
	lfp_pool_t *p;
	memset(buf, 0xA5, size + 4096);
	static const size_t offs[] = { 1, 8, 16, 32, 48, 63 };
	for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
		cr_assert_eq(lfp_pool_init(buf + offs[i], size, &c, &p), -EINVAL, "offset %zu", offs[i]);
	/* 64-aligned but not aligned to a larger block alignment. */
	lfp_pool_config_t c4k = config(32, 4, 4096, 0), c128 = config(32, 4, 128, 0);
	size_t s4k = lfp_pool_region_size(&c4k);
	unsigned char *big = aligned_buffer(4096, s4k + 4096);
	cr_assert_eq(lfp_pool_init(big + 64, s4k, &c4k, &p), -EINVAL);
	cr_assert_eq(lfp_pool_init(big + 2048, s4k, &c4k, &p), -EINVAL);
	cr_assert_eq(lfp_pool_init(big + 64, s4k, &c128, &p), -EINVAL);
	cr_assert_eq(lfp_pool_init(big + 128, s4k, &c128, &p), 0);
	for (size_t i = 0; i < size + 4096; i++)
		cr_assert_eq(buf[i], 0xA5, "byte %zu written by a rejected init", i);
	free(buf);
	free(big);
}

Test(init, short_region_is_enospc_and_untouched)
{
	lfp_pool_config_t c = config(40, 10, 0, 0);
	size_t size = lfp_pool_region_size(&c);
	unsigned char *buf = aligned_buffer(64, size);
	lfp_pool_t *p = NULL;
	memset(buf, 0x5A, size);
	cr_assert_eq(lfp_pool_init(buf, size - 1, &c, &p), -ENOSPC);
	cr_assert_eq(lfp_pool_init(buf, 0, &c, &p), -ENOSPC);
	cr_assert_eq(lfp_pool_init(buf, 64, &c, &p), -ENOSPC);
	for (size_t i = 0; i < size; i++)
		cr_assert_eq(buf[i], 0x5A, "byte %zu written by a rejected init", i);
	cr_assert_null(p);
	/* Exactly the reported size is enough. */
	cr_assert_eq(lfp_pool_init(buf, size, &c, &p), 0);
	cr_assert_eq((void *)p, (void *)buf);
	expect_valid(p, 10, 0);
	cr_assert_eq(lfp_pool_destroy(p), 0);
	free(buf);
}

Test(init, larger_region_is_fine_and_pool_is_complete)
{
	struct init_pool ip;
	lfp_pool_config_t c = config(24, 33, 8, LFP_POOL_STATS);
	ip.size = lfp_pool_region_size(&c) + 1000;
	ip.mem = aligned_buffer(64, ip.size);
	cr_assert_eq(lfp_pool_init(ip.mem, ip.size, &c, &ip.pool), 0);
	cr_assert_eq(lfp_pool_capacity(ip.pool), 33);
	cr_assert_eq(lfp_pool_block_size(ip.pool), 24);
	expect_valid(ip.pool, 33, 0);
	init_pool_end(&ip);
}

/* ======================================================================== */
/* lfp_pool_create / lfp_pool_destroy                                        */
/* ======================================================================== */

Test(lifecycle, create_rejects_bad_configs_with_errno)
{
	struct {
		lfp_pool_config_t c;
		int err;
	} cases[] = {
		{ config(0, 1, 0, 0), EINVAL },
		{ config(1, 0, 0, 0), EINVAL },
		{ config(1, 1, 12, 0), EINVAL },
		{ config(1, (size_t)LFP_POOL_MAX_BLOCKS + 1, 0, 0), EINVAL },
		{ config(1, 1, (size_t)1 << 31, 0), EINVAL },
		{ config(SIZE_MAX, 1, 0, 0), EOVERFLOW },
		{ config((size_t)1 << 33, (size_t)1 << 31, 0, 0), EOVERFLOW },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		errno = 0;
		cr_assert_null(lfp_pool_create(&cases[i].c), "case %zu", i);
		cr_assert_eq(errno, cases[i].err, "case %zu: errno %d", i, errno);
	}
	errno = 0;
	cr_assert_null(lfp_pool_create(NULL));
	cr_assert_eq(errno, EINVAL);
}

Test(lifecycle, create_fails_with_enomem_when_the_mapping_fails)
{
	/* 2^62 bytes: a valid size_t, far beyond any address space. */
	lfp_pool_config_t c = config((size_t)1 << 40, (size_t)1 << 22, 0, 0);
	cr_assert_neq(lfp_pool_region_size(&c), 0);
	errno = 0;
	cr_assert_null(lfp_pool_create(&c));
	cr_assert_eq(errno, ENOMEM);
}

Test(lifecycle, create_use_destroy)
{
	static const unsigned flags[] = { 0, LFP_POOL_CHECKED, LFP_POOL_STATS,
					  LFP_POOL_CHECKED | LFP_POOL_STATS };
	for (size_t f = 0; f < 4; f++) {
		lfp_pool_config_t c = config(100, 50, 0, flags[f]);
		lfp_pool_t *p = lfp_pool_create(&c);
		cr_assert_not_null(p, "create: %s", strerror(errno));
		cr_assert_eq(lfp_pool_capacity(p), 50);
		cr_assert_eq(lfp_pool_block_size(p), 112);
		expect_valid(p, 50, 0);
		void *b = lfp_pool_alloc(p);
		cr_assert_not_null(b);
		memset(b, 0xEE, 100);
		expect_valid(p, 49, 1);
		cr_assert_eq(lfp_pool_free(p, b), 0);
		expect_valid(p, 50, 0);
		cr_assert_eq(lfp_pool_destroy(p), 0);
	}
}

Test(lifecycle, create_with_page_and_larger_alignment)
{
	static const size_t aligns[] = { 4096, 8192, 65536, (size_t)1 << 21 };
	for (size_t i = 0; i < 4; i++) {
		lfp_pool_config_t c = config(10, 3, aligns[i], 0);
		lfp_pool_t *p = lfp_pool_create(&c);
		cr_assert_not_null(p, "align %zu: %s", aligns[i], strerror(errno));
		for (uint32_t k = 0; k < 3; k++) {
			void *b = lfp_pool_alloc(p);
			cr_assert_not_null(b);
			cr_assert_eq((uintptr_t)b % aligns[i], 0, "align %zu: block %p", aligns[i], b);
			memset(b, 1, aligns[i]); /* the whole stride is usable */
		}
		cr_assert_eq(lfp_pool_destroy(p), 0);
	}
}

Test(lifecycle, destroy_null_and_garbage_is_einval)
{
	cr_assert_eq(lfp_pool_destroy(NULL), -EINVAL);
	void *zero = aligned_buffer(64, 4096);
	cr_assert_eq(lfp_pool_destroy(zero), -EINVAL);
	free(zero);
}

Test(lifecycle, destroy_twice_on_an_initialised_pool)
{
	struct init_pool ip = init_pool(config(16, 8, 0, 0));
	void *b = lfp_pool_alloc(ip.pool);
	cr_assert_not_null(b);
	cr_assert_eq(lfp_pool_destroy(ip.pool), 0);
	cr_assert_eq(lfp_pool_destroy(ip.pool), -EINVAL);

	/* A dead pool refuses everything with the documented errors. */
	errno = 0;
	cr_assert_null(lfp_pool_alloc(ip.pool));
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(lfp_pool_free(ip.pool, b), -EINVAL);
	cr_assert_eq(lfp_pool_free(ip.pool, NULL), -EINVAL);
	cr_assert_eq(lfp_pool_capacity(ip.pool), 0);
	cr_assert_eq(lfp_pool_block_size(ip.pool), 0);
	cr_assert_eq(lfp_pool_free_count(ip.pool), 0);
	cr_assert_not(lfp_pool_contains(ip.pool, b));
	cr_assert_null(lfp_pool_ptr(ip.pool, 0));
	cr_assert_eq(lfp_pool_index(ip.pool, b), -EINVAL);
	lfp_pool_stats_t st;
	cr_assert_eq(lfp_pool_stats(ip.pool, &st), -EINVAL);
	lfp_pool_report_t r;
	cr_assert_eq(lfp_pool_validate(ip.pool, &r), -EINVAL);
	cr_assert_not_null(r.error);

	/* The region is the caller's again: it can hold a new pool. */
	lfp_pool_config_t c = config(16, 8, 0, 0);
	lfp_pool_t *again;
	cr_assert_eq(lfp_pool_init(ip.mem, ip.size, &c, &again), 0);
	expect_valid(again, 8, 0);
	ip.pool = again;
	init_pool_end(&ip);
}

/* ======================================================================== */
/* lfp_pool_alloc: alignment, distinctness, exhaustion                       */
/* ======================================================================== */

static void check_blocks(lfp_pool_t *p, size_t size, size_t count, size_t align)
{
	size_t eff = align ? align : DEFAULT_ALIGN;
	size_t bs = lfp_pool_block_size(p);
	void **b = calloc(count, sizeof *b);
	cr_assert_not_null(b);
	cr_assert_geq(bs, size);
	cr_assert_eq(bs % eff, 0, "block size %zu not a multiple of %zu", bs, eff);
	for (size_t i = 0; i < count; i++) {
		b[i] = lfp_pool_alloc(p);
		cr_assert_not_null(b[i], "block %zu of %zu", i, count);
		cr_assert_eq((uintptr_t)b[i] % eff, 0, "size %zu align %zu: %p", size, eff, b[i]);
		cr_assert(lfp_pool_contains(p, b[i]));
		int64_t idx = lfp_pool_index(p, b[i]);
		cr_assert(idx >= 0 && (size_t)idx < count);
		cr_assert_eq(lfp_pool_ptr(p, (uint32_t)idx), b[i]);
		memset(b[i], (int)(i & 0xFF), bs);
	}
	/* Whole blocks written: none overlaps another. */
	for (size_t i = 0; i < count; i++)
		for (size_t k = 0; k < bs; k++)
			cr_assert_eq(((unsigned char *)b[i])[k], i & 0xFF, "block %zu byte %zu", i, k);
	errno = 0;
	cr_assert_null(lfp_pool_alloc(p));
	cr_assert_eq(errno, ENOMEM);
	for (size_t i = 0; i < count; i++)
		cr_assert_eq(lfp_pool_free(p, b[i]), 0);
	expect_valid(p, count, 0);
	free(b);
}

Test(alloc, every_block_aligned_for_aligns_1_to_4096)
{
	static const size_t sizes[] = { 1, 3, 17, 64, 100 };
	for (size_t a = 0; a <= 4096; a = a ? a * 2 : 1) {
		for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
			lfp_pool_config_t c = config(sizes[s], 9, a, 0);
			lfp_pool_t *p = lfp_pool_create(&c);
			cr_assert_not_null(p, "create size %zu align %zu", sizes[s], a);
			check_blocks(p, sizes[s], 9, a);
			cr_assert_eq(lfp_pool_destroy(p), 0);

			struct init_pool ip = init_pool(c);
			check_blocks(ip.pool, sizes[s], 9, a);
			init_pool_end(&ip);
		}
	}
}

Test(alloc, block_size_is_size_rounded_to_alignment)
{
	struct {
		size_t size, align, stride;
	} cases[] = {
		{ 1, 0, DEFAULT_ALIGN }, { 17, 0, 32 }, { 24, 8, 24 }, { 40, 8, 40 },
		{ 100, 64, 128 }, { 1, 1, 1 }, { 3, 1, 3 }, { 4096, 4096, 4096 }, { 4097, 4096, 8192 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		lfp_pool_config_t c = config(cases[i].size, 4, cases[i].align, 0);
		lfp_pool_t *p = lfp_pool_create(&c);
		cr_assert_not_null(p);
		cr_assert_eq(lfp_pool_block_size(p), cases[i].stride, "case %zu: %zu", i,
			     lfp_pool_block_size(p));
		cr_assert_eq(lfp_pool_destroy(p), 0);
	}
}

Test(alloc, exhaustion_gives_null_enomem_and_success_leaves_errno)
{
	lfp_pool_config_t c = config(32, 5, 0, 0);
	lfp_pool_t *p = lfp_pool_create(&c);
	void *b[5];
	cr_assert_not_null(p);
	for (int i = 0; i < 5; i++) {
		errno = 12345;
		b[i] = lfp_pool_alloc(p);
		cr_assert_not_null(b[i]);
		cr_assert_eq(errno, 12345, "a successful alloc touched errno");
	}
	for (int k = 0; k < 3; k++) {
		errno = 0;
		cr_assert_null(lfp_pool_alloc(p));
		cr_assert_eq(errno, ENOMEM);
	}
	expect_valid(p, 0, 5);
	/* One back, one out again; then empty again. */
	cr_assert_eq(lfp_pool_free(p, b[2]), 0);
	b[2] = lfp_pool_alloc(p);
	cr_assert_not_null(b[2]);
	cr_assert_null(lfp_pool_alloc(p));
	for (int i = 0; i < 5; i++)
		cr_assert_eq(lfp_pool_free(p, b[i]), 0);
	expect_valid(p, 5, 0);
	cr_assert_eq(lfp_pool_destroy(p), 0);
}

Test(alloc, alloc_null_pool_is_einval)
{
	errno = 0;
	cr_assert_null(lfp_pool_alloc(NULL));
	cr_assert_eq(errno, EINVAL);
}

Test(alloc, single_block_pool)
{
	lfp_pool_config_t c = config(1, 1, 1, LFP_POOL_CHECKED);
	lfp_pool_t *p = lfp_pool_create(&c);
	cr_assert_not_null(p);
	for (int round = 0; round < 100; round++) {
		void *b = lfp_pool_alloc(p);
		cr_assert_not_null(b);
		cr_assert_null(lfp_pool_alloc(p));
		cr_assert_eq(lfp_pool_free(p, b), 0);
		cr_assert_eq(lfp_pool_free(p, b), -EALREADY);
	}
	expect_valid(p, 1, 0);
	cr_assert_eq(lfp_pool_destroy(p), 0);
}

/* ======================================================================== */
/* lfp_pool_free: NULL, invalid pointers, double free                        */
/* ======================================================================== */

Test(free, null_is_a_noop_returning_zero)
{
	lfp_pool_config_t c = config(32, 4, 0, LFP_POOL_STATS);
	lfp_pool_t *p = lfp_pool_create(&c);
	void *b = lfp_pool_alloc(p);
	cr_assert_not_null(b);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(lfp_pool_free(p, NULL), 0);
	lfp_pool_stats_t st;
	cr_assert_eq(lfp_pool_stats(p, &st), 0);
	cr_assert_eq(st.frees, 0);
	cr_assert_eq(st.in_use, 1);
	expect_valid(p, 3, 1);
	cr_assert_eq(lfp_pool_free(p, b), 0);
	cr_assert_eq(lfp_pool_destroy(p), 0);
	cr_assert_eq(lfp_pool_free(NULL, NULL), -EINVAL);
}

/* Every pointer that is not a block start of p is refused, nothing changes. */
static void check_invalid_frees(lfp_pool_t *p)
{
	const size_t n = lfp_pool_capacity(p), bs = lfp_pool_block_size(p);
	void *held = lfp_pool_alloc(p);
	cr_assert_not_null(held);
	const size_t free_before = lfp_pool_free_count(p);
	char *first = lfp_pool_ptr(p, 0), *last = lfp_pool_ptr(p, (uint32_t)(n - 1));
	int local;
	void *heap = malloc(64);
	lfp_pool_config_t oc = config(bs, 2, 0, 0);
	lfp_pool_t *other = lfp_pool_create(&oc);
	void *foreign_block = lfp_pool_alloc(other);
	cr_assert_not_null(heap);
	cr_assert_not_null(foreign_block);

	void *bad[] = {
		&local, heap, foreign_block, (void *)p, (void *)(uintptr_t)1,
		(char *)p + LFPI_HEADER_SIZE, /* the link array */
		first - 1, last + bs,          /* one before / one past the end */
		last + 2 * bs, (char *)held + 1, (char *)held + bs / 2, (char *)held + bs - 1,
		(void *)(uintptr_t)UINTPTR_MAX,
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (bs == 1 && (i == 9 || i == 10 || i == 11))
			continue; /* a 1-byte block has no inside */
		cr_assert_eq(lfp_pool_free(p, bad[i]), -EINVAL, "pointer %zu (%p)", i, bad[i]);
		cr_assert_eq(lfp_pool_free_count(p), free_before, "pointer %zu changed the pool", i);
	}
	expect_valid(p, free_before, n - free_before);
	/* The held block is still ours; the foreign one is still other's. */
	cr_assert_eq(lfp_pool_free(p, held), 0);
	cr_assert_eq(lfp_pool_free(other, foreign_block), 0);
	expect_valid(p, n, 0);
	expect_valid(other, 2, 0);
	cr_assert_eq(lfp_pool_destroy(other), 0);
	free(heap);
}

Test(free, invalid_pointers_are_einval_and_change_nothing)
{
	static const size_t shapes[][2] = { { 64, 0 }, { 24, 8 }, { 40, 8 }, { 1, 1 }, { 3, 1 },
					    { 100, 4096 } };
	static const unsigned flags[] = { 0, LFP_POOL_CHECKED, LFP_POOL_STATS };
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
		for (size_t f = 0; f < 3; f++) {
			lfp_pool_config_t c = config(shapes[s][0], 11, shapes[s][1], flags[f]);
			lfp_pool_t *p = lfp_pool_create(&c);
			cr_assert_not_null(p);
			check_invalid_frees(p);
			if (flags[f] & LFP_POOL_STATS) {
				lfp_pool_stats_t st;
				cr_assert_eq(lfp_pool_stats(p, &st), 0);
				cr_assert_eq(st.frees, 1, "rejected frees were counted");
				cr_assert_eq(st.allocs, 1);
			}
			cr_assert_eq(lfp_pool_destroy(p), 0);
		}
}

static void check_double_free(unsigned flags)
{
	lfp_pool_config_t c = config(48, 6, 0, flags | LFP_POOL_STATS);
	lfp_pool_t *p = lfp_pool_create(&c);
	void *a = lfp_pool_alloc(p), *b = lfp_pool_alloc(p);
	cr_assert(a && b);
	cr_assert_eq(lfp_pool_free(p, a), 0);
	cr_assert_eq(lfp_pool_free(p, a), -EALREADY);
	cr_assert_eq(lfp_pool_free(p, a), -EALREADY);
	expect_valid(p, 5, 1);
	/* A block that was never handed out is free already too. */
	void *never = NULL;
	for (uint32_t i = 0; i < 6 && never == NULL; i++) {
		void *q = lfp_pool_ptr(p, i);
		if (q != a && q != b)
			never = q;
	}
	cr_assert_eq(lfp_pool_free(p, never), -EALREADY);
	expect_valid(p, 5, 1);
	lfp_pool_stats_t st;
	cr_assert_eq(lfp_pool_stats(p, &st), 0);
	cr_assert_eq(st.frees, 1);
	/* No block was duplicated: the pool still hands out 5 distinct ones. */
	void *got[5];
	for (int i = 0; i < 5; i++) {
		got[i] = lfp_pool_alloc(p);
		cr_assert_not_null(got[i]);
		cr_assert_neq(got[i], b);
		for (int k = 0; k < i; k++)
			cr_assert_neq(got[i], got[k]);
	}
	cr_assert_null(lfp_pool_alloc(p));
	for (int i = 0; i < 5; i++)
		cr_assert_eq(lfp_pool_free(p, got[i]), 0);
	cr_assert_eq(lfp_pool_free(p, b), 0);
	cr_assert_eq(lfp_pool_free(p, b), -EALREADY);
	expect_valid(p, 6, 0);
	cr_assert_eq(lfp_pool_destroy(p), 0);
}

Test(free, double_free_is_ealready_default_mode) { check_double_free(0); }
Test(free, double_free_is_ealready_checked_mode) { check_double_free(LFP_POOL_CHECKED); }

Test(free, checked_mode_refuses_a_block_caught_mid_free)
{
	/* Crafted state: a racing free won the ALLOC -> FREEING transition. */
	lfp_pool_config_t c = config(16, 4, 0, LFP_POOL_CHECKED);
	lfp_pool_t *p = lfp_pool_create(&c);
	void *b = lfp_pool_alloc(p);
	int64_t i = lfp_pool_index(p, b);
	cr_assert_geq(i, 0);
	lfp_store32_relaxed(&lfpi_next(p)[i], LFPI_FREEING);
	cr_assert_eq(lfp_pool_free(p, b), -EALREADY);
	lfp_store32_relaxed(&lfpi_next(p)[i], LFPI_ALLOC);
	cr_assert_eq(lfp_pool_free(p, b), 0);
	expect_valid(p, 4, 0);
	cr_assert_eq(lfp_pool_destroy(p), 0);
}

/* ======================================================================== */
/* Queries                                                                    */
/* ======================================================================== */

Test(queries, index_ptr_round_trip_and_contains)
{
	static const size_t shapes[][2] = { { 64, 0 }, { 24, 8 }, { 1, 1 }, { 100, 256 } };
	for (size_t s = 0; s < 4; s++) {
		const size_t n = 37;
		lfp_pool_config_t c = config(shapes[s][0], n, shapes[s][1], 0);
		lfp_pool_t *p = lfp_pool_create(&c);
		cr_assert_not_null(p);
		const size_t bs = lfp_pool_block_size(p);
		char *base = lfp_pool_ptr(p, 0);
		for (uint32_t i = 0; i < n; i++) {
			char *q = lfp_pool_ptr(p, i);
			cr_assert_eq(q, base + (size_t)i * bs);
			cr_assert_eq(lfp_pool_index(p, q), (int64_t)i);
			cr_assert(lfp_pool_contains(p, q));
			cr_assert(lfp_pool_contains(p, q + bs - 1));
			if (bs > 1)
				cr_assert_eq(lfp_pool_index(p, q + 1), -EINVAL);
		}
		cr_assert_null(lfp_pool_ptr(p, (uint32_t)n));
		cr_assert_null(lfp_pool_ptr(p, UINT32_MAX));
		cr_assert_null(lfp_pool_ptr(p, LFP_NIL - 1));
		cr_assert_eq(lfp_pool_index(p, NULL), -EINVAL);
		cr_assert_eq(lfp_pool_index(p, base - 1), -EINVAL);
		cr_assert_eq(lfp_pool_index(p, base + n * bs), -EINVAL);
		cr_assert_eq(lfp_pool_index(p, p), -EINVAL);
		cr_assert_not(lfp_pool_contains(p, base - 1));
		cr_assert_not(lfp_pool_contains(p, base + n * bs));
		cr_assert_not(lfp_pool_contains(p, p));
		cr_assert_not(lfp_pool_contains(p, NULL));
		cr_assert_eq(lfp_pool_capacity(p), n);
		cr_assert_eq(lfp_pool_destroy(p), 0);
	}
}

Test(queries, bad_handles)
{
	int x;
	cr_assert_eq(lfp_pool_capacity(NULL), 0);
	cr_assert_eq(lfp_pool_block_size(NULL), 0);
	cr_assert_eq(lfp_pool_free_count(NULL), 0);
	cr_assert_not(lfp_pool_contains(NULL, &x));
	cr_assert_null(lfp_pool_ptr(NULL, 0));
	cr_assert_eq(lfp_pool_index(NULL, &x), -EINVAL);
	lfp_pool_stats_t st;
	cr_assert_eq(lfp_pool_stats(NULL, &st), -EINVAL);
	lfp_pool_config_t c = config(8, 2, 0, 0);
	lfp_pool_t *p = lfp_pool_create(&c);
	cr_assert_eq(lfp_pool_stats(p, NULL), -EINVAL);
	cr_assert_eq(lfp_pool_destroy(p), 0);
}

static void check_free_count_tracks(unsigned flags)
{
	const size_t n = 20;
	lfp_pool_config_t c = config(8, n, 0, flags);
	lfp_pool_t *p = lfp_pool_create(&c);
	void *b[20];
	cr_assert_eq(lfp_pool_free_count(p), n);
	for (size_t i = 0; i < n; i++) {
		b[i] = lfp_pool_alloc(p);
		cr_assert_eq(lfp_pool_free_count(p), n - i - 1);
	}
	cr_assert_null(lfp_pool_alloc(p));
	cr_assert_eq(lfp_pool_free_count(p), 0);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(lfp_pool_free(p, b[(i * 7) % n]), 0);
		cr_assert_eq(lfp_pool_free_count(p), i + 1);
	}
	cr_assert_eq(lfp_pool_destroy(p), 0);
}

Test(queries, free_count_exact_when_quiescent) { check_free_count_tracks(0); }
Test(queries, free_count_exact_when_quiescent_stats) { check_free_count_tracks(LFP_POOL_STATS); }

/* ======================================================================== */
/* Statistics                                                                 */
/* ======================================================================== */

static lfp_pool_stats_t stats_of(const lfp_pool_t *p)
{
	lfp_pool_stats_t st;
	memset(&st, 0xFF, sizeof st);
	cr_assert_eq(lfp_pool_stats(p, &st), 0);
	return st;
}

Test(stats, counters_with_lfp_pool_stats)
{
	lfp_pool_config_t c = config(16, 8, 0, LFP_POOL_STATS);
	lfp_pool_t *p = lfp_pool_create(&c);
	void *b[8];
	lfp_pool_stats_t st = stats_of(p);
	cr_assert(st.allocs == 0 && st.frees == 0 && st.failures == 0 && st.in_use == 0 &&
		  st.high_water == 0 && st.capacity == 8 && st.free == 8);
	for (int i = 0; i < 5; i++)
		b[i] = lfp_pool_alloc(p);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(lfp_pool_free(p, b[i]), 0);
	st = stats_of(p);
	cr_assert(st.allocs == 5 && st.frees == 3 && st.in_use == 2 && st.high_water == 5 &&
		  st.free == 6, "allocs %" PRIu64 " frees %" PRIu64 " in_use %" PRIu64 " hw %" PRIu64,
		  st.allocs, st.frees, st.in_use, st.high_water);
	for (int i = 0; i < 2; i++)
		b[i] = lfp_pool_alloc(p);
	st = stats_of(p);
	cr_assert(st.in_use == 4 && st.high_water == 5, "in_use %" PRIu64 " hw %" PRIu64, st.in_use,
		  st.high_water);
	b[2] = lfp_pool_alloc(p);
	for (int i = 5; i < 8; i++)
		b[i] = lfp_pool_alloc(p);
	cr_assert_null(lfp_pool_alloc(p));
	cr_assert_null(lfp_pool_alloc(p));
	st = stats_of(p);
	cr_assert(st.allocs == 11 && st.in_use == 8 && st.high_water == 8 && st.failures == 2 &&
		  st.free == 0);
	/* Rejected frees are not counted. */
	cr_assert_eq(lfp_pool_free(p, (char *)b[0] + 1), -EINVAL);
	cr_assert_eq(lfp_pool_free(p, NULL), 0);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(lfp_pool_free(p, b[i]), 0);
	cr_assert_eq(lfp_pool_free(p, b[0]), -EALREADY);
	st = stats_of(p);
	cr_assert(st.allocs == 11 && st.frees == 11 && st.in_use == 0 && st.high_water == 8 &&
		  st.failures == 2 && st.free == 8 && st.capacity == 8);
	cr_assert_eq(lfp_pool_destroy(p), 0);
}

Test(stats, without_lfp_pool_stats_only_failures_are_kept)
{
	lfp_pool_config_t c = config(16, 4, 0, 0);
	lfp_pool_t *p = lfp_pool_create(&c);
	void *b[4];
	for (int i = 0; i < 4; i++)
		b[i] = lfp_pool_alloc(p);
	cr_assert_null(lfp_pool_alloc(p));
	cr_assert_eq(lfp_pool_free(p, b[3]), 0);
	lfp_pool_stats_t st = stats_of(p);
	cr_assert_eq(st.allocs, 0);
	cr_assert_eq(st.frees, 0);
	cr_assert_eq(st.high_water, 0);
	cr_assert_eq(st.failures, 1);
	cr_assert_eq(st.capacity, 4);
	cr_assert_eq(st.free, 1);
	cr_assert_eq(st.in_use, 3, "in_use derived from the free count: %" PRIu64, st.in_use);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(lfp_pool_free(p, b[i]), 0);
	cr_assert_eq(lfp_pool_destroy(p), 0);
}

/* ======================================================================== */
/* lfp_pool_validate on good and corrupted pools                             */
/* ======================================================================== */

Test(validate, good_pools)
{
	struct init_pool ip = init_pool(config(32, 10, 0, 0));
	void *b[10];
	expect_valid(ip.pool, 10, 0);
	cr_assert_eq(lfp_pool_validate(ip.pool, NULL), 0);
	for (int i = 0; i < 4; i++)
		b[i] = lfp_pool_alloc(ip.pool);
	expect_valid(ip.pool, 6, 4);
	for (int i = 4; i < 10; i++)
		b[i] = lfp_pool_alloc(ip.pool);
	expect_valid(ip.pool, 0, 10);
	for (int i = 0; i < 10; i += 2)
		cr_assert_eq(lfp_pool_free(ip.pool, b[i]), 0);
	expect_valid(ip.pool, 5, 5);
	for (int i = 1; i < 10; i += 2)
		cr_assert_eq(lfp_pool_free(ip.pool, b[i]), 0);
	expect_valid(ip.pool, 10, 0);
	init_pool_end(&ip);
}

Test(validate, null_pool_is_einval_with_a_report)
{
	lfp_pool_report_t r;
	memset(&r, 0, sizeof r);
	cr_assert_eq(lfp_pool_validate(NULL, &r), -EINVAL);
	cr_assert_not_null(r.error);
	cr_assert_eq(lfp_pool_validate(NULL, NULL), -EINVAL);
}

/* Expect -EUCLEAN and a report naming the problem (a word of r.error). */
static lfp_pool_report_t expect_corrupt(const lfp_pool_t *p, const char *word)
{
	lfp_pool_report_t r;
	int rc = lfp_pool_validate(p, &r);
	cr_assert_eq(rc, -EUCLEAN, "validate gave %d on a corrupt pool", rc);
	cr_assert_not_null(r.error);
	cr_assert_not_null(strstr(r.error, word), "report '%s' lacks '%s'", r.error, word);
	cr_assert_eq(r.capacity, lfp_pool_capacity(p));
	cr_assert_eq(lfp_pool_validate(p, NULL), -EUCLEAN);
	return r;
}

static void set_head(lfp_pool_t *p, uint32_t index)
{
	uint64_t h = lfp_load64_relaxed(&p->head); /* relaxed: single-threaded test */
	lfp_store64_relaxed(&p->head, lfp_head_make(index, lfp_head_tag(h) + 1));
}

Test(validate, cycle_in_the_free_stack)
{
	struct init_pool ip = init_pool(config(16, 8, 0, 0));
	lfp_atomic_u32 *next = lfpi_next(ip.pool);
	/* A fresh pool links 0 -> 1 -> ... -> 7 -> NIL; close a loop at 5 -> 2. */
	uint32_t i = lfp_head_index(lfp_load64_relaxed(&ip.pool->head));
	for (int k = 0; k < 5; k++)
		i = lfp_load32_relaxed(&next[i]);
	uint32_t saved = lfp_load32_relaxed(&next[i]);
	lfp_store32_relaxed(&next[i], lfp_head_index(lfp_load64_relaxed(&ip.pool->head)));
	expect_corrupt(ip.pool, "cycle");
	/* A block linked to itself. */
	lfp_store32_relaxed(&next[i], i);
	expect_corrupt(ip.pool, "cycle");
	lfp_store32_relaxed(&next[i], saved);
	expect_valid(ip.pool, 8, 0);
	init_pool_end(&ip);
}

Test(validate, link_out_of_range)
{
	struct init_pool ip = init_pool(config(16, 8, 0, 0));
	lfp_atomic_u32 *next = lfpi_next(ip.pool);
	uint32_t i = lfp_head_index(lfp_load64_relaxed(&ip.pool->head));
	uint32_t saved = lfp_load32_relaxed(&next[i]);
	lfp_store32_relaxed(&next[i], 8); /* == count */
	lfp_pool_report_t r = expect_corrupt(ip.pool, "range");
	cr_assert_eq(r.bad_index, 8);
	lfp_store32_relaxed(&next[i], 1000);
	r = expect_corrupt(ip.pool, "range");
	cr_assert_eq(r.bad_index, 1000);
	lfp_store32_relaxed(&next[i], saved);
	expect_valid(ip.pool, 8, 0);
	init_pool_end(&ip);
}

Test(validate, head_out_of_range_also_fails_alloc_with_euclean)
{
	struct init_pool ip = init_pool(config(16, 8, 0, LFP_POOL_STATS));
	set_head(ip.pool, 8);
	expect_corrupt(ip.pool, "range");
	errno = 0;
	cr_assert_null(lfp_pool_alloc(ip.pool));
	cr_assert_eq(errno, EUCLEAN);
	cr_assert_eq(stats_of(ip.pool).failures, 1);
	set_head(ip.pool, 0);
	expect_valid(ip.pool, 8, 0);
	init_pool_end(&ip);
}

Test(validate, allocated_block_on_the_stack)
{
	struct init_pool ip = init_pool(config(16, 8, 0, 0));
	void *b = lfp_pool_alloc(ip.pool);
	int64_t i = lfp_pool_index(ip.pool, b);
	uint32_t good = lfp_head_index(lfp_load64_relaxed(&ip.pool->head));
	cr_assert_geq(i, 0);
	set_head(ip.pool, (uint32_t)i); /* the head names a block someone holds */
	expect_corrupt(ip.pool, "range");
	errno = 0;
	cr_assert_null(lfp_pool_alloc(ip.pool), "alloc handed out a held block again");
	cr_assert_eq(errno, EUCLEAN);
	set_head(ip.pool, good);
	expect_valid(ip.pool, 7, 1);
	cr_assert_eq(lfp_pool_free(ip.pool, b), 0);
	init_pool_end(&ip);
}

Test(validate, lost_block)
{
	struct init_pool ip = init_pool(config(16, 8, 0, 0));
	lfp_atomic_u32 *next = lfpi_next(ip.pool);
	void *b = lfp_pool_alloc(ip.pool);
	int64_t i = lfp_pool_index(ip.pool, b);
	cr_assert_geq(i, 0);
	/* Neither free nor allocated: its mark was overwritten by a link. */
	lfp_store32_relaxed(&next[i], 0);
	lfp_pool_report_t r = expect_corrupt(ip.pool, "lost");
	cr_assert_eq(r.free, 7);
	cr_assert_eq(r.allocated, 0);
	cr_assert_eq(r.other, 1);
	lfp_store32_relaxed(&next[i], LFPI_ALLOC);
	expect_valid(ip.pool, 7, 1);
	cr_assert_eq(lfp_pool_free(ip.pool, b), 0);

	/* The head skips the top free block: it is lost too. */
	uint32_t top = lfp_head_index(lfp_load64_relaxed(&ip.pool->head));
	set_head(ip.pool, lfp_load32_relaxed(&next[top]));
	r = expect_corrupt(ip.pool, "lost");
	cr_assert_eq(r.free, 7);
	cr_assert_eq(r.other, 1);
	set_head(ip.pool, top);
	expect_valid(ip.pool, 8, 0);
	init_pool_end(&ip);
}

Test(validate, block_caught_mid_free)
{
	struct init_pool ip = init_pool(config(16, 8, 0, LFP_POOL_CHECKED));
	void *b = lfp_pool_alloc(ip.pool);
	int64_t i = lfp_pool_index(ip.pool, b);
	lfp_store32_relaxed(&lfpi_next(ip.pool)[i], LFPI_FREEING);
	lfp_pool_report_t r = expect_corrupt(ip.pool, "mid-free");
	cr_assert_eq(r.bad_index, (uint32_t)i);
	lfp_store32_relaxed(&lfpi_next(ip.pool)[i], LFPI_ALLOC);
	cr_assert_eq(lfp_pool_free(ip.pool, b), 0);
	expect_valid(ip.pool, 8, 0);
	init_pool_end(&ip);
}

/* ======================================================================== */
/* Position independence, static storage                                     */
/* ======================================================================== */

static void check_copy(size_t align, size_t dst_offset)
{
	lfp_pool_config_t c = config(48, 16, align, LFP_POOL_STATS | LFP_POOL_CHECKED);
	size_t size = lfp_pool_region_size(&c);
	unsigned char *a = aligned_buffer(4096, size);
	unsigned char *bbuf = aligned_buffer(4096, size + dst_offset);
	unsigned char *b = bbuf + dst_offset;
	lfp_pool_t *pa, *pb;
	void *held[5];

	cr_assert_eq(lfp_pool_init(a, size, &c, &pa), 0);
	for (int i = 0; i < 5; i++) {
		held[i] = lfp_pool_alloc(pa);
		cr_assert_not_null(held[i]);
		memset(held[i], 'a' + i, 48);
	}
	cr_assert_eq(lfp_pool_free(pa, held[4]), 0); /* a freed one too */
	memcpy(b, a, size);
	pb = (lfp_pool_t *)(void *)b;

	expect_valid(pb, 12, 4);
	cr_assert_eq(lfp_pool_capacity(pb), 16);
	lfp_pool_stats_t st = stats_of(pb);
	cr_assert(st.allocs == 5 && st.frees == 1 && st.in_use == 4);
	for (int i = 0; i < 4; i++) {
		unsigned char *q = b + ((unsigned char *)held[i] - a);
		cr_assert_eq(lfp_pool_index(pb, q), lfp_pool_index(pa, held[i]));
		cr_assert(lfp_pool_contains(pb, q));
		cr_assert_not(lfp_pool_contains(pb, held[i]));
		cr_assert_eq(q[0], 'a' + i);
		cr_assert_eq(lfp_pool_free(pb, held[i]), -EINVAL, "the copy accepted the original's block");
		cr_assert_eq(lfp_pool_free(pb, q), 0);
		cr_assert_eq(lfp_pool_free(pb, q), -EALREADY);
	}
	expect_valid(pb, 16, 0);
	/* Everything the copy hands out lies in the copy, aligned. */
	void *got[16];
	for (int i = 0; i < 16; i++) {
		got[i] = lfp_pool_alloc(pb);
		cr_assert_not_null(got[i]);
		cr_assert(lfp_pool_contains(pb, got[i]));
		cr_assert((unsigned char *)got[i] >= b && (unsigned char *)got[i] < b + size);
		cr_assert_eq((uintptr_t)got[i] % (align ? align : DEFAULT_ALIGN), 0);
	}
	cr_assert_null(lfp_pool_alloc(pb));
	for (int i = 0; i < 16; i++)
		cr_assert_eq(lfp_pool_free(pb, got[i]), 0);
	expect_valid(pb, 16, 0);
	/* The original did not notice. */
	expect_valid(pa, 12, 4);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(lfp_pool_free(pa, held[i]), 0);
	expect_valid(pa, 16, 0);
	cr_assert_eq(lfp_pool_destroy(pb), 0);
	cr_assert_eq(lfp_pool_destroy(pa), 0);
	free(a);
	free(bbuf);
}

Test(position, copied_region_keeps_working)
{
	check_copy(0, 0);
	check_copy(0, 64);    /* a different offset within the page */
	check_copy(64, 192);
	check_copy(4096, 0);
}

static _Alignas(4096) unsigned char static_region[1 << 16];

/* 500 blocks: by default such a pool has a per-thread cache, so the
 * contract is checked with and without it. */
static void check_static_pool(unsigned flags)
{
	lfp_pool_config_t c = config(40, 500, 8, flags);
	size_t need = lfp_pool_region_size(&c);
	lfp_pool_t *p;
	void *b[500];
	cr_assert_neq(need, 0);
	cr_assert_leq(need, sizeof static_region);
	for (int round = 0; round < 2; round++) {
		cr_assert_eq(lfp_pool_init(static_region, sizeof static_region, &c, &p), 0);
		cr_assert_eq((void *)p, (void *)static_region);
		for (int i = 0; i < 500; i++) {
			b[i] = lfp_pool_alloc(p);
			cr_assert_not_null(b[i], "flags %#x: block %d", flags, i);
			cr_assert((unsigned char *)b[i] >= static_region &&
				  (unsigned char *)b[i] + 40 <= static_region + need);
		}
		errno = 0;
		cr_assert_null(lfp_pool_alloc(p));
		cr_assert_eq(errno, ENOMEM);
		cr_assert_eq(lfp_pool_free(p, b[7]), 0);
		cr_assert_eq(lfp_pool_free(p, b[7]), -EALREADY);
		b[7] = lfp_pool_alloc(p);
		cr_assert_not_null(b[7]);
		for (int i = 499; i >= 0; i--)
			cr_assert_eq(lfp_pool_free(p, b[i]), 0);
		cr_assert_eq(lfp_pool_free_count(p), 500);
		cr_assert_eq(lfp_pool_validate(p, NULL), 0);
		cr_assert_eq(lfp_pool_destroy(p), 0);
	}
}

Test(position, pool_in_a_static_array)
{
	check_static_pool(LFP_POOL_CHECKED);
	check_static_pool(LFP_POOL_CHECKED | LFP_POOL_NO_CACHE);
}

/* ======================================================================== */
/* A seeded random sequence against a model                                  */
/* ======================================================================== */

Test(model, random_sequence_matches_a_model)
{
	enum { N = 37, STEPS = 20000 };
	lfp_pool_config_t c = config(24, N, 8, LFP_POOL_STATS | LFP_POOL_CHECKED);
	lfp_pool_t *p = lfp_pool_create(&c);
	uint64_t seed = lfpt_seed_pick("test_pool model", NULL);
	lfpt_rng_t rng;
	void *held[N];
	uint64_t seq[N];
	size_t nheld = 0;
	uint64_t allocs = 0, frees = 0, fails = 0, hw = 0;

	lfpt_rng_init(&rng, seed, 0);
	cr_assert_not_null(p);
	for (int step = 0; step < STEPS; step++) {
		uint64_t r = lfpt_rng_next(&rng);
		switch (r % 4) {
		case 0:
		case 1: { /* alloc */
			errno = 0;
			void *q = lfp_pool_alloc(p);
			if (nheld == N) {
				cr_assert_null(q, "seed %" PRIu64 " step %d", seed, step);
				cr_assert_eq(errno, ENOMEM);
				fails++;
				break;
			}
			cr_assert_not_null(q, "seed %" PRIu64 " step %d", seed, step);
			lfpt_stamp_claim(q, 24, 1, (uint64_t)step);
			seq[nheld] = (uint64_t)step;
			held[nheld++] = q;
			allocs++;
			hw = nheld > hw ? nheld : hw;
			break;
		}
		case 2: /* free a held block */
			if (nheld > 0) {
				size_t k = (size_t)(r >> 8) % nheld;
				lfpt_stamp_release(held[k], 24, 1, seq[k]);
				cr_assert_eq(lfp_pool_free(p, held[k]), 0, "seed %" PRIu64, seed);
				held[k] = held[--nheld];
				seq[k] = seq[nheld];
				frees++;
			}
			break;
		default: { /* a bad free: a free block, or inside a block */
			char *q = lfp_pool_ptr(p, (uint32_t)((r >> 8) % N));
			bool is_held = false;
			for (size_t k = 0; k < nheld; k++)
				is_held |= held[k] == q;
			if (is_held)
				cr_assert_eq(lfp_pool_free(p, q + 1 + (r >> 40) % 23), -EINVAL);
			else
				cr_assert_eq(lfp_pool_free(p, q), -EALREADY, "seed %" PRIu64, seed);
		}
		}
		cr_assert_eq(lfp_pool_free_count(p), N - nheld, "seed %" PRIu64 " step %d", seed, step);
		if (step % 1000 == 0)
			expect_valid(p, N - nheld, nheld);
	}
	lfp_pool_stats_t st = stats_of(p);
	cr_assert(st.allocs == allocs && st.frees == frees && st.failures == fails &&
		  st.high_water == hw && st.in_use == nheld, "seed %" PRIu64, seed);
	cr_assert_eq(lfpt_violations(), 0, "stamp violations, seed %" PRIu64, seed);
	while (nheld > 0)
		cr_assert_eq(lfp_pool_free(p, held[--nheld]), 0);
	expect_valid(p, N, 0);
	cr_assert_eq(lfp_pool_destroy(p), 0);
}

Test(region_size, unknown_flag_bits_are_einval)
{
	lfp_pool_config_t cfg = { .block_size = 32, .block_count = 8, .flags = 1u << 20 };
	errno = 0;
	cr_assert_eq(lfp_pool_region_size(&cfg), 0);
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_null(lfp_pool_create(&cfg));
	cr_assert_eq(errno, EINVAL);
}

/* The front end's owned mode validates a pool with a second free list, the
 * owner's (lfpi_pool_validate_lists). Two lists that share a block used to
 * pass when one more block was lost, because the shared part was counted
 * twice and the totals balanced again. */
static lfp_pool_t *four_block_pool(void **blk)
{
	lfp_pool_config_t pc = { .block_size = 64, .block_count = 4, .flags = LFP_POOL_NO_CACHE };
	lfp_pool_t *p = lfp_pool_create(&pc);
	cr_assert_not_null(p);
	for (int i = 0; i < 4; i++)
		cr_assert_not_null(blk[i] = lfp_pool_alloc(p));
	cr_assert_eq(lfp_pool_free(p, blk[1]), 0);
	cr_assert_eq(lfp_pool_free(p, blk[0]), 0); /* shared stack: 0 -> 1 */
	return p;
}

Test(validate, an_owners_list_beside_the_free_stack)
{
	void *blk[4];
	lfp_pool_t *p = four_block_pool(blk);
	lfp_atomic_u32 *next = lfpi_next(p);
	uint32_t c = (uint32_t)lfp_pool_index(p, blk[2]), d = (uint32_t)lfp_pool_index(p, blk[3]);
	lfp_store32_relaxed(&next[c], d);       /* own list: 2 -> 3, disjoint */
	lfp_store32_relaxed(&next[d], LFP_NIL);
	lfp_pool_report_t r;
	cr_assert_eq(lfpi_pool_validate_lists(p, c, &r), 0, "%s", r.error ? r.error : "?");
	cr_assert_eq(r.free, 4);
	cr_assert_eq(r.allocated, 0);
	/* Now 2 -> 1: block 1 is on both lists, and block 3 on none. */
	lfp_store32_relaxed(&next[c], (uint32_t)lfp_pool_index(p, blk[1]));
	cr_assert_eq(lfpi_pool_validate_lists(p, c, &r), -EUCLEAN, "a shared tail plus a lost block passed");
	cr_assert_not_null(r.error);
	/* Put it right for destroy's sake: 2 and 3 allocated again. */
	lfp_store32_relaxed(&next[c], LFPI_ALLOC);
	lfp_store32_relaxed(&next[d], LFPI_ALLOC);
	cr_assert_eq(lfp_pool_validate(p, &r), 0, "%s", r.error ? r.error : "?");
	lfp_pool_destroy(p);
}
