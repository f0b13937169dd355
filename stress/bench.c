/*
 * stress/bench.c - `make bench`: lfpool against the allocators users would
 * otherwise pick, on fixed-size blocks (issue 3).
 *
 * One source, built into one binary per malloc (mk/bench.mk):
 *   lfpool-bench           glibc malloc, and everything that is not malloc:
 *                          noop, mutex, lfpool-nocache, lfpool, lfpool-inline
 *   lfpool-bench-jemalloc  the same program linked with -ljemalloc (its
 *   lfpool-bench-mimalloc  malloc replaces glibc's), and so on; only its
 *   lfpool-bench-tcmalloc  "malloc" row is used.
 *   lfpool-bench-dpdk      built with -DBENCH_DPDK where pkg-config finds
 *                          libdpdk: the "dpdk" row only.
 * The driver (lfpool-bench without --child) runs every measurement in a fresh
 * child process (fork + exec of the right binary), repetition-major: rep 1 of
 * every allocator, then rep 2, ..., so slow drift of a shared machine hits
 * every row alike. It prints medians and ratios to glibc measured in the same
 * run, in thread-CPU time (what the threads really spent; robust to other
 * load) and wall time.
 *
 * Allocators (rows):
 *   noop            alloc returns a block of a per-thread arena, free does
 *                   nothing: the floor (loop, write, call overhead). Hot and
 *                   batch use one block; handoff cycles 4096 (ring is 1024).
 *   glibc|jemalloc|mimalloc|tcmalloc   malloc(size) / free(p)
 *   mutex           a free list of blocks under one pthread mutex
 *   lfpool-nocache  lfp_pool_alloc/free, pool made with LFP_POOL_NO_CACHE
 *   lfpool          lfp_pool_alloc/free (the per-thread cache in front)
 *   lfpool-inline   lfp_cache_alloc/free through lfp_pool_cache()'s handle
 *   dpdk            DPDK's rte_mempool (ring_mp_mc ops) with a 256-object
 *                   per-lcore cache, rte_mempool_get/put; the EAL runs with
 *                   --no-huge --no-pci --no-shconf, every worker thread is
 *                   registered with rte_thread_register() so it has an lcore
 *                   and a cache (the "closest production peer")
 * lfpool is used only through <lfpool.h> and the built library.
 *
 * Scenarios (sizes 16, 64, 256 bytes by default):
 *   hot             1 thread: alloc, write 8 bytes, free; per pair
 *   batch-lifo      1 thread: 10k allocs (each written), frees in reverse
 *   batch-shuffled  1 thread: 10k allocs, frees in a random order
 *   mt-hot          --mt-threads (2) threads, pinned to distinct CPUs, each
 *                   running hot on its own; CPU ns per pair per thread
 *   mt-batch        the same with batch-shuffled
 *   handoff         --handoff-pairs (1) producer/consumer pairs, each pinned
 *                   to 2 CPUs: the producer allocs, writes and sends through
 *                   an SPSC ring (1024 slots); the consumer reads and frees.
 *                   Per object: CPU ns of both threads; wall ns
 *   over<N>         N threads (--over-threads, 16,64), unpinned, each running
 *                   batch-shuffled; CPU ns of all threads per pair
 * Pools are sized for the live blocks of a scenario plus the caches' hoard:
 * threads x 10k x 1.25 + 8192 blocks; --cache k,slots,depot sets the cache
 * shape (0 = default); --block-align N their block alignment (a block of
 * its own cache line at N = 64, as DPDK's mempool lays objects out);
 * --pool-per-thread gives every lfpool thread a pool of its own (sized for one
 * thread; a handoff pair shares its producer's), as a server does for objects
 * that never change threads: no line is shared between the threads.
 *
 *   lfpool-bench [--scenario LIST] [--size LIST] [--alloc LIST] [--reps N]
 *                [--quick] [--mt-threads N] [--handoff-pairs N]
 *                [--over-threads LIST] [--cache k,slots,depot] [--block-align N] [--pool-per-thread] [--csv FILE]
 *   lfpool-bench --child SCENARIO SIZE ALLOC [same options]
 *
 * Timing is reported, never asserted; the program exits 1 only if an
 * allocator misbehaves (NULL from a pool sized for the work, a failing free,
 * a failed validate) or a child dies.
 */
#include "../atomics/lfp_atomic.h"
#include <lfpool.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef BENCH_MALLOC_NAME
#define BENCH_MALLOC_NAME "glibc"
#endif

#ifdef BENCH_DPDK
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mempool.h>
#define DPDK_CACHE 256u
#endif

#define BATCH 10000u
#define RING 1024u
#define NOOP_ARENA 4096u
#define MAX_REPS 51
#define MAX_THREADS 1024

/* ---- what one measurement runs ----------------------------------------------- */

enum kind { K_NOOP, K_MALLOC, K_MUTEX, K_LFP_NOCACHE, K_LFP, K_LFP_INLINE, K_DPDK, K_COUNT };
static const char *const kind_name[K_COUNT] = { "noop", "malloc", "mutex", "lfpool-nocache",
						"lfpool", "lfpool-inline", "dpdk" };

enum scen { S_HOT, S_LIFO, S_SHUF, S_MT_HOT, S_MT_BATCH, S_HANDOFF, S_OVER, S_COUNT };
static const char *const scen_name[S_COUNT] = { "hot", "batch-lifo", "batch-shuffled", "mt-hot",
						"mt-batch", "handoff", "over" };
