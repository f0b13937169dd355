/*
 * stress/bench_fastpath.c - where the nanoseconds of the cached hot pair
 * (and, with --batch, of the batch-shuffled pair) go.
 *
 * The "hot" scenario of `make bench` (alloc, write 8 bytes, free, repeated)
 * rebuilt step by step, each variant in its own loop (noinline) over a
 * thread-local magazine, thread-CPU time per pair, median of --reps:
 *   ptr-array     a thread-local array of pointers and a counter: pop, write,
 *                 push (the "bare thread-local array" of issue 3)
 *   idx-array     the same with 32-bit block indices in a magazine and
 *                 index <-> pointer conversion and the range/alignment check
 *                 of lfp_cache_free (position independence costs this much)
 *   +count        idx-array that also publishes the magazine's count with a
 *                 relaxed atomic store (accounting: stats, validate, recovery)
 *   +marks        +count that also keeps the block state word (double-free
 *                 check: one relaxed load and two relaxed stores per pair)
 *   lfp_cache     the shipped inline lfp_cache_alloc / lfp_cache_free on a
 *                 real pool (what +marks is a copy of)
 *   lfp_pool      lfp_pool_alloc / lfp_pool_free (thread-local lookup + the
 *                 same path)
 *
 * --batch: the same variants in the batch-shuffled loop (10 000 allocs, then
 * frees in a fixed random order); the bare variants use one magazine that
 * holds every block, so they show the floor without magazine exchanges,
 * and lfp_cache / lfp_pool run on the pool `make bench` uses.
 *
 *   bench_fastpath [--batch] [--reps N] [--pairs N]
 */
#include <lfpool.h>

#include "../atomics/lfp_atomic.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define K 64u
#define NOINLINE __attribute__((noinline))

static double cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static _Alignas(64) char blocks[K * 64];
static void *ptrs[K];
static unsigned nptr;

/* a magazine like the cache's: count word + entries, and state words */
static _Alignas(64) uint32_t mag[1 + K];
static _Alignas(64) lfp_atomic_u32 mag_count;
static _Alignas(64) lfp_atomic_u32 marks[K];
static struct fast {
	uint32_t *top, *base, *end;
	lfp_atomic_u32 *count, *marks;
	char *blocks;
	uint64_t span, mask;
	uint32_t shift, mark_alloc;
} F;

NOINLINE static void loop_ptr(uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		void *p = ptrs[--nptr];
		*(volatile uint64_t *)p = i;
		ptrs[nptr++] = p;
	}
}

#define VARIANT(name, COUNT, MARKS)                                                      \
	NOINLINE static int name(struct fast *f, uint64_t n)                             \
	{                                                                                \
		for (uint64_t i = 0; i < n; i++) {                                       \
			uint32_t *t = f->top;                                            \
			if (t == f->base)                                                \
				return -1;                                               \
			uint32_t x = *--t;                                               \
			f->top = t;                                                      \
			if (COUNT)                                                       \
				lfp_store32_relaxed(f->count, /* relaxed: as K1 */ \
						    (uint32_t)(t - f->base));            \
			if (MARKS)                                                       \
				lfp_store32_relaxed(&f->marks[x], /* K2: relaxed */      \
						    f->mark_alloc);                      \
			char *p = f->blocks + ((size_t)x << f->shift);                   \
			*(volatile uint64_t *)(void *)p = i;                             \
			uintptr_t off = (uintptr_t)p - (uintptr_t)f->blocks;             \
			t = f->top;                                                      \
			if (off >= f->span || (off & f->mask) || t == f->end)            \
				return -1;                                               \
			uint32_t j = (uint32_t)(off >> f->shift);                        \
			if (MARKS) {                                                     \
				if (lfp_load32_relaxed(&f->marks[j]) /* K2 */ !=         \
				    f->mark_alloc)                                       \
					return -1;                                       \
				lfp_store32_relaxed(&f->marks[j], /* K2: relaxed */      \
						    0xFFFFFFFBu);                        \
			}                                                                \
			*t++ = j;                                                        \
			f->top = t;                                                      \
			if (COUNT)                                                       \
				lfp_store32_relaxed(f->count, /* relaxed: as K1 */ \
						    (uint32_t)(t - f->base));            \
		}                                                                        \
		return 0;                                                                \
	}
