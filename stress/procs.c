/*
 * stress/procs.c - process mode: P worker processes on one shared-memory
 * pool (include/lfpool/shm.h), optionally SIGKILLing one every --kill-every
 * seconds.
 *
 * The parent creates the segment and a small shared control page, forks the
 * workers and watches them. Each worker attaches for itself (an inherited
 * handle is not usable after fork), runs T threads of the harness's workloads
 * (workloads.c) against the segment with the usual stamps and canaries, and
 * when told to stop gives every block back, flushes its caches and detaches;
 * detach must report that the worker owns nothing.
 *
 * A kill: the parent SIGKILLs a random live worker, reaps it, bumps that
 * slot's incarnation, calls lfp_shm_recover() (which must find the segment
 * consistent: free + owned + cached by the living = capacity, nothing
 * unexplained), and starts a new worker in the slot. Blocks the dead worker
 * owned come back stamped with its (now dead) incarnation; a worker that
 * allocates one checks the incarnation, so such a block is not mistaken for
 * a double allocation, while a block stamped by a live incarnation still is.
 * Order that makes this sound: the parent bumps the incarnation before
 * recover() pushes the blocks back (a release CAS on the free stack), and a
 * worker's pop acquires it before reading the incarnation.
 *
 * At the end, with every worker gone, an exact inspection must find every
 * block free and lfp_pool_validate() of the region clean.
 */
#include "stress.h"

#ifdef ST_HAVE_SHM

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 1024

/* The control page, shared by the parent and every worker (MAP_SHARED). */
struct slot_ctl {
	/* Incarnation of the worker in this slot: bumped by the parent after a
	 * kill (relaxed: ordered by recover()'s release push, see above). */
	LFP_CACHE_ALIGNED lfp_atomic_u32 inc;
	/* Written by the worker, read by the parent: gauges (relaxed). */
	lfp_atomic_u64 hb;
	lfp_atomic_u64 frees;
	lfp_atomic_u64 allocs;
	lfp_atomic_u64 violations;
	lfp_atomic_u64 dead_stamps;
	/* Parent only. */
	int pid;
	bool live;
	double last_change;
	uint64_t last_hb;
};

struct procs_ctl {
	LFP_CACHE_ALIGNED lfp_atomic_u32 stop; /* parent -> workers: a flag (relaxed) */
	uint32_t nprocs, threads;
	struct slot_ctl slot[];
};

static bool stamp_dead(const struct st_run *r, uint64_t w)
{
	const struct procs_ctl *c = r->procs_ctl;
	uint64_t owner = w >> 48;
	if (owner == 0 || owner > (uint64_t)c->nprocs * c->threads)
		return false;
	uint32_t slot = (uint32_t)((owner - 1) / c->threads);
	uint32_t inc = (uint32_t)((w >> 32) & 0xFFFF);
	/* Relaxed: recover()'s push and our pop order the bump before us. */
	return inc != (lfp_load32_relaxed(&c->slot[slot].inc) & 0xFFFF); /* relaxed: see above */
}

static double now_s(void) { return st_now(); }

static void pause_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* The segment: a name, or (--policy numa) a memfd bound to node 0 that the
 * workers inherit. */
static char seg_name[64];
static int seg_fd = -1;

/* ---- a worker process ------------------------------------------------------ */

