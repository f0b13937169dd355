/*
 * stress/lfpool-pairs.c - the server pattern through the front end: P
 * producer/consumer pairs, each through its own SPSC ring. The producer
 * mallocs an object (64-112 bytes), stamps it with its pair and sequence
 * number and sends it; the consumer checks the stamp and frees it. So every
 * object is freed by a thread that did not allocate it.
 *
 *   lfpool-pairs --heap owned|bins|system [--pairs LIST] [--objects N] [--reps R]
 *
 * owned / bins: lfp_heap_malloc/free on a heap with thread-owned pools (the
 * default) or per-thread bins (LFP_HEAP_BINS); system: this process's
 * malloc/free (glibc, or a peer with LD_PRELOAD; `make pairs` runs them
 * all). For each pair count, one markdown row: process CPU ns per object
 * and wall ns per object, each the median of R runs of N objects in all.
 * Timing is reported, never judged; the exit status is 1 only if a stamp
 * was wrong (an object handed out twice or damaged), a free was refused, an
 * allocation failed, or the heap does not validate afterwards.
 */
#include <lfpool.h>

#include "../atomics/lfp_atomic.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RING 1024u
#define MAX_PAIRS 1024
#define MAX_REPS 51

struct ring {
	LFP_CACHE_ALIGNED lfp_atomic_u32 tail; /* producer's */
	LFP_CACHE_ALIGNED lfp_atomic_u32 head; /* consumer's */
	LFP_CACHE_ALIGNED void *slot[RING];
};

struct pair {
	struct ring *ring;
	uint64_t id, n;
	int bad; /* consumer: stamps that were wrong; producer: failed mallocs */
};

static lfp_heap_t *heap; /* NULL: system malloc */

static void *xmalloc(size_t n)
{
	return heap ? lfp_heap_malloc(heap, n) : malloc(n);
}

/* 0, or the front end's refusal (a foreign or double free). */
static int xfree(void *p)
{
	if (heap)
		return lfp_heap_free(heap, p);
	free(p);
	return 0;
}

/* R1 producer's release store of tail publishes the slot and the object's
 * stamp; pairs with R2, the consumer's acquire load. R3 consumer's release
 * store of head gives the slot back; pairs with R4. Yield while the ring is
 * full or empty: on an oversubscribed machine the other side may be
 * descheduled. */
