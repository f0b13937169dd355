/*
 * stress/bench_core.c - cost of the uncached core pool on this machine.
 *
 * Measures the uncached pool (LFP_POOL_NO_CACHE: every call works on the
 * shared free stack) through the public API of the built library (this file
 * is linked once against liblfpool.a and once against liblfpool.so, so the
 * second run pays the PLT on every call):
 *   pair        lfp_pool_alloc + lfp_pool_free on a private pool, one thread;
 *   checked     the same with LFP_POOL_CHECKED (one more RMW per free);
 *   stats       the same with LFP_POOL_STATS (counter RMWs per pair);
 *   2cas        the peer: two uncontended 64-bit CAS (acquire, then release,
 *               as pop and push issue them) on a private cache line;
 *   1cas        one such CAS, to show what one locked instruction costs;
 *   load+cas    two (load head, CAS head) steps: what any CAS stack needs;
 *   floor       pop+push of pool/stack.c written inline on a private stack
 *               (no calls, no checks): the algorithm without the API;
 *   2thr        two threads pinned to CPU 0 and CPU 1 doing pairs on one
 *               shared pool for 50 ms: ns per pair per thread while both
 *               ran, and over the whole run; its peer, the same threads
 *               doing 2 x (load+CAS) on one shared word.
 * Every figure is the median of --reps repetitions (default 11), in wall time
 * and in thread-CPU time (CLOCK_THREAD_CPUTIME_ID: it leaves out time the
 * thread spent descheduled, which matters on a shared machine). Ratios are
 * taken against 2cas measured in the same run. The load average is printed
 * before and after. Timing is reported, never asserted; the program fails
 * (exit 1) only if the pool misbehaves (NULL from a non-empty pool, a free
 * that does not return 0, a failed validate).
 *
 *   bench_core [--reps N] [--pairs N] [--label TEXT]
 */
#include "../atomics/lfp_atomic.h"
#include <lfpool.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REPS 101

struct sample {
	double wall_ns; /* per operation */
	double cpu_ns;
};

static int reps = 11;
static long pairs = 2000000;
static const char *label = "static";

