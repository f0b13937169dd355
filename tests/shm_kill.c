/*
 * tests/shm_kill.c - four processes hammer one segment; one is SIGKILLed at
 * a random instant; the survivors finish; recovery must restore the exact
 * accounting. Repeated --reps times, each repetition with its own seed.
 *
 *   shm_kill [--reps R] [--procs N] [--ops K] [--seed S] [--stat PATH]
 *
 * One repetition:
 *   1. the parent creates a segment (256 blocks; the per-thread cache size
 *      drawn from {none, 4, 8, 16}) and forks N workers; each attaches
 *      (after a dummy mapping of its own size, so addresses differ) and
 *      reports its participant id;
 *   2. workers run K random operations: alloc (stamped), free (stamp
 *      checked), send a block to another worker (a message on a pipe with
 *      the sender's id and stamp), receive + adopt (stamp checked), cache
 *      flush. They count progress in shared memory;
 *   3. the parent draws a victim and a target operation count, waits until
 *      the victim's progress passes it, spins a random extra moment, and
 *      SIGKILLs it: the kill lands at an arbitrary instruction of
 *      whatever the victim is doing (often inside alloc/free/refill/flush);
 *   4. recovery: drawn per repetition, either right away while the survivors
 *      keep running (they then wait at their next shared-stack operation),
 *      with the victim reaped or still a zombie, or only after the
 *      survivors finish; on some repetitions through the CLI
 *      (lfpool-stat --recover) instead of the API;
 *   5. the survivors finish, flush their caches, report how many blocks they
 *      hold, and wait. The parent recovers (again) and checks exactly:
 *        free + owned by live participants == capacity,
 *        each survivor's recorded holding == what it says it holds,
 *        no dead participant, no orphan, no unexplained block,
 *        lfp_pool_validate() clean;
 *   6. the survivors free everything (stamps checked) and detach; the
 *      segment must be entirely free.
 * A worker that receives a message from the victim may find the block
 * reclaimed (adopt: -EALREADY or -EPERM): allowed for the victim only.
 * A block that comes back from the victim still carries its LIVE stamp:
 * allowed for the victim's stamps only.
 *
 * Exit: 0 pass, 1 violation, 2 setup error, 3 watchdog (SIGALRM: the parent
 * kills the workers and unlinks the segment first).
 */
#include "../include/lfpool.h"
#include "lfp_test.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#define MAX_PROCS 8
#define HOLD 24
#define BLOCKS 256

struct msg {
	uint64_t index;
	int32_t from;
	uint32_t owner;
	uint64_t seq;
};

/* Shared anonymous memory: parent <-> workers. */
struct shared {
	lfp_atomic_u64 progress[MAX_PROCS]; /* relaxed: a position, orders nothing */
	lfp_atomic_u32 victim_pid;          /* relaxed: read only after recovery (HB via the pool) */
	int32_t victim;                     /* written before the start barrier */
	uint64_t victim_cpu_ns;             /* likewise: 0, or the victim's own SIGKILL timer */
	int32_t slot[MAX_PROCS];            /* written before the start barrier */
	int32_t held[MAX_PROCS];            /* written before the done message */
};

static struct {
	unsigned procs, ops, reps;
	uint64_t seed;
	const char *stat;
	char name[64];
	struct shared *sh;
	pid_t pids[MAX_PROCS];
	int mail[MAX_PROCS][2];
	/* worker */
	lfp_shm_t *shm;
	int me;
	uint64_t stats_dead_in_flight, stats_orphans, stats_owned, stats_cached, stats_dropped;
} g = { .procs = 4, .ops = 5000, .reps = 20 };

/* ---- cleanup on any exit of the parent ----------------------------------- */

static volatile sig_atomic_t have_children;

static void kill_children(void)
{
	for (unsigned p = 0; p < g.procs; p++)
		if (g.pids[p] > 0)
			kill(g.pids[p], SIGKILL);
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "WATCHDOG: shm_kill repetition hung; killing workers\n";
	if (write(2, msg, sizeof msg - 1) < 0) {
	}
	if (have_children)
		kill_children();
	shm_unlink(g.name); /* a system call; fine in practice from a handler */
	_exit(LFPT_EXIT_WATCHDOG);
}