static const char *const scen_what[S_COUNT] = {
	"1 thread: alloc, write, free; CPU ns per pair",
	"1 thread: 10k allocs, then frees in reverse; CPU ns per pair",
	"1 thread: 10k allocs, then frees in random order; CPU ns per pair",
	"threads pinned to distinct CPUs, each running hot on its own; CPU ns per pair per thread",
	"threads pinned to distinct CPUs, each running batch-shuffled on its own; CPU ns/pair/thread",
	"producer/consumer through an SPSC ring across 2 CPUs; CPU ns of both threads per object",
	"threads on all CPUs (unpinned), each running batch-shuffled; CPU ns of all threads per pair",
};

struct mutex_pool {
	pthread_mutex_t mu;
	void *head; /* under mu; the link lives in the free block */
};

static struct opts {
	unsigned reps;
	bool quick;
	unsigned mt_threads, handoff_pairs;
	unsigned over[8], n_over;
	size_t cache_k, cache_slots, cache_depot;
	size_t block_align; /* lfpool rows: the pools' block_align (0: default) */
	bool pool_per_thread; /* lfpool rows: a pool per thread (per pair in handoff) */
	unsigned child_timeout; /* seconds a child may run (0: no limit) */
	const char *csv;
	/* lists to run (driver) */
	bool scen_on[S_COUNT];
	size_t sizes[8];
	unsigned n_sizes;
	char allocs[16][32];
	unsigned n_allocs;
} o = { .reps = 5, .child_timeout = 60, .mt_threads = 2, .handoff_pairs = 1, .over = { 16, 64 }, .n_over = 2,
	.sizes = { 16, 64, 256 }, .n_sizes = 3 };

/* The one measurement this (child) process makes. */
static struct {
	enum scen scen;
	enum kind kind;
	size_t size;
	unsigned threads;
	uint64_t hot_pairs, rounds, objects;
	lfp_pool_t *pool;
#ifdef BENCH_DPDK
	struct rte_mempool *mp;
#endif
	struct mutex_pool mx;
	char *mx_mem;
	int cpus[MAX_THREADS];
	unsigned ncpus;
	pthread_barrier_t start;
} m;

struct ring {
	LFP_CACHE_ALIGNED lfp_atomic_u32 tail; /* producer */
	LFP_CACHE_ALIGNED lfp_atomic_u32 head; /* consumer */
	LFP_CACHE_ALIGNED void *slot[RING];
};

struct ctx {
	LFP_CACHE_ALIGNED unsigned id;
	int pin_cpu;        /* -1: unpinned */
	lfp_pool_t *pool;   /* lfpool rows: m.pool, or this thread's own */
	lfp_cache_t *cache; /* K_LFP_INLINE */
	char *arena;        /* K_NOOP */
	uint64_t noop_i, noop_mask;
	void **ptrs;
	uint32_t *perm;
	struct ring *ring;  /* handoff */
	bool producer;
	uint32_t rt, rh;    /* handoff: this side's ring indices, kept across calls */
	uint64_t pairs, sum;
	double wall0, wall1, cpu;
	int failed;
};

static void die(const char *msg)
{
	fprintf(stderr, "lfpool-bench: %s\n", msg);
	exit(1);
}

static double now_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ---- the allocators, specialised per kind by constant propagation ---------- */

#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE void *bench_alloc(enum kind k, struct ctx *c)
{
	switch (k) {
	case K_NOOP:
		return c->arena + (c->noop_i++ & c->noop_mask) * m.size;
	case K_MALLOC:
		return malloc(m.size);
	case K_MUTEX: {
		pthread_mutex_lock(&m.mx.mu);
		void *p = m.mx.head;
		if (p)
			memcpy(&m.mx.head, p, sizeof p);
		pthread_mutex_unlock(&m.mx.mu);
		return p;
	}
	case K_LFP_NOCACHE:
	case K_LFP:
		return lfp_pool_alloc(c->pool);
	case K_LFP_INLINE:
		return lfp_cache_alloc(c->cache);
#ifdef BENCH_DPDK
	case K_DPDK: {
		void *p;
		return rte_mempool_get(m.mp, &p) == 0 ? p : NULL;
	}
#endif
	default:
		return NULL;
	}
}

static ALWAYS_INLINE void bench_free(enum kind k, struct ctx *c, void *p)
{
	switch (k) {
	case K_NOOP:
		break;
	case K_MALLOC:
		free(p);
		break;
	case K_MUTEX:
		pthread_mutex_lock(&m.mx.mu);
		memcpy(p, &m.mx.head, sizeof p);
		m.mx.head = p;
		pthread_mutex_unlock(&m.mx.mu);
		break;
	case K_LFP_NOCACHE:
	case K_LFP:
		if (lfp_pool_free(c->pool, p) != 0)
			c->failed = 1;
		break;
	case K_LFP_INLINE:
		if (lfp_cache_free(c->cache, p) != 0)
			c->failed = 1;
		break;
#ifdef BENCH_DPDK
	case K_DPDK:
		rte_mempool_put(m.mp, p);
		break;
#endif
	default:
		break;
	}
}

static ALWAYS_INLINE void touch(void *p, uint64_t v)
{
	*(volatile uint64_t *)p = v; /* the write a user makes; volatile keeps it */
}

/* ---- scenario bodies --------------------------------------------------------- */

