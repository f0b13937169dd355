/*
 * dlopen_smoke: load liblfpool.so with dlopen() (argv[1]) and use it.
 *
 * A library with initial-exec TLS is refused by dlopen() ("cannot allocate
 * memory in static TLS block") unless all of its TLS fits in the few
 * hundred bytes glibc keeps for that; lfpool's thread state is therefore
 * behind small pointers (mk/dlopen.mk). Exercises the default heap, an
 * owned heap and a cached pool from the main thread, from a thread that
 * existed before the dlopen() and from threads that exit (their key
 * destructors run); a cache handle used from a key destructor that runs
 * after the library's must get EINVAL, not a crash (the thread's table
 * stays mapped). Then validates. Exit 0 and "ok", or 1 with the reason. A
 * watchdog (alarm) turns a hang into a failure.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lfpool.h"

#define THREADS 4
#define N 2000

static struct {
	void *(*malloc_)(size_t);
	void (*free_)(void *);
	void *(*realloc_)(void *, size_t);
	lfp_heap_t *(*heap_create)(const lfp_heap_config_t *);
	void *(*heap_malloc)(lfp_heap_t *, size_t);
	int (*heap_free)(lfp_heap_t *, void *);
	int (*heap_validate)(lfp_heap_t *, const char **);
	int (*heap_destroy)(lfp_heap_t *);
	lfp_pool_t *(*pool_create)(const lfp_pool_config_t *);
	void *(*pool_alloc)(lfp_pool_t *);
	int (*pool_free)(lfp_pool_t *, void *);
	int (*pool_validate)(const lfp_pool_t *, lfp_pool_report_t *);
	int (*pool_destroy)(lfp_pool_t *);
	lfp_cache_t *(*pool_cache)(lfp_pool_t *);
	int (*cache_free_slow)(lfp_cache_t *, void *);
} f;

static lfp_heap_t *owned;
static lfp_pool_t *pool;

static int fail(const char *what)
{
	printf("dlopen_smoke: %s\n", what);
	return 1;
}

/* Allocate N blocks from each of the three, fill, check, free. 0 or 1. */
static int work(unsigned seed)
{
	static _Thread_local void *a[N], *b[N], *c[N];
	for (int i = 0; i < N; i++) {
		size_t n = 8 + (size_t)((i * 37 + (int)seed) % 500);
		a[i] = f.malloc_(n);
		b[i] = f.heap_malloc(owned, n);
		c[i] = f.pool_alloc(pool);
		if (a[i] == NULL || b[i] == NULL || c[i] == NULL)
			return 1;
		memset(a[i], (int)(i & 0xff), 8);
		memset(b[i], (int)(i & 0xff), 8);
		memset(c[i], (int)(i & 0xff), 8);
	}
	for (int i = 0; i < N; i++) {
		unsigned char want = (unsigned char)(i & 0xff);
		if (((unsigned char *)a[i])[7] != want || ((unsigned char *)b[i])[7] != want ||
		    ((unsigned char *)c[i])[7] != want)
			return 1;
		if (i % 3 == 0 && (a[i] = f.realloc_(a[i], 2000)) == NULL)
			return 1;
	}
	for (int i = 0; i < N; i++) {
		f.free_(a[i]);
		if (f.heap_free(owned, b[i]) != 0 || f.pool_free(pool, c[i]) != 0)
			return 1;
	}
	return 0;
}

static void *thread_main(void *arg)
{
	return (void *)(size_t)work((unsigned)(size_t)arg);
}

/* A thread started before dlopen(): it waits for the library, then works. */
static pthread_barrier_t loaded;
static void *early_main(void *arg)
{
	pthread_barrier_wait(&loaded);
	return thread_main(arg);
}

/* A key created after the library's: its destructor runs after theirs and
 * uses the thread's (now stale) cache handle. */
