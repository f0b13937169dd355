/*
 * stress/lfpool-replay.c - replay malloc-lab traces against lfpool and peers.
 *
 * Reads both trace dialects (../shared/traces/malloclab/FORMAT.md and
 * malloclab-autolab/SOURCES.md): four header integers, then `a id size`,
 * `r id size`, `f id`. The header's first and fourth fields (2002: heap size
 * and weight; Autolab: weight and ignore_ranges) do not change a replay, so
 * one parser reads both. Autolab corners follow that driver: id -1 is the
 * NULL pointer, `r` on an id with no block is realloc(NULL, n), `r id 0` is
 * realloc(p, 0), and an `a`/`r` line without a size reuses the previous size
 * (the driver's fscanf leaves its size variable unchanged; alaska.rep has
 * such lines). Lines past num_ops are ignored, as the driver does.
 *
 * Targets (--target):
 *   sim     the fallback heap (lfp_flheap) alone on a simulated sbrk heap:
 *           a caller region whose grow callback only moves a break.
 *           utilization = peak live payload / final break (CS:APP mdriver).
 *   lfp     lfpool's front end (lfp_malloc/lfp_free/lfp_realloc).
 *   system  whatever malloc this process has: glibc, or jemalloc/mimalloc
 *           preloaded (--compare does the preloading itself).
 *
 * Per trace, one fresh process per target (--compare forks and execs this
 * program again, with LD_PRELOAD for jemalloc and mimalloc):
 *   pass 1 (checked): every block is filled on malloc with a byte derived
 *     from its id and checked on realloc (the first min(old, new) bytes) and
 *     on free; alignment is checked; an interval tree of live payloads
 *     catches any overlap; sim blocks must lie below the break. Peak
 *     footprint is measured on this pass: the exact resident anonymous
 *     memory (/proc/self/smaps_rollup "Anonymous:", a page-table walk; code
 *     pages an allocator faults in are not its footprint) sampled every
 *     ceil(ops/1024) operations and after the last, maximum minus the value
 *     before the first op. The replayer's own memory is mapped and touched
 *     before that baseline and never comes from malloc, so the delta is the
 *     allocator's: payload it touched, its metadata, its fragmentation, at
 *     page granularity. The same method for every target. (VmHWM is not
 *     used: on recent kernels it comes from per-CPU counters that can be
 *     off by 128 KiB per CPU.)
 *   timed passes: --reps repetitions (median reported), each replaying the
 *     trace enough times to run >= 20 ms, without checks or fills (as
 *     mdriver times), wall and thread-CPU time. Leftover blocks of
 *     unbalanced traces are freed outside the timed region; the sim target
 *     gets a fresh heap per replay outside the timer.
 *
 * Output: one line per trace and target, then averages: mean utilization,
 * throughput as total ops / total seconds (mdriver's aggregate), and
 * footprint ratios to glibc measured in the same run.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <lfpool.h>

#include "../atomics/lfp_atomic.h" /* lfp_compiler_barrier for --micro */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- memory the replayer uses for itself: mmap, never malloc --------------- */

static void *xmap(size_t n)
{
	if (n == 0)
		n = 1;
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	return p;
}

/* ---- traces ---------------------------------------------------------------- */

enum { OP_A, OP_R, OP_F };

struct op {
	uint8_t type;
	int32_t id; /* -1: NULL */
	uint32_t size;
};

struct trace {
	const char *name;
	uint32_t num_ids; /* ids 0 .. num_ids-1 */
	uint32_t num_ops;
	struct op *ops;
};