static ALWAYS_INLINE void body_hot(enum kind k, struct ctx *c, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		void *p = bench_alloc(k, c);
		if (__builtin_expect(p == NULL, 0)) {
			c->failed = 2;
			return;
		}
		touch(p, i);
		bench_free(k, c, p);
	}
}

static ALWAYS_INLINE void body_batch(enum kind k, struct ctx *c, uint64_t rounds, bool shuffled)
{
	void **ptrs = c->ptrs;
	const uint32_t *perm = c->perm;
	for (uint64_t r = 0; r < rounds; r++) {
		for (uint32_t j = 0; j < BATCH; j++) {
			void *p = bench_alloc(k, c);
			if (__builtin_expect(p == NULL, 0)) {
				c->failed = 2;
				return;
			}
			touch(p, j);
			ptrs[j] = p;
		}
		if (shuffled)
			for (uint32_t j = 0; j < BATCH; j++)
				bench_free(k, c, ptrs[perm[j]]);
		else
			for (uint32_t j = BATCH; j-- > 0;)
				bench_free(k, c, ptrs[j]);
	}
}

/* Bounded spinning, then yield: the other side may be descheduled (the
 * machine is shared), and spinning on it would only burn its CPU. */
static void wait_turn(unsigned spin)
{
	if (spin < 256)
		lfp_cpu_relax();
	else
		sched_yield();
}

/* SPSC ring with cached indices. R1 producer's release store of tail
 * publishes the slot (and the object's contents); pairs with R2, the
 * consumer's acquire load. R3 consumer's release store of head returns the
 * slot; pairs with R4. */
static ALWAYS_INLINE void body_produce(enum kind k, struct ctx *c, uint64_t n)
{
	struct ring *r = c->ring;
	uint32_t t = c->rt, h = c->rh;
	for (uint64_t i = 0; i < n; i++) {
		void *p = bench_alloc(k, c);
		if (__builtin_expect(p == NULL, 0)) {
			c->failed = 2;
			p = NULL;
		}
		if (p)
			touch(p, i);
		for (unsigned spin = 0; t - h == RING; spin++) {
			h = lfp_load32_acquire(&r->head); /* R4: pairs with R3 */
			if (t - h == RING)
				wait_turn(spin);
		}
		r->slot[t & (RING - 1)] = p;
		lfp_store32_release(&r->tail, ++t); /* R1: pairs with R2 */
		if (p == NULL)
			break;
	}
	c->rt = t;
	c->rh = h;
}

static ALWAYS_INLINE void body_consume(enum kind k, struct ctx *c, uint64_t n)
{
	struct ring *r = c->ring;
	uint32_t h = c->rh, t = c->rt;
	uint64_t sum = 0;
	for (uint64_t i = 0; i < n; i++) {
		for (unsigned spin = 0; h == t; spin++) {
			t = lfp_load32_acquire(&r->tail); /* R2: pairs with R1 */
			if (h == t)
				wait_turn(spin);
		}
		void *p = r->slot[h & (RING - 1)];
		lfp_store32_release(&r->head, ++h); /* R3: pairs with R4 */
		if (p == NULL) {
			c->failed = 2;
			break;
		}
		sum += *(const uint64_t *)p; /* ours after R2; sum is kept, so the read stays */
		bench_free(k, c, p);
	}
	c->rh = h;
	c->rt = t;
	c->sum += sum;
}

#define DISPATCH(call)                                                                   \
	switch (m.kind) {                                                                \
	case K_NOOP: { const enum kind k = K_NOOP; call; } break;                        \
	case K_MALLOC: { const enum kind k = K_MALLOC; call; } break;                    \
	case K_MUTEX: { const enum kind k = K_MUTEX; call; } break;                      \
	case K_LFP_NOCACHE: { const enum kind k = K_LFP_NOCACHE; call; } break;          \
	case K_LFP: { const enum kind k = K_LFP; call; } break;                          \
	case K_LFP_INLINE: { const enum kind k = K_LFP_INLINE; call; } break;            \
	DISPATCH_DPDK(call)                                                              \
	default: break;                                                                  \
	}
#ifdef BENCH_DPDK
#define DISPATCH_DPDK(call) case K_DPDK: { const enum kind k = K_DPDK; call; } break;
#else
#define DISPATCH_DPDK(call)
#endif

static void run_body(struct ctx *c, bool warm)
{
	uint64_t n;
	switch (m.scen) {
	case S_HOT:
	case S_MT_HOT:
		n = warm ? m.hot_pairs / 50 + 1 : m.hot_pairs;
		DISPATCH(body_hot(k, c, n));
		c->pairs = n;
		break;
	case S_LIFO:
		n = warm ? 1 : m.rounds;
		DISPATCH(body_batch(k, c, n, false));
		c->pairs = n * BATCH;
		break;
	case S_SHUF:
	case S_MT_BATCH:
	case S_OVER:
		n = warm ? 1 : m.rounds;
		DISPATCH(body_batch(k, c, n, true));
		c->pairs = n * BATCH;
		break;
	case S_HANDOFF:
		n = warm ? m.objects / 50 + 1 : m.objects;
		if (c->producer)
			DISPATCH(body_produce(k, c, n))
		else
			DISPATCH(body_consume(k, c, n))
		c->pairs = c->producer ? 0 : n;
		break;
	default:
		break;
	}
}