VARIANT(loop_idx, 0, 0)
VARIANT(loop_count, 1, 0)
VARIANT(loop_marks, 1, 1)

NOINLINE static int loop_cache(lfp_cache_t *c, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		void *p = lfp_cache_alloc(c);
		if (p == NULL)
			return -1;
		*(volatile uint64_t *)p = i;
		if (lfp_cache_free(c, p) != 0)
			return -1;
	}
	return 0;
}

NOINLINE static int loop_pool(lfp_pool_t *pool, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		void *p = lfp_pool_alloc(pool);
		if (p == NULL)
			return -1;
		*(volatile uint64_t *)p = i;
		if (lfp_pool_free(pool, p) != 0)
			return -1;
	}
	return 0;
}

/* ---- --batch: the batch-shuffled scenario of `make bench` rebuilt the same
 * way. Each round allocates NB blocks, writing 8 bytes to each and keeping
 * the pointer, then frees them in a fixed random order. The bare variants
 * use one magazine that holds all NB blocks, so they never leave the fast
 * path: their figure is the floor of a per-call cache with that shape. */
#define NB 10000u
#define NBCAP 16384u
static _Alignas(64) char bblocks[(size_t)NBCAP * 64];
static _Alignas(64) uint32_t bmag[NBCAP];
static _Alignas(64) lfp_atomic_u32 bcount;
static _Alignas(64) lfp_atomic_u32 bmarks[NBCAP];
static void *bptrs[NB];
static uint32_t bperm[NB];
static struct ptrmag {
	void **top, **base, **end;
} PM;
static void *pmslots[NBCAP];

NOINLINE static int batch_ptr(struct ptrmag *f, uint64_t rounds)
{
	for (uint64_t r = 0; r < rounds; r++) {
		for (uint32_t j = 0; j < NB; j++) {
			void **t = f->top;
			if (t == f->base)
				return -1;
			void *p = *--t;
			f->top = t;
			*(volatile uint64_t *)p = j;
			bptrs[j] = p;
		}
		for (uint32_t j = 0; j < NB; j++) {
			void **t = f->top;
			if (t == f->end)
				return -1;
			*t++ = bptrs[bperm[j]];
			f->top = t;
		}
	}
	return 0;
}

#define BVARIANT(name, COUNT, MARKS)                                                     \
	NOINLINE static int name(struct fast *f, uint64_t rounds)                        \
	{                                                                                \
		for (uint64_t r = 0; r < rounds; r++) {                                  \
			for (uint32_t j = 0; j < NB; j++) {                              \
				uint32_t *t = f->top;                                    \
				if (t == f->base)                                        \
					return -1;                                       \
				uint32_t x = *--t;                                       \
				f->top = t;                                              \
				if (COUNT)                                               \
					lfp_store32_relaxed(f->count, /* relaxed: K1 */  \
							    (uint32_t)(t - f->base));    \
				if (MARKS)                                               \
					lfp_store32_relaxed(&f->marks[x], /* K2 */       \
							    f->mark_alloc);              \
				char *p = f->blocks + ((size_t)x << f->shift);           \
				*(volatile uint64_t *)(void *)p = j;                     \
				bptrs[j] = p;                                            \
			}                                                                \
			for (uint32_t j = 0; j < NB; j++) {                              \
				char *p = bptrs[bperm[j]];                               \
				uintptr_t off = (uintptr_t)p - (uintptr_t)f->blocks;     \
				uint32_t *t = f->top;                                    \
				if (off >= f->span || (off & f->mask) || t == f->end)    \
					return -1;                                       \
				uint32_t i = (uint32_t)(off >> f->shift);                \
				if (MARKS) {                                             \
					if (lfp_load32_relaxed(&f->marks[i]) /* K2 */ != \
					    f->mark_alloc)                               \
						return -1;                               \
					lfp_store32_relaxed(&f->marks[i], /* K2 */       \
							    0xFFFFFFFBu);                \
				}                                                        \
				*t++ = i;                                                \
				f->top = t;                                              \
				if (COUNT)                                               \
					lfp_store32_relaxed(f->count, /* relaxed: K1 */  \
							    (uint32_t)(t - f->base));    \
			}                                                                \
		}                                                                        \
		return 0;                                                                \
	}