/* ---- worker ------------------------------------------------------------------ */

struct held {
	void *p;
	uint32_t owner;
	uint64_t seq;
};

static size_t bsize(void) { return lfp_pool_block_size(lfp_shm_pool(g.shm)); }

static uint32_t victim_pid(void)
{
	return lfp_load32_relaxed(&g.sh->victim_pid); /* relaxed: see struct shared */
}

static void worker(int me, uint64_t seed, int ready_w, int done_w, int go_r)
{
	lfpt_rng_t rng;
	struct held h[HOLD * 2];
	unsigned n = 0;
	uint64_t seq = 0;
	uint32_t my_owner = (uint32_t)getpid();

	g.me = me;
	alarm(0);
	lfpt_rng_init(&rng, seed, (uint64_t)me + 1);
	size_t dummy = (size_t)(me + 1) * 5 * 4096;
	void *pad = mmap(NULL, dummy, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	g.shm = lfp_shm_attach(g.name);
	if (g.shm == NULL) {
		fprintf(stderr, "worker %d: attach: %s\n", me, strerror(errno));
		_exit(LFPT_EXIT_USAGE);
	}
	g.sh->slot[me] = lfp_shm_self(g.shm);
	char c = 1;
	if (write(ready_w, &c, 1) != 1 || read(go_r, &c, 1) != 1)
		_exit(LFPT_EXIT_USAGE);
	unsigned hold = 4 + (unsigned)lfpt_rng_below(&rng, HOLD - 4);
	if (me == g.sh->victim && g.sh->victim_cpu_ns) {
		/* The kernel sends SIGKILL after this much of our CPU time: an
		 * instant uniform over the instructions we execute, whatever
		 * the scheduler does to the parent. */
		timer_t t;
		struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGKILL };
		struct itimerspec its = { .it_value = { 0, (long)g.sh->victim_cpu_ns } };
		if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &t) != 0 ||
		    timer_settime(t, 0, &its, NULL) != 0)
			_exit(LFPT_EXIT_USAGE);
	}

	/* The victim does not stop after its operations: it goes on until the
	 * kill, which therefore always lands in the middle of its work. In
	 * that extra phase it only allocates, frees and flushes (no mailbox
	 * system calls), so most of its time is spent in the library. */
	for (unsigned i = 0; !lfpt_should_stop(); i++) {
		bool extra = i >= g.ops;
		if (extra && me != g.sh->victim)
			break;
		lfp_store64_relaxed(&g.sh->progress[me], i); /* relaxed: a position */
		g.sh->held[me] = (int32_t)n; /* for the parent's log line only */
		unsigned r = (unsigned)lfpt_rng_below(&rng, 100);
		if (r < 40 && n < hold) {
			void *p = lfp_shm_alloc(g.shm);
			if (p == NULL) {
				LFPT_CHECK(errno == ENOMEM, "alloc errno %d", errno);
				continue;
			}
			lfpt_stamp_t st = lfpt_stamp_read(p);
			if (st.canary == LFPT_CANARY_LIVE && st.owner == victim_pid())
				lfpt_stamp_write(p, bsize(), LFPT_CANARY_FREE, 0, 0); /* reclaimed */
			lfpt_stamp_claim(p, bsize(), my_owner, ++seq);
			h[n++] = (struct held){ p, my_owner, seq };
		} else if (r < 70 && n > 0) {
			unsigned k = (unsigned)lfpt_rng_below(&rng, n);
			struct held x = h[k];
			h[k] = h[--n];
			lfpt_stamp_release(x.p, bsize(), x.owner, x.seq);
			int rc = lfp_shm_free(g.shm, x.p);
			LFPT_CHECK(rc == 0, "free: %d", rc);
		} else if (r < 78 && n > 0 && !extra) {
			unsigned to = (unsigned)lfpt_rng_below(&rng, g.procs - 1);
			if ((int)to >= me)
				to++;
			/* Few messages per mailbox: a block in a message is
			 * still its sender's, and a worker that is done (or not
			 * scheduled) must not soak up the pool. */
			int queued = 0;
			if (ioctl(g.mail[to][1], FIONREAD, &queued) == 0 &&
			    queued >= (int)(16 * sizeof(struct msg)))
				continue;
			unsigned k = (unsigned)lfpt_rng_below(&rng, n);
			struct msg m = { (uint64_t)lfp_shm_index(g.shm, h[k].p), lfp_shm_self(g.shm),
					 h[k].owner, h[k].seq };
			if (write(g.mail[to][1], &m, sizeof m) == (ssize_t)sizeof m)
				h[k] = h[--n];
		} else if (r < 97 && n < HOLD * 2 - 1 && !extra) {
			struct msg m;
			if (read(g.mail[me][0], &m, sizeof m) != (ssize_t)sizeof m)
				continue;
			void *p = lfp_shm_ptr(g.shm, m.index);
			int rc = lfp_shm_adopt(g.shm, p, m.from);
			if (rc != 0) {
				/* Only a dead sender's block may have been
				 * reclaimed under the message. */
				LFPT_CHECK((rc == -EALREADY || rc == -EPERM) && m.owner == victim_pid(),
					   "adopt from %d (stamp owner %u, victim %u): %d", m.from,
					   m.owner, victim_pid(), rc);
				continue;
			}
			lfpt_stamp_handoff(p, bsize(), m.owner, m.seq, my_owner, ++seq);
			h[n++] = (struct held){ p, my_owner, seq };
		} else if (r >= 97 || (extra && r >= 78)) {
			int rc = lfp_shm_cache_flush(g.shm);
			LFPT_CHECK(rc >= 0, "flush %d", rc);
		}
	}
	/* Phase A: every worker has stopped sending; then drain our mailbox
	 * (a block in a message is still its sender's until adopted). The
	 * byte says who we are (a victim that got this far is ignored). */
	char v = (char)(me | (lfpt_violations() ? 0x40 : 0));
	if (write(done_w, &v, 1) != 1 || read(go_r, &c, 1) != 1)
		_exit(LFPT_EXIT_USAGE);
	struct msg m;
	while (read(g.mail[me][0], &m, sizeof m) == (ssize_t)sizeof m) {
		void *p = lfp_shm_ptr(g.shm, m.index);
		int rc = lfp_shm_adopt(g.shm, p, m.from);
		if (rc != 0) {
			LFPT_CHECK(m.owner == victim_pid(), "drain adopt from %d: %d", m.from, rc);
			continue;
		}
		lfpt_stamp_handoff(p, bsize(), m.owner, m.seq, my_owner, ++seq);
		if (n < HOLD * 2) {
			h[n++] = (struct held){ p, my_owner, seq };
		} else {
			lfpt_stamp_release(p, bsize(), my_owner, seq);
			LFPT_CHECK(lfp_shm_free(g.shm, p) == 0, "drain free");
		}
	}
	/* Phase B: empty our cache so the parent can compare holdings
	 * exactly, report them, and wait while it checks. */
	LFPT_CHECK(lfp_shm_cache_flush(g.shm) >= 0, "final flush");
	g.sh->held[me] = (int32_t)n;
	v = (char)(me | (lfpt_violations() ? 0x40 : 0));
	if (write(done_w, &v, 1) != 1 || read(go_r, &c, 1) != 1)
		_exit(LFPT_EXIT_USAGE);
	for (unsigned k = 0; k < n; k++) {
		lfpt_stamp_release(h[k].p, bsize(), h[k].owner, h[k].seq);
		int rc = lfp_shm_free(g.shm, h[k].p);
		LFPT_CHECK(rc == 0, "final free: %d", rc);
	}
	int left = lfp_shm_detach(g.shm);
	LFPT_CHECK(left == 0, "worker %d detached owning %d", me, left);
	munmap(pad, dummy);
	_exit(lfpt_exit_status());
}

