/*
 * tests/shm_multi.c - 2 to 4 processes share one segment, each mapping it at
 * a different address, and pass blocks to each other.
 *
 *   shm_multi [--procs N] [--threads T] [--ops K] [--blocks B] [--nocache]
 *             [--seed S]
 *
 * The parent creates the segment and forks N children, one after the other.
 * Each child first covers, with PROT_NONE placeholders, every address range
 * where the parent or an earlier child mapped the segment, so the kernel
 * must place its mapping somewhere else; then it attaches, and (after a
 * start barrier) runs T threads of K random operations:
 * alloc (stamp the block LIVE with a unique owner/seq), free (check the stamp
 * first), send a block's index to another child over a pipe, or receive one
 * and adopt it (lfp_shm_adopt with the sender's id; check the sender's stamp,
 * restamp). Now and then a thread checks lfp_shm_owner() of a block it holds.
 * Then a barrier (pipes), every child drains its mailbox, frees what it holds
 * and detaches (which must report 0 blocks left).
 *
 * Checked: stamps (a block handed out twice, or a lost write across
 * mappings, shows up), ownership records, conservation (per child:
 * allocs + adopted = frees + sent; overall: sent = received), the mapping
 * addresses (all different), and at the end an exact inspect of the segment:
 * every block free, no participant left, lfp_pool_validate() clean.
 * Exit: 0 pass, 1 violation, 2 setup error, 3 watchdog.
 */
#include "../include/lfpool.h"
#include "lfp_test.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define MAX_PROCS 4
#define MAX_THREADS 4
#define HOLD 12
#define MAILBOX_CAP 16

struct msg {
	uint64_t index;
	int32_t from;       /* sender's participant id */
	uint32_t owner;     /* stamp owner */
	uint64_t seq;       /* stamp seq */
};

struct child_result {
	uint64_t allocs, frees, sent, received, fails;
	uint64_t base; /* where the child mapped the segment */
	int32_t slot;
	int32_t done;
};

static struct {
	unsigned procs, threads, ops, blocks;
	size_t seg_size;
	bool inproc;
	bool nocache;
	uint64_t seed;
	char name[64];
	int mail[MAX_PROCS][2];
	struct child_result *res; /* shared anonymous mapping */
	lfp_shm_t *shm;           /* the child's own handle */
	int me;
} g = { .procs = 2, .threads = 1, .ops = 20000, .blocks = 512 };

struct held {
	void *p;
	uint32_t owner;
	uint64_t seq;
};

struct worker {
	unsigned tid;
	lfpt_rng_t rng;
	struct held h[HOLD * 2];
	unsigned n;
	uint64_t seq;
	uint64_t allocs, frees, sent, received, fails;
};

static uint32_t owner_id(const struct worker *w)
{
	return (uint32_t)(g.me * MAX_THREADS + w->tid + 1);
}

static size_t bsize(void)
{
	return lfp_pool_block_size(lfp_shm_pool(g.shm));
}

static void do_alloc(struct worker *w)
{
	if (w->n >= HOLD)
		return;
	void *p = lfp_shm_alloc(g.shm);
	if (p == NULL) {
		LFPT_CHECK(errno == ENOMEM, "alloc: errno %d", errno);
		w->fails++;
		return;
	}
	w->allocs++;
	LFPT_CHECK(lfp_shm_owner(g.shm, p) == lfp_shm_self(g.shm), "fresh block owner %d",
		   lfp_shm_owner(g.shm, p));
	w->seq++;
	lfpt_stamp_claim(p, bsize(), owner_id(w), w->seq);
	w->h[w->n++] = (struct held){ p, owner_id(w), w->seq };
}

static struct held take_random(struct worker *w)
{
	unsigned k = (unsigned)lfpt_rng_below(&w->rng, w->n);
	struct held x = w->h[k];
	w->h[k] = w->h[--w->n];
	return x;
}

