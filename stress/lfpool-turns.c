/*
 * lfpool-turns: what an allocator holds when threads take turns.
 *
 * nthreads threads (--threads, default 4) stay alive; they take ROUNDS
 * turns each, one thread at a time. In its turn a thread allocates BLOCKS
 * blocks of 16-64 bytes (about 2 MiB of payload), writes each, and frees
 * them all in a shuffled order.
 * When every turn is done, and before any thread exits (an exit gives a
 * thread's cached memory back), the program prints how much the process's
 * anonymous resident memory (RssAnon) grew. A server whose worker threads
 * take bursts of work in turn sees this figure as memory that idle threads
 * keep.
 *
 *   lfpool-turns --heap system|bins|owned [--threads N]
 *
 * `system` calls malloc/free: run it with LD_PRELOAD for jemalloc, mimalloc
 * or tcmalloc (`make turns` does). `bins` and `owned` use an lfpool heap
 * made for the run (LFP_HEAP_BINS, and the default owned pools). The blocks
 * array of each thread comes from mmap, outside every allocator measured.
 * A benchmark, not a test: it checks only that every call succeeds (exit 1
 * otherwise; 2 on a usage error).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <lfpool.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { MAX_THREADS = 256, ROUNDS = 3, BLOCKS = 50000, STEP = 7919 /* prime: a permutation */ };
static int nthreads = 4; /* --threads */

static enum { SYSTEM, BINS, OWNED } kind;
static lfp_heap_t *heap;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int turn;     /* under mu */
static bool all_done; /* under mu */
static bool failed;  /* under mu */

static long rss_anon_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "RssAnon:", 8))
			v = atol(line + 8);
	fclose(f);
	return v;
}

static void *get(size_t n)
{
	return kind == SYSTEM ? malloc(n) : lfp_heap_malloc(heap, n);
}

static bool put(void *p)
{
	if (kind == SYSTEM) {
		free(p);
		return true;
	}
	return lfp_heap_free(heap, p) == 0;
}

static void *thread_main(void *arg)
{
	int me = (int)(size_t)arg;
	bool bad = false;
	void **v = mmap(NULL, sizeof(void *) * BLOCKS, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (v == MAP_FAILED)
		bad = true;
	for (int r = 0; r < ROUNDS; r++) {
		pthread_mutex_lock(&mu);
		while (turn % nthreads != me)
			pthread_cond_wait(&cv, &mu);
		pthread_mutex_unlock(&mu);
		for (int i = 0; i < BLOCKS && !bad; i++) {
			size_t n = 16 + (size_t)(i % 4) * 16;
			if ((v[i] = get(n)) == NULL)
				bad = true;
			else
				memset(v[i], me, n);
		}
		for (long i = 0; i < BLOCKS && !bad; i++)
			bad = !put(v[i * STEP % BLOCKS]);
		pthread_mutex_lock(&mu);
		turn++;
		failed |= bad;
		pthread_cond_broadcast(&cv);
		pthread_mutex_unlock(&mu);
	}
	pthread_mutex_lock(&mu);
	while (!all_done)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	if (v != MAP_FAILED)
		munmap(v, sizeof(void *) * BLOCKS);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[3], "--threads")) {
		nthreads = atoi(argv[4]);
		if (nthreads < 1 || nthreads > MAX_THREADS)
			goto usage;
		argc = 3;
	}
	if (argc != 3 || strcmp(argv[1], "--heap") != 0)
		goto usage;
	if (!strcmp(argv[2], "system"))
		kind = SYSTEM;
	else if (!strcmp(argv[2], "bins"))
		kind = BINS;
	else if (!strcmp(argv[2], "owned"))
		kind = OWNED;
	else
		goto usage;
	if (kind != SYSTEM) {
		lfp_heap_config_t hc = { .flags = kind == OWNED ? LFP_HEAP_OWNED : LFP_HEAP_BINS };
		if ((heap = lfp_heap_create(&hc)) == NULL) {
			perror("lfp_heap_create");
			return 1;
		}
	}
	long base = rss_anon_kib();
	pthread_t t[MAX_THREADS];
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&t[i], NULL, thread_main, (void *)(size_t)i) != 0) {
			perror("pthread_create");
			return 1;
		}
	pthread_mutex_lock(&mu);
	while (turn < nthreads * ROUNDS)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	long grown = rss_anon_kib() - base;
	pthread_mutex_lock(&mu);
	all_done = true;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (int i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	if (failed) {
		fprintf(stderr, "lfpool-turns: an allocation or free failed\n");
		return 1;
	}
	const char *preload = getenv("LD_PRELOAD");
	const char *label = kind == OWNED  ? "lfpool, owned pools (the default)"
			    : kind == BINS ? "lfpool, bins (LFP_HEAP_BINS)"
					   : "system";
	printf("| %s%s%s | %d | %ld |\n", label, preload && *preload ? ", LD_PRELOAD=" : "",
	       preload && *preload ? preload : "", nthreads, grown);
	return 0;
usage:
	fprintf(stderr, "usage: %s --heap system|bins|owned [--threads N (1..%d, default 4)]\n", argv[0],
		MAX_THREADS);
	return 2;
}