/* ---- parent ---------------------------------------------------------------- */

static int run_cli(const char *args)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "%s %s %s >/dev/null", g.stat, args, g.name);
	fflush(NULL);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The final exact check with survivors holding their blocks. */
static void check_exact(lfp_shm_t *shm, unsigned victim, unsigned rep)
{
	lfp_shm_part_info_t parts[MAX_PROCS + 2];
	lfp_shm_report_t r = { .parts = parts, .parts_cap = MAX_PROCS + 2 };
	int rc = lfp_shm_inspect(shm, LFP_SHM_EXACT, &r);
	LFPT_CHECK(rc == 0, "rep %u: exact inspect %d (%s)", rep, rc, r.error ? r.error : "-");
	LFPT_CHECK(r.dead == 0 && r.departed == 0, "rep %u: dead %u departed %u after recovery",
		   rep, r.dead, r.departed);
	LFPT_CHECK(r.orphans == 0 && r.unexplained == 0, "rep %u: orphans %" PRIu64
		   " unexplained %" PRIu64, rep, r.orphans, r.unexplained);
	LFPT_CHECK(r.cached == 0, "rep %u: %" PRIu64 " cached after the survivors flushed", rep,
		   r.cached);
	LFPT_CHECK(r.free + r.owned == r.capacity,
		   "rep %u: free %" PRIu64 " + owned %" PRIu64 " != capacity %" PRIu64, rep, r.free,
		   r.owned, r.capacity);
	LFPT_CHECK(r.validate == 0, "rep %u: validate %d", rep, r.validate);
	uint64_t sum = 0;
	for (unsigned p = 0; p < g.procs; p++) {
		if (p == victim)
			continue;
		uint64_t owned = UINT64_MAX;
		for (size_t k = 0; k < r.parts_len && k < r.parts_cap; k++)
			if ((int)parts[k].id == g.sh->slot[p])
				owned = parts[k].owned;
		LFPT_CHECK(owned == (uint64_t)g.sh->held[p],
			   "rep %u: worker %u holds %d, the segment records %" PRIu64, rep, p,
			   g.sh->held[p], owned);
		sum += (uint64_t)g.sh->held[p];
	}
	LFPT_CHECK(sum == r.owned, "rep %u: survivors hold %" PRIu64 ", recorded %" PRIu64, rep, sum,
		   r.owned);
}