static void do_free(struct worker *w)
{
	if (w->n == 0)
		return;
	struct held x = take_random(w);
	lfpt_stamp_release(x.p, bsize(), x.owner, x.seq);
	int rc = lfp_shm_free(g.shm, x.p);
	LFPT_CHECK(rc == 0, "free: %d", rc);
	w->frees++;
}

static void do_send(struct worker *w)
{
	if (w->n == 0)
		return;
	unsigned to = 0; /* --inproc: one mailbox shared by the threads */
	if (!g.inproc) {
		to = (unsigned)lfpt_rng_below(&w->rng, g.procs - 1);
		if ((int)to >= g.me)
			to++;
		/* At most MAILBOX_CAP messages wait in a mailbox: a block
		 * in a message stays its sender's until adopted, and a child
		 * that is not running (or done) must not soak up the pool. */
		int queued = 0;
		if (ioctl(g.mail[to][1], FIONREAD, &queued) == 0 &&
		    queued >= (int)(MAILBOX_CAP * sizeof(struct msg)))
			return;
	}
	struct held x = take_random(w);
	struct msg m = { (uint64_t)lfp_shm_index(g.shm, x.p), lfp_shm_self(g.shm), x.owner, x.seq };
	ssize_t n = write(g.mail[to][1], &m, sizeof m);
	if (n != (ssize_t)sizeof m) {
		LFPT_CHECK(n < 0 && errno == EAGAIN, "mail write: %zd", n);
		w->h[w->n++] = x; /* mailbox full: keep it */
		return;
	}
	w->sent++;
}

static bool do_receive(struct worker *w)
{
	struct msg m;
	if (w->n >= HOLD * 2 - 1)
		return false;
	ssize_t n = read(g.mail[g.me][0], &m, sizeof m);
	if (n != (ssize_t)sizeof m) {
		LFPT_CHECK(n < 0 && errno == EAGAIN, "mail read: %zd", n);
		return false;
	}
	void *p = lfp_shm_ptr(g.shm, m.index);
	if (!LFPT_CHECK(p != NULL, "message index %" PRIu64, m.index))
		return false;
	int rc = lfp_shm_adopt(g.shm, p, m.from);
	LFPT_CHECK(rc == 0, "adopt from %d: %d", m.from, rc);
	w->seq++;
	lfpt_stamp_handoff(p, bsize(), m.owner, m.seq, owner_id(w), w->seq);
	w->h[w->n++] = (struct held){ p, owner_id(w), w->seq };
	w->received++;
	return true;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (unsigned i = 0; i < g.ops && !lfpt_should_stop(); i++) {
		unsigned r = (unsigned)lfpt_rng_below(&w->rng, 100);
		if (r < 40)
			do_alloc(w);
		else if (r < 70)
			do_free(w);
		else if (r < 80) /* receive more often than send: mailboxes stay short */
			do_send(w);
		else
			do_receive(w);
		if (r == 99 && w->n > 0) {
			struct held *x = &w->h[lfpt_rng_below(&w->rng, w->n)];
			LFPT_CHECK(lfp_shm_owner(g.shm, x->p) == lfp_shm_self(g.shm), "owner record");
			lfpt_stamp_check(x->p, bsize(), x->owner, x->seq, "spot check");
		}
		if ((i & 1023) == 0)
			lfpt_progress(1024);
	}
	return NULL;
}