__attribute__((noreturn)) static void worker_main(const struct st_opts *o, struct procs_ctl *c, int slot,
						   const char *name, enum st_workload w, size_t capacity)
{
	struct slot_ctl *me = &c->slot[slot];
	int T = (int)c->threads;
	lfp_shm_attach_opts_t ao = { .flags = o->backend == BE_POOL ? LFP_SHM_NOCACHE : 0u };
	lfp_shm_t *shm = seg_fd >= 0 ? lfp_shm_attach_ex(NULL, seg_fd, &ao) : lfp_shm_attach_ex(name, -1, &ao);
	if (shm == NULL) {
		fprintf(stderr, "worker %d: attach %s failed: %s (%s)\n", slot, name, strerror(errno),
			lfp_shm_last_error() ? lfp_shm_last_error() : "?");
		_exit(ST_EXIT_ERROR);
	}
	/* One phase of one workload, stopped by the parent. */
	struct st_opts wo = *o;
	wo.n_phases = 1;
	wo.phases[0] = w;
	wo.ops = 0;
	wo.stop_on_violation = o->stop_on_violation;

	struct st_run *r = aligned_alloc(LFP_CACHE_LINE, (sizeof *r + 63) & ~(size_t)63);
	size_t thb = ((sizeof(struct st_thread) * (size_t)T) + 63) & ~(size_t)63;
	struct st_thread *th = aligned_alloc(LFP_CACHE_LINE, thb);
	if (!r || !th)
		_exit(ST_EXIT_ERROR);
	memset(r, 0, sizeof *r);
	memset(th, 0, thb);
	r->o = &wo;
	r->backend = BE_SHM;
	r->pool_backend = true;
	r->nthreads = T;
	r->th = th;
	r->block_size = o->block_size;
	r->npools = 1;
	r->pools[0].capacity = capacity;
	r->pools[0].nthreads = T;
	r->shm = shm;
	r->shm_pool = lfp_shm_pool(shm);
	r->id_base = (uint32_t)slot * (uint32_t)T;
	r->id_limit = c->nprocs * c->threads;
	r->seq_base = (uint64_t)(lfp_load32_relaxed(&me->inc) & 0xFFFF) << 32; /* relaxed: set before fork */
	r->stamp_dead = stamp_dead;
	r->procs_ctl = c;
	r->nxslots = 64;
	lfp_init64(&r->dead_stamps, 0);
	st_run_init_sync(r, (uint32_t)T);
	r->rings = aligned_alloc(LFP_CACHE_LINE, sizeof(struct st_ring) * (size_t)(T / 2 + 1));
	if (!r->rings)
		_exit(ST_EXIT_ERROR);
	for (int i = 0; i < T / 2; i++) {
		lfp_init32(&r->rings[i].head, 0);
		lfp_init32(&r->rings[i].tail, 0);
		lfp_init32(&r->rings[i].closed, 0);
	}
	uint64_t seed = o->seed ^ ((uint64_t)slot << 40) ^ ((uint64_t)getpid() << 8);
	size_t held_cap = (size_t)o->batch + 64;
	for (int i = 0; i < T; i++) {
		struct st_thread *t = &th[i];
		t->id = i;
		t->run = r;
		t->real_pu = -1;
		t->rng.s = st_splitmix(&seed) | 1;
		t->held_cap = held_cap;
		t->cur = &t->res[0];
		t->held = calloc(held_cap, sizeof *t->held);
		if (!t->held)
			_exit(ST_EXIT_ERROR);
		lfp_init64(&t->hb, 0);
		lfp_init64(&t->pub_frees, 0);
		lfp_init64(&t->pub_viol, 0);
		lfp_init32(&t->in_phase, 0);
	}
	for (int i = 0; i < T; i++)
		if (pthread_create(&th[i].th, NULL, st_worker, &th[i]) != 0)
			_exit(ST_EXIT_ERROR);
	lfp_store32_release(&r->go, 1); /* G1: pairs with G2 */

	double *last_change = calloc((size_t)T, sizeof(double));
	uint64_t *last_hb = calloc((size_t)T, sizeof(uint64_t));
	uint64_t beat = 0;
	bool stopped = false;
	while (lfp_load32_acquire(&r->done) < (uint32_t)T) { /* D2: pairs with D1 */
		pause_ms(10);
		double now = now_s();
		if (!stopped && (lfp_load32_relaxed(&c->stop) || lfp_load32_relaxed(&r->abort))) { /* relaxed: flags */
			lfp_store32_relaxed(&r->stop, 1); /* S1: a flag */
			stopped = true;
		}
		uint64_t frees = 0, allocs = 0;
		for (int i = 0; i < T; i++) {
			uint64_t hb = lfp_load64_relaxed(&th[i].hb); /* relaxed: a gauge */
			frees += lfp_load64_relaxed(&th[i].pub_frees); /* relaxed: a gauge */
			if (hb != last_hb[i] || last_change[i] == 0) {
				last_hb[i] = hb;
				last_change[i] = now;
			} else if (now - last_change[i] > o->watchdog) {
				fprintf(stderr, "HANG: worker %d (pid %d) thread %d: no progress for %.1f s\n", slot,
					(int)getpid(), i, now - last_change[i]);
				_exit(ST_EXIT_HANG);
			}
		}
		(void)allocs;
		/* Relaxed stores: gauges for the parent's watchdog and report. */
		lfp_store64_relaxed(&me->hb, ++beat); /* relaxed: a gauge */
		lfp_store64_relaxed(&me->frees, frees); /* relaxed: a gauge */
		lfp_store64_relaxed(&me->violations, lfp_load64_relaxed(&r->violations)); /* relaxed: gauges */
	}
	for (int i = 0; i < T; i++)
		pthread_join(th[i].th, NULL);
	st_check_quiescent(r, 0);
	uint64_t frees = r->drained[0], allocs = 0;
	for (int i = 0; i < T; i++) {
		frees += th[i].res[0].frees;
		allocs += th[i].res[0].allocs;
	}
	int owned = lfp_shm_detach(shm);
	if (owned != 0)
		st_violation(r, NULL, VK_CONSERVATION, "worker %d: detach: still owns %d blocks after giving "
			     "every block back", slot, owned);
	/* Relaxed stores: final gauges; the parent reads them after waitpid. */
	lfp_store64_relaxed(&me->frees, frees); /* relaxed: read after waitpid */
	lfp_store64_relaxed(&me->allocs, allocs); /* relaxed: read after waitpid */
	lfp_store64_relaxed(&me->violations, lfp_load64_relaxed(&r->violations)); /* relaxed: joined */
	lfp_store64_relaxed(&me->dead_stamps, lfp_load64_relaxed(&r->dead_stamps)); /* relaxed: joined */
	fflush(stderr);
	_exit(lfp_load64_relaxed(&r->violations) ? ST_EXIT_VIOLATION : ST_EXIT_OK); /* relaxed: joined */
}

