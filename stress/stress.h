/*
 * stress/stress.h - the stress harness's shared declarations.
 *
 * The harness is one program (lfpool-stress) made of:
 *   lfpool-stress.c  command line, single runs, drivers (sweep, compare,
 *                    self-test), output (progress, SUMMARY, JSON, CSV)
 *   topo.c           loading topologies (real, hwloc synthetic, XML),
 *                    describing them, binding threads
 *   plan.c           the placement planner: thread -> PU, pool
 *   workloads.c      the workloads and their verification
 *   backend.c        the allocators under test behind one small interface
 *   trace.c          malloc-lab trace loading
 *   procs.c          process mode on a shared-memory pool
 *
 * Verification (every run): each live block carries an ownership stamp in its
 * first 8 bytes (owner thread and a per-thread sequence number) and a canary,
 * derived from the stamp, in its last 8; both are checked before the block is
 * freed. A freed block is marked FREE first, and a block coming out of the
 * allocator must not carry a live owner's stamp with its matching canary, so
 * a block handed to two owners is caught on allocation as well as on free
 * (the allocator may reuse a free block's bytes; those never form a live
 * stamp+canary pair). Counters per thread
 * give conservation (allocations - frees = blocks held = 0 after a drain);
 * lfp_pool_validate() runs after every phase, when the pools are quiescent.
 * A watchdog turns a thread that stops making progress into a failure.
 */
#ifndef LFP_STRESS_H
#define LFP_STRESS_H

#include "../atomics/lfp_atomic.h"
#include <lfpool.h>

#include <hwloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ST_MAX_THREADS 4096
#define ST_MAX_PHASES 16
#define ST_MAX_POOLS 256
#define ST_MAX_SWEEP 64
#define ST_RING 256 /* handoff ring slots, a power of two */
#define ST_MAX_CACHES 64 /* pools a thread holds cache handles for (lfpool's limit) */

/* Exit codes, documented in docs/stress.md. */
enum {
	ST_EXIT_OK = 0,
	ST_EXIT_VIOLATION = 1,
	ST_EXIT_USAGE = 2,
	ST_EXIT_HANG = 3,
	ST_EXIT_ERROR = 4, /* setup failed (no memory, no topology, ...) */
	ST_EXIT_SKIP = 77, /* the requested workload cannot run here */
};

enum st_policy { POL_NONE, POL_COMPACT, POL_SCATTER, POL_NUMA, POL_COUNT };

enum st_workload {
	WL_HOT,     /* alloc, touch, free */
	WL_LIFO,    /* a batch out, back in reverse order */
	WL_RANDOM,  /* a batch out, back in random order */
	WL_HANDOFF, /* producers to consumers through SPSC rings */
	WL_BURST,   /* everyone allocates until empty, then drains */
	WL_SIZES,   /* mixed sizes through the front end */
	WL_TRACE,   /* malloc-lab trace replay */
	WL_CHAOS,   /* hot/lifo/random picked per step, blocks swapped between threads */
	WL_COUNT
};

enum st_backend {
	BE_POOL,   /* lfpool, lfp_pool_alloc/free */
	BE_CACHED, /* lfpool with the per-thread cache */
	BE_MALLOC, /* malloc/free: glibc, or a peer through LD_PRELOAD */
	BE_SHM,    /* a shared-memory pool (process mode workers) */
	BE_COUNT
};

extern const char *const st_policy_names[POL_COUNT];
extern const char *const st_workload_names[WL_COUNT];
extern const char *const st_backend_names[BE_COUNT];