/* ---- threads ----------------------------------------------------------------- */

static void pin(int cpu)
{
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
		fprintf(stderr, "lfpool-bench: cannot pin to CPU %d (running unpinned)\n", cpu);
}

static void *thread_main(void *arg)
{
	struct ctx *c = arg;
	pin(c->pin_cpu);
#ifdef BENCH_DPDK
	/* An lcore id, hence a per-lcore cache, for this non-EAL thread. */
	if (m.kind == K_DPDK && rte_thread_register() != 0)
		die("rte_thread_register failed (no lcore left?)");
#endif
	if (m.kind == K_LFP_INLINE) {
		c->cache = lfp_pool_cache(c->pool);
		if (c->cache == NULL)
			die("lfp_pool_cache failed");
	}
	/* Warm-up (untimed): first touches, cache slots, page faults. The two
	 * handoff threads warm up through the ring too, so they stay paired. */
	run_body(c, true);
	pthread_barrier_wait(&m.start);
	c->wall0 = now_ns(CLOCK_MONOTONIC);
	double cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	run_body(c, false);
	c->cpu = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
	c->wall1 = now_ns(CLOCK_MONOTONIC);
	if (m.kind == K_LFP || m.kind == K_LFP_INLINE)
		(void)lfp_pool_cache_flush(c->pool);
#ifdef BENCH_DPDK
	if (m.kind == K_DPDK)
		rte_thread_unregister();
#endif
	return NULL;
}