static int child_main(int me, int done_w, int go_r)
{
	g.me = me;
	lfpt_watchdog_start(60);
	/* Placeholders over the ranges the parent and earlier children use
	 * (the parent's is mapped here anyway, inherited): our mapping cannot
	 * land on any of them. */
	void *pad[MAX_PROCS] = { NULL };
	for (int j = 0; j < me; j++) {
		pad[j] = mmap((void *)(uintptr_t)g.res[j].base, g.seg_size, PROT_NONE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (pad[j] == MAP_FAILED)
			pad[j] = NULL; /* something is there already: fine too */
	}
	lfp_shm_attach_opts_t o = { .flags = g.nocache ? LFP_SHM_NOCACHE : 0 };
	g.shm = lfp_shm_attach_ex(g.name, -1, &o);
	if (g.shm == NULL) {
		fprintf(stderr, "child %d: attach: %s (%s)\n", me, strerror(errno),
			lfp_shm_last_error() ? lfp_shm_last_error() : "-");
		return LFPT_EXIT_USAGE;
	}
	lfp_shm_info_t in;
	lfp_shm_info(g.shm, &in);
	g.res[me].base = (uint64_t)(uintptr_t)in.base;
	g.res[me].slot = lfp_shm_self(g.shm);
	for (unsigned p = 0; p < g.procs; p++) /* our mailbox only is read here */
		if ((int)p != me)
			close(g.mail[p][0]);

	/* Start barrier: everyone attached before anyone sends. */
	char c = 1;
	LFPT_CHECK(write(done_w, &c, 1) == 1, "attached");
	LFPT_CHECK(read(go_r, &c, 1) == 1, "start");

	struct worker *w = calloc(g.threads, sizeof *w);
	for (unsigned t = 0; t < g.threads; t++) {
		w[t].tid = t;
		lfpt_rng_init(&w[t].rng, g.seed, (uint64_t)me * MAX_THREADS + t);
	}
	if (g.threads == 1) {
		worker_main(&w[0]);
	} else {
		pthread_t tids[MAX_THREADS];
		for (unsigned t = 0; t < g.threads; t++)
			pthread_create(&tids[t], NULL, worker_main, &w[t]);
		for (unsigned t = 0; t < g.threads; t++)
			pthread_join(tids[t], NULL);
	}

	/* Barrier: every send is in a pipe before anyone drains. */
	LFPT_CHECK(write(done_w, &c, 1) == 1, "done");
	LFPT_CHECK(read(go_r, &c, 1) == 1, "go");
	for (unsigned p = 0; p < g.procs; p++)
		close(g.mail[p][1]);
	while (do_receive(&w[0]))
		while (w[0].n > HOLD)
			do_free(&w[0]);
	struct child_result *r = &g.res[me];
	for (unsigned t = 0; t < g.threads; t++) {
		while (w[t].n > 0)
			do_free(&w[t]);
		r->allocs += w[t].allocs;
		r->frees += w[t].frees;
		r->sent += w[t].sent;
		r->received += w[t].received;
		r->fails += w[t].fails;
	}
	LFPT_CHECK(r->allocs + r->received == r->frees + r->sent,
		   "child %d: allocs %" PRIu64 " + received %" PRIu64 " != frees %" PRIu64
		   " + sent %" PRIu64, me, r->allocs, r->received, r->frees, r->sent);
	/* Last barrier: what we sent stays ours until its receiver adopted it,
	 * so nobody leaves before everyone has drained. */
	LFPT_CHECK(write(done_w, &c, 1) == 1, "drained");
	LFPT_CHECK(read(go_r, &c, 1) == 1, "leave");
	int left = lfp_shm_detach(g.shm);
	LFPT_CHECK(left == 0, "child %d left %d blocks owned at detach", me, left);
	for (int j = 0; j < me; j++)
		if (pad[j] != NULL)
			munmap(pad[j], g.seg_size);
	free(w);
	r->done = 1;
	lfpt_watchdog_stop();
	return lfpt_exit_status();
}

/* --inproc (for ThreadSanitizer, which cannot follow fork): one process,
 * one handle, T worker threads passing blocks through one mailbox, and a
 * thread that keeps running exact inspections and recoveries meanwhile, so
 * the gate's stop-the-world handshake runs against live threads. */
static lfp_atomic_u32 inproc_stop;

static void *recoverer_main(void *arg)
{
	(void)arg;
	unsigned rounds = 0;
	while (!lfp_load32_relaxed(&inproc_stop)) { /* relaxed: a stop hint */
		lfp_shm_report_t r = { 0 };
		int rc = rounds % 2 ? lfp_shm_recover(g.shm, &r) : lfp_shm_inspect(g.shm, LFP_SHM_EXACT, &r);
		LFPT_CHECK(rc == 0, "recover/inspect while running: %d (%s)", rc, r.error ? r.error : "-");
		LFPT_CHECK(r.dead == 0 && r.orphans == 0 && r.unexplained == 0 && r.reclaimed == 0,
			   "a live process must look healthy: dead %u orphans %" PRIu64 " reclaimed %" PRIu64,
			   r.dead, r.orphans, r.reclaimed);
		LFPT_CHECK(r.free + r.owned + r.cached == r.capacity, "exact count while running");
		rounds++;
	}
	printf("  recoverer: %u exact counts/recoveries while the workers ran\n", rounds);
	return NULL;
}

static int inproc_main(void)
{
	lfp_shm_config_t cfg = { .block_size = 64, .block_count = g.blocks, .cache_size = 8,
				 .flags = g.nocache ? LFP_SHM_NOCACHE : 0 };
	g.shm = lfp_shm_create(g.name, &cfg, 0);
	lfp_shm_unlink(g.name);
	if (g.shm == NULL || pipe2(g.mail[0], O_NONBLOCK) != 0)
		return LFPT_EXIT_USAGE;
	g.me = 0;
	struct worker *w = calloc(g.threads, sizeof *w);
	pthread_t tids[MAX_THREADS], rec;
	for (unsigned t = 0; t < g.threads; t++) {
		w[t].tid = t;
		lfpt_rng_init(&w[t].rng, g.seed, t);
		pthread_create(&tids[t], NULL, worker_main, &w[t]);
	}
	pthread_create(&rec, NULL, recoverer_main, NULL);
	for (unsigned t = 0; t < g.threads; t++)
		pthread_join(tids[t], NULL);
	lfp_store32_relaxed(&inproc_stop, 1); /* relaxed: a stop hint; join orders the rest */
	pthread_join(rec, NULL);
	while (do_receive(&w[0]))
		while (w[0].n > HOLD)
			do_free(&w[0]);
	uint64_t a = 0, f = 0, sent = 0, recv = 0;
	for (unsigned t = 0; t < g.threads; t++) {
		while (w[t].n > 0)
			do_free(&w[t]);
		a += w[t].allocs;
		f += w[t].frees;
		sent += w[t].sent;
		recv += w[t].received;
	}
	printf("  %u threads: allocs %" PRIu64 " frees %" PRIu64 " sent %" PRIu64 " received %" PRIu64 "\n",
	       g.threads, a, f, sent, recv);
	LFPT_CHECK(a + recv == f + sent && sent == recv, "conservation");
	LFPT_CHECK(lfp_shm_cache_flush(g.shm) >= 0, "flush");
	lfp_shm_report_t r = { 0 };
	int rc = lfp_shm_inspect(g.shm, LFP_SHM_EXACT, &r);
	/* Other threads' caches were flushed when they exited. */
	LFPT_CHECK(rc == 0 && r.free == g.blocks && r.validate == 0,
		   "at the end: rc %d free %" PRIu64 " of %u validate %d", rc, r.free, g.blocks,
		   r.validate);
	LFPT_CHECK(lfp_shm_detach(g.shm) == 0, "detach");
	free(w);
	lfpt_watchdog_stop();
	printf("shm_multi --inproc: %s (seed %" PRIu64 ")\n", lfpt_violations() ? "FAIL" : "PASS",
	       g.seed);
	return lfpt_exit_status();
}

static pid_t g_pids[MAX_PROCS];

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "WATCHDOG: shm_multi hung after 90 s; killing the children\n";
	if (write(2, msg, sizeof msg - 1) < 0) {
	}
	for (unsigned p = 0; p < MAX_PROCS; p++)
		if (g_pids[p] > 0)
			kill(g_pids[p], SIGKILL);
	shm_unlink(g.name);
	_exit(LFPT_EXIT_WATCHDOG);
}