static void recover_api(lfp_shm_t *shm, unsigned rep, bool final)
{
	lfp_shm_part_info_t parts[MAX_PROCS + 2];
	lfp_shm_report_t r = { .parts = parts, .parts_cap = MAX_PROCS + 2 };
	int rc = lfp_shm_recover(shm, &r);
	LFPT_CHECK(rc == 0, "rep %u: recover %d (%s)", rep, rc, r.error ? r.error : "-");
	LFPT_CHECK(r.unexplained == 0, "rep %u: %" PRIu64 " unexplained blocks", rep, r.unexplained);
	for (size_t k = 0; k < r.parts_len && k < r.parts_cap; k++)
		if (parts[k].state == LFP_SHM_PART_DEAD) {
			g.stats_dead_in_flight += parts[k].in_flight > 0;
			g.stats_orphans += parts[k].orphans;
			g.stats_owned += parts[k].owned;
			g.stats_cached += parts[k].cached;
			printf("    recovered participant %u (pid %" PRId64 "): owned %" PRIu64
			       " cached %" PRIu64 " in flight %u (op %u) orphans %" PRIu64 "%s\n",
			       parts[k].id, parts[k].pid, parts[k].owned, parts[k].cached,
			       parts[k].in_flight, parts[k].last_op, parts[k].orphans,
			       final ? "" : " [while survivors ran]");
		}
}

/* One byte from each survivor: its index, 0x40 if it counted a violation.
 * A victim that finished its operations before the kill may have written
 * one too: it is skipped, so a phase never ends early. */