static double now_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_core: %s\n", what);
	exit(1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median of the values of v[0..n) that are not NaN; NaN if none. */
static double median(const double *v, int n)
{
	double w[MAX_REPS];
	int m = 0;
	for (int i = 0; i < n; i++)
		if (!isnan(v[i]))
			w[m++] = v[i];
	if (m == 0)
		return NAN;
	qsort(w, (size_t)m, sizeof *w, cmp_double);
	return m % 2 ? w[m / 2] : (w[m / 2 - 1] + w[m / 2]) / 2;
}

static void loadavg(char *buf, size_t len)
{
	FILE *f = fopen("/proc/loadavg", "r");
	buf[0] = '\0';
	if (f) {
		if (!fgets(buf, (int)len, f))
			buf[0] = '\0';
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = '\0';
}

/* ---- the measured loops --------------------------------------------------- */

/* Keep the compiler from merging or dropping loop iterations. */
#define ESCAPE(p) __asm__ __volatile__("" : : "r"(p) : "memory")

static struct sample run_pairs(lfp_pool_t *pool, long n)
{
	double w0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	for (long k = 0; k < n; k++) {
		void *b = lfp_pool_alloc(pool);
		if (b == NULL)
			die("alloc returned NULL from a non-empty pool");
		ESCAPE(b);
		if (lfp_pool_free(pool, b) != 0)
			die("free failed");
	}
	double c1 = now_ns(CLOCK_THREAD_CPUTIME_ID), w1 = now_ns(CLOCK_MONOTONIC);
	return (struct sample){ (w1 - w0) / (double)n, (c1 - c0) / (double)n };
}

/* The CAS peer: a word alone on its cache line, touched by this thread only. */
static struct {
	LFP_CACHE_ALIGNED lfp_atomic_u64 word;
	char pad[LFP_CACHE_LINE - sizeof(lfp_atomic_u64)];
} cas_line;

static struct sample run_cas(long n, int per_iter)
{
	/* Relaxed: only this thread touches the word; the load seeds the
	 * expected value. */
	uint64_t v = lfp_load64_relaxed(&cas_line.word);
	double w0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	for (long k = 0; k < n; k++) {
		uint64_t e = v;
		/* The orders pop (A2) and push (R1) use; uncontended, so the
		 * weak CAS fails only spuriously, and then we retry. */
		while (!lfp_cas64_weak_acquire(&cas_line.word, &e, v + 1))
			e = v;
		v++;
		if (per_iter == 2) {
			e = v;
			/* release, failure relaxed: the measured CAS; nothing pairs */
			while (!lfp_cas64_weak_release(&cas_line.word, &e, v + 1))
				e = v;
			v++;
		}
	}
	double c1 = now_ns(CLOCK_THREAD_CPUTIME_ID), w1 = now_ns(CLOCK_MONOTONIC);
	ESCAPE(v);
	return (struct sample){ (w1 - w0) / (double)n, (c1 - c0) / (double)n };
}

/* Two dependent load+CAS steps: the least any CAS stack must do per pair,
 * since the expected value comes from a load of the head. */
static struct sample run_load_cas(long n)
{
	double w0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	for (long k = 0; k < n; k++) {
		uint64_t e = lfp_load64_acquire(&cas_line.word); /* as A1 */
		while (!lfp_cas64_weak_acquire(&cas_line.word, &e, e + 1))
			;
		e = lfp_load64_relaxed(&cas_line.word); /* as push's load */
		while (!lfp_cas64_weak_release(&cas_line.word, &e, e + 1))
			;
	}
	double c1 = now_ns(CLOCK_THREAD_CPUTIME_ID), w1 = now_ns(CLOCK_MONOTONIC);
	return (struct sample){ (w1 - w0) / (double)n, (c1 - c0) / (double)n };
}

/* The algorithm alone: pool/stack.c's pop and push written inline on a
 * private stack (same head word, same next[] links, same orders, the ALLOC
 * mark), without calls, handle checks or pointer arithmetic. The distance
 * from here to "pair" is the API's cost; from "2 x load+CAS" to here, the
 * link loads and stores. */
#define FLOOR_N 1024u
static struct {
	LFP_CACHE_ALIGNED lfp_atomic_u64 head;
	LFP_CACHE_ALIGNED lfp_atomic_u32 next[FLOOR_N];
} floor_stack;

static void floor_init(void)
{
	for (uint32_t i = 0; i < FLOOR_N; i++)
		lfp_init32(&floor_stack.next[i], i + 1 < FLOOR_N ? i + 1 : LFP_NIL);
	lfp_init64(&floor_stack.head, lfp_head_make(0, 0));
}

static struct sample run_floor(long n)
{
	double w0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	for (long k = 0; k < n; k++) {
		/* pop; one thread, so the stack is never empty here */
		uint64_t old = lfp_load64_acquire(&floor_stack.head); /* as A1 */
		uint32_t i, nx;
		do {
			i = lfp_head_index(old);
			nx = lfp_load32_relaxed(&floor_stack.next[i]); /* as pop */
		} while (!lfp_cas64_weak_acquire(&floor_stack.head, &old, lfp_head_next(old, nx)));
		lfp_store32_relaxed(&floor_stack.next[i], UINT32_C(0xFFFFFFFE)); /* ALLOC mark */
		ESCAPE(i);
		/* push */
		old = lfp_load64_relaxed(&floor_stack.head); /* as push */
		do
			lfp_store32_relaxed(&floor_stack.next[i], lfp_head_index(old)); /* as push */
		while (!lfp_cas64_weak_release(&floor_stack.head, &old, lfp_head_next(old, i)));
	}
	double c1 = now_ns(CLOCK_THREAD_CPUTIME_ID), w1 = now_ns(CLOCK_MONOTONIC);
	return (struct sample){ (w1 - w0) / (double)n, (c1 - c0) / (double)n };
}

/* ---- pools ------------------------------------------------------------------ */

/* Every pool here is uncached (LFP_POOL_NO_CACHE): this benchmark measures
 * the shared free stack behind lfp_pool_alloc/_free; the per-thread cache in
 * front of it is measured by its own benchmark (docs/benchmarks.md). */
static lfp_pool_t *make_pool(unsigned flags, size_t count)
{
	lfp_pool_config_t cfg = { .block_size = 64, .block_count = count,
				  .flags = flags | LFP_POOL_NO_CACHE };
	lfp_pool_t *p = lfp_pool_create(&cfg);
	if (p == NULL)
		die("lfp_pool_create failed");
	return p;
}

static void check_pool(lfp_pool_t *p)
{
	lfp_pool_report_t r;
	if (lfp_pool_validate(p, &r) != 0) {
		fprintf(stderr, "bench_core: validate: %s\n", r.error);
		exit(1);
	}
	if (r.free != r.capacity)
		die("blocks missing after the run");
}

/* ---- two pinned threads ---------------------------------------------------- */

/* Two threads, pinned to CPU 0 and CPU 1, start at a barrier and work until
 * thread 0 has run TWO_MS milliseconds and raises a stop flag. Work: pairs on
 * one shared pool, or the contended peer, two load+CAS increments of one
 * shared word. On a machine shared with other work the two threads are often
 * not on a CPU at the same time, and a thread running alone is uncontended.
 * So each thread works in chunks of CHUNK operations, publishes its progress
 * every BEAT operations, and a chunk counts as "both running" if this thread
 * was on a CPU for (nearly) all of it and the other thread made progress
 * during it. Over those chunks: ns per op per thread = 2 x chunk time / (ops
 * of both threads in it). The average over all ops is reported too. */
#define TWO_MS 50.0
#define CHUNK 256
#define BEAT 16

static struct {
	LFP_CACHE_ALIGNED lfp_atomic_u32 stop;
	LFP_CACHE_ALIGNED lfp_atomic_u64 word; /* the contended CAS peer's word */
	LFP_CACHE_ALIGNED lfp_atomic_u64 done[2][LFP_CACHE_LINE / 8]; /* ops, by thread */
} two;

struct thr {
	pthread_t tid;
	int id;
	lfp_pool_t *pool; /* NULL: the CAS peer */
	pthread_barrier_t *start;
	long n;                 /* ops done */
	double wall, cpu;       /* ns, whole run */
	double both_ns;         /* summed time of "both running" chunks */
	double both_ops;        /* ops of both threads in those chunks */
	int pinned;
};

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(t->id, &set);
	t->pinned = pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
	lfp_atomic_u64 *mine = &two.done[t->id][0], *other = &two.done[!t->id][0];
	pthread_barrier_wait(t->start);

	double w0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	long n = 0;
	/* Relaxed, here and for the gauges: they order nothing; the results
	 * reach the main thread through pthread_join. */
	while (!lfp_load32_relaxed(&two.stop)) {
		uint64_t o0 = lfp_load64_relaxed(other);
		double cw = now_ns(CLOCK_MONOTONIC), cc = now_ns(CLOCK_THREAD_CPUTIME_ID);
		for (int k = 1; k <= CHUNK; k++) {
			if (t->pool) {
				void *b = lfp_pool_alloc(t->pool);
				if (b == NULL)
					die("alloc returned NULL from a non-empty pool");
				ESCAPE(b);
				if (lfp_pool_free(t->pool, b) != 0)
					die("free failed");
			} else {
				/* As pop and push: load, then CAS until it lands. */
				uint64_t e = lfp_load64_acquire(&two.word);
				while (!lfp_cas64_weak_acquire(&two.word, &e, e + 1))
					;
				e = lfp_load64_relaxed(&two.word); /* relaxed: the CAS re-checks */
				/* release: the cost of push's R1; nothing pairs */
				while (!lfp_cas64_weak_release(&two.word, &e, e + 1))
					;
			}
			if (k % BEAT == 0)
				lfp_store64_relaxed(mine, (uint64_t)(n + k)); /* relaxed: a progress beat */
		}
		double ew = now_ns(CLOCK_MONOTONIC), ec = now_ns(CLOCK_THREAD_CPUTIME_ID);
		uint64_t o1 = lfp_load64_relaxed(other); /* relaxed: the peer's beat, a count */
		n += CHUNK;
		if (ec - cc >= 0.9 * (ew - cw) && o1 != o0) {
			t->both_ns += ew - cw;
			t->both_ops += CHUNK + (double)(o1 - o0);
		}
		if (t->id == 0 && now_ns(CLOCK_MONOTONIC) - w0 >= TWO_MS * 1e6)
			lfp_store32_relaxed(&two.stop, 1); /* relaxed: a flag, no data */
	}
	t->cpu = now_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
	t->wall = now_ns(CLOCK_MONOTONIC) - w0;
	t->n = n;
	return NULL;
}

/* Returns ns per op per thread over the "both running" chunks (NaN if there
 * were none); *all gets it over the whole run (wall: run time / mean ops per
 * thread; cpu: both threads' CPU time / all ops); *share gets the fraction
 * of all ops done in "both running" chunks. */
static struct sample run_two_threads(lfp_pool_t *pool, int *pinned, struct sample *all,
				     double *share)
{
	pthread_barrier_t start;
	struct thr t[2];
	/* Relaxed: thread creation publishes these resets. */
	lfp_store32_relaxed(&two.stop, 0);
	lfp_store64_relaxed(&two.done[0][0], 0);
	lfp_store64_relaxed(&two.done[1][0], 0);
	pthread_barrier_init(&start, NULL, 2);
	for (int i = 0; i < 2; i++) {
		t[i] = (struct thr){ .id = i, .pool = pool, .start = &start };
		if (pthread_create(&t[i].tid, NULL, thr_main, &t[i]) != 0)
			die("pthread_create failed");
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i].tid, NULL);
	pthread_barrier_destroy(&start);
	*pinned = t[0].pinned && t[1].pinned;
	double wall = t[0].wall > t[1].wall ? t[0].wall : t[1].wall;
	double n = (double)(t[0].n + t[1].n);
	*all = (struct sample){ wall / (n / 2), (t[0].cpu + t[1].cpu) / n };
	double bn = t[0].both_ops + t[1].both_ops;
	/* Each thread's chunks count the other's ops too: halve for the share. */
	*share = bn / 2 / n;
	if (bn == 0)
		return (struct sample){ NAN, NAN };
	/* On a CPU throughout, so wall = cpu for these chunks. */
	double ns = 2 * (t[0].both_ns + t[1].both_ns) / bn;
	return (struct sample){ ns, ns };
}