static bool is_num(const char *s, const char *end)
{
	if (s < end && *s == '-')
		s++;
	if (s >= end)
		return false;
	for (; s < end; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Next whitespace-separated token in [*pos, end); false at the end. */
static bool token(const char **pos, const char *end, const char **t, const char **te)
{
	const char *p = *pos;
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r'))
		p++;
	if (p >= end)
		return false;
	*t = p;
	while (p < end && !(*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r'))
		p++;
	*te = p;
	*pos = p;
	return true;
}

static long long tok_ll(const char *t, const char *te)
{
	char buf[32];
	size_t n = (size_t)(te - t) < sizeof buf - 1 ? (size_t)(te - t) : sizeof buf - 1;
	memcpy(buf, t, n);
	buf[n] = '\0';
	return strtoll(buf, NULL, 10);
}

/* Parse a trace file; NULL (and a message) if unreadable or malformed. */
static struct trace *load_trace(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size == 0) {
		fprintf(stderr, "%s: empty or unreadable\n", path);
		close(fd);
		return NULL;
	}
	const char *buf = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (buf == MAP_FAILED) {
		fprintf(stderr, "%s: mmap: %s\n", path, strerror(errno));
		return NULL;
	}
	const char *pos = buf, *end = buf + st.st_size, *t, *te;
	long long hdr[4];
	for (int i = 0; i < 4; i++) {
		if (!token(&pos, end, &t, &te) || !is_num(t, te)) {
			fprintf(stderr, "%s: bad header\n", path);
			munmap((void *)(uintptr_t)buf, (size_t)st.st_size);
			return NULL;
		}
		hdr[i] = tok_ll(t, te);
	}
	if (hdr[1] < 0 || hdr[2] < 0 || hdr[1] > 100000000 || hdr[2] > 100000000) {
		fprintf(stderr, "%s: bad id or op count\n", path);
		munmap((void *)(uintptr_t)buf, (size_t)st.st_size);
		return NULL;
	}
	struct trace *tr = xmap(sizeof *tr);
	const char *slash = strrchr(path, '/');
	tr->name = slash ? slash + 1 : path;
	tr->num_ops = (uint32_t)hdr[2];
	tr->ops = xmap(sizeof(struct op) * tr->num_ops);
	uint32_t n = 0, size = 0;
	int64_t max_id = (int64_t)hdr[1] - 1;
	while (n < tr->num_ops && token(&pos, end, &t, &te)) {
		struct op *o = &tr->ops[n];
		char c = *t;
		if (te - t != 1 || (c != 'a' && c != 'r' && c != 'f')) {
			fprintf(stderr, "%s: op %u: bad type '%.*s'\n", path, n, (int)(te - t), t);
			goto bad;
		}
		if (!token(&pos, end, &t, &te) || !is_num(t, te)) {
			fprintf(stderr, "%s: op %u: bad id\n", path, n);
			goto bad;
		}
		long long id = tok_ll(t, te);
		if (id < -1 || id > 100000000) {
			fprintf(stderr, "%s: op %u: id %lld out of range\n", path, n, id);
			goto bad;
		}
		o->id = (int32_t)id;
		if (id > max_id)
			max_id = id;
		if (c == 'f') {
			o->type = OP_F;
		} else {
			o->type = c == 'a' ? OP_A : OP_R;
			if (id < 0 && c == 'a') {
				fprintf(stderr, "%s: op %u: malloc into id -1\n", path, n);
				goto bad;
			}
			/* A size token is optional (see the file comment). */
			const char *save = pos;
			if (token(&pos, end, &t, &te) && is_num(t, te)) {
				long long s = tok_ll(t, te);
				if (s < 0 || s > UINT32_MAX) {
					fprintf(stderr, "%s: op %u: bad size\n", path, n);
					goto bad;
				}
				size = (uint32_t)s;
			} else {
				pos = save;
			}
			o->size = size;
		}
		n++;
	}
	munmap((void *)(uintptr_t)buf, (size_t)st.st_size);
	if (n < tr->num_ops) {
		fprintf(stderr, "%s: %u ops, header says %u\n", path, n, tr->num_ops);
		return NULL;
	}
	tr->num_ids = (uint32_t)(max_id + 1);
	return tr;
bad:
	munmap((void *)(uintptr_t)buf, (size_t)st.st_size);
	return NULL;
}

/* ---- the allocators ---------------------------------------------------------- */

struct target {
	const char *name;
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*realloc)(void *, size_t);
	size_t align; /* alignment every block >= align bytes must have */
};

static lfp_flheap_t *g_fh;
static char *g_sim_base;
static size_t g_sim_cap, g_sim_brk;
static lfp_flheap_config_t g_sim_cfg;

static int sim_grow(void *ctx, void *base, size_t new_size)
{
	(void)ctx;
	(void)base;
	if (new_size > g_sim_cap)
		return -ENOMEM;
	g_sim_brk = new_size; /* a break only moves up */
	return 0;
}

static void sim_reset(void)
{
	if (g_fh)
		(void)lfp_flheap_destroy(g_fh);
	g_sim_brk = 0;
	g_sim_cfg.region = g_sim_base;
	g_sim_cfg.region_size = 0;
	g_sim_cfg.region_max = g_sim_cap;
	g_sim_cfg.grow = sim_grow;
	g_fh = lfp_flheap_create(&g_sim_cfg);
	if (g_fh == NULL) {
		fprintf(stderr, "lfp_flheap_create: %s\n", strerror(errno));
		exit(2);
	}
}

static void *sim_malloc(size_t n) { return lfp_flheap_malloc(g_fh, n); }
static void sim_free(void *p) { (void)lfp_flheap_free(g_fh, p); }
static void *sim_realloc(void *p, size_t n) { return lfp_flheap_realloc(g_fh, p, n); }

static void *sys_malloc(size_t n) { return malloc(n); }
static void sys_free(void *p) { free(p); }
static void *sys_realloc(void *p, size_t n) { return realloc(p, n); }

static void *lfp_malloc_w(size_t n) { return lfp_malloc(n); }
static void lfp_free_w(void *p) { lfp_free(p); }
static void *lfp_realloc_w(void *p, size_t n) { return lfp_realloc(p, n); }

/* ---- checking: fill bytes and an interval treap of live payloads -------- */

struct node {
	uintptr_t lo, hi; /* [lo, hi) */
	int32_t l, r;     /* children (node = id), -1 none */
	uint32_t prio;
};

struct checker {
	struct node *nodes; /* indexed by id */
	int32_t root;
	uint64_t errors;
	const char *trace;
};

static uint32_t hash32(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	x ^= x >> 16;
	return x;
}

static void report(struct checker *c, uint32_t opi, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void report(struct checker *c, uint32_t opi, const char *fmt, ...)
{
	if (c->errors++ < 10) {
		va_list ap;
		va_start(ap, fmt);
		fprintf(stderr, "ERROR %s op %u: ", c->trace, opi);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	}
}

/* Split treap t into keys < k and keys >= k. */
static void tsplit(struct node *n, int32_t t, uintptr_t k, int32_t *a, int32_t *b)
{
	if (t < 0) {
		*a = *b = -1;
		return;
	}
	if (n[t].lo < k) {
		tsplit(n, n[t].r, k, &n[t].r, b);
		*a = t;
	} else {
		tsplit(n, n[t].l, k, a, &n[t].l);
		*b = t;
	}
}

static int32_t tmerge(struct node *n, int32_t a, int32_t b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	if (n[a].prio > n[b].prio) {
		n[a].r = tmerge(n, n[a].r, b);
		return a;
	}
	n[b].l = tmerge(n, a, n[b].l);
	return b;
}

/* Insert [lo, hi) as node id; false if it overlaps a live interval. */
static bool interval_add(struct checker *c, int32_t id, uintptr_t lo, uintptr_t hi)
{
	struct node *n = c->nodes;
	int32_t a, b;
	tsplit(n, c->root, lo, &a, &b);
	/* predecessor: rightmost of a; successor: leftmost of b */
	int32_t p = a, s = b;
	while (p >= 0 && n[p].r >= 0)
		p = n[p].r;
	while (s >= 0 && n[s].l >= 0)
		s = n[s].l;
	bool ok = (p < 0 || n[p].hi <= lo) && (s < 0 || hi <= n[s].lo);
	if (ok) {
		n[id] = (struct node){ lo, hi, -1, -1, hash32((uint32_t)id * 2654435761u + 1u) };
		c->root = tmerge(n, tmerge(n, a, id), b);
	} else {
		c->root = tmerge(n, a, b);
	}
	return ok;
}

static void interval_remove(struct checker *c, int32_t id)
{
	struct node *n = c->nodes;
	int32_t a, b, m, rest;
	tsplit(n, c->root, n[id].lo, &a, &b);
	tsplit(n, b, n[id].lo + 1, &m, &rest);
	/* m holds exactly the node starting at lo */
	c->root = tmerge(n, a, rest);
}

static uint8_t fill_byte(int32_t id, uint32_t gen) { return (uint8_t)hash32((uint32_t)id ^ (gen << 20)); }

static void fill(void *p, size_t n, uint8_t b) { memset(p, b, n); }

/* Index of the first byte that is not b, or n. */
static size_t verify(const void *p, size_t n, uint8_t b)
{
	const unsigned char *s = p;
	uint64_t w = 0x0101010101010101ull * b;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t v;
		memcpy(&v, s + i, 8);
		if (v != w)
			break;
	}
	for (; i < n; i++)
		if (s[i] != b)
			return i;
	return n;
}

/* ---- replay ------------------------------------------------------------------- */

struct state {
	void **ptr;
	uint32_t *size;
	uint32_t *gen;
};

struct result {
	double util;          /* sim only */
	uint64_t peak_payload;
	uint64_t extent;      /* sim: final break */
	long fp_kib;          /* peak RSS delta */
	double secs, cpu;     /* median seconds per replay */
	uint64_t errors;
};

static size_t need_align(const struct target *t, size_t n)
{
	/* An object of n bytes needs at most the largest power of two <= n,
	 * capped at the allocator's promise. */
	size_t a = 1;
	while (a * 2 <= n && a * 2 <= t->align)
		a *= 2;
	return a;
}

static void check_block(struct checker *c, const struct target *t, uint32_t opi, int32_t id,
			void *p, size_t n)
{
	if ((uintptr_t)p % need_align(t, n))
		report(c, opi, "id %d: %p not aligned to %zu", id, p, need_align(t, n));
	if (g_fh != NULL && t->malloc == sim_malloc) {
		uintptr_t lo = (uintptr_t)g_sim_base, hi = lo + g_sim_brk;
		if ((uintptr_t)p < lo || (uintptr_t)p + n > hi)
			report(c, opi, "id %d: [%p, +%zu) outside the heap [%p, %p)", id, p, n,
			       (void *)lo, (void *)hi);
	}
	uintptr_t lo = (uintptr_t)p, hi = lo + (n ? n : 1);
	if (!interval_add(c, id, lo, hi))
		report(c, opi, "id %d: [%p, +%zu) overlaps a live block", id, p, n);
}

/* Resident anonymous memory in KiB, exact: smaps_rollup walks the page
 * tables. Anonymous only: an allocator's first calls into libc fault in
 * code pages (file-backed, shared), which are not its footprint. (VmRSS and
 * VmHWM in /proc/self/status come from per-CPU counters that can be off by
 * 128 KiB per CPU on recent kernels, more than a small trace uses.) */
static long rss_kib(void)
{
	char buf[4096];
	int fd = open("/proc/self/smaps_rollup", O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *p = strstr(buf, "\nAnonymous:");
	return p ? atol(p + 11) : -1;
}

/* Pass 1: checked replay; fills r->util, peak_payload, fp_kib, errors. */
static void replay_checked(const struct trace *tr, const struct target *t, struct state *s,
			   struct checker *c, struct result *r)
{
	int64_t live = 0, peak = 0;
	/* Peak footprint: exact RSS sampled every `step` ops (and after the
	 * last), minus the RSS before the first op. */
	uint32_t step = tr->num_ops / 1024 + 1;
	long base = rss_kib(), top = base;
	for (uint32_t i = 0; i < tr->num_ops; i++) {
		if (i % step == 0 && base >= 0) {
			long now = rss_kib();
			if (now > top)
				top = now;
		}
		const struct op *o = &tr->ops[i];
		int32_t id = o->id;
		void *p;
		switch (o->type) {
		case OP_A:
			if (s->ptr[id] != NULL) {
				report(c, i, "id %d allocated twice without a free (unsupported)", id);
				return;
			}
			p = t->malloc(o->size);
			if (p == NULL) {
				report(c, i, "malloc(%u) failed: %s", o->size, strerror(errno));
				return;
			}
			check_block(c, t, i, id, p, o->size);
			s->ptr[id] = p;
			s->size[id] = o->size;
			s->gen[id]++;
			fill(p, o->size, fill_byte(id, s->gen[id]));
			live += o->size;
			break;
		case OP_R: {
			void *old = id >= 0 ? s->ptr[id] : NULL;
			uint32_t osz = old ? s->size[id] : 0;
			if (old)
				interval_remove(c, id);
			p = t->realloc(old, o->size);
			if (p == NULL && o->size != 0) {
				report(c, i, "realloc(%p, %u) failed: %s", old, o->size, strerror(errno));
				return;
			}
			if (id < 0) {
				t->free(p);
				break;
			}
			if (old) {
				size_t keep = osz < o->size ? osz : o->size;
				size_t bad = p ? verify(p, keep, fill_byte(id, s->gen[id])) : keep;
				if (bad != keep)
					report(c, i, "id %d: realloc lost payload byte %zu of %zu", id, bad, keep);
			}
			live += (int64_t)o->size - osz;
			s->ptr[id] = p;
			s->size[id] = o->size;
			s->gen[id]++;
			if (p) {
				check_block(c, t, i, id, p, o->size);
				fill(p, o->size, fill_byte(id, s->gen[id]));
			}
			break;
		}
		case OP_F:
			p = id >= 0 ? s->ptr[id] : NULL;
			if (p) {
				size_t bad = verify(p, s->size[id], fill_byte(id, s->gen[id]));
				if (bad != s->size[id])
					report(c, i, "id %d: payload byte %zu of %u changed before free", id, bad,
					       s->size[id]);
				interval_remove(c, id);
				live -= s->size[id];
				s->ptr[id] = NULL;
				s->size[id] = 0;
			}
			t->free(p);
			break;
		}
		if (live > peak)
			peak = live;
	}
	long now = rss_kib();
	if (now > top)
		top = now;
	r->fp_kib = base >= 0 ? top - base : -1;
	r->peak_payload = (uint64_t)peak;
	if (t->malloc == lfp_malloc_w) {
		const char *why = NULL;
		if (lfp_heap_validate(lfp_default_heap(), &why) != 0)
			report(c, tr->num_ops, "front end invalid after replay: %s", why);
	}
	if (t->malloc == sim_malloc) {
		lfp_flheap_stats_t st;
		const char *why = NULL;
		if (lfp_flheap_validate(g_fh, &why) != 0)
			report(c, tr->num_ops, "heap invalid after replay: %s", why);
		(void)lfp_flheap_stats(g_fh, &st);
		r->extent = g_sim_brk;
		r->util = g_sim_brk ? (double)peak / (double)g_sim_brk : 0;
	}
}

static void free_all(const struct trace *tr, const struct target *t, struct state *s)
{
	for (uint32_t id = 0; id < tr->num_ids; id++)
		if (s->ptr[id]) {
			t->free(s->ptr[id]);
			s->ptr[id] = NULL;
		}
}

/* One unchecked replay; returns wall and CPU seconds through *w, *u. */
static void replay_timed(const struct trace *tr, const struct target *t, void **ptr, double *w,
			 double *u)
{
	struct timespec a, b, ca, cb;
	clock_gettime(CLOCK_MONOTONIC, &a);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ca);
	for (uint32_t i = 0; i < tr->num_ops; i++) {
		const struct op *o = &tr->ops[i];
		int32_t id = o->id;
		switch (o->type) {
		case OP_A:
			ptr[id] = t->malloc(o->size);
			break;
		case OP_R:
			if (id >= 0)
				ptr[id] = t->realloc(ptr[id], o->size);
			else
				t->free(t->realloc(NULL, o->size));
			break;
		case OP_F:
			if (id >= 0) {
				t->free(ptr[id]);
				ptr[id] = NULL;
			} else {
				t->free(NULL);
			}
			break;
		}
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cb);
	clock_gettime(CLOCK_MONOTONIC, &b);
	*w += (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
	*u += (double)(cb.tv_sec - ca.tv_sec) + (double)(cb.tv_nsec - ca.tv_nsec) * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void run_trace(const struct trace *tr, const struct target *t, unsigned reps, bool check,
		      struct result *r)
{
	struct state s = {
		.ptr = xmap(sizeof(void *) * tr->num_ids),
		.size = xmap(sizeof(uint32_t) * tr->num_ids),
		.gen = xmap(sizeof(uint32_t) * tr->num_ids),
	};
	struct checker c = { .nodes = xmap(sizeof(struct node) * tr->num_ids), .root = -1,
			     .trace = tr->name };
	/* Touch the replayer's own arrays now, so their pages are in the
	 * baseline of the footprint measurement and not in its delta. */
	memset(s.ptr, 0, sizeof(void *) * tr->num_ids);
	memset(s.size, 0, sizeof(uint32_t) * tr->num_ids);
	memset(s.gen, 0, sizeof(uint32_t) * tr->num_ids);
	memset(c.nodes, 0, sizeof(struct node) * tr->num_ids);
	memset(r, 0, sizeof *r);
	r->fp_kib = -1;
	if (t->malloc == sim_malloc)
		sim_reset();
	if (check) {
		replay_checked(tr, t, &s, &c, r);
		free_all(tr, t, &s);
		r->errors = c.errors;
		if (c.errors)
			return;
	}
	/* Timed: one calibration replay sets the replays per repetition so a
	 * repetition runs >= 20 ms. */
	double *ws = xmap(sizeof(double) * (reps ? reps : 1));
	double *us = xmap(sizeof(double) * (reps ? reps : 1));
	unsigned iters = 1;
	if (reps) {
		double w = 0, u = 0;
		if (t->malloc == sim_malloc)
			sim_reset();
		replay_timed(tr, t, s.ptr, &w, &u);
		free_all(tr, t, &s);
		if (w < 0.02)
			iters = (unsigned)(0.02 / (w > 1e-7 ? w : 1e-7)) + 1;
		if (iters > 100000)
			iters = 100000;
	}
	for (unsigned rep = 0; rep < reps; rep++) {
		double w = 0, u = 0;
		for (unsigned k = 0; k < iters; k++) {
			if (t->malloc == sim_malloc)
				sim_reset();
			replay_timed(tr, t, s.ptr, &w, &u);
			free_all(tr, t, &s);
		}
		ws[rep] = w / iters;
		us[rep] = u / iters;
	}
	if (reps) {
		qsort(ws, reps, sizeof *ws, cmp_double);
		qsort(us, reps, sizeof *us, cmp_double);
		r->secs = ws[reps / 2];
		r->cpu = us[reps / 2];
	}
}

/* ---- size profile (--profile) ------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

#define NLIM 7
static const uint32_t prof_lim[NLIM] = { 16, 64, 128, 256, 1024, 4096, 16384 };

/* Request sizes of one trace (malloc and realloc), their spread and the peak
 * of live payload. Adds the trace's share per power-of-two bucket to hist[]
 * (each trace weighs 1, so large traces do not drown small programs). */
static void profile(const struct trace *tr, double hist[33], double hist_bytes[33])
{
	uint64_t n = 0, le[NLIM] = { 0 }, bytes = 0;
	uint32_t *sz = xmap(sizeof(uint32_t) * tr->num_ops);
	uint32_t *cur = xmap(sizeof(uint32_t) * tr->num_ids);
	int64_t live = 0, peak = 0;
	for (uint32_t i = 0; i < tr->num_ops; i++) {
		const struct op *o = &tr->ops[i];
		if (o->type == OP_F) {
			if (o->id >= 0) {
				live -= cur[o->id];
				cur[o->id] = 0;
			}
			continue;
		}
		sz[n++] = o->size;
		bytes += o->size;
		if (o->id >= 0) {
			live += (int64_t)o->size - cur[o->id];
			cur[o->id] = o->size;
		}
		if (live > peak)
			peak = live;
		for (int k = 0; k < NLIM; k++)
			le[k] += o->size <= prof_lim[k];
	}
	double bk[33] = { 0 }, bb[33] = { 0 };
	for (uint64_t i = 0; i < n; i++) {
		unsigned b = sz[i] <= 1 ? 0 : 32u - (unsigned)__builtin_clz(sz[i] - 1);
		bk[b] += 1;
		bb[b] += sz[i];
	}
	qsort(sz, n, sizeof *sz, cmp_u32);
	printf("%-20s %7" PRIu64 " %6u %6u %7u", tr->name, n, n ? sz[n / 2] : 0,
	       n ? sz[n * 9 / 10] : 0, n ? sz[n * 99 / 100] : 0);
	for (int k = 0; k < NLIM; k++)
		printf(" %5.1f", n ? 100.0 * (double)le[k] / (double)n : 0.0);
	printf(" %9" PRId64 "\n", peak);
	for (unsigned b = 0; b < 33; b++) {
		if (n)
			hist[b] += bk[b] / (double)n;
		if (bytes)
			hist_bytes[b] += bb[b] / (double)bytes;
	}
	munmap(sz, sizeof(uint32_t) * tr->num_ops);
	munmap(cur, sizeof(uint32_t) * tr->num_ids);
}

/* ---- --micro: the class fast path against the pool's own ------------------------
 *
 * One thread, block sizes 16, 64 and 256:
 *   hot    alloc, write one byte, free, repeated (the per-call cost)
 *   batch  10000 allocs, then the frees in a shuffled order
 * for: lfp_pool_alloc/free on a pool of that block size (with its cache),
 * lfp_heap_malloc/free on a fresh front end made with LFP_HEAP_BINS, the
 * same on one with owned pools (the default mode, LFP_HEAP_OWNED said
 * explicitly), lfp_malloc/lfp_free, and this process's malloc/free.
 * Median of `reps` repetitions of thread-CPU and wall ns per alloc/free pair.
 * Then two threads on a fresh heap of each kind (and malloc): a producer
 * allocates, writes one byte and passes the block through an SPSC ring of
 * 1024 slots; the consumer reads it and frees it (every free is a remote
 * one). CPU ns of both threads per object.
 * Last, what each kind holds when threads take turns: T_THREADS threads
 * that stay alive take T_ROUNDS turns each (a mutex and a condition
 * variable pass the turn); in its turn a thread allocates T_BLOCKS blocks
 * of 16-64 bytes and frees them in a shuffled order. Pools alive and their
 * bytes once every turn is done, before the threads exit.
 */

enum { M_POOL, M_HEAP, M_OWNED, M_DEFAULT, M_SYSTEM, M_N };
static const char *const m_names[M_N] = { "lfp_pool", "lfp_heap bins", "lfp_heap owned", "lfp_malloc",
					  "malloc" };

struct micro_ctx {
	lfp_pool_t *pool;
	lfp_heap_t *heap, *owned;
	size_t size;
};

static inline void *m_alloc(int who, struct micro_ctx *c)
{
	switch (who) {
	case M_POOL: return lfp_pool_alloc(c->pool);
	case M_HEAP: return lfp_heap_malloc(c->heap, c->size);
	case M_OWNED: return lfp_heap_malloc(c->owned, c->size);
	case M_DEFAULT: return lfp_malloc(c->size);
	default: return malloc(c->size);
	}
}

static inline void m_free(int who, struct micro_ctx *c, void *p)
{
	switch (who) {
	case M_POOL: (void)lfp_pool_free(c->pool, p); break;
	case M_HEAP: (void)lfp_heap_free(c->heap, p); break;
	case M_OWNED: (void)lfp_heap_free(c->owned, p); break;
	case M_DEFAULT: lfp_free(p); break;
	default: free(p); break;
	}
}

static double now(clockid_t id)
{
	struct timespec t;
	clock_gettime(id, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define M_BATCH 10000u

/* ns per pair (wall in *wall, CPU returned) of one repetition. */
static double micro_once(int who, struct micro_ctx *c, bool batch, void **v, const uint32_t *perm,
			 double *wall)
{
	uint64_t pairs = 0;
	double w0 = now(CLOCK_MONOTONIC), u0 = now(CLOCK_THREAD_CPUTIME_ID);
	if (!batch) {
		for (unsigned i = 0; i < 2000000u; i++) {
			char *p = m_alloc(who, c);
			p[0] = (char)i;
			lfp_compiler_barrier();
			m_free(who, c, p);
		}
		pairs = 2000000u;
	} else {
		for (unsigned r = 0; r < 20; r++) {
			for (unsigned i = 0; i < M_BATCH; i++) {
				v[i] = m_alloc(who, c);
				((char *)v[i])[0] = (char)i;
			}
			for (unsigned i = 0; i < M_BATCH; i++)
				m_free(who, c, v[perm[i]]);
		}
		pairs = 20u * M_BATCH;
	}
	double u1 = now(CLOCK_THREAD_CPUTIME_ID), w1 = now(CLOCK_MONOTONIC);
	*wall = (w1 - w0) * 1e9 / (double)pairs;
	return (u1 - u0) * 1e9 / (double)pairs;
}

/* --micro's hand-off: an SPSC ring between a producer and a consumer. */
#define H_RING 1024u
#define H_OBJECTS 1000000u
struct hring {
	_Alignas(64) lfp_atomic_u64 head; /* written by the consumer (H1) */
	_Alignas(64) lfp_atomic_u64 tail; /* written by the producer (H2) */
	_Alignas(64) void *slot[H_RING];
	int who;
	struct micro_ctx *c;
	double cpu;                       /* both threads' CPU seconds (each adds
					   * its own after the join) */
	lfp_atomic_u32 stop;              /* the producer failed (relaxed: the
					   * consumer only stops waiting) */
	bool bad;                         /* consumer only */
	double pcpu;                      /* the producer's, read after the join */
};

static void *h_producer(void *arg)
{
	struct hring *r = arg;
	double u0 = now(CLOCK_THREAD_CPUTIME_ID);
	for (uint64_t i = 0; i < H_OBJECTS; i++) {
		char *p = m_alloc(r->who, r->c);
		if (p == NULL) {
			lfp_store32_relaxed(&r->stop, 1); /* relaxed: a stop flag */
			break;
		}
		p[0] = (char)i;
		/* H1 acquire: the consumer is done with the slot; pairs with its
		 * release of head. */
		while (i - lfp_load64_acquire(&r->head) >= H_RING)
			lfp_cpu_relax();
		r->slot[i % H_RING] = p;
		lfp_store64_release(&r->tail, i + 1); /* H2: publishes the slot; pairs with H2's load */
	}
	r->pcpu = now(CLOCK_THREAD_CPUTIME_ID) - u0;
	return NULL;
}

static void h_consume(struct hring *r)
{
	double u0 = now(CLOCK_THREAD_CPUTIME_ID);
	for (uint64_t i = 0; i < H_OBJECTS; i++) {
		while (lfp_load64_acquire(&r->tail) <= i) { /* H2: pairs with the producer's release */
			if (lfp_load32_relaxed(&r->stop)) { /* relaxed: a stop flag */
				r->bad = true;
				return;
			}
			lfp_cpu_relax();
		}
		char *p = r->slot[i % H_RING];
		if (p[0] != (char)i)
			r->bad = true;
		m_free(r->who, r->c, p);
		lfp_store64_release(&r->head, i + 1); /* H1: the slot is free again */
	}
	r->cpu += now(CLOCK_THREAD_CPUTIME_ID) - u0;
}

static int micro_handoff(unsigned reps)
{
	static const int whos[] = { M_HEAP, M_OWNED, M_SYSTEM };
	struct hring *r = xmap(sizeof *r);
	double *cpu = xmap(sizeof(double) * reps);
	printf("\n# two threads: producer allocates, consumer frees (ring of %u); CPU ns of both "
	       "threads per object, median of %u reps\n| size |", H_RING, reps);
	for (size_t k = 0; k < sizeof whos / sizeof *whos; k++)
		printf(" %s |", m_names[whos[k]]);
	printf("\n");
	static const size_t sizes[] = { 16, 64, 256 };
	for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
		printf("| %zu |", sizes[si]);
		for (size_t k = 0; k < sizeof whos / sizeof *whos; k++) {
			for (unsigned rep = 0; rep < reps; rep++) {
				struct micro_ctx c = { .size = sizes[si] };
				lfp_heap_config_t oc = { .flags = LFP_HEAP_OWNED },
						  bc = { .flags = LFP_HEAP_BINS };
				c.heap = lfp_heap_create(&bc);
				c.owned = lfp_heap_create(&oc);
				memset(r, 0, sizeof *r);
				lfp_init64(&r->head, 0);
				lfp_init64(&r->tail, 0);
				lfp_init32(&r->stop, 0);
				r->who = whos[k];
				r->c = &c;
				pthread_t t;
				if (c.heap == NULL || c.owned == NULL ||
				    pthread_create(&t, NULL, h_producer, r) != 0) {
					fprintf(stderr, "micro: no heap or thread\n");
					return 1;
				}
				h_consume(r);
				pthread_join(t, NULL);
				r->cpu += r->pcpu;
				if (r->bad) {
					fprintf(stderr, "micro: hand-off failed\n");
					return 1;
				}
				cpu[rep] = r->cpu * 1e9 / H_OBJECTS;
				(void)lfp_heap_destroy(c.heap);
				(void)lfp_heap_destroy(c.owned);
			}
			qsort(cpu, reps, sizeof *cpu, cmp_double);
			printf(" %.1f |", cpu[reps / 2]);
		}
		printf("\n");
		fflush(stdout);
	}
	return 0;
}

enum { T_THREADS = 4, T_ROUNDS = 3, T_BLOCKS = 50000 };

struct turns {
	lfp_heap_t *h;
	bool flush;                /* lfp_heap_cache_flush after each turn */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int turn;                  /* under mu */
	int failed;                /* under mu */
	lfp_heap_stats_t st;       /* taken by thread 0 once all turns are done */
};

struct turns_arg {
	struct turns *t;
	int me;
};

static void *turns_thread(void *arg)
{
	struct turns_arg *a = arg;
	struct turns *t = a->t;
	void **v = xmap(sizeof(void *) * T_BLOCKS);
	int bad = 0;
	for (int r = 0; r < T_ROUNDS; r++) {
		pthread_mutex_lock(&t->mu);
		while (t->turn % T_THREADS != a->me)
			pthread_cond_wait(&t->cv, &t->mu);
		pthread_mutex_unlock(&t->mu);
		for (uint32_t i = 0; i < T_BLOCKS; i++)
			if ((v[i] = lfp_heap_malloc(t->h, 16 + (i % 4) * 16)) == NULL)
				bad = 1;
		for (uint32_t i = 0; i < T_BLOCKS; i++) /* 7919 is prime: a permutation */
			if (lfp_heap_free(t->h, v[(uint64_t)i * 7919 % T_BLOCKS]) != 0)
				bad = 1;
		if (t->flush)
			(void)lfp_heap_cache_flush(t->h);
		pthread_mutex_lock(&t->mu);
		t->turn++;
		t->failed |= bad;
		pthread_cond_broadcast(&t->cv);
		pthread_mutex_unlock(&t->mu);
	}
	/* Stay alive until every turn is done: exiting gives pools back. */
	pthread_mutex_lock(&t->mu);
	while (t->turn < T_THREADS * T_ROUNDS)
		pthread_cond_wait(&t->cv, &t->mu);
	if (a->me == 0)
		(void)lfp_heap_stats(t->h, &t->st);
	pthread_mutex_unlock(&t->mu);
	munmap(v, sizeof(void *) * T_BLOCKS);
	return NULL;
}

static int micro_turns(void)
{
	static const struct {
		const char *name;
		unsigned flags;
		bool flush;
	} kinds[] = {
		{ "lfp_heap bins", LFP_HEAP_BINS, false },
		{ "lfp_heap owned", LFP_HEAP_OWNED, false },
		{ "lfp_heap owned, lfp_heap_cache_flush after each turn", LFP_HEAP_OWNED, true },
	};
	printf("\n# %d threads that stay alive take %d turns each: %d blocks of 16-64 bytes, then "
	       "their frees shuffled; what the heap holds once all turns are done\n"
	       "| front end | pools alive | pool KiB | pools ever added |\n",
	       T_THREADS, T_ROUNDS, T_BLOCKS);
	for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
		lfp_heap_config_t hc = { .flags = kinds[k].flags };
		struct turns t = { .h = lfp_heap_create(&hc), .flush = kinds[k].flush };
		struct turns_arg a[T_THREADS];
		pthread_t th[T_THREADS];
		if (t.h == NULL || pthread_mutex_init(&t.mu, NULL) != 0 || pthread_cond_init(&t.cv, NULL) != 0)
			return 1;
		for (int i = 0; i < T_THREADS; i++) {
			a[i] = (struct turns_arg){ &t, i };
			if (pthread_create(&th[i], NULL, turns_thread, &a[i]) != 0)
				return 1;
		}
		for (int i = 0; i < T_THREADS; i++)
			pthread_join(th[i], NULL);
		if (t.failed) {
			fprintf(stderr, "micro: a turn failed\n");
			return 1;
		}
		printf("| %s | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " |\n", kinds[k].name, t.st.pools,
		       t.st.pool_bytes / 1024, t.st.pools_added);
		fflush(stdout);
		(void)lfp_heap_destroy(t.h);
		pthread_cond_destroy(&t.cv);
		pthread_mutex_destroy(&t.mu);
	}
	return 0;
}

static int micro(unsigned reps)
{
	static const size_t sizes[] = { 16, 64, 256 };
	void **v = xmap(sizeof(void *) * M_BATCH);
	uint32_t *perm = xmap(sizeof(uint32_t) * M_BATCH);
	uint64_t x = 88172645463325252ull;
	for (uint32_t i = 0; i < M_BATCH; i++)
		perm[i] = i;
	for (uint32_t i = M_BATCH - 1; i > 0; i--) { /* fixed shuffle (xorshift) */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint32_t k = (uint32_t)(x % (i + 1));
		uint32_t t = perm[i];
		perm[i] = perm[k];
		perm[k] = t;
	}
	if (reps < 5)
		reps = 5;
	double *cpu = xmap(sizeof(double) * reps), *wall = xmap(sizeof(double) * reps);
	printf("# lfpool-replay --micro: one thread; ns per alloc+free pair, median of %u reps "
	       "(thread-CPU, wall in brackets); ratio = CPU ns / lfp_pool's\n", reps);
	printf("| scenario | size |");
	for (int who = 0; who < M_N; who++)
		printf(" %s |", m_names[who]);
	printf("\n");
	for (int batch = 0; batch < 2; batch++)
		for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
			struct micro_ctx c = { .size = sizes[si] };
			lfp_pool_config_t pc = { .block_size = sizes[si], .block_count = 4 * M_BATCH };
			c.pool = lfp_pool_create(&pc);
			lfp_heap_config_t oc = { .flags = LFP_HEAP_OWNED },
					  bc = { .flags = LFP_HEAP_BINS };
			c.heap = lfp_heap_create(&bc);
			c.owned = lfp_heap_create(&oc);
			if (c.pool == NULL || c.heap == NULL)
				return 2;
			double med[M_N], medw[M_N];
			for (int who = 0; who < M_N; who++) {
				double w;
				(void)micro_once(who, &c, batch, v, perm, &w); /* warm up */
				for (unsigned r = 0; r < reps; r++)
					cpu[r] = micro_once(who, &c, batch, v, perm, &wall[r]);
				qsort(cpu, reps, sizeof *cpu, cmp_double);
				qsort(wall, reps, sizeof *wall, cmp_double);
				med[who] = cpu[reps / 2];
				medw[who] = wall[reps / 2];
			}
			printf("| %s | %zu |", batch ? "batch-shuffled" : "hot", sizes[si]);
			for (int who = 0; who < M_N; who++)
				printf(" %.1f [%.1f] (%.2fx) |", med[who], medw[who], med[who] / med[M_POOL]);
			printf("\n");
			fflush(stdout);
			(void)lfp_heap_destroy(c.heap);
			(void)lfp_heap_destroy(c.owned);
			(void)lfp_pool_destroy(c.pool);
		}
	int rc = micro_handoff(reps);
	return rc != 0 ? rc : micro_turns();
}

/* ---- trace sets --------------------------------------------------------------- */

static const char *const set_cmu11[] = {
	"malloclab/amptjp-bal.rep", "malloclab/cccp-bal.rep", "malloclab/cp-decl-bal.rep",
	"malloclab/expr-bal.rep", "malloclab/coalescing-bal.rep", "malloclab/random-bal.rep",
	"malloclab/random2-bal.rep", "malloclab/binary-bal.rep", "malloclab/binary2-bal.rep",
	"malloclab/realloc-bal.rep", "malloclab/realloc2-bal.rep", NULL
};
/* Autolab-era recordings of real programs. */
static const char *const set_real[] = {
	"malloclab-autolab/bash.rep", "malloclab-autolab/chrome.rep",
	"malloclab-autolab/firefox.rep", "malloclab-autolab/firefox-reddit.rep",
	"malloclab-autolab/firefox-reddit2.rep", "malloclab-autolab/freeciv.rep",
	"malloclab-autolab/fs.rep", "malloclab-autolab/hostname.rep",
	"malloclab-autolab/login.rep", "malloclab-autolab/ls.rep", "malloclab-autolab/ls.1.rep",
	"malloclab-autolab/mutt.rep", "malloclab-autolab/perl.rep", "malloclab-autolab/perl.1.rep",
	"malloclab-autolab/perl.2.rep", "malloclab-autolab/perl.3.rep",
	"malloclab-autolab/pulseaudio.rep", "malloclab-autolab/rm.rep", "malloclab-autolab/rm.1.rep",
	"malloclab-autolab/stty.rep", "malloclab-autolab/tty.rep", "malloclab-autolab/xterm.rep",
	NULL
};
/* Autolab synthetic stress traces. */
static const char *const set_synth[] = {
	"malloclab-autolab/alaska.rep", "malloclab-autolab/boat.rep",
	"malloclab-autolab/boat-plus.rep", "malloclab-autolab/needle.rep",
	"malloclab-autolab/merry-go-round.rep", "malloclab-autolab/coalesce-big.rep",
	"malloclab-autolab/exhaust.rep", "malloclab-autolab/seglist.rep",
	"malloclab-autolab/lrucd.rep", "malloclab-autolab/nlydf.rep", "malloclab-autolab/qyqyc.rep",
	"malloclab-autolab/rulsr.rep", NULL
};
static const char *const set_corners[] = {
	"malloclab-autolab/corners.rep", "malloclab-autolab/malloc.rep",
	"malloclab-autolab/malloc-free.rep", "malloclab-autolab/short1.rep",
	"malloclab-autolab/short2.rep", "malloclab/short1-bal.rep", "malloclab/short2-bal.rep", NULL
};

static const char *const *find_set(const char *name)
{
	if (!strcmp(name, "cmu11"))
		return set_cmu11;
	if (!strcmp(name, "real"))
		return set_real;
	if (!strcmp(name, "synthetic"))
		return set_synth;
	if (!strcmp(name, "corners"))
		return set_corners;
	return NULL;
}

/* ---- child and parent ---------------------------------------------------------- */

struct opts {
	const char *target;
	const char *root;
	unsigned reps;
	bool check;
	bool locked;
	unsigned fit;
	size_t align;
	size_t chunk;
	bool plain;
	bool depot;      /* lfp target: LFP_HEAP_DEPOT */
	bool owned;      /* lfp target: LFP_HEAP_OWNED (the default, said explicitly) */
	bool bins;       /* lfp target: LFP_HEAP_BINS */
	size_t min_split;
	size_t pool_min, pool_max, huge;
};

static int parse_fit(const char *s, unsigned *fit)
{
	static const char *const names[] = { "seg", "first", "next", "best" };
	for (unsigned i = 0; i < 4; i++)
		if (!strcmp(s, names[i])) {
			*fit = i;
			return 0;
		}
	return -1;
}

static const char *fit_name(unsigned fit)
{
	static const char *const names[] = { "seg", "first", "next", "best" };
	return fit < 4 ? names[fit] : "?";
}

static int setup_target(const struct opts *o, struct target *t)
{
	if (!strcmp(o->target, "sim")) {
		*t = (struct target){ "sim", sim_malloc, sim_free, sim_realloc, o->align ? o->align : 16 };
		g_sim_cap = (size_t)1 << 30;
		g_sim_base = mmap(NULL, g_sim_cap, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (g_sim_base == MAP_FAILED)
			return -1;
		g_sim_cfg = (lfp_flheap_config_t){
			.fit = o->fit,
			.align = o->align,
			.flags = (o->locked ? 0u : LFP_FLHEAP_UNLOCKED) | (o->plain ? LFP_FLHEAP_PLAIN_SPLIT : 0u),
			.grow_chunk = o->chunk,
			.min_split = o->min_split,
		};
		return 0;
	}
	if (!strcmp(o->target, "lfp")) {
		lfp_heap_config_t hc = { .fit = o->fit, .pool_min_bytes = o->pool_min,
					 .pool_max_bytes = o->pool_max, .huge_threshold = o->huge,
					 .flags = (o->depot ? LFP_HEAP_DEPOT : 0u) |
						  (o->owned ? LFP_HEAP_OWNED : 0u) |
						  (o->bins ? LFP_HEAP_BINS : 0u) };
		if (lfp_default_heap_configure(&hc) != 0)
			return -1;
		*t = (struct target){ "lfp", lfp_malloc_w, lfp_free_w, lfp_realloc_w, 16 };
		return 0;
	}
	if (!strcmp(o->target, "system")) {
		*t = (struct target){ "system", sys_malloc, sys_free, sys_realloc, 16 };
		return 0;
	}
	return -1;
}

static void print_result(const char *target, const struct trace *tr, const struct result *r)
{
	printf("RESULT target=%s trace=%s ops=%u util=%.6f peak=%" PRIu64 " extent=%" PRIu64
	       " fp_kib=%ld secs=%.9g cpu=%.9g errors=%" PRIu64 "\n",
	       target, tr->name, tr->num_ops, r->util, r->peak_payload, r->extent, r->fp_kib, r->secs,
	       r->cpu, r->errors);
}

/* The allocators --compare knows: name, --target, LD_PRELOAD (or NULL). */
struct peer {
	const char *name, *target, *preload;
};

static const struct peer peers[] = {
	{ "sim", "sim", NULL },
	{ "lfp", "lfp", NULL },
	{ "glibc", "system", NULL },
	{ "jemalloc", "system", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2" },
	{ "mimalloc", "system", "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2" },
};
#define NPEERS (sizeof peers / sizeof peers[0])

struct cell {
	bool ok;
	double util, secs, cpu;
	long fp_kib;
	uint64_t peak, extent, ops;
};

static bool parse_result(const char *line, struct cell *c)
{
	const char *p = strstr(line, "RESULT ");
	if (!p)
		return false;
	unsigned long long errors = 1, peak = 0, extent = 0, ops = 0;
	const char *q;
	if ((q = strstr(p, " ops=")))
		ops = strtoull(q + 5, NULL, 10);
	if ((q = strstr(p, " util=")))
		c->util = strtod(q + 6, NULL);
	if ((q = strstr(p, " peak=")))
		peak = strtoull(q + 6, NULL, 10);
	if ((q = strstr(p, " extent=")))
		extent = strtoull(q + 8, NULL, 10);
	if ((q = strstr(p, " fp_kib=")))
		c->fp_kib = strtol(q + 8, NULL, 10);
	if ((q = strstr(p, " secs=")))
		c->secs = strtod(q + 6, NULL);
	if ((q = strstr(p, " cpu=")))
		c->cpu = strtod(q + 5, NULL);
	if ((q = strstr(p, " errors=")))
		errors = strtoull(q + 8, NULL, 10);
	c->peak = peak;
	c->extent = extent;
	c->ops = ops;
	c->ok = errors == 0;
	return true;
}

/* Run this program again as a child for one (peer, trace). */
static void run_child(const char *self, const struct peer *pe, const struct opts *o,
		      const char *path, struct cell *c)
{
	int fds[2];
	memset(c, 0, sizeof *c);
	c->fp_kib = -1;
	if (pipe(fds) != 0)
		return;
	pid_t pid = fork();
	if (pid < 0)
		return;
	if (pid == 0) {
		char reps[16], fit[16], align[16], chunk[32], split[32], pmin[32], pmax[32], huge[32];
		snprintf(reps, sizeof reps, "%u", o->reps);
		snprintf(fit, sizeof fit, "%s", fit_name(o->fit));
		snprintf(align, sizeof align, "%zu", o->align);
		snprintf(chunk, sizeof chunk, "%zu", o->chunk);
		snprintf(split, sizeof split, "%zu", o->min_split);
		snprintf(pmin, sizeof pmin, "%zu", o->pool_min);
		snprintf(pmax, sizeof pmax, "%zu", o->pool_max);
		snprintf(huge, sizeof huge, "%zu", o->huge);
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		if (pe->preload)
			setenv("LD_PRELOAD", pe->preload, 1);
		else
			unsetenv("LD_PRELOAD");
		const char *argv[32];
		int k = 0;
		argv[k++] = self;
		argv[k++] = "--target";
		argv[k++] = pe->target;
		argv[k++] = "--reps";
		argv[k++] = reps;
		argv[k++] = "--fit";
		argv[k++] = fit;
		argv[k++] = "--align";
		argv[k++] = align;
		argv[k++] = "--chunk";
		argv[k++] = chunk;
		argv[k++] = "--min-split";
		argv[k++] = split;
		argv[k++] = "--pool-min";
		argv[k++] = pmin;
		argv[k++] = "--pool-max";
		argv[k++] = pmax;
		argv[k++] = "--huge";
		argv[k++] = huge;
		if (o->plain)
			argv[k++] = "--plain-split";
		if (o->depot)
			argv[k++] = "--depot";
		if (o->owned)
			argv[k++] = "--owned";
		if (o->bins)
			argv[k++] = "--bins";
		if (o->locked)
			argv[k++] = "--locked";
		if (!o->check)
			argv[k++] = "--no-check";
		argv[k++] = path;
		argv[k] = NULL;
		execv(self, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	close(fds[1]);
	char buf[4096];
	size_t len = 0;
	ssize_t n;
	while ((n = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0) {
		len += (size_t)n;
		if (len == sizeof buf - 1)
			len = 0; /* keep reading; the RESULT line is last */
	}
	buf[len] = '\0';
	close(fds[0]);
	int st;
	waitpid(pid, &st, 0);
	if (!parse_result(buf, c) || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		c->ok = false;
}

static bool file_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [options] [TRACE.rep ...]\n"
		"  --target sim|lfp|system   replay in this process (default sim)\n"
		"  --compare LIST            fresh child per trace and allocator; LIST of\n"
		"                            sim,lfp,glibc,jemalloc,mimalloc (or 'all')\n"
		"  --set cmu11|real|synthetic|corners   add a named trace set\n"
		"  --traces DIR              trace root for --set (default $LFP_TRACES or\n"
		"                            ../shared/traces, relative to the current dir)\n"
		"  --reps N                  timed repetitions, median reported (default 5)\n"
		"  --no-check                skip the checked pass (no utilization/footprint)\n"
		"  --fit seg|first|next|best fallback heap policy (sim and lfp)\n"
		"  --align 8|16              sim heap alignment (default 16)\n"
		"  --chunk N                 sim heap growth chunk bytes (0 = adaptive)\n"
		"  --min-split N             sim heap smallest split remainder\n"
		"  --plain-split             sim heap: low-end splits, exact growth\n"
		"  --depot                   lfp target: LFP_HEAP_DEPOT (a class depot)\n"
		"  --owned                   lfp target: LFP_HEAP_OWNED (thread-owned pools;\n"
		"                            the default, said explicitly)\n"
		"  --bins                    lfp target: LFP_HEAP_BINS (per-thread bins)\n"
		"  --pool-min N, --pool-max N, --huge N   lfp target: first and largest\n"
		"                            pool bytes, huge threshold (0 = defaults)\n"
		"  --locked                  sim heap with its mutex (default: unlocked,\n"
		"                            the replay is single-threaded)\n"
		"  --profile                 print the traces' size profiles, replay nothing\n"
		"  --micro                   the class fast path against the pool's own,\n"
		"                            bins and owned pools, and a two-thread\n"
		"                            hand-off (give --reps before it)\n"
		"exit: 0 all replays valid, 1 a correctness error, 2 usage, 77 no traces\n",
		prog);
}

int main(int argc, char **argv)
{
	static char outbuf[1 << 16];
	setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf); /* no malloc for stdio */
	struct opts o = { .target = "sim", .reps = 5, .check = true, .fit = LFP_FIT_SEGREGATED };
	const char *compare = NULL;
	bool prof = false;
	const char **paths = xmap(sizeof(char *) * 4096);
	char *pathbuf = xmap(4096 * 512);
	size_t npaths = 0, pb = 0;
	const char **sets = xmap(sizeof(char *) * 16);
	size_t nsets = 0;
	o.root = getenv("LFP_TRACES");
	if (o.root == NULL || !*o.root)
		o.root = "../shared/traces";

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV()                                         \
	do {                                            \
		if (v == NULL) {                        \
			usage(argv[0]);                 \
			return 2;                       \
		}                                       \
		i++;                                    \
	} while (0)
		if (!strcmp(a, "--target")) {
			NEEDV();
			o.target = v;
		} else if (!strcmp(a, "--compare")) {
			NEEDV();
			compare = v;
		} else if (!strcmp(a, "--set")) {
			NEEDV();
			if (find_set(v) == NULL || nsets == 16) {
				fprintf(stderr, "unknown set '%s'\n", v);
				return 2;
			}
			sets[nsets++] = v;
		} else if (!strcmp(a, "--traces")) {
			NEEDV();
			o.root = v;
		} else if (!strcmp(a, "--reps")) {
			NEEDV();
			o.reps = (unsigned)strtoul(v, NULL, 10);
		} else if (!strcmp(a, "--fit")) {
			NEEDV();
			if (parse_fit(v, &o.fit) != 0) {
				usage(argv[0]);
				return 2;
			}
		} else if (!strcmp(a, "--align")) {
			NEEDV();
			o.align = strtoul(v, NULL, 10);
		} else if (!strcmp(a, "--chunk")) {
			NEEDV();
			o.chunk = strtoul(v, NULL, 10);
		} else if (!strcmp(a, "--min-split")) {
			NEEDV();
			o.min_split = strtoul(v, NULL, 10);
		} else if (!strcmp(a, "--pool-min")) {
			NEEDV();
			o.pool_min = strtoul(v, NULL, 10);
		} else if (!strcmp(a, "--pool-max")) {
			NEEDV();
			o.pool_max = strtoul(v, NULL, 10);
		} else if (!strcmp(a, "--huge")) {
			NEEDV();
			o.huge = strtoul(v, NULL, 10);
		} else if (!strcmp(a, "--depot")) {
			o.depot = true;
		} else if (!strcmp(a, "--owned")) {
			o.owned = true;
		} else if (!strcmp(a, "--bins")) {
			o.bins = true;
		} else if (!strcmp(a, "--plain-split")) {
			o.plain = true;
		} else if (!strcmp(a, "--locked")) {
			o.locked = true;
		} else if (!strcmp(a, "--no-check")) {
			o.check = false;
		} else if (!strcmp(a, "--profile")) {
			prof = true;
		} else if (!strcmp(a, "--micro")) {
			return micro(o.reps);
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(argv[0]);
			return 0;
		} else if (a[0] == '-') {
			usage(argv[0]);
			return 2;
		} else if (npaths < 4096) {
			paths[npaths++] = a;
		}
#undef NEEDV
	}
	for (size_t s = 0; s < nsets; s++) {
		const char *const *set = find_set(sets[s]);
		for (size_t k = 0; set[k] && npaths < 4096; k++) {
			int n = snprintf(pathbuf + pb, 512, "%s/%s", o.root, set[k]);
			if (n <= 0 || n >= 512)
				continue;
			if (!file_exists(pathbuf + pb)) {
				fprintf(stderr, "skip: %s absent\n", pathbuf + pb);
				continue;
			}
			paths[npaths++] = pathbuf + pb;
			pb += (size_t)n + 1;
		}
	}
	if (npaths == 0) {
		fprintf(stderr, "no traces (root %s): nothing to replay\n", o.root);
		return 77;
	}

	if (prof) {
		double hist[33] = { 0 }, hist_b[33] = { 0 };
		size_t nt = 0;
		printf("%-20s %7s %6s %6s %7s", "trace", "sizes", "p50", "p90", "p99");
		for (int k = 0; k < NLIM; k++)
			printf(" %5s", k == 0 ? "<=16" : k == 1 ? "<=64" : k == 2 ? "<=128" :
				       k == 3 ? "<=256" : k == 4 ? "<=1K" : k == 5 ? "<=4K" : "<=16K");
		printf(" %9s\n", "peak");
		for (size_t i = 0; i < npaths; i++) {
			struct trace *tr = load_trace(paths[i]);
			if (tr) {
				profile(tr, hist, hist_b);
				nt++;
			}
		}
		printf("\nshare of requests (and of requested bytes) per size bucket, each trace "
		       "weighted 1/%zu:\n", nt);
		for (unsigned b = 0; b < 33; b++)
			if (hist[b] > 0)
				printf("  (%7lu, %7lu]  %6.2f%%  %6.2f%%\n", b ? 1ul << (b - 1) : 0ul,
				       1ul << b, 100 * hist[b] / (double)nt, 100 * hist_b[b] / (double)nt);
		fflush(stdout);
		return 0;
	}

	if (compare == NULL) {
		struct target t;
		if (setup_target(&o, &t) != 0) {
			fprintf(stderr, "bad target '%s'\n", o.target);
			return 2;
		}
		int rc = 0;
		for (size_t i = 0; i < npaths; i++) {
			struct trace *tr = load_trace(paths[i]);
			if (tr == NULL) {
				rc = 1;
				continue;
			}
			struct result r;
			run_trace(tr, &t, o.reps, o.check, &r);
			print_result(t.name, tr, &r);
			fflush(stdout);
			if (r.errors)
				rc = 1;
		}
		return rc;
	}

	/* --compare: a table over traces x allocators. */
	const struct peer *use[NPEERS];
	size_t np = 0;
	for (size_t k = 0; k < NPEERS; k++) {
		bool want = !strcmp(compare, "all");
		const char *c = compare;
		size_t L = strlen(peers[k].name);
		while (!want && (c = strstr(c, peers[k].name)) != NULL) {
			if ((c == compare || c[-1] == ',') && (c[L] == ',' || c[L] == '\0'))
				want = true;
			c += L;
		}
		if (!want)
			continue;
		if (peers[k].preload && !file_exists(peers[k].preload)) {
			fprintf(stderr, "skip %s: %s absent\n", peers[k].name, peers[k].preload);
			continue;
		}
		use[np++] = &peers[k];
	}
	if (np == 0) {
		fprintf(stderr, "--compare: no known allocator in '%s'\n", compare);
		return 2;
	}
	char self[4096];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
	if (sl <= 0)
		return 2;
	self[sl] = '\0';
	struct cell *cells = xmap(sizeof(struct cell) * npaths * np);
	int glibc = -1;
	for (size_t k = 0; k < np; k++)
		if (!strcmp(use[k]->name, "glibc"))
			glibc = (int)k;

	printf("# lfpool-replay --compare: reps=%u fit=%s align=%zu; Kops/s = ops / median wall "
	       "seconds per replay; cpu = the same with thread-CPU time; fp = peak resident "
	       "anonymous memory delta (KiB) of the checked pass\n",
	       o.reps, fit_name(o.fit), o.align ? o.align : 16);
	printf("| %-20s | %7s |", "trace", "ops");
	for (size_t k = 0; k < np; k++) {
		if (!strcmp(use[k]->target, "sim"))
			printf(" %s util | %s Kops/s |", use[k]->name, use[k]->name);
		else
			printf(" %s Kops/s | %s cpu Kops/s | %s fp KiB |", use[k]->name, use[k]->name,
			       use[k]->name);
	}
	printf("\n");
	fflush(stdout);
	int rc = 0;
	for (size_t i = 0; i < npaths; i++) {
		const char *slash = strrchr(paths[i], '/');
		printf("| %-20s |", slash ? slash + 1 : paths[i]);
		uint64_t ops = 0;
		for (size_t k = 0; k < np; k++) {
			struct cell *c = &cells[i * np + k];
			run_child(self, use[k], &o, paths[i], c);
			if (c->ops)
				ops = c->ops;
		}
		printf(" %7" PRIu64 " |", ops);
		for (size_t k = 0; k < np; k++) {
			struct cell *c = &cells[i * np + k];
			if (!c->ok) {
				rc = 1;
				printf(strcmp(use[k]->target, "sim") ? " FAIL | | |" : " FAIL | |");
				continue;
			}
			double kops = c->secs > 0 ? (double)c->ops / c->secs / 1e3 : 0;
			double kcpu = c->cpu > 0 ? (double)c->ops / c->cpu / 1e3 : 0;
			if (!strcmp(use[k]->target, "sim"))
				printf(" %5.1f%% | %9.0f |", 100 * c->util, kops);
			else
				printf(" %9.0f | %9.0f | %7ld |", kops, kcpu, c->fp_kib);
		}
		printf("\n");
		fflush(stdout);
	}
	/* Summary: mean util; T = sum ops / sum secs; footprint ratios to glibc. */
	printf("\nsummary over %zu traces:\n", npaths);
	double gsecs = 0, gcpu = 0;
	if (glibc >= 0)
		for (size_t i = 0; i < npaths; i++) {
			gsecs += cells[i * np + (size_t)glibc].secs;
			gcpu += cells[i * np + (size_t)glibc].cpu;
		}
	for (size_t k = 0; k < np; k++) {
		double ut = 0, secs = 0, cpu = 0, ops = 0, lr = 0, maxr = 0, fsum = 0, gsum = 0;
		size_t nu = 0, nr = 0, bad = 0;
		for (size_t i = 0; i < npaths; i++) {
			struct cell *c = &cells[i * np + k];
			if (!c->ok) {
				bad++;
				continue;
			}
			ut += c->util;
			nu++;
			secs += c->secs;
			cpu += c->cpu;
			ops += (double)c->ops;
			if (glibc >= 0 && strcmp(use[k]->target, "sim")) {
				struct cell *g = &cells[i * np + (size_t)glibc];
				if (g->ok && g->fp_kib > 0 && c->fp_kib >= 0) {
					double r = (double)(c->fp_kib > 0 ? c->fp_kib : 1) / (double)g->fp_kib;
					fsum += (double)c->fp_kib;
					gsum += (double)g->fp_kib;
					lr += log(r);
					nr++;
					if (r > maxr)
						maxr = r;
				}
			}
		}
		printf("  %-9s", use[k]->name);
		if (!strcmp(use[k]->target, "sim"))
			printf(" mean util %5.1f%%", nu ? 100 * ut / (double)nu : 0);
		printf(" throughput %9.0f Kops/s (cpu %9.0f)", secs > 0 ? ops / secs / 1e3 : 0,
		       cpu > 0 ? ops / cpu / 1e3 : 0);
		if (glibc >= 0 && gsecs > 0 && secs > 0 && cpu > 0)
			printf(" = %.2fx glibc (cpu %.2fx)", gsecs / secs, gcpu / cpu);
		if (nr)
			printf("; footprint/glibc: sum %.2f geomean %.2f max %.2f", fsum / gsum,
			       exp(lr / (double)nr), maxr);
		if (bad)
			printf("; %zu FAILED", bad);
		printf("\n");
	}
	fflush(stdout);
	return rc;
}