static void allowed_cpus(void)
{
	cpu_set_t set;
	m.ncpus = 0;
	if (sched_getaffinity(0, sizeof set, &set) != 0)
		die("sched_getaffinity");
	for (int i = 0; i < CPU_SETSIZE && m.ncpus < MAX_THREADS; i++)
		if (CPU_ISSET(i, &set))
			m.cpus[m.ncpus++] = i;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* A pool for `threads` threads of the scenario (all of them, or one with
 * --pool-per-thread; a pair in handoff). */
static lfp_pool_t *make_pool(unsigned threads)
{
	uint64_t live = (uint64_t)threads * BATCH;
	if (m.scen == S_HANDOFF)
		live = (uint64_t)(threads + 1) / 2 * (RING + 2 * BATCH);
	lfp_pool_config_t cfg = {
		.block_size = m.size,
		.block_count = (size_t)(live + live / 4 + 8192),
		.block_align = o.block_align,
		.flags = m.kind == K_LFP_NOCACHE ? LFP_POOL_NO_CACHE : 0u,
		.cache_size = o.cache_k,
		.cache_slots = o.cache_slots,
		.cache_depot = o.cache_depot,
	};
	lfp_pool_t *pool = lfp_pool_create(&cfg);
	if (pool == NULL) {
		fprintf(stderr, "lfpool-bench: lfp_pool_create(%zu x %zu): %s\n", cfg.block_count,
			cfg.block_size, strerror(errno));
		exit(1);
	}
	return pool;
}

/* After the run: every block of pool is back (the threads flushed their
 * caches). 0, or 1 after a message. */
static int check_pool(lfp_pool_t *pool)
{
	lfp_pool_report_t rep;
	if (lfp_pool_validate(pool, &rep) != 0 || rep.free != rep.capacity) {
		fprintf(stderr, "lfpool-bench: validate after the run: %s (free %llu of %llu)\n",
			rep.error ? rep.error : "blocks missing", (unsigned long long)rep.free,
			(unsigned long long)rep.capacity);
		return 1;
	}
	return 0;
}

#ifdef BENCH_DPDK
/* The EAL without hugepages, devices or shared files, sized for the pool;
 * then a mempool of the same block count as make_pool's. */
static void make_dpdk_pool(void)
{
	uint64_t live = (uint64_t)m.threads * BATCH;
	if (m.scen == S_HANDOFF)
		live = (uint64_t)m.threads / 2 * (RING + 2 * BATCH);
	uint64_t n = live + live / 4 + 8192 + (uint64_t)m.threads * DPDK_CACHE * 2;
	uint64_t mib = (n * (m.size + 192)) / (1u << 20) + 128;
	char mem[32];
	snprintf(mem, sizeof mem, "%llu", (unsigned long long)mib);
	/* rte_eal_init takes char **: writable copies of the arguments. */
	static char a0[] = "lfpool-bench", a1[] = "--no-huge", a2[] = "--no-pci", a3[] = "--no-shconf",
		    a4[] = "-m", a6[] = "--log-level", a7[] = "lib.*:error", a8[] = "-l", a9[] = "0";
	char *argv[] = { a0, a1, a2, a3, a4, mem, a6, a7, a8, a9, NULL };
	cpu_set_t saved;
	if (pthread_getaffinity_np(pthread_self(), sizeof saved, &saved) != 0)
		die("pthread_getaffinity_np");
	if (rte_eal_init((int)(sizeof argv / sizeof argv[0]) - 1, argv) < 0) {
		fprintf(stderr, "lfpool-bench: rte_eal_init: %s\n", rte_strerror(rte_errno));
		exit(1);
	}
	/* The EAL pinned this thread to lcore 0's CPU; the workers it starts
	 * must get the scenario's placement, not that one. */
	if (pthread_setaffinity_np(pthread_self(), sizeof saved, &saved) != 0)
		die("pthread_setaffinity_np");
	m.mp = rte_mempool_create("lfpool-bench", (unsigned)n, (unsigned)m.size, DPDK_CACHE, 0, NULL,
				  NULL, NULL, NULL, SOCKET_ID_ANY, 0);
	if (m.mp == NULL) {
		fprintf(stderr, "lfpool-bench: rte_mempool_create(%llu x %zu): %s\n",
			(unsigned long long)n, m.size, rte_strerror(rte_errno));
		exit(1);
	}
}
#endif

static void make_mutex_pool(void)
{
	uint64_t n = (uint64_t)m.threads * BATCH + (uint64_t)m.threads * RING + 1024;
	size_t stride = (m.size + 15) & ~(size_t)15;
	m.mx_mem = aligned_alloc(64, (size_t)(n * stride + 63) & ~(size_t)63);
	if (m.mx_mem == NULL)
		die("out of memory for the mutex pool");
	pthread_mutex_init(&m.mx.mu, NULL);
	m.mx.head = NULL;
	for (uint64_t i = n; i-- > 0;) {
		void *p = m.mx_mem + i * stride;
		memcpy(p, &m.mx.head, sizeof p);
		m.mx.head = p;
	}
}

/* Run this process's one measurement; print "RESULT wall_ns cpu_ns". */
static int child(void)
{
	struct ctx *cs;
	allowed_cpus();
	switch (m.scen) {
	case S_HOT: case S_LIFO: case S_SHUF: m.threads = 1; break;
	case S_MT_HOT: case S_MT_BATCH: m.threads = o.mt_threads; break;
	case S_HANDOFF: m.threads = 2 * o.handoff_pairs; break;
	default: break; /* S_OVER: set by the caller */
	}
	if (m.threads < 1 || m.threads > MAX_THREADS)
		die("thread count out of range");
	m.hot_pairs = o.quick ? 2000000 : 10000000;
	m.rounds = o.quick ? 20 : 100;
	m.objects = o.quick ? 400000 : 2000000;
	if (m.scen == S_OVER) /* the same total work whatever the thread count */
		m.rounds = (o.quick ? 64 : 256) / m.threads + 1;
	bool lfp = m.kind == K_LFP || m.kind == K_LFP_INLINE || m.kind == K_LFP_NOCACHE;
	if (lfp && !o.pool_per_thread)
		m.pool = make_pool(m.threads);
	if (m.kind == K_MUTEX)
		make_mutex_pool();
#ifdef BENCH_DPDK
	if (m.kind == K_DPDK)
		make_dpdk_pool();
#endif

	cs = aligned_alloc(64, sizeof *cs * m.threads);
	if (cs == NULL)
		die("out of memory");
	memset(cs, 0, sizeof *cs * m.threads);
	struct ring *rings = NULL;
	if (m.scen == S_HANDOFF) {
		rings = aligned_alloc(64, sizeof *rings * o.handoff_pairs);
		if (rings == NULL)
			die("out of memory");
		for (unsigned i = 0; i < o.handoff_pairs; i++) {
			lfp_init32(&rings[i].head, 0);
			lfp_init32(&rings[i].tail, 0);
		}
	}
	uint64_t seed = 0x9E3779B97F4A7C15u;
	for (unsigned t = 0; t < m.threads; t++) {
		struct ctx *c = &cs[t];
		c->id = t;
		c->pool = m.pool;
		if (lfp && o.pool_per_thread) /* handoff: the consumer frees into its producer's */
			c->pool = m.scen == S_HANDOFF && t % 2 == 1 ? cs[t - 1].pool : make_pool(1);
		bool pinned = m.scen != S_OVER;
		c->pin_cpu = pinned ? m.cpus[t % m.ncpus] : -1;
		if (pinned && m.threads > m.ncpus && t == m.ncpus)
			fprintf(stderr, "lfpool-bench: %u threads on %u CPUs: pinned threads share CPUs\n",
				m.threads, m.ncpus);
		c->arena = aligned_alloc(64, NOOP_ARENA * ((m.size + 63) & ~(size_t)63));
		c->noop_mask = m.scen == S_HANDOFF ? NOOP_ARENA - 1 : 0;
		if (m.scen == S_HANDOFF) {
			c->ring = &rings[t / 2];
			c->producer = (t % 2) == 0;
		} else if (m.scen != S_HOT && m.scen != S_MT_HOT) {
			c->ptrs = malloc(sizeof(void *) * BATCH);
			c->perm = malloc(sizeof(uint32_t) * BATCH);
			if (c->ptrs == NULL || c->perm == NULL)
				die("out of memory");
			for (uint32_t j = 0; j < BATCH; j++)
				c->perm[j] = j;
			for (uint32_t j = BATCH - 1; j > 0; j--) { /* Fisher-Yates */
				uint32_t r = (uint32_t)(xorshift(&seed) % (j + 1)), x = c->perm[j];
				c->perm[j] = c->perm[r];
				c->perm[r] = x;
			}
		}
		if (c->arena == NULL)
			die("out of memory");
	}
	pthread_barrier_init(&m.start, NULL, m.threads);
	pthread_t *tid = malloc(sizeof *tid * m.threads);
	for (unsigned t = 0; t < m.threads; t++)
		if (pthread_create(&tid[t], NULL, thread_main, &cs[t]) != 0)
			die("pthread_create");
	for (unsigned t = 0; t < m.threads; t++)
		pthread_join(tid[t], NULL);

	double w0 = cs[0].wall0, w1 = cs[0].wall1, cpu = 0;
	uint64_t pairs = 0, per_thread = 0;
	int failed = 0;
	for (unsigned t = 0; t < m.threads; t++) {
		if (cs[t].wall0 < w0) w0 = cs[t].wall0;
		if (cs[t].wall1 > w1) w1 = cs[t].wall1;
		cpu += cs[t].cpu;
		pairs += cs[t].pairs;
		if (cs[t].pairs > per_thread) per_thread = cs[t].pairs;
		failed |= cs[t].failed;
	}
	if (failed)
		die(failed & 2 ? "an allocation failed" : "a free failed");
	for (unsigned t = 0; lfp && t < m.threads; t++)
		if ((t == 0 || cs[t].pool != cs[t - 1].pool) && check_pool(cs[t].pool) != 0)
			return 1;
	/* wall: per pair as each thread saw it (per object for handoff, per
	 * pair of the whole machine for over); cpu: all threads' CPU per pair */
	double wall = (w1 - w0) / (double)(m.scen == S_OVER ? pairs : per_thread);
	printf("RESULT %.4f %.4f\n", wall, cpu / (double)pairs);
	return 0;
}

/* ---- the driver ------------------------------------------------------------- */

struct row {
	char name[32];  /* as printed */
	char bin[2200]; /* binary to exec */
	char kind[32];  /* --child ALLOC */
};

static char self_dir[2048];

static void find_self(void)
{
	ssize_t n = readlink("/proc/self/exe", self_dir, sizeof self_dir - 1);
	if (n <= 0)
		die("readlink /proc/self/exe");
	self_dir[n] = '\0';
	char *slash = strrchr(self_dir, '/');
	if (slash)
		*slash = '\0';
}

static bool is_exec(const char *path)
{
	return access(path, X_OK) == 0;
}

static unsigned rows_for(struct row *rows)
{
	static const char *const all[] = { "noop", "glibc", "jemalloc", "mimalloc", "tcmalloc", "mutex",
					   "dpdk", "lfpool-nocache", "lfpool", "lfpool-inline" };
	unsigned n = 0;
	for (unsigned i = 0; i < sizeof all / sizeof all[0]; i++) {
		bool want = o.n_allocs == 0;
		for (unsigned j = 0; j < o.n_allocs; j++)
			want |= !strcmp(o.allocs[j], all[i]);
		if (!want)
			continue;
		struct row *r = &rows[n];
		snprintf(r->name, sizeof r->name, "%s", all[i]);
		bool peer = !strcmp(all[i], "jemalloc") || !strcmp(all[i], "mimalloc") ||
			    !strcmp(all[i], "tcmalloc") || !strcmp(all[i], "dpdk");
		if (peer) {
			snprintf(r->bin, sizeof r->bin, "%s/lfpool-bench-%s", self_dir, all[i]);
			if (!is_exec(r->bin)) {
				fprintf(stderr, "lfpool-bench: %s not built; row skipped\n", r->bin);
				continue;
			}
			snprintf(r->kind, sizeof r->kind, "%s", !strcmp(all[i], "dpdk") ? "dpdk" : "malloc");
		} else {
			snprintf(r->bin, sizeof r->bin, "%s/lfpool-bench", self_dir);
			snprintf(r->kind, sizeof r->kind, "%s", !strcmp(all[i], "glibc") ? "malloc" : all[i]);
		}
		n++;
	}
	return n;
}

static char common_args[512];

#define DNF (-2.0) /* a cell whose child ran past --child-timeout */

/* Run one child under timeout(1); 1 with its two figures, 0 if it failed,
 * -1 if it ran past --child-timeout (killed: "did not finish"). */
static int measure(const struct row *r, const char *scen, size_t size, double *wall, double *cpu)
{
	char cmd[8192], lim[64] = "";
	if (o.child_timeout)
		snprintf(lim, sizeof lim, "timeout -k 5 %u ", o.child_timeout);
	snprintf(cmd, sizeof cmd, "%s'%s' --child %s %zu %s %s", lim, r->bin, scen, size, r->kind,
		 common_args);
	FILE *f = popen(cmd, "r");
	if (f == NULL)
		return 0;
	char line[256];
	bool ok = false;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "RESULT %lf %lf", wall, cpu) == 2)
			ok = true;
	int st = pclose(f);
	if (o.child_timeout && WIFEXITED(st) && (WEXITSTATUS(st) == 124 || WEXITSTATUS(st) == 137)) {
		fprintf(stderr, "lfpool-bench: did not finish within %u s: %s\n", o.child_timeout, cmd);
		return -1;
	}
	if (st != 0 || !ok) {
		fprintf(stderr, "lfpool-bench: child failed: %s (status %d)\n", cmd, st);
		return 0;
	}
	return 1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void loadavg(char *buf, size_t len)
{
	FILE *f = fopen("/proc/loadavg", "r");
	buf[0] = '\0';
	if (f) {
		if (!fgets(buf, (int)len, f))
			buf[0] = '\0';
		fclose(f);
		buf[strcspn(buf, "\n")] = '\0';
	}
}