BVARIANT(batch_idx, 0, 0)
BVARIANT(batch_count, 1, 0)
BVARIANT(batch_marks, 1, 1)

NOINLINE static int batch_cache(lfp_cache_t *c, uint64_t rounds)
{
	for (uint64_t r = 0; r < rounds; r++) {
		for (uint32_t j = 0; j < NB; j++) {
			void *p = lfp_cache_alloc(c);
			if (p == NULL)
				return -1;
			*(volatile uint64_t *)p = j;
			bptrs[j] = p;
		}
		for (uint32_t j = 0; j < NB; j++)
			if (lfp_cache_free(c, bptrs[bperm[j]]) != 0)
				return -1;
	}
	return 0;
}

NOINLINE static int batch_pool(lfp_pool_t *pool, uint64_t rounds)
{
	for (uint64_t r = 0; r < rounds; r++) {
		for (uint32_t j = 0; j < NB; j++) {
			void *p = lfp_pool_alloc(pool);
			if (p == NULL)
				return -1;
			*(volatile uint64_t *)p = j;
			bptrs[j] = p;
		}
		for (uint32_t j = 0; j < NB; j++)
			if (lfp_pool_free(pool, bptrs[bperm[j]]) != 0)
				return -1;
	}
	return 0;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The --batch table: pairs / NB rounds per variant and repetition. */
static int run_batch(unsigned reps, uint64_t pairs)
{
	uint64_t rounds = pairs / NB ? pairs / NB : 1, seed = 42;
	if (reps < 1 || reps > 101)
		return 2;
	for (uint32_t j = 0; j < NB; j++)
		bperm[j] = j;
	for (uint32_t j = NB - 1; j > 0; j--) { /* Fisher-Yates, xorshift64 */
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		uint32_t k = (uint32_t)(seed % (j + 1)), x = bperm[j];
		bperm[j] = bperm[k];
		bperm[k] = x;
	}
	for (uint32_t i = 0; i < NBCAP; i++) {
		pmslots[i] = bblocks + (size_t)64 * i;
		bmag[i] = i;
		lfp_init32(&bmarks[i], 0xFFFFFFFBu);
	}
	PM = (struct ptrmag){ &pmslots[NBCAP], &pmslots[0], &pmslots[NBCAP] };
	lfp_init32(&bcount, NBCAP);
	struct fast bf = { &bmag[NBCAP], &bmag[0], &bmag[NBCAP], &bcount, bmarks, bblocks,
			   (uint64_t)NBCAP * 64, 63, 6, 0xFFFFFFFEu };
	/* The pool of `make bench`'s batch-shuffled, default cache shape. */
	lfp_pool_config_t cfg = { .block_size = 64, .block_count = NB + NB / 4 + 8192 };
	lfp_pool_t *pool = lfp_pool_create(&cfg);
	lfp_cache_t *c = pool ? lfp_pool_cache(pool) : NULL;
	if (c == NULL) {
		fprintf(stderr, "bench_fastpath: no pool\n");
		return 1;
	}
	static const char *const names[] = { "ptr-array", "idx-array", "+count", "+marks",
					     "lfp_cache", "lfp_pool" };
	double t[6][101];
	int bad = 0;
	for (unsigned r = 0; r < reps; r++)
		for (int v = 0; v < 6; v++) {
			double t0 = cpu_ns();
			switch (v) {
			case 0: bad |= batch_ptr(&PM, rounds); break;
			case 1: bad |= batch_idx(&bf, rounds); break;
			case 2: bad |= batch_count(&bf, rounds); break;
			case 3: bad |= batch_marks(&bf, rounds); break;
			case 4: bad |= batch_cache(c, rounds); break;
			default: bad |= batch_pool(pool, rounds); break;
			}
			t[v][r] = (cpu_ns() - t0) / (double)(rounds * NB);
		}
	if (bad) {
		fprintf(stderr, "bench_fastpath: a variant failed\n");
		return 1;
	}
	printf("| variant | ns/pair, batch-shuffled (thread CPU, median of %u x %llu rounds of %u) |\n"
	       "|---|---:|\n", reps, (unsigned long long)rounds, NB);
	for (int v = 0; v < 6; v++) {
		qsort(t[v], reps, sizeof(double), cmp);
		printf("| %s | %.2f |\n", names[v], t[v][reps / 2]);
	}
	lfp_pool_destroy(pool);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned reps = 7;
	uint64_t pairs = 50000000;
	int batch = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--batch"))
			batch = 1;
		else if (i + 1 < argc && !strcmp(argv[i], "--reps"))
			reps = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (i + 1 < argc && !strcmp(argv[i], "--pairs"))
			pairs = strtoull(argv[++i], NULL, 10);
		else
			return 2;
	}
	if (batch)
		return run_batch(reps, pairs);
	if (reps < 1 || reps > 101 || pairs < 1)
		return 2;
	for (unsigned i = 0; i < K; i++) {
		ptrs[i] = blocks + 64 * i;
		mag[1 + i] = i;
		lfp_init32(&marks[i], 0xFFFFFFFBu);
	}
	nptr = K;
	lfp_init32(&mag_count, K);
	F = (struct fast){ &mag[1 + K], &mag[1], &mag[1 + K], &mag_count, marks, blocks, K * 64, 63, 6,
			   0xFFFFFFFEu };

	lfp_pool_config_t cfg = { .block_size = 64, .block_count = 1 << 16 };
	lfp_pool_t *pool = lfp_pool_create(&cfg);
	lfp_cache_t *c = pool ? lfp_pool_cache(pool) : NULL;
	if (c == NULL) {
		fprintf(stderr, "bench_fastpath: no pool\n");
		return 1;
	}
	static const char *const names[] = { "ptr-array", "idx-array", "+count", "+marks",
					     "lfp_cache", "lfp_pool" };
	double t[6][101];
	int bad = 0;
	for (unsigned r = 0; r < reps; r++)
		for (int v = 0; v < 6; v++) {
			double t0 = cpu_ns();
			switch (v) {
			case 0: loop_ptr(pairs); break;
			case 1: bad |= loop_idx(&F, pairs); break;
			case 2: bad |= loop_count(&F, pairs); break;
			case 3: bad |= loop_marks(&F, pairs); break;
			case 4: bad |= loop_cache(c, pairs); break;
			default: bad |= loop_pool(pool, pairs); break;
			}
			t[v][r] = (cpu_ns() - t0) / (double)pairs;
		}
	if (bad) {
		fprintf(stderr, "bench_fastpath: a variant failed\n");
		return 1;
	}
	printf("| variant | ns/pair (thread CPU, median of %u x %llu pairs) |\n|---|---:|\n", reps,
	       (unsigned long long)pairs);
	for (int v = 0; v < 6; v++) {
		qsort(t[v], reps, sizeof(double), cmp);
		printf("| %s | %.2f |\n", names[v], t[v][reps / 2]);
	}
	lfp_pool_destroy(pool);
	return 0;
}