/* ---- options ---------------------------------------------------------- */
struct st_opts {
	int threads[ST_MAX_SWEEP]; /* 0 = all PUs of the machine */
	int n_threads;
	enum st_workload phases[ST_MAX_PHASES];
	int n_phases;
	bool workload_mix;
	double duration;    /* seconds for the whole run (split over phases) */
	uint64_t ops;       /* pairs per thread per phase instead of duration */
	uint64_t seed;
	enum st_policy policy;
	const char *topology; /* synthetic description or XML file, or NULL */
	bool plan_only;
	enum st_backend backend;
	const char *compare;  /* comma list of backends/peers, or NULL */
	size_t block_size;
	size_t blocks;        /* per pool; 0 = automatic */
	int batch;
	bool checked;
	bool pool_stats;
	bool heap_bins;       /* sizes/trace: the front end with LFP_HEAP_BINS */
	const char *trace;
	int procs;
	double kill_every;
	int reps;
	const char *json;     /* "-" = stdout */
	const char *csv;
	double watchdog;
	int progress;         /* -1 auto (tty), 0 off, 1 on */
	bool self_test;
	bool stop_on_violation;
	bool quiet;
	const char *label;    /* name of this allocator in reports */
	const char *broken_bin;
	bool child;           /* run by a driver: no progress, result line only */
	bool inject_hang;     /* test of the watchdog: thread 0 stops in its first phase */
	size_t max_size;      /* sizes workload: largest request */
};

/* ---- topology and placement (topo.c, plan.c) ---------------------------- */
struct st_topo {
	hwloc_topology_t t;
	bool real;            /* this machine, not a synthetic/XML one */
	char source[256];     /* "this machine", the synthetic string, or the file */
};

int st_topo_load(struct st_topo *tp, const char *spec, char *err, size_t errlen);
void st_topo_free(struct st_topo *tp);
/* One paragraph: packages, NUMA nodes, cores, PUs, caches. */
void st_topo_describe(const struct st_topo *tp, FILE *f);
int st_topo_count(const struct st_topo *tp, hwloc_obj_type_t type);
/* Bind the calling thread to real PU (logical index); 0 or -errno with msg. */
int st_topo_bind_self(const struct st_topo *real, int pu, char *err, size_t errlen);

struct st_place {
	int pu;      /* logical PU index in the plan's topology; -1 = unbound */
	int pu_os;   /* its OS index */
	int core;    /* logical core index (the PU itself if no core level) */
	int node;    /* logical NUMA node index */
	int package; /* logical package index (0 if none) */
	int pool;    /* which pool the thread allocates from */
};

struct st_plan {
	enum st_policy policy;
	int nthreads;
	int npools;
	int npus, ncores, nnodes, npackages;
	struct st_place *place; /* nthreads entries */
};

/* Plan nthreads threads on tp under pol. 0, or -1 with a message in err. */
int st_plan_build(const struct st_topo *tp, enum st_policy pol, int nthreads,
		  struct st_plan *out, char *err, size_t errlen);
void st_plan_print(const struct st_plan *p, const struct st_topo *tp, FILE *f);
void st_plan_free(struct st_plan *p);
/* The real PU a planned PU lands on when a plan is folded onto this machine. */
int st_plan_fold_pu(const struct st_plan *p, int thread, int real_npus);

/* ---- malloc-lab traces (trace.c) ------------------------------------------ */
struct st_trace_op {
	char kind;     /* 'a', 'r', 'f' */
	uint32_t id;
	uint32_t size;
};
struct st_trace {
	char path[512];
	uint32_t num_ids;
	uint32_t num_ops;
	struct st_trace_op *ops;
};
/* Resolve name (a path, or a name under the traces folder). 0; -ENOENT if
 * absent (skip); another -errno with msg in err if malformed. */
int st_trace_load(const char *name, struct st_trace *tr, char *err, size_t errlen);
void st_trace_free(struct st_trace *tr);
/* Where the traces folder is, or NULL. */
const char *st_traces_dir(void);

/* ---- small helpers ---------------------------------------------------- */
#define st_likely(x) __builtin_expect(!!(x), 1)
#define st_unlikely(x) __builtin_expect(!!(x), 0)