static int driver(int argc, char **argv)
{
	struct row rows[16];
	find_self();
	unsigned nrows = rows_for(rows);
	if (nrows == 0)
		die("no allocator selected");
	int glibc = -1;
	for (unsigned i = 0; i < nrows; i++)
		if (!strcmp(rows[i].name, "glibc"))
			glibc = (int)i;

	/* the (scenario, label, argument) list */
	struct job { char label[32]; char arg[32]; enum scen s; } jobs[S_COUNT + 8];
	unsigned nj = 0;
	for (int s = 0; s < S_COUNT; s++) {
		if (!o.scen_on[s])
			continue;
		if (s == S_OVER) {
			for (unsigned i = 0; i < o.n_over; i++) {
				snprintf(jobs[nj].label, sizeof jobs[nj].label, "over%u", o.over[i]);
				snprintf(jobs[nj].arg, sizeof jobs[nj].arg, "over%u", o.over[i]);
				jobs[nj++].s = S_OVER;
			}
		} else {
			snprintf(jobs[nj].label, sizeof jobs[nj].label, "%s", scen_name[s]);
			snprintf(jobs[nj].arg, sizeof jobs[nj].arg, "%s", scen_name[s]);
			jobs[nj++].s = (enum scen)s;
		}
	}
	char la0[128], la1[128];
	loadavg(la0, sizeof la0);
	printf("lfpool-bench: %u reps, %s work, medians; command:", o.reps, o.quick ? "quick" : "full");
	for (int i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\nload average before: %s\n", la0);
	fflush(stdout);

	FILE *csv = o.csv ? fopen(o.csv, "w") : NULL;
	if (o.csv && csv == NULL)
		die("cannot open the CSV file");
	if (csv)
		fprintf(csv, "scenario,size,allocator,rep,wall_ns,cpu_ns\n");
	int bad = 0;
	static double wall[16][8][MAX_REPS], cpu[16][8][MAX_REPS];
	for (unsigned j = 0; j < nj; j++) {
		for (unsigned z = 0; z < o.n_sizes; z++)
			for (unsigned rep = 0; rep < o.reps; rep++)
				for (unsigned i = 0; i < nrows; i++) {
					/* A row that did not finish, or failed, once is not
					 * run again for this scenario and size. */
					if (rep > 0 && (cpu[i][z][0] == DNF || cpu[i][z][0] == -1)) {
						wall[i][z][rep] = cpu[i][z][rep] = cpu[i][z][0];
						continue;
					}
					int got = measure(&rows[i], jobs[j].arg, o.sizes[z], &wall[i][z][rep],
							  &cpu[i][z][rep]);
					if (got <= 0) {
						wall[i][z][rep] = cpu[i][z][rep] = got < 0 ? DNF : -1;
						/* A peer that hangs is a result; lfpool hanging
						 * or any child failing is an error. */
						if (got == 0 || !strncmp(rows[i].name, "lfpool", 6))
							bad = 1;
					}
					if (csv)
						fprintf(csv, "%s,%zu,%s,%u,%.4f,%.4f\n", jobs[j].label,
							o.sizes[z], rows[i].name, rep, wall[i][z][rep],
							cpu[i][z][rep]);
				}
		/* the table of this scenario */
		double mc[16][8], mw[16][8];
		for (unsigned i = 0; i < nrows; i++)
			for (unsigned z = 0; z < o.n_sizes; z++) {
				mc[i][z] = median(cpu[i][z], o.reps);
				mw[i][z] = median(wall[i][z], o.reps);
			}
		printf("\n### %s: %s\n\n| allocator |", jobs[j].label,
		       scen_what[jobs[j].s]);
		for (unsigned z = 0; z < o.n_sizes; z++)
			printf(" %zu B cpu | x glibc | wall |", o.sizes[z]);
		printf("\n|---|");
		for (unsigned z = 0; z < o.n_sizes; z++)
			printf("---:|---:|---:|");
		printf("\n");
		for (unsigned i = 0; i < nrows; i++) {
			printf("| %s |", rows[i].name);
			for (unsigned z = 0; z < o.n_sizes; z++) {
				bool failed = false;
				for (unsigned rep = 0; rep < o.reps; rep++)
					failed |= cpu[i][z][rep] == -1;
				if (cpu[i][z][0] == DNF)
					printf(" DNF (> %u s) | - | - |", o.child_timeout);
				else if (failed) /* a child that failed: its message is on stderr */
					printf(" failed | - | - |");
				else if (glibc >= 0 && mc[glibc][z] > 0)
					printf(" %.2f | %.2f | %.2f |", mc[i][z], mc[i][z] / mc[glibc][z],
					       mw[i][z]);
				else
					printf(" %.2f | - | %.2f |", mc[i][z], mw[i][z]);
			}
			printf("\n");
		}
		fflush(stdout);
	}
	loadavg(la1, sizeof la1);
	printf("\nload average after: %s\n", la1);
	if (csv)
		fclose(csv);
	return bad;
}

/* ---- command line ------------------------------------------------------------ */

static void usage(const char *why)
{
	fprintf(stderr,
		"lfpool-bench: %s\n"
		"usage: lfpool-bench [--scenario LIST] [--size LIST] [--alloc LIST] [--reps N] [--quick]\n"
		"         [--mt-threads N] [--handoff-pairs N] [--over-threads LIST]\n"
		"         [--cache k,slots,depot] [--block-align N] [--pool-per-thread]\n"
		"         [--csv FILE] [--child-timeout S (60; 0 = none)]\n"
		"  scenarios: hot batch-lifo batch-shuffled mt-hot mt-batch handoff over (default all)\n"
		"  allocators: noop glibc jemalloc mimalloc tcmalloc mutex dpdk lfpool-nocache lfpool\n"
		"              lfpool-inline (default all that are built)\n",
		why);
	exit(2);
}

static unsigned long parse_num(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s ? s : "", &end, 10);
	if (s == NULL || *s == '\0' || *end != '\0' || errno)
		usage(what);
	return v;
}