/* ---- driver ----------------------------------------------------------------- */

enum { B_PAIR, B_CHECKED, B_STATS, B_BOTH, B_2CAS, B_1CAS, B_LCAS, B_FLOOR, B_2THR, B_2CASC,
       B_2THR_ALL, B_2CASC_ALL, B_N };
static const char *const names[B_N] = {
	"pair (flags 0)", "pair CHECKED", "pair STATS", "pair CHECKED|STATS",
	"2 x CAS (peer)", "1 x CAS", "2 x (load+CAS)", "inline pop+push (floor)",
	"2thr both: pair/thr", "2thr both: 2(ld+CAS)/thr",
	"2thr all: pair/thr", "2thr all: 2(ld+CAS)/thr",
};

int main(int argc, char **argv)
{
	for (int a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--reps") && a + 1 < argc)
			reps = atoi(argv[++a]);
		else if (!strcmp(argv[a], "--pairs") && a + 1 < argc)
			pairs = atol(argv[++a]);
		else if (!strcmp(argv[a], "--label") && a + 1 < argc)
			label = argv[++a];
		else {
			fprintf(stderr, "usage: %s [--reps N] [--pairs N] [--label TEXT]\n", argv[0]);
			return 2;
		}
	}
	if (reps < 1 || reps > MAX_REPS || pairs < 2)
		die("--reps must be 1..101 and --pairs >= 2");

	/* Pin the main thread to CPU 0 for the one-thread figures. */
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	int main_pinned = pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;

	char load0[128], load1[128];
	loadavg(load0, sizeof load0);

	lfp_pool_t *pools[4] = {
		make_pool(0, 1024), make_pool(LFP_POOL_CHECKED, 1024),
		make_pool(LFP_POOL_STATS, 1024),
		make_pool(LFP_POOL_CHECKED | LFP_POOL_STATS, 1024),
	};
	lfp_pool_t *shared = make_pool(0, 1024);
	static double wall[B_N][MAX_REPS], cpu[B_N][MAX_REPS], share[MAX_REPS], share_cas[MAX_REPS];
	int pinned2 = 1;

	/* Warm up every loop once (page faults, frequency, branch state). */
	for (int b = 0; b < 4; b++)
		run_pairs(pools[b], pairs / 4);
	run_cas(pairs / 4, 2);
	floor_init();
	run_floor(pairs / 4);

	/* Interleave the benchmarks inside each repetition, so a burst of
	 * load from elsewhere hits all of them rather than one. */
	for (int r = 0; r < reps; r++) {
		struct sample s[B_N];
		for (int b = 0; b < 4; b++)
			s[b] = run_pairs(pools[b], pairs);
		s[B_2CAS] = run_cas(pairs, 2);
		s[B_1CAS] = run_cas(pairs, 1);
		s[B_LCAS] = run_load_cas(pairs);
		s[B_FLOOR] = run_floor(pairs);
		int pin;
		s[B_2THR] = run_two_threads(shared, &pin, &s[B_2THR_ALL], &share[r]);
		pinned2 &= pin;
		s[B_2CASC] = run_two_threads(NULL, &pin, &s[B_2CASC_ALL], &share_cas[r]);
		pinned2 &= pin;
		for (int b = 0; b < B_N; b++) {
			wall[b][r] = s[b].wall_ns;
			cpu[b][r] = s[b].cpu_ns;
		}
	}
	for (int b = 0; b < 4; b++)
		check_pool(pools[b]);
	check_pool(shared);
	loadavg(load1, sizeof load1);

	double mw[B_N], mc[B_N];
	for (int b = 0; b < B_N; b++) {
		mw[b] = median(wall[b], reps);
		mc[b] = median(cpu[b], reps);
	}

	printf("bench_core [%s]: %d reps x %ld pairs, median ns per op; LFP_POOL_NO_CACHE, 64-byte blocks, 1024 per pool\n",
	       label, reps, pairs);
	printf("loadavg before: %s\nloadavg after:  %s\n", load0, load1);
	printf("main thread pinned to CPU 0: %s; 2-thread run pinned to CPUs 0,1: %s, "
	       "ops done while both ran: %.1f%% (pool), %.1f%% (CAS peer), medians\n",
	       main_pinned ? "yes" : "no", pinned2 ? "yes" : "no", 100 * median(share, reps),
	       100 * median(share_cas, reps));
	printf("| %-24s | %9s | %9s | %11s | %11s |\n", "measure", "wall ns", "cpu ns",
	       "wall/2CAS", "cpu/2CAS");
	printf("|%s|%s|%s|%s|%s|\n", "--------------------------", "-----------", "-----------",
	       "-------------", "-------------");
	for (int b = 0; b < B_N; b++)
		printf("| %-24s | %9.2f | %9.2f | %10.2fx | %10.2fx |\n", names[b], mw[b], mc[b],
		       mw[b] / mw[B_2CAS], mc[b] / mc[B_2CAS]);
	printf("| %-24s | %9s | %9s | %10.2fx | %10.2fx |\n", "CHECKED / flags 0", "", "",
	       mw[B_CHECKED] / mw[B_PAIR], mc[B_CHECKED] / mc[B_PAIR]);
	printf("| %-24s | %9s | %9s | %10.2fx | %10.2fx |\n", "STATS / flags 0", "", "",
	       mw[B_STATS] / mw[B_PAIR], mc[B_STATS] / mc[B_PAIR]);
	printf("| %-24s | %9s | %9s | %10.2fx | %10.2fx |\n", "2thr both / 1 thread", "", "",
	       mw[B_2THR] / mw[B_PAIR], mc[B_2THR] / mc[B_PAIR]);
	printf("| %-24s | %9s | %9s | %10.2fx | %10.2fx |\n", "2thr both: pair/peer", "", "",
	       mw[B_2THR] / mw[B_2CASC], mc[B_2THR] / mc[B_2CASC]);
	printf("goal: pair <= 1.1 x 2CAS: %s (wall %.2fx, cpu %.2fx)\n",
	       mc[B_PAIR] <= 1.1 * mc[B_2CAS] ? "met" : "missed", mw[B_PAIR] / mw[B_2CAS],
	       mc[B_PAIR] / mc[B_2CAS]);

	for (int b = 0; b < 4; b++)
		lfp_pool_destroy(pools[b]);
	lfp_pool_destroy(shared);
	return 0;
}