static inline uint64_t st_splitmix(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* xorshift64*: the per-thread generator. */
struct st_rng { uint64_t s; };
static inline uint64_t st_rand(struct st_rng *r)
{
	uint64_t x = r->s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * UINT64_C(0x2545F4914F6CDD1D);
}
static inline uint32_t st_rand_below(struct st_rng *r, uint32_t n)
{
	return (uint32_t)(((st_rand(r) >> 32) * (uint64_t)n) >> 32);
}

double st_now(void);        /* CLOCK_MONOTONIC seconds */
uint64_t st_thread_cpu_ns(void);
/* The folder this executable lives in (for helpers next to it). */
const char *st_exe_dir(void);


/* ---- a run: pools, threads, phases (workloads.c, lfpool-stress.c) -------- */

/* Per-thread results of one phase: owner-written, read after join. */
struct st_tres {
	uint64_t allocs, frees, fails, reallocs;
	uint64_t cpu_ns;
	uint64_t violations;
};

/* Single-producer single-consumer ring of the handoff workload. */
struct st_slot {
	void *p;
	uint64_t stamp;
	uint32_t pool;
	uint32_t size;
};
struct st_ring {
	/* Consumer's index: written by the consumer (C2 release), read by the
	 * producer (H1 acquire). */
	LFP_CACHE_ALIGNED lfp_atomic_u32 head;
	/* Producer's index: written by the producer (P1 release), read by
	 * the consumer (C1 acquire). */
	LFP_CACHE_ALIGNED lfp_atomic_u32 tail;
	/* Set by the producer after its last push (P2 release, C3 acquire). */
	lfp_atomic_u32 closed;
	/* Slots: owned by the producer until P1 publishes them, then by the
	 * consumer until C2 hands them back. */
	LFP_CACHE_ALIGNED struct st_slot slot[ST_RING];
};

/* A spinning barrier whose waiters keep their heartbeat going, so the
 * watchdog can tell a waiting thread from a stuck one. */
struct st_barrier {
	LFP_CACHE_ALIGNED lfp_atomic_u32 count; /* arrivals: CAS acq_rel (B1) */
	LFP_CACHE_ALIGNED lfp_atomic_u32 gen;   /* generation: B2 release / B3 acquire */
	uint32_t n;                             /* immutable: parties */
};

/* What a violation was (counted per kind; docs/stress.md explains each). */
enum st_vkind {
	VK_ALLOC_ERROR,  /* alloc failed with an errno other than ENOMEM (EUCLEAN: corrupt stack) */
	VK_BAD_POINTER,  /* alloc returned something that is not a block start */
	VK_DOUBLE_ALLOC, /* alloc returned a block another owner still stamps */
	VK_STAMP,        /* a block's stamp changed while we owned it */
	VK_CANARY,       /* a block's canary changed while we owned it */
	VK_FREE_ERROR,   /* free refused one of our blocks (-EALREADY, -EINVAL) */
	VK_CONSERVATION, /* counts do not add up (allocs/frees, burst, free count) */
	VK_VALIDATE,     /* lfp_pool_validate / lfp_heap_validate failed */
	VK_CONTENTS,     /* realloc lost contents, a handed block was not live */
	VK_COUNT
};
extern const char *const st_vkind_names[VK_COUNT];

struct st_run;

/* One entry of a held-blocks list. */
struct st_held {
	void *p;
	uint64_t stamp;
	uint32_t pool;
	uint32_t size;
};

struct st_thread {
	/* Published to the monitor: owner stores (relaxed), monitor loads
	 * (relaxed); they are progress gauges and order nothing. */
	LFP_CACHE_ALIGNED lfp_atomic_u64 hb;    /* heartbeat */
	lfp_atomic_u64 pub_frees;               /* frees so far in the phase */
	lfp_atomic_u64 pub_viol;                /* violations so far (whole run) */
	lfp_atomic_u32 in_phase;                /* 1 while running a workload */

	/* Owner thread only (read by others only after a barrier or join). */
	LFP_CACHE_ALIGNED int id;
	struct st_run *run;
	pthread_t th;
	int pool;             /* index into run->pools */
	int real_pu;          /* -1 if unbound */
	int bind_rc;          /* 0 or -errno */
	char bind_err[160];
	struct st_rng rng;
	uint64_t seq;         /* stamp sequence */
	uint64_t hb_local;
	uint64_t viol_local;
	struct st_held *held; /* burst/batch list, held_cap entries (mmap) */
	size_t held_cap;
	size_t nheld;
	uint64_t burst_budget;
	struct st_tres res[ST_MAX_PHASES];
	struct st_tres *cur;
#ifdef ST_HAVE_CACHE
	lfp_cache_t *cache[ST_MAX_CACHES]; /* cached backend: handle per pool */
#endif
	int gen;              /* current phase generation (1-based) */
};

struct st_pool {
	lfp_pool_t *pool;
	int node;             /* real NUMA node it is bound to, -1 if not */
	int nthreads;         /* threads that allocate from it */
	size_t capacity;
};

struct st_run {
	const struct st_opts *o;
	enum st_backend backend;
	bool pool_backend;    /* blocks come from lfpool pools (stamps on alloc) */
	bool have_heap;       /* the front end is available */
	int nthreads;
	struct st_thread *th;
	struct st_pool pools[ST_MAX_POOLS];
	int npools;
	size_t block_size;
	struct st_ring *rings; /* nthreads / 2 */
	struct st_trace *trace;
	double phase_len;
	lfp_heap_t *heap;     /* the front end, for sizes and trace (lfpool backends) */

	/* Process mode: the segment, and how stamps name owners across
	 * processes (owner = id_base + thread + 1 < id_limit + 1; sequence
	 * numbers start at seq_base, which carries the worker's incarnation).
	 * stamp_dead() says whether a stamp found on a fresh block belongs to a
	 * killed incarnation (the block came back through recovery). */
	lfp_shm_t *shm;
	const lfp_pool_t *shm_pool;
	uint32_t id_base, id_limit;
	uint64_t seq_base;
	bool (*stamp_dead)(const struct st_run *r, uint64_t stamp);
	void *procs_ctl;
	lfp_atomic_u64 dead_stamps; /* fresh blocks still stamped by a killed owner (relaxed) */

	/* Phase control: main starts generation g (G1 release, G2 acquire in
	 * workers), stops it (S1 relaxed: a flag, orders nothing), workers
	 * report done (D1 CAS acq_rel, D2 acquire in main). */
	LFP_CACHE_ALIGNED lfp_atomic_u32 go;
	LFP_CACHE_ALIGNED lfp_atomic_u32 stop;
	LFP_CACHE_ALIGNED lfp_atomic_u32 done;
	LFP_CACHE_ALIGNED lfp_atomic_u32 ready; /* workers bound and waiting: K1 CAS acq_rel, K2 acquire */
	LFP_CACHE_ALIGNED lfp_atomic_u32 abort; /* stop everything (relaxed flag) */
	LFP_CACHE_ALIGNED lfp_atomic_u64 violations; /* run total (relaxed counter) */
	lfp_atomic_u64 vkind[VK_COUNT];        /* per kind (relaxed counters) */
	uint64_t drained[ST_MAX_PHASES];       /* chaos blocks freed by main after a phase */
	struct st_barrier bar;                 /* among workers (burst) */
	bool burst_go_on;     /* written by the burst barrier's leader */
	/* Chaos exchange slots: a block pointer or 0, swapped with X1. Only
	 * nxslots of them are used, so a tiny pool cannot be parked away. */
	uint32_t nxslots;
	struct { LFP_CACHE_ALIGNED lfp_atomic_u64 v; } xslot[64];
};

/* workloads.c */
void *st_worker(void *arg);
void st_barrier_init(struct st_barrier *b, uint32_t n);
/* Zero a run's control words, counters and hand-off slots; arm its start
 * barrier for nthreads (before any worker starts). */
void st_run_init_sync(struct st_run *r, uint32_t nthreads);
/* Report a violation (counted, the first ones printed with detail). */
void st_violation(struct st_run *run, struct st_thread *t, enum st_vkind kind, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* After a phase, with every worker parked: drain the chaos slots and check
 * conservation and validate() on every pool. Returns violations found. */
uint64_t st_check_quiescent(struct st_run *run, int phase);
/* Which workloads a backend can run here (the front end may be missing). */
bool st_workload_available(const struct st_run *run, enum st_workload w, const char **why);

/* procs.c */
int st_procs_run(const struct st_opts *o);

/* backend.c */
bool st_backend_available(enum st_backend b, const char **why);
/* The allocator really behind malloc in this process ("glibc", "jemalloc",
 * "mimalloc", "tcmalloc", or the object's file name). */
const char *st_malloc_identity(void);

#endif /* LFP_STRESS_H */