/* ---- the parent --------------------------------------------------------- */

static char seg_name[64];

static void unlink_segment(void)
{
	if (seg_name[0] == '/')
		lfp_shm_unlink(seg_name);
}

static int spawn(const struct st_opts *o, struct procs_ctl *c, int slot, enum st_workload w, size_t cap)
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0)
		worker_main(o, c, slot, seg_name, w, cap);
	c->slot[slot].pid = pid;
	c->slot[slot].live = true;
	c->slot[slot].last_change = now_s();
	c->slot[slot].last_hb = 0;
	return 0;
}

int st_procs_run(const struct st_opts *o)
{
	int P = o->procs;
	int npu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	int T = o->threads[0] ? o->threads[0] : (npu / P > 0 ? npu / P : 1);
	enum st_workload w = o->workload_mix ? WL_CHAOS : o->phases[0];
	uint64_t violations = 0, kills = 0, recovered = 0, frees_done = 0, frees_lost = 0;
	uint64_t dead_stamps = 0, hang = 0, errors = 0;
	int rc = ST_EXIT_OK;

	if (o->n_phases != 1 && !o->workload_mix) {
		fprintf(stderr, "lfpool-stress: --procs runs one workload (hot, lifo, random, handoff or chaos)\n");
		return ST_EXIT_USAGE;
	}
	if (w == WL_BURST || w == WL_SIZES || w == WL_TRACE) {
		fprintf(stderr, "lfpool-stress: --procs: workload %s is not supported across processes "
			"(use hot, lifo, random, handoff or chaos)\n", st_workload_names[w]);
		return ST_EXIT_USAGE;
	}
	if (o->ops) {
		fprintf(stderr, "lfpool-stress: --procs runs for --duration; --ops is not supported with it\n");
		return ST_EXIT_USAGE;
	}
	if ((long)P * T > 65535 || P > MAX_PROCS) {
		fprintf(stderr, "lfpool-stress: --procs %d x %d threads: at most 65535 threads and %d processes\n",
			P, T, MAX_PROCS);
		return ST_EXIT_USAGE;
	}
	if (o->backend != BE_POOL && o->backend != BE_CACHED) {
		fprintf(stderr, "lfpool-stress: --procs runs lfpool's shared-memory pool only\n");
		return ST_EXIT_USAGE;
	}
	size_t cap = o->blocks ? o->blocks : (size_t)P * (size_t)T * (size_t)(2 * o->batch + ST_RING + 64);
	if (!o->blocks && cap < 16384)
		cap = 16384;
	snprintf(seg_name, sizeof seg_name, "/lfpool-stress-%d", (int)getpid());
	lfp_shm_unlink(seg_name);
	lfp_shm_config_t cfg = {
		.block_size = o->block_size,
		.block_count = cap,
		.max_participants = (unsigned)P + 4,
		.flags = o->backend == BE_POOL ? LFP_SHM_NOCACHE : 0u,
	};
	lfp_shm_t *shm;
	int numa_failures = 0;
	if (o->policy == POL_NUMA) {
		/* A memfd whose pages are bound to NUMA node 0 before the segment
		 * is laid out in it; workers attach through the inherited fd. */
		seg_fd = memfd_create("lfpool-stress", 0);
		int brc = seg_fd >= 0 ? lfp_numa_bind_fd(seg_fd, 0, 0) : -errno;
		if (brc < 0) {
			fprintf(stderr, "lfpool-stress: binding the segment to NUMA node 0 failed: %s; "
				"unbound (counted in numa_failures)\n", strerror(-brc));
			numa_failures++;
		}
		snprintf(seg_name, sizeof seg_name, "memfd:lfpool-stress");
		shm = seg_fd >= 0 ? lfp_shm_create_fd(seg_fd, &cfg) : NULL;
	} else {
		shm = lfp_shm_create(seg_name, &cfg, 0600);
	}
	if (shm == NULL) {
		fprintf(stderr, "lfpool-stress: creating segment %s failed: %s (%s)\n", seg_name, strerror(errno),
			lfp_shm_last_error() ? lfp_shm_last_error() : "?");
		seg_name[0] = 0;
		return ST_EXIT_ERROR;
	}
	atexit(unlink_segment);
	size_t csize = sizeof(struct procs_ctl) + (size_t)P * sizeof(struct slot_ctl);
	struct procs_ctl *c = mmap(NULL, csize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (c == MAP_FAILED) {
		fprintf(stderr, "lfpool-stress: control page: %s\n", strerror(errno));
		return ST_EXIT_ERROR;
	}
	memset(c, 0, csize);
	lfp_init32(&c->stop, 0);
	c->nprocs = (uint32_t)P;
	c->threads = (uint32_t)T;
	if (!o->quiet)
		fprintf(stderr, "procs: %d workers x %d threads on segment %s (%zu blocks of %zu B, %s), "
			"workload %s, %s%g s, seed %llu\n", P, T, seg_name, cap, o->block_size,
			o->backend == BE_POOL ? "no thread caches" : "thread caches", st_workload_names[w],
			o->kill_every > 0 ? "kill every " : "", o->kill_every > 0 ? o->kill_every : o->duration,
			(unsigned long long)o->seed);
	for (int i = 0; i < P; i++)
		if (spawn(o, c, i, w, cap) < 0) {
			fprintf(stderr, "lfpool-stress: fork: %s\n", strerror(errno));
			return ST_EXIT_ERROR;
		}

	uint64_t seed = o->seed;
	double t0 = now_s(), next_kill = t0 + o->kill_every, next_tick = t0 + 1;
	bool progress = o->progress == 1 || (o->progress == -1 && !o->child && isatty(2));
	while (now_s() - t0 < o->duration && !hang) {
		pause_ms(5);
		double now = now_s();
		/* Reap workers that left on their own: always an error here. */
		int st;
		pid_t pid;
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
			for (int i = 0; i < P; i++)
				if (c->slot[i].pid == pid && c->slot[i].live) {
					c->slot[i].live = false;
					int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
					fprintf(stderr, "procs: worker %d (pid %d) ended early with status %d\n", i, (int)pid,
						code);
					if (code == ST_EXIT_HANG)
						hang++;
					else
						errors++;
					violations += lfp_load64_relaxed(&c->slot[i].violations); /* relaxed: reaped */
				}
		for (int i = 0; i < P; i++) {
			struct slot_ctl *s = &c->slot[i];
			uint64_t hb = lfp_load64_relaxed(&s->hb); /* relaxed: a gauge */
			if (!s->live)
				continue;
			if (hb != s->last_hb) {
				s->last_hb = hb;
				s->last_change = now;
			} else if (now - s->last_change > o->watchdog + 2) {
				fprintf(stderr, "HANG: worker %d (pid %d) made no progress for %.1f s\n", i, s->pid,
					now - s->last_change);
				hang++;
			}
		}
		if (o->kill_every > 0 && now >= next_kill && !hang) {
			next_kill = now + o->kill_every;
			int victim = (int)(st_splitmix(&seed) % (uint64_t)P);
			struct slot_ctl *s = &c->slot[victim];
			if (!s->live)
				continue;
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
			s->live = false;
			kills++;
			/* What it did before dying is lost except its gauges. */
			frees_lost += lfp_load64_relaxed(&s->frees); /* relaxed: reaped */
			violations += lfp_load64_relaxed(&s->violations); /* relaxed: reaped */
			lfp_store64_relaxed(&s->frees, 0); /* relaxed: the writer is dead */
			lfp_store64_relaxed(&s->violations, 0); /* relaxed: the writer is dead */
			lfp_store32_relaxed(&s->inc, lfp_load32_relaxed(&s->inc) + 1); /* relaxed: see file comment */
			lfp_shm_report_t rep = { 0 };
			int rrc = lfp_shm_recover(shm, &rep);
			if (rrc != 0 || rep.error || rep.unexplained ||
			    rep.free + rep.owned + rep.cached != rep.capacity) {
				fprintf(stderr, "VIOLATION recovery after killing worker %d: rc %d (%s), free %llu + "
					"owned %llu + cached %llu of %llu, unexplained %llu\n", victim, rrc,
					rep.error ? rep.error : "no error", (unsigned long long)rep.free,
					(unsigned long long)rep.owned, (unsigned long long)rep.cached,
					(unsigned long long)rep.capacity, (unsigned long long)rep.unexplained);
				violations++;
			}
			recovered += rep.reclaimed;
			if (spawn(o, c, victim, w, cap) < 0) {
				fprintf(stderr, "lfpool-stress: fork: %s\n", strerror(errno));
				errors++;
				break;
			}
		}
		if (progress && now >= next_tick) {
			uint64_t f = frees_lost;
			for (int i = 0; i < P; i++)
				f += lfp_load64_relaxed(&c->slot[i].frees); /* relaxed: a gauge */
			fprintf(stderr, "[%6.1fs] procs %d x %d  ops %llu  kills %llu  recovered %llu  violations %llu\n",
				now - t0, P, T, (unsigned long long)f, (unsigned long long)kills,
				(unsigned long long)recovered, (unsigned long long)violations);
			next_tick = now + 1;
		}
	}
	/* Stop, and wait for every worker to give its blocks back and leave. */
	lfp_store32_relaxed(&c->stop, 1); /* relaxed: a flag; each worker's exit carries its results */
	double deadline = now_s() + o->watchdog + 10;
	for (int i = 0; i < P; i++) {
		struct slot_ctl *s = &c->slot[i];
		if (!s->live)
			continue;
		int st = 0;
		pid_t got;
		while ((got = waitpid(s->pid, &st, WNOHANG)) == 0 && now_s() < deadline)
			pause_ms(5);
		if (got == 0) {
			fprintf(stderr, "HANG: worker %d (pid %d) did not finish within %.0f s of the stop\n", i,
				s->pid, o->watchdog + 10);
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
			hang++;
			continue;
		}
		s->live = false;
		int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		violations += lfp_load64_relaxed(&s->violations); /* relaxed: reaped */
		frees_done += lfp_load64_relaxed(&s->frees); /* relaxed: reaped */
		dead_stamps += lfp_load64_relaxed(&s->dead_stamps); /* relaxed: reaped */
		if (code == ST_EXIT_HANG)
			hang++;
		else if (code != ST_EXIT_OK && code != ST_EXIT_VIOLATION)
			errors++;
		if (code != ST_EXIT_OK && !o->quiet)
			fprintf(stderr, "procs: worker %d ended with status %d\n", i, code);
	}
	double wall = now_s() - t0;

	/* Every worker is gone: everything must be free, the region valid. */
	lfp_shm_report_t rep = { 0 };
	int irc = -1;
	if (!hang) {
		irc = lfp_shm_inspect(shm, LFP_SHM_RECOVER, &rep);
		/* Every kill was recovered at once, so nothing is left to reclaim
		 * unless a worker died on its own (counted in errors). */
		if (irc != 0 || rep.error || rep.free != rep.capacity || rep.validate != 0 ||
		    (rep.reclaimed && !errors)) {
			fprintf(stderr, "VIOLATION end: inspect rc %d (%s): %llu of %llu free, validate %d, "
				"dead %u, reclaimed %llu\n", irc, rep.error ? rep.error : "no error",
				(unsigned long long)rep.free, (unsigned long long)rep.capacity, rep.validate,
				rep.dead, (unsigned long long)rep.reclaimed);
			violations++;
		}
	}
	lfp_shm_detach(shm);
	unlink_segment();
	seg_name[0] = 0;
	if (seg_fd >= 0)
		close(seg_fd);
	seg_fd = -1;
	const char *result = hang ? "HANG" : violations ? "FAIL" : errors ? "ERROR" : "PASS";
	rc = hang ? ST_EXIT_HANG : violations ? ST_EXIT_VIOLATION : errors ? ST_EXIT_ERROR : ST_EXIT_OK;
	uint64_t ops = frees_done + frees_lost;
	fflush(stderr);
	printf("SUMMARY result=%s allocator=%s workload=%s threads=%d procs=%d policy=%s topology=real "
	       "pools=1 seconds=%.3f ops=%llu ops_per_s=%.0f cpu_ns_per_op=0 allocs=%llu frees=%llu alloc_fail=0 "
	       "violations=%llu hangs=%llu bind_failures=0 numa_failures=%d validate=%s kinds=- kills=%llu "
	       "recovered=%llu dead_stamps=%llu seed=%llu\n", result,
	       o->backend == BE_POOL ? "lfpool-shm" : "lfpool-shm-cached", st_workload_names[w], T, P,
	       o->policy == POL_NUMA ? "numa" : "none", wall,
	       (unsigned long long)ops, wall > 0 ? (double)ops / wall : 0.0, (unsigned long long)ops,
	       (unsigned long long)ops,
	       (unsigned long long)violations, (unsigned long long)hang, numa_failures,
	       irc == 0 && rep.validate == 0 ? "ok" : "FAILED", (unsigned long long)kills,
	       (unsigned long long)recovered, (unsigned long long)dead_stamps, (unsigned long long)o->seed);
	munmap(c, csize);
	return rc;
}

#endif /* ST_HAVE_SHM */