static void usage(const char *prog)
{
	fprintf(stderr, "usage: %s [--procs 2..4] [--threads 1..4] [--ops K] [--blocks B] "
			"[--nocache] [--inproc] [--seed S]\n", prog);
	exit(LFPT_EXIT_USAGE);
}

int main(int argc, char **argv)
{
	const char *seed_arg = NULL;
	for (int i = 1; i < argc; i++) {
		uint64_t v = 0;
		bool val = i + 1 < argc;
		if (!strcmp(argv[i], "--procs") && val && lfpt_parse_u64(argv[++i], &v) && v >= 2 &&
		    v <= MAX_PROCS)
			g.procs = (unsigned)v;
		else if (!strcmp(argv[i], "--threads") && val && lfpt_parse_u64(argv[++i], &v) &&
			 v >= 1 && v <= MAX_THREADS)
			g.threads = (unsigned)v;
		else if (!strcmp(argv[i], "--ops") && val && lfpt_parse_u64(argv[++i], &v) && v > 0 &&
			 v < 100000000)
			g.ops = (unsigned)v;
		else if (!strcmp(argv[i], "--blocks") && val && lfpt_parse_u64(argv[++i], &v) &&
			 v >= 16 && v < 10000000)
			g.blocks = (unsigned)v;
		else if (!strcmp(argv[i], "--nocache"))
			g.nocache = true;
		else if (!strcmp(argv[i], "--inproc"))
			g.inproc = true;
		else if (!strcmp(argv[i], "--seed") && val)
			seed_arg = argv[++i];
		else
			usage(argv[0]);
	}
	g.seed = lfpt_seed_pick("shm_multi", seed_arg);
	printf("shm_multi: %u processes x %u threads x %u ops, %u blocks, %s\n", g.procs, g.threads,
	       g.ops, g.blocks, g.nocache ? "no cache" : "thread caches");
	snprintf(g.name, sizeof g.name, "/lfpt-multi-%d", (int)getpid());
	if (g.inproc) {
		lfpt_watchdog_start(90);
		return inproc_main();
	}
	/* The forking parent stays single-threaded (a watchdog thread alive
	 * at fork() can leave a lock taken in a child, ASan's allocator's for
	 * one): alarm() instead, whose handler kills the children. */
	signal(SIGALRM, on_alarm);
	alarm(90);

	lfp_shm_config_t cfg = { .block_size = 64, .block_count = g.blocks,
				 .flags = g.nocache ? LFP_SHM_NOCACHE : 0, .cache_size = 8 };
	lfp_shm_t *shm = lfp_shm_create(g.name, &cfg, 0);
	if (shm == NULL) {
		fprintf(stderr, "create %s: %s\n", g.name, strerror(errno));
		return LFPT_EXIT_USAGE;
	}
	lfp_shm_info_t pinfo;
	lfp_shm_info(shm, &pinfo);
	g.seg_size = pinfo.map_size;
	g.res = mmap(NULL, sizeof(struct child_result) * MAX_PROCS, PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int done[2], go[MAX_PROCS][2];
	if (g.res == MAP_FAILED || pipe(done)) {
		lfp_shm_unlink(g.name);
		return LFPT_EXIT_USAGE;
	}
	for (unsigned p = 0; p < g.procs; p++)
		if (pipe2(g.mail[p], O_NONBLOCK) != 0 || pipe(go[p]) != 0) {
			lfp_shm_unlink(g.name);
			return LFPT_EXIT_USAGE;
		}
	pid_t *pids = g_pids;
	for (unsigned p = 0; p < g.procs; p++) {
		fflush(NULL);
		pids[p] = fork();
		if (pids[p] == 0) {
			close(done[0]);
			_exit(child_main((int)p, done[1], go[p][0]));
		}
		if (pids[p] < 0) {
			perror("fork");
			for (unsigned q = 0; q < p; q++)
				kill(pids[q], SIGKILL);
			lfp_shm_unlink(g.name);
			return LFPT_EXIT_USAGE;
		}
		/* The next child must know where this one mapped it. */
		char a;
		if (!LFPT_CHECK(read(done[0], &a, 1) == 1, "child %u did not attach", p))
			break;
	}
	close(done[1]);
	/* Start barrier: once every child has attached the name can go (the
	 * mappings stay), so nothing is left behind even if we hang. */
	unsigned got = 0;
	char c = 1;
	lfp_shm_unlink(g.name);
	for (unsigned p = 0; p < g.procs; p++)
		LFPT_CHECK(write(go[p][1], &c, 1) == 1, "start");
	/* End barrier: every send is in a pipe before anyone drains. */
	got = 0;
	while (got < g.procs && read(done[0], &c, 1) == 1)
		got++;
	LFPT_CHECK(got == g.procs, "only %u of %u children reached the barrier", got, g.procs);
	for (unsigned p = 0; p < g.procs; p++)
		LFPT_CHECK(write(go[p][1], &c, 1) == 1, "go");
	got = 0;
	while (got < g.procs && read(done[0], &c, 1) == 1)
		got++;
	LFPT_CHECK(got == g.procs, "only %u of %u children drained", got, g.procs);
	for (unsigned p = 0; p < g.procs; p++)
		LFPT_CHECK(write(go[p][1], &c, 1) == 1, "leave");
	for (unsigned p = 0; p < g.procs; p++) {
		int st;
		waitpid(pids[p], &st, 0);
		LFPT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %u: status 0x%x", p, st);
	}

	lfp_shm_info_t me;
	lfp_shm_info(shm, &me);
	uint64_t sent = 0, received = 0, allocs = 0;
	for (unsigned p = 0; p < g.procs; p++) {
		struct child_result *r = &g.res[p];
		LFPT_CHECK(r->done, "child %u did not finish", p);
		LFPT_CHECK(r->base != (uint64_t)(uintptr_t)me.base, "child %u mapped at the parent's address", p);
		for (unsigned q = 0; q < p; q++)
			LFPT_CHECK(r->base != g.res[q].base, "children %u and %u at one address", p, q);
		sent += r->sent;
		received += r->received;
		allocs += r->allocs;
		printf("  child %u: slot %d at %#" PRIx64 ": allocs %" PRIu64 " frees %" PRIu64
		       " sent %" PRIu64 " received %" PRIu64 " empty %" PRIu64 "\n",
		       p, r->slot, r->base, r->allocs, r->frees, r->sent, r->received, r->fails);
	}
	LFPT_CHECK(sent == received, "sent %" PRIu64 " != received %" PRIu64, sent, received);
	LFPT_CHECK(sent > 0 && allocs > 0, "the run exchanged nothing");

	lfp_shm_report_t rep = { 0 };
	int rc = lfp_shm_inspect(shm, LFP_SHM_EXACT, &rep);
	LFPT_CHECK(rc == 0, "inspect: %d (%s)", rc, rep.error ? rep.error : "-");
	LFPT_CHECK(rep.free == g.blocks, "free %" PRIu64 " of %u", rep.free, g.blocks);
	LFPT_CHECK(rep.live == 1 && rep.dead == 0 && rep.departed == 0,
		   "participants: live %u dead %u departed %u", rep.live, rep.dead, rep.departed);
	LFPT_CHECK(rep.validate == 0, "validate %d", rep.validate);
	LFPT_CHECK(rep.orphans == 0 && rep.unexplained == 0, "orphans %" PRIu64, rep.orphans);
	lfp_shm_detach(shm);
	alarm(0);
	printf("shm_multi: %s (seed %" PRIu64 ")\n", lfpt_violations() ? "FAIL" : "PASS", g.seed);
	return lfpt_exit_status();
}