static unsigned split(const char *s, char out[][32], unsigned max)
{
	unsigned n = 0;
	char buf[512];
	snprintf(buf, sizeof buf, "%s", s);
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok && n < max;
	     tok = strtok_r(NULL, ",", &save))
		snprintf(out[n++], 32, "%s", tok);
	return n;
}

int main(int argc, char **argv)
{
	const char *child_args[3] = { NULL, NULL, NULL };
	char tmp[16][32];
	bool any_scen = false;
	size_t off = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool common = true;
		if (!strcmp(a, "--child")) {
			if (i + 3 >= argc)
				usage("--child SCENARIO SIZE ALLOC");
			child_args[0] = argv[i + 1];
			child_args[1] = argv[i + 2];
			child_args[2] = argv[i + 3];
			i += 3;
			continue;
		} else if (!strcmp(a, "--scenario")) {
			unsigned n = split(v ? v : "", tmp, 16);
			common = false;
			for (unsigned j = 0; j < n; j++) {
				bool found = false;
				for (int s = 0; s < S_COUNT; s++)
					if (!strcmp(tmp[j], scen_name[s]) ||
					    (s == S_OVER && !strncmp(tmp[j], "over", 4))) {
						o.scen_on[s] = found = true;
						if (s == S_OVER && tmp[j][4]) {
							o.over[0] = (unsigned)parse_num(tmp[j] + 4, "--scenario overN");
							o.n_over = 1;
						}
					}
				if (!found)
					usage("unknown scenario");
				any_scen = true;
			}
		} else if (!strcmp(a, "--size")) {
			o.n_sizes = split(v ? v : "", tmp, 8);
			for (unsigned j = 0; j < o.n_sizes; j++)
				o.sizes[j] = parse_num(tmp[j], "--size");
			common = false;
		} else if (!strcmp(a, "--alloc")) {
			o.n_allocs = split(v ? v : "", o.allocs, 16);
			common = false;
		} else if (!strcmp(a, "--reps")) {
			o.reps = (unsigned)parse_num(v, "--reps");
			if (o.reps < 1 || o.reps > MAX_REPS)
				usage("--reps 1..51");
			common = false;
		} else if (!strcmp(a, "--csv")) {
			if (!v)
				usage("--csv FILE");
			o.csv = v;
			common = false;
		} else if (!strcmp(a, "--child-timeout")) {
			o.child_timeout = (unsigned)parse_num(v, "--child-timeout");
			common = false;
		} else if (!strcmp(a, "--quick")) {
			o.quick = true;
			off += (size_t)snprintf(common_args + off, sizeof common_args - off, " --quick");
			continue;
		} else if (!strcmp(a, "--pool-per-thread")) {
			o.pool_per_thread = true;
			off += (size_t)snprintf(common_args + off, sizeof common_args - off, " --pool-per-thread");
			continue;
		} else if (!strcmp(a, "--mt-threads")) {
			o.mt_threads = (unsigned)parse_num(v, "--mt-threads");
		} else if (!strcmp(a, "--handoff-pairs")) {
			o.handoff_pairs = (unsigned)parse_num(v, "--handoff-pairs");
		} else if (!strcmp(a, "--over-threads")) {
			o.n_over = split(v ? v : "", tmp, 8);
			for (unsigned j = 0; j < o.n_over; j++)
				o.over[j] = (unsigned)parse_num(tmp[j], "--over-threads");
			common = false;
		} else if (!strcmp(a, "--cache")) {
			if (!v || sscanf(v, "%zu,%zu,%zu", &o.cache_k, &o.cache_slots, &o.cache_depot) != 3)
				usage("--cache k,slots,depot");
		} else if (!strcmp(a, "--block-align")) {
			o.block_align = (size_t)parse_num(v, "--block-align");
		} else {
			usage(a);
		}
		if (v == NULL)
			usage(a);
		if (common && off < sizeof common_args)
			off += (size_t)snprintf(common_args + off, sizeof common_args - off, " %s %s", a, v);
		i++;
	}
	if (child_args[0] != NULL) {
		bool found = false;
		for (int s = 0; s < S_COUNT; s++)
			if (!strcmp(child_args[0], scen_name[s])) {
				m.scen = (enum scen)s;
				found = true;
			}
		if (!found && !strncmp(child_args[0], "over", 4)) {
			m.scen = S_OVER;
			m.threads = (unsigned)parse_num(child_args[0] + 4, "overN");
			found = true;
		}
		if (!found)
			usage("unknown scenario");
		m.size = parse_num(child_args[1], "size");
		if (m.size < 8)
			usage("size >= 8 (the benchmark writes 8 bytes)");
		found = false;
		for (int k = 0; k < K_COUNT; k++)
			if (!strcmp(child_args[2], kind_name[k])) {
				m.kind = (enum kind)k;
				found = true;
			}
		if (!found)
			usage("unknown allocator");
		return child();
	}
	if (!any_scen)
		for (int s = 0; s < S_COUNT; s++)
			o.scen_on[s] = true;
	return driver(argc, argv);
}