static pthread_key_t late_key;
static int late_rc = 1; /* the stale free's result; 1: not run */
struct late { lfp_cache_t *h; void *p; };
static void late_dtor(void *arg)
{
	struct late *l = arg;
	late_rc = f.cache_free_slow(l->h, l->p);
}
static void *late_main(void *arg)
{
	static struct late l;
	(void)arg;
	if ((l.h = f.pool_cache(pool)) == NULL || (l.p = f.pool_alloc(pool)) == NULL)
		return (void *)1;
	if (pthread_key_create(&late_key, late_dtor) != 0 || pthread_setspecific(late_key, &l) != 0)
		return (void *)1;
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s LIBLFPOOL.so\n", argv[0]);
		return 2;
	}
	alarm(60);
	pthread_t early;
	if (pthread_barrier_init(&loaded, NULL, 2) != 0 ||
	    pthread_create(&early, NULL, early_main, (void *)(size_t)99) != 0)
		return fail("pthread_create (early)");
	void *lib = dlopen(argv[1], RTLD_NOW);
	if (lib == NULL) {
		printf("dlopen_smoke: dlopen: %s\n", dlerror());
		return 1;
	}
#define SYM(field, name)                                                  \
	do {                                                              \
		*(void **)(&f.field) = dlsym(lib, name);                  \
		if (f.field == NULL)                                      \
			return fail("missing symbol " name);              \
	} while (0)
	SYM(malloc_, "lfp_malloc");
	SYM(free_, "lfp_free");
	SYM(realloc_, "lfp_realloc");
	SYM(heap_create, "lfp_heap_create");
	SYM(heap_malloc, "lfp_heap_malloc");
	SYM(heap_free, "lfp_heap_free");
	SYM(heap_validate, "lfp_heap_validate");
	SYM(heap_destroy, "lfp_heap_destroy");
	SYM(pool_create, "lfp_pool_create");
	SYM(pool_alloc, "lfp_pool_alloc");
	SYM(pool_free, "lfp_pool_free");
	SYM(pool_validate, "lfp_pool_validate");
	SYM(pool_destroy, "lfp_pool_destroy");
	SYM(pool_cache, "lfp_pool_cache");
	SYM(cache_free_slow, "lfp_cache_free_slow");

	lfp_heap_config_t hc = { .flags = LFP_HEAP_OWNED };
	lfp_pool_config_t pc = { .block_size = 64, .block_count = (THREADS + 1) * N };
	if ((owned = f.heap_create(&hc)) == NULL || (pool = f.pool_create(&pc)) == NULL)
		return fail("create");
	if (work(0) != 0)
		return fail("main thread");
	pthread_barrier_wait(&loaded);
	void *erc;
	if (pthread_join(early, &erc) != 0 || erc != NULL)
		return fail("the thread from before dlopen()");
	pthread_t late;
	void *lrc;
	if (pthread_create(&late, NULL, late_main, NULL) != 0 || pthread_join(late, &lrc) != 0 ||
	    lrc != NULL)
		return fail("the late-key thread");
	if (late_rc != -EINVAL) {
		printf("dlopen_smoke: a stale handle from a late key destructor gave %d, not -EINVAL\n",
		       late_rc);
		return 1;
	}
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		if (pthread_create(&t[i], NULL, thread_main, (void *)(size_t)(i + 1)) != 0)
			return fail("pthread_create");
	for (int i = 0; i < THREADS; i++) {
		void *rc;
		if (pthread_join(t[i], &rc) != 0 || rc != NULL)
			return fail("a thread's allocations");
	}
	const char *why = NULL;
	lfp_pool_report_t r;
	if (f.heap_validate(owned, &why) != 0)
		return fail(why ? why : "owned heap invalid");
	if (f.pool_validate(pool, &r) != 0)
		return fail("pool invalid");
	if (f.heap_destroy(owned) != 0 || f.pool_destroy(pool) != 0)
		return fail("destroy");
	printf("dlopen_smoke: ok (%s)\n", argv[1]);
	return 0;
}