static void wait_survivors(int fd, unsigned victim, unsigned rep)
{
	bool seen[MAX_PROCS] = { false };
	unsigned got = 0;
	while (got + 1 < g.procs) {
		char v;
		if (!LFPT_CHECK(read(fd, &v, 1) == 1, "rep %u: a worker vanished", rep))
			return;
		unsigned who = (unsigned)v & 0x3f;
		LFPT_CHECK(!(v & 0x40), "rep %u: worker %u counted violations", rep, who);
		if (who == victim || who >= g.procs || seen[who])
			continue;
		seen[who] = true;
		got++;
	}
}

static int one_rep(unsigned rep, uint64_t seed)
{
	lfpt_rng_t rng;
	lfpt_rng_init(&rng, seed, 0);
	static const unsigned caches[] = { 0, 4, 8, 16 };
	unsigned cache = caches[lfpt_rng_below(&rng, 4)];
	unsigned victim = (unsigned)lfpt_rng_below(&rng, g.procs);
	unsigned target = (unsigned)lfpt_rng_below(&rng, g.ops + g.ops / 2);
	unsigned extra = (unsigned)lfpt_rng_below(&rng, 4000);
	/* Half the reps: the victim's own CPU-time timer sends the SIGKILL. */
	uint64_t cpu_ns = lfpt_rng_below(&rng, 2) ? 100000 + lfpt_rng_below(&rng, 5000000) : 0;
	unsigned mode = (unsigned)lfpt_rng_below(&rng, 4); /* 0,1: concurrent; 2,3: after */
	bool reap_first = lfpt_rng_below(&rng, 2);
	bool via_cli = g.stat != NULL && rep % 4 == 3;
	uint64_t v0 = lfpt_violations();

	snprintf(g.name, sizeof g.name, "/lfpt-kill-%d-%u", (int)getpid(), rep);
	char when[64];
	if (cpu_ns)
		snprintf(when, sizeof when, "after %" PRIu64 " us of its CPU time", cpu_ns / 1000);
	else
		snprintf(when, sizeof when, "at op %u+%u", target, extra);
	printf("rep %u: seed=%" PRIu64 " cache=%u victim=%u %s, recovery %s%s%s\n", rep,
	       seed, cache, victim, when, mode < 2 ? "concurrent" : "after survivors",
	       mode < 2 ? (reap_first ? " (reaped)" : " (zombie)") : "", via_cli ? " via CLI" : "");
	fflush(stdout);
	lfp_shm_config_t cfg = { .block_size = 64, .block_count = BLOCKS, .cache_size = cache,
				 .flags = cache ? 0 : LFP_SHM_NOCACHE };
	lfp_shm_t *shm = lfp_shm_create(g.name, &cfg, 0);
	if (shm == NULL) {
		fprintf(stderr, "create: %s\n", strerror(errno));
		return LFPT_EXIT_USAGE;
	}
	memset(g.sh, 0, sizeof *g.sh);
	int ready[2], done[2], go[MAX_PROCS][2];
	if (pipe(ready) || pipe(done))
		return LFPT_EXIT_USAGE;
	for (unsigned p = 0; p < g.procs; p++)
		if (pipe(go[p]) || pipe2(g.mail[p], O_NONBLOCK))
			return LFPT_EXIT_USAGE;
	alarm(60);
	have_children = 1;
	for (unsigned p = 0; p < g.procs; p++) {
		fflush(NULL);
		g.pids[p] = fork();
		if (g.pids[p] == 0) {
			close(ready[0]);
			close(done[0]);
			worker((int)p, seed, ready[1], done[1], go[p][0]);
		}
		if (g.pids[p] < 0)
			return LFPT_EXIT_USAGE;
	}
	close(ready[1]);
	close(done[1]);
	char c = 1;
	for (unsigned p = 0; p < g.procs; p++)
		LFPT_CHECK(read(ready[0], &c, 1) == 1, "ready");
	g.sh->victim = (int32_t)victim; /* before the start: the pipe orders it */
	g.sh->victim_cpu_ns = cpu_ns;
	for (unsigned p = 0; p < g.procs; p++)
		LFPT_CHECK(write(go[p][1], &c, 1) == 1, "start");

	/* The kill, at a random point of the victim's work. */
	lfp_store32_relaxed(&g.sh->victim_pid, (uint32_t)g.pids[victim]); /* relaxed: see struct */
	if (cpu_ns == 0) {
		while (lfp_load64_relaxed(&g.sh->progress[victim]) < target) /* relaxed: a position */
			sched_yield();
		for (unsigned k = 0; k < extra; k++)
			lfp_cpu_relax();
		kill(g.pids[victim], SIGKILL);
	} else { /* its timer does it; wait for the death without reaping */
		siginfo_t si;
		waitid(P_PID, (id_t)g.pids[victim], &si, WEXITED | WNOWAIT);
	}
	printf("    killed worker %u at op %" PRIu64 " holding about %d blocks\n", victim,
	       lfp_load64_relaxed(&g.sh->progress[victim]), g.sh->held[victim]); /* relaxed: a log */
	int st;
	if (mode >= 2 || reap_first) {
		waitpid(g.pids[victim], &st, 0);
		LFPT_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "victim status 0x%x", st);
	} else {
		siginfo_t si; /* dead but not reaped: a zombie */
		waitid(P_PID, (id_t)g.pids[victim], &si, WEXITED | WNOWAIT);
	}
	if (mode < 2) {
		if (via_cli)
			LFPT_CHECK(run_cli("--recover") == 0, "rep %u: lfpool-stat --recover", rep);
		else
			recover_api(shm, rep, false);
		if (!reap_first) {
			waitpid(g.pids[victim], &st, 0);
			LFPT_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "victim status 0x%x", st);
		}
	}
	g.pids[victim] = 0;

	/* Phase A: survivors stop sending. Blocks they mailed to the victim
	 * are still theirs: the parent adopts and frees those. */
	wait_survivors(done[0], victim, rep);
	struct msg m;
	while (read(g.mail[victim][0], &m, sizeof m) == (ssize_t)sizeof m) {
		void *p = lfp_shm_ptr(shm, m.index);
		int rc = lfp_shm_adopt(shm, p, m.from);
		LFPT_CHECK(rc == 0, "rep %u: adopt a block mailed to the victim: %d", rep, rc);
		if (rc == 0) {
			lfpt_stamp_release(p, lfp_pool_block_size(lfp_shm_pool(shm)), m.owner, m.seq);
			LFPT_CHECK(lfp_shm_free(shm, p) == 0, "rep %u: free it", rep);
		}
	}
	LFPT_CHECK(lfp_shm_cache_flush(shm) >= 0, "parent flush");
	for (unsigned p = 0; p < g.procs; p++)
		if (p != victim)
			LFPT_CHECK(write(go[p][1], &c, 1) == 1, "go A");
	/* Phase B: they drained their mailboxes and report their holdings. */
	wait_survivors(done[0], victim, rep);
	if (g.stat != NULL && rep % 4 == 1 && mode >= 2) /* the CLI sees the dead one */
		LFPT_CHECK(run_cli("") == 1, "rep %u: lfpool-stat should report a dead participant",
			   rep);
	if (via_cli && mode >= 2)
		LFPT_CHECK(run_cli("--recover") == 0, "rep %u: lfpool-stat --recover", rep);
	else
		recover_api(shm, rep, true);
	check_exact(shm, victim, rep);

	/* Survivors free everything and leave. */
	for (unsigned p = 0; p < g.procs; p++)
		if (p != victim)
			LFPT_CHECK(write(go[p][1], &c, 1) == 1, "go");
	for (unsigned p = 0; p < g.procs; p++) {
		if (p == victim)
			continue;
		waitpid(g.pids[p], &st, 0);
		LFPT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "rep %u: survivor %u status 0x%x",
			   rep, p, st);
		g.pids[p] = 0;
	}
	have_children = 0;
	alarm(0);
	lfp_shm_report_t r = { 0 };
	int rc = lfp_shm_inspect(shm, LFP_SHM_EXACT, &r);
	LFPT_CHECK(rc == 0 && r.free == BLOCKS && r.live == 1 && r.validate == 0,
		   "rep %u: at the end rc %d free %" PRIu64 " live %u validate %d", rep, rc, r.free,
		   r.live, r.validate);
	lfp_shm_detach(shm);
	lfp_shm_unlink(g.name);
	close(ready[0]);
	close(done[0]);
	for (unsigned p = 0; p < g.procs; p++) {
		close(go[p][0]);
		close(go[p][1]);
		close(g.mail[p][0]);
		close(g.mail[p][1]);
	}
	if (lfpt_violations() != v0)
		printf("rep %u: FAIL (rerun: --seed %" PRIu64 " --reps 1)\n", rep, seed);
	return 0;
}