static void *producer(void *arg)
{
	struct pair *p = arg;
	struct ring *r = p->ring;
	uint32_t t = 0;
	for (uint64_t i = 0; i < p->n; i++) {
		uint64_t *o = xmalloc(64 + (i & 3) * 16);
		if (o == NULL) {
			p->bad++;
			o = NULL; /* still sent: the consumer counts it */
		} else {
			o[0] = p->id;
			o[1] = i;
		}
		while (t - lfp_load32_acquire(&r->head) == RING) /* R4: pairs with R3 */
			sched_yield();
		r->slot[t % RING] = o;
		lfp_store32_release(&r->tail, ++t); /* R1: pairs with R2 */
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct pair *p = arg;
	struct ring *r = p->ring;
	uint32_t h = 0;
	for (uint64_t i = 0; i < p->n; i++) {
		while (lfp_load32_acquire(&r->tail) == h) /* R2: pairs with R1 */
			sched_yield();
		uint64_t *o = r->slot[h % RING];
		lfp_store32_release(&r->head, ++h); /* R3: pairs with R4 */
		if (o == NULL)
			continue;
		if (o[0] != p->id || o[1] != i)
			p->bad++;
		if (xfree(o) != 0)
			p->bad++;
	}
	return NULL;
}

static double now(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* One run: pairs pairs moving `objects` objects in all. 0, or 1 on a bad
 * stamp or a failed allocation (after a message). */
static int run(unsigned pairs, uint64_t objects, double *cpu_ns, double *wall_ns)
{
	struct ring *rings = aligned_alloc(64, sizeof *rings * pairs);
	struct pair *pp = calloc(2 * (size_t)pairs, sizeof *pp);
	pthread_t *tid = calloc(2 * (size_t)pairs, sizeof *tid);
	if (rings == NULL || pp == NULL || tid == NULL) {
		fprintf(stderr, "lfpool-pairs: out of memory\n");
		exit(2);
	}
	uint64_t per = objects / pairs ? objects / pairs : 1;
	double c0 = now(CLOCK_PROCESS_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);
	for (unsigned i = 0; i < pairs; i++) {
		lfp_init32(&rings[i].tail, 0);
		lfp_init32(&rings[i].head, 0);
		pp[2 * i] = (struct pair){ &rings[i], i, per, 0 };
		pp[2 * i + 1] = pp[2 * i];
		if (pthread_create(&tid[2 * i], NULL, producer, &pp[2 * i]) != 0 ||
		    pthread_create(&tid[2 * i + 1], NULL, consumer, &pp[2 * i + 1]) != 0) {
			fprintf(stderr, "lfpool-pairs: pthread_create failed\n");
			exit(2);
		}
	}
	int bad = 0;
	for (unsigned i = 0; i < 2 * pairs; i++) {
		pthread_join(tid[i], NULL);
		bad += pp[i].bad;
	}
	*cpu_ns = (now(CLOCK_PROCESS_CPUTIME_ID) - c0) / (double)(per * pairs);
	*wall_ns = (now(CLOCK_MONOTONIC) - w0) / (double)(per * pairs);
	free(rings);
	free(pp);
	free(tid);
	if (bad)
		fprintf(stderr, "lfpool-pairs: %d objects failed or arrived with a wrong stamp\n", bad);
	return bad != 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: lfpool-pairs --heap owned|bins|system [--pairs LIST] [--objects N] [--reps R]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *kind = NULL, *list = "1,16,256";
	uint64_t objects = 2000000;
	unsigned reps = 5;
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--heap") && v)
			kind = argv[++i];
		else if (!strcmp(argv[i], "--pairs") && v)
			list = argv[++i];
		else if (!strcmp(argv[i], "--objects") && v)
			objects = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--reps") && v)
			reps = (unsigned)strtoul(argv[++i], NULL, 10);
		else
			usage();
	}
	if (kind == NULL || objects == 0 || reps == 0 || reps > MAX_REPS)
		usage();
	const char *label = kind;
	if (!strcmp(kind, "owned") || !strcmp(kind, "bins")) {
		lfp_heap_config_t c = { .flags = !strcmp(kind, "bins") ? LFP_HEAP_BINS : 0 };
		heap = lfp_heap_create(&c);
		if (heap == NULL) {
			fprintf(stderr, "lfpool-pairs: lfp_heap_create: %s\n", strerror(errno));
			return 2;
		}
		label = !strcmp(kind, "bins") ? "lfpool, bins (LFP_HEAP_BINS)" : "lfpool, owned pools (the default)";
	} else if (!strcmp(kind, "system")) {
		const char *pre = getenv("LD_PRELOAD");
		label = pre && *pre ? pre : "glibc";
	} else {
		usage();
	}
	int rc = 0;
	char *copy = strdup(list);
	for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned pairs = (unsigned)strtoul(tok, NULL, 10);
		if (pairs == 0 || pairs > MAX_PAIRS)
			usage();
		double cpu[MAX_REPS], wall[MAX_REPS];
		for (unsigned r = 0; r < reps; r++)
			rc |= run(pairs, objects, &cpu[r], &wall[r]);
		qsort(cpu, reps, sizeof cpu[0], cmp);
		qsort(wall, reps, sizeof wall[0], cmp);
		printf("| %s | %u | %.1f | %.1f |\n", label, pairs, cpu[reps / 2], wall[reps / 2]);
		fflush(stdout);
	}
	free(copy);
	if (heap != NULL) {
		const char *why = NULL;
		if (lfp_heap_validate(heap, &why) != 0) {
			fprintf(stderr, "lfpool-pairs: heap invalid after the runs: %s\n", why);
			rc = 1;
		}
		(void)lfp_heap_destroy(heap);
	}
	return rc;
}