int main(int argc, char **argv)
{
	const char *seed_arg = NULL;
	for (int i = 1; i < argc; i++) {
		uint64_t v = 0;
		bool val = i + 1 < argc;
		if (!strcmp(argv[i], "--reps") && val && lfpt_parse_u64(argv[++i], &v) && v > 0 &&
		    v < 1000000)
			g.reps = (unsigned)v;
		else if (!strcmp(argv[i], "--procs") && val && lfpt_parse_u64(argv[++i], &v) &&
			 v >= 2 && v <= MAX_PROCS)
			g.procs = (unsigned)v;
		else if (!strcmp(argv[i], "--ops") && val && lfpt_parse_u64(argv[++i], &v) && v > 0 &&
			 v < 100000000)
			g.ops = (unsigned)v;
		else if (!strcmp(argv[i], "--seed") && val)
			seed_arg = argv[++i];
		else if (!strcmp(argv[i], "--stat") && val)
			g.stat = argv[++i];
		else {
			fprintf(stderr, "usage: %s [--reps R] [--procs N] [--ops K] [--seed S] "
					"[--stat lfpool-stat]\n", argv[0]);
			return LFPT_EXIT_USAGE;
		}
	}
	uint64_t seed = lfpt_seed_pick("shm_kill", seed_arg);
	signal(SIGALRM, on_alarm);
	signal(SIGPIPE, SIG_IGN);
	g.sh = mmap(NULL, sizeof *g.sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (g.sh == MAP_FAILED)
		return LFPT_EXIT_USAGE;
	for (unsigned rep = 0; rep < g.reps && !lfpt_should_stop(); rep++) {
		/* Rep 0 uses the seed itself, so --seed S --reps 1 reruns it. */
		uint64_t s = rep == 0 ? seed : lfpt_mix64(seed + rep);
		int rc = one_rep(rep, s);
		if (rc != 0) {
			kill_children();
			shm_unlink(g.name);
			printf("SUMMARY result=FAIL mode=kill reps=%u failed_rep=%u seed=%" PRIu64 "\n", g.reps, rep,
			       seed);
			return rc;
		}
	}
	printf("shm_kill: %u reps, %u processes x %u ops: victim killed inside a shared-stack operation "
	       "in %" PRIu64 " reps; reclaimed from victims: %" PRIu64 " owned, %" PRIu64
	       " cached, %" PRIu64 " in flight (orphans)\n",
	       g.reps, g.procs, g.ops, g.stats_dead_in_flight, g.stats_owned, g.stats_cached,
	       g.stats_orphans);
	printf("shm_kill: %s (seed %" PRIu64 ")\n", lfpt_violations() ? "FAIL" : "PASS", seed);
	/* The line `make stress` scripts parse, as lfpool-stress ends its runs. */
	printf("SUMMARY result=%s mode=kill reps=%u procs=%u ops=%u killed_in_op=%" PRIu64
	       " recovered_owned=%" PRIu64 " recovered_cached=%" PRIu64 " orphans=%" PRIu64
	       " violations=%" PRIu64 " seed=%" PRIu64 "\n",
	       lfpt_violations() ? "FAIL" : "PASS", g.reps, g.procs, g.ops, g.stats_dead_in_flight,
	       g.stats_owned, g.stats_cached, g.stats_orphans, lfpt_violations(), seed);
	return lfpt_exit_status();
}
