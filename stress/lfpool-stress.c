/*
 * stress/lfpool-stress.c - the stress harness: command line, runs, drivers.
 *
 * A single run: load this machine's topology (and the --topology one if
 * given), plan the threads (plan.c), create the pools (one, or one per NUMA
 * node under --policy numa), start the workers (workloads.c), and for each
 * phase: start it, watch it (progress line each second on a terminal, a
 * per-thread watchdog), stop it, and check the quiescent pools. The last line
 * on stdout is always one SUMMARY line of key=value pairs.
 *
 * A driver run (--compare, a --threads list, --reps > 1): re-execute this
 * program once per measurement as a child (with a peer allocator in
 * LD_PRELOAD where asked), collect the children's SUMMARY lines, and report
 * medians, ranges, scaling efficiency and ratios to lfpool in the same run.
 *
 * --self-test: run a known-good control and then the deliberately broken
 * build (ABA tag cut to 2 bits, built in its own folder) with a workload
 * made to expose ABA; passes only if the broken build is caught.
 *
 * docs/stress.md documents every option, exit status and SUMMARY key.
 */
#include "stress.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *const st_workload_names[WL_COUNT] = {
	"hot", "lifo", "random", "handoff", "burst", "sizes", "trace", "chaos",
};

static const char *prog = "lfpool-stress";

/* ---- small utilities ----------------------------------------------------- */

double st_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t st_thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* This program's path. Normally /proc/self/exe; when started through a
 * bundled dynamic loader (LFP_STRESS_LOADER, see stress/scale.sh), that link
 * names the loader, so the program is argv[0] made absolute (the loader
 * passes the program's path there). */
static char self_path[PATH_MAX];
static const char *loader; /* LFP_STRESS_LOADER, or NULL */

static void init_self_path(const char *argv0)
{
	loader = getenv("LFP_STRESS_LOADER");
	if (loader && *loader && realpath(argv0, self_path))
		return;
	loader = NULL;
	ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
	self_path[n > 0 ? n : 0] = 0;
}

static const char *exe_path(void)
{
	return self_path[0] ? self_path : NULL;
}

const char *st_exe_dir(void)
{
	static char dir[PATH_MAX];
	if (dir[0] == 0 && self_path[0]) {
		snprintf(dir, sizeof dir, "%s", self_path);
		char *slash = strrchr(dir, '/');
		if (slash)
			*slash = 0;
	}
	return dir[0] ? dir : NULL;
}

static int nproc_online(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

__attribute__((noreturn, format(printf, 1, 2))) static void usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n%s: try '%s --help'\n", prog, prog);
	exit(ST_EXIT_USAGE);
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: %s [options]\n"
"Stress and verify lfpool on this machine; the last line printed is a SUMMARY.\n"
"\n"
"What to run\n"
"  -w, --workload LIST   hot,lifo,random,handoff,burst,sizes,trace,chaos or mix\n"
"                        (all of them in turn; the default)\n"
"  -t, --threads LIST    N, a list 1,2,4 (a sweep), 'all' (every PU, the\n"
"                        default), 'Kx' (K x PUs), or 'sweep' (1,2,4..PUs,2x,8x)\n"
"  -d, --duration SEC    run time (default 20; split over the phases; per\n"
"                        measurement in sweeps and comparisons)\n"
"  -n, --ops N           alloc+free pairs per thread and phase instead of time\n"
"  -s, --seed S          random seed (default: from the clock; always printed)\n"
"      --backend B       lfpool (default), lfpool-cached, glibc, jemalloc,\n"
"                        mimalloc, tcmalloc\n"
"      --compare LIST    also run these allocators on the same workload in this\n"
"                        run: glibc,jemalloc,mimalloc,tcmalloc (or 'all')\n"
"      --reps R          measurements per point; medians are reported (default 1)\n"
"\n"
"Placement\n"
"  -p, --policy P        none (default), compact, scatter, numa (a pool per node)\n"
"      --topology T      plan for an hwloc synthetic topology (\"pack:2 numa:4\n"
"                        core:16 pu:2\") or an XML file, print the plan, then run\n"
"                        it folded onto this machine's PUs\n"
"      --plan            print the plan and stop\n"
"\n"
"Pools and workloads\n"
"      --block-size B    bytes per block (default 64, >= 16)\n"
"      --blocks N        blocks per pool (default: automatic)\n"
"      --batch N         largest batch of lifo/random/sizes (default 64)\n"
"      --max-size B      largest request of the sizes workload (default 4096)\n"
"      --checked         pools with LFP_POOL_CHECKED (race-proof double-free check)\n"
"      --pool-stats      pools with LFP_POOL_STATS\n"
"      --heap-bins       sizes and trace: the front end with per-thread bins\n"
"                        (LFP_HEAP_BINS) instead of owned pools (the default)\n"
"      --trace NAME      malloc-lab trace for 'trace' (default amptjp-bal; a\n"
"                        name under ../shared/traces or a path)\n"
"\n"
"Processes\n"
"      --procs P         P worker processes on one shared-memory pool\n"
"      --kill-every SEC  SIGKILL a random worker that often, recover, go on\n"
"\n"
"Checks and output\n"
"      --watchdog SEC    a thread without progress this long is a hang (default 10)\n"
"      --stop-on-violation  end the run at the first violation\n"
"      --self-test       prove the checks work: the broken build must be caught\n"
"      --broken-bin PATH the broken build (default: selftest/lfpool-stress next\n"
"                        to this program)\n"
"      --json[=FILE]     results as JSON (stdout before the SUMMARY line, or FILE)\n"
"      --csv[=FILE]      results as CSV (same)\n"
"      --progress, --no-progress   progress line each second (default: on a tty)\n"
"  -q, --quiet           no plan/phase chatter on stderr\n"
"  -h, --help\n"
"\n"
"Exit status: 0 pass, 1 violation, 2 usage, 3 hang, 4 setup error, 77 skipped.\n",
		prog);
}

/* ---- option parsing ------------------------------------------------------- */

static double parse_seconds(const char *opt, const char *s, double lo, double hi)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		usage_error("%s: '%s' is not a number of seconds in [%g, %g]", opt, s, lo, hi);
	return v;
}

static uint64_t parse_u64(const char *opt, const char *s, uint64_t lo, uint64_t hi)
{
	char *end;
	errno = 0;
	if (*s == '-')
		usage_error("%s: '%s' must not be negative", opt, s);
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end || v < lo || v > hi)
		usage_error("%s: '%s' is not an integer in [%llu, %llu]", opt, s,
			    (unsigned long long)lo, (unsigned long long)hi);
	return v;
}

static void parse_threads(struct st_opts *o, const char *arg)
{
	int npu = nproc_online();
	char buf[512];
	snprintf(buf, sizeof buf, "%s", arg);
	o->n_threads = 0;
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "sweep") == 0) {
			for (int n = 1; n < npu && o->n_threads < ST_MAX_SWEEP - 3; n *= 2)
				o->threads[o->n_threads++] = n;
			o->threads[o->n_threads++] = npu;
			o->threads[o->n_threads++] = 2 * npu;
			o->threads[o->n_threads++] = 8 * npu;
			continue;
		}
		if (o->n_threads >= ST_MAX_SWEEP)
			usage_error("--threads: more than %d entries", ST_MAX_SWEEP);
		long v;
		char *end;
		if (strcmp(tok, "all") == 0) {
			v = 0;
		} else {
			errno = 0;
			v = strtol(tok, &end, 10);
			if (errno || end == tok || (*end && strcmp(end, "x") != 0) || v < 1)
				usage_error("--threads: '%s' is not a thread count (expected N >= 1, a list "
					    "like 1,2,4, 'all', 'Kx' for K times the PUs, or 'sweep')", tok);
			if (*end == 'x')
				v *= npu;
		}
		if (v > ST_MAX_THREADS)
			usage_error("--threads: %ld is more than the %d threads supported", v, ST_MAX_THREADS);
		o->threads[o->n_threads++] = (int)v;
	}
	if (o->n_threads == 0)
		usage_error("--threads: empty list");
}

static void parse_workloads(struct st_opts *o, const char *arg)
{
	char buf[512];
	snprintf(buf, sizeof buf, "%s", arg);
	o->n_phases = 0;
	o->workload_mix = false;
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "mix") == 0 || strcmp(tok, "all") == 0) {
			for (int w = 0; w < WL_COUNT && o->n_phases < ST_MAX_PHASES; w++)
				o->phases[o->n_phases++] = (enum st_workload)w;
			o->workload_mix = true;
			continue;
		}
		int w;
		for (w = 0; w < WL_COUNT; w++)
			if (strcmp(tok, st_workload_names[w]) == 0)
				break;
		if (w == WL_COUNT)
			usage_error("--workload: unknown workload '%s' (one of hot, lifo, random, handoff, "
				    "burst, sizes, trace, chaos, mix)", tok);
		if (o->n_phases >= ST_MAX_PHASES)
			usage_error("--workload: more than %d phases", ST_MAX_PHASES);
		o->phases[o->n_phases++] = (enum st_workload)w;
	}
	if (o->n_phases == 0)
		usage_error("--workload: empty list");
}

/* Peers: name, how to load it. */
struct peer {
	const char *name;
	enum st_backend be;
	const char *preload; /* NULL: nothing to preload */
};
static const struct peer peers[] = {
	{ "lfpool", BE_POOL, NULL },
	{ "lfpool-cached", BE_CACHED, NULL },
	{ "glibc", BE_MALLOC, NULL },
	{ "jemalloc", BE_MALLOC, "libjemalloc.so.2" },
	{ "mimalloc", BE_MALLOC, "libmimalloc.so.2" },
	{ "tcmalloc", BE_MALLOC, "libtcmalloc_minimal.so.4" },
};
#define NPEERS ((int)(sizeof peers / sizeof peers[0]))

static const struct peer *find_peer(const char *name)
{
	for (int i = 0; i < NPEERS; i++)
		if (strcmp(peers[i].name, name) == 0)
			return &peers[i];
	return NULL;
}

enum {
	OPT_BACKEND = 256, OPT_COMPARE, OPT_REPS, OPT_TOPOLOGY, OPT_PLAN, OPT_BLOCK_SIZE,
	OPT_BLOCKS, OPT_BATCH, OPT_MAX_SIZE, OPT_CHECKED, OPT_POOL_STATS, OPT_HEAP_BINS, OPT_TRACE, OPT_PROCS,
	OPT_KILL_EVERY, OPT_WATCHDOG, OPT_STOP_ON_VIOLATION, OPT_SELF_TEST, OPT_BROKEN_BIN,
	OPT_JSON, OPT_CSV, OPT_PROGRESS, OPT_NO_PROGRESS, OPT_LABEL, OPT_CHILD, OPT_INJECT_HANG,
};

/*
 * hwloc's HWLOC_SYNTHETIC and HWLOC_XMLFILE make every topology load in
 * this process describe another machine, the one that decides where
 * threads are pinned too: a run then planned 64 threads for 2 PUs, bound
 * none, and said topology=real. When hwloc does describe another machine
 * with them (it ignores a missing XML file, and HWLOC_THISSYSTEM=1 says the
 * description is this machine), the variable is taken as --topology (a
 * plan folded onto this machine) and removed from the environment; with
 * --topology given, or in process mode, which plans nothing, it is only
 * removed, with a note.
 */
static void take_hwloc_env(struct st_opts *o)
{
	static const char *const vars[] = { "HWLOC_SYNTHETIC", "HWLOC_XMLFILE" };
	const char *var = NULL, *val = NULL;
	for (size_t i = 0; i < sizeof vars / sizeof vars[0] && var == NULL; i++) {
		const char *v = getenv(vars[i]);
		if (v != NULL && *v != '\0') {
			var = vars[i];
			val = v;
		}
	}
	if (var == NULL)
		return;
	bool other = false;
	hwloc_topology_t t;
	if (hwloc_topology_init(&t) == 0) {
		other = hwloc_topology_load(t) == 0 && !hwloc_topology_is_thissystem(t);
		hwloc_topology_destroy(t);
	}
	if (!other)
		return; /* hwloc describes this machine after all */
	char *copy = strdup(val);
	if (copy == NULL)
		usage_error("out of memory");
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		unsetenv(vars[i]);
	bool take = o->topology == NULL && !o->procs;
	if (!o->quiet && !o->child)
		fprintf(stderr, "%s: %s=\"%s\" %s\n", prog, var, copy,
			take ? "taken as --topology; threads run on this machine"
			     : o->procs ? "ignored: --procs plans nothing" : "ignored: --topology given");
	if (take)
		o->topology = copy;
	else
		free(copy);
}

static void parse_args(struct st_opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "workload", required_argument, NULL, 'w' },
		{ "threads", required_argument, NULL, 't' },
		{ "duration", required_argument, NULL, 'd' },
		{ "ops", required_argument, NULL, 'n' },
		{ "seed", required_argument, NULL, 's' },
		{ "policy", required_argument, NULL, 'p' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "backend", required_argument, NULL, OPT_BACKEND },
		{ "allocator", required_argument, NULL, OPT_BACKEND },
		{ "compare", required_argument, NULL, OPT_COMPARE },
		{ "reps", required_argument, NULL, OPT_REPS },
		{ "topology", required_argument, NULL, OPT_TOPOLOGY },
		{ "plan", no_argument, NULL, OPT_PLAN },
		{ "block-size", required_argument, NULL, OPT_BLOCK_SIZE },
		{ "blocks", required_argument, NULL, OPT_BLOCKS },
		{ "batch", required_argument, NULL, OPT_BATCH },
		{ "max-size", required_argument, NULL, OPT_MAX_SIZE },
		{ "checked", no_argument, NULL, OPT_CHECKED },
		{ "pool-stats", no_argument, NULL, OPT_POOL_STATS },
		{ "heap-bins", no_argument, NULL, OPT_HEAP_BINS },
		{ "trace", required_argument, NULL, OPT_TRACE },
		{ "procs", required_argument, NULL, OPT_PROCS },
		{ "kill-every", required_argument, NULL, OPT_KILL_EVERY },
		{ "watchdog", required_argument, NULL, OPT_WATCHDOG },
		{ "stop-on-violation", no_argument, NULL, OPT_STOP_ON_VIOLATION },
		{ "self-test", no_argument, NULL, OPT_SELF_TEST },
		{ "broken-bin", required_argument, NULL, OPT_BROKEN_BIN },
		{ "json", optional_argument, NULL, OPT_JSON },
		{ "csv", optional_argument, NULL, OPT_CSV },
		{ "progress", no_argument, NULL, OPT_PROGRESS },
		{ "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
		{ "label", required_argument, NULL, OPT_LABEL },
		{ "child", no_argument, NULL, OPT_CHILD },
		{ "inject-hang", no_argument, NULL, OPT_INJECT_HANG },
		{ NULL, 0, NULL, 0 },
	};
	bool have_seed = false, have_duration = false;
	*o = (struct st_opts){
		.threads = { 0 }, .n_threads = 1, .duration = 20, .policy = POL_NONE,
		.backend = BE_POOL, .block_size = 64, .batch = 64, .trace = "amptjp-bal",
		.reps = 1, .watchdog = 10, .progress = -1, .max_size = 4096,
	};
	parse_workloads(o, "mix");
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":w:t:d:n:s:p:qh", lo, NULL)) != -1) {
		switch (c) {
		case 'w': parse_workloads(o, optarg); break;
		case 't': parse_threads(o, optarg); break;
		case 'd': o->duration = parse_seconds("--duration", optarg, 0.01, 1e6); have_duration = true; break;
		case 'n': o->ops = parse_u64("--ops", optarg, 1, UINT64_C(1) << 40); break;
		case 's': o->seed = parse_u64("--seed", optarg, 0, UINT64_MAX); have_seed = true; break;
		case 'p': {
			int p;
			for (p = 0; p < POL_COUNT; p++)
				if (strcmp(optarg, st_policy_names[p]) == 0)
					break;
			if (p == POL_COUNT)
				usage_error("--policy: unknown policy '%s' (none, compact, scatter, numa)", optarg);
			o->policy = (enum st_policy)p;
			break;
		}
		case 'q': o->quiet = true; break;
		case 'h': usage(stdout); exit(0);
		case OPT_BACKEND: {
			const struct peer *pe = find_peer(optarg);
			if (pe == NULL && strcmp(optarg, "malloc") != 0)
				usage_error("--backend: unknown allocator '%s' (lfpool, lfpool-cached, glibc, "
					    "jemalloc, mimalloc, tcmalloc)", optarg);
			o->backend = pe ? pe->be : BE_MALLOC;
			o->label = pe ? pe->name : NULL;
			break;
		}
		case OPT_COMPARE: {
			char buf[256];
			snprintf(buf, sizeof buf, "%s", optarg);
			for (char *sv = NULL, *tok = strtok_r(buf, ",", &sv); tok; tok = strtok_r(NULL, ",", &sv))
				if (strcmp(tok, "all") != 0 && find_peer(tok) == NULL)
					usage_error("--compare: unknown allocator '%s' (glibc, jemalloc, mimalloc, "
						    "tcmalloc, lfpool, lfpool-cached, all)", tok);
			o->compare = optarg;
			break;
		}
		case OPT_REPS: o->reps = (int)parse_u64("--reps", optarg, 1, 101); break;
		case OPT_TOPOLOGY: o->topology = optarg; break;
		case OPT_PLAN: o->plan_only = true; break;
		case OPT_BLOCK_SIZE: o->block_size = parse_u64("--block-size", optarg, 16, 1u << 20); break;
		case OPT_BLOCKS: o->blocks = parse_u64("--blocks", optarg, 1, UINT64_C(1) << 28); break;
		case OPT_BATCH: o->batch = (int)parse_u64("--batch", optarg, 1, 4096); break;
		case OPT_MAX_SIZE: o->max_size = parse_u64("--max-size", optarg, 1025, 1u << 26); break;
		case OPT_CHECKED: o->checked = true; break;
		case OPT_POOL_STATS: o->pool_stats = true; break;
		case OPT_HEAP_BINS: o->heap_bins = true; break;
		case OPT_TRACE: o->trace = optarg; break;
		case OPT_PROCS: o->procs = (int)parse_u64("--procs", optarg, 1, 1024); break;
		case OPT_KILL_EVERY: o->kill_every = parse_seconds("--kill-every", optarg, 0.001, 1e6); break;
		case OPT_WATCHDOG: o->watchdog = parse_seconds("--watchdog", optarg, 0.5, 1e6); break;
		case OPT_STOP_ON_VIOLATION: o->stop_on_violation = true; break;
		case OPT_SELF_TEST: o->self_test = true; break;
		case OPT_BROKEN_BIN: o->broken_bin = optarg; break;
		case OPT_JSON: o->json = optarg ? optarg : "-"; break;
		case OPT_CSV: o->csv = optarg ? optarg : "-"; break;
		case OPT_PROGRESS: o->progress = 1; break;
		case OPT_NO_PROGRESS: o->progress = 0; break;
		case OPT_LABEL: o->label = optarg; break;
		case OPT_CHILD: o->child = true; break;
		case OPT_INJECT_HANG: o->inject_hang = true; break;
		case ':': usage_error("%s needs a value", argv[optind - 1]);
		default:
			if (optopt)
				usage_error("unknown option '-%c'", optopt);
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s' (options start with --)", argv[optind]);
	take_hwloc_env(o);
	if (o->ops && have_duration)
		usage_error("--duration and --ops exclude each other: run for a time or for a count");
	if (o->procs && (o->compare || o->n_threads > 1 || o->reps > 1 || o->topology))
		usage_error("--procs runs one measurement of lfpool's shared-memory pool: no --compare, "
			    "thread list, --reps or --topology with it");
	if (o->kill_every > 0 && o->procs == 0)
		usage_error("--kill-every needs --procs P (it kills worker processes)");
	if (o->json && o->csv && strcmp(o->json, "-") == 0 && strcmp(o->csv, "-") == 0)
		usage_error("--json and --csv cannot both go to stdout; give one a file (--csv=FILE)");
	if (!have_seed) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		o->seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
	}
}

/* ---- results ------------------------------------------------------------- */

struct phase_res {
	enum st_workload w;
	bool ran;
	const char *skip_why;
	double wall;
	uint64_t allocs, frees, fails, reallocs, cpu_ns, violations;
};

struct run_res {
	const char *result; /* PASS FAIL HANG SKIP ERROR */
	int exit_code;
	const char *allocator;
	int nthreads;
	int npools;
	int bind_failures;
	int numa_failures;
	bool validate_ok;
	bool validate_na;
	uint64_t violations;
	int nphases;
	struct phase_res ph[ST_MAX_PHASES];
	double wall;
	uint64_t frees, allocs, fails, cpu_ns;
	uint64_t kills, recovered;
	char workload[160];
	char vkinds[256];
};

/* "stamp:3,alloc_error:1", or "-". */
static void vkinds_text(struct st_run *r, char *buf, size_t n)
{
	buf[0] = 0;
	for (int k = 0; k < VK_COUNT; k++) {
		uint64_t c = lfp_load64_relaxed(&r->vkind[k]); /* relaxed: main alone now */
		if (c)
			snprintf(buf + strlen(buf), n - strlen(buf), "%s%s:%llu", buf[0] ? "," : "",
				 st_vkind_names[k], (unsigned long long)c);
	}
	if (!buf[0])
		snprintf(buf, n, "-");
}

static void workload_label(const struct st_opts *o, char *buf, size_t n)
{
	if (o->workload_mix) {
		snprintf(buf, n, "mix");
		return;
	}
	buf[0] = 0;
	for (int i = 0; i < o->n_phases; i++)
		snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", i ? "+" : "", st_workload_names[o->phases[i]]);
}

static void print_summary(const struct st_opts *o, const struct run_res *r)
{
	fflush(stderr);
	printf("SUMMARY result=%s allocator=%s workload=%s threads=%d procs=%d policy=%s "
	       "topology=%s pools=%d seconds=%.3f ops=%llu ops_per_s=%.0f cpu_ns_per_op=%.2f "
	       "allocs=%llu frees=%llu alloc_fail=%llu violations=%llu hangs=%d bind_failures=%d "
	       "numa_failures=%d validate=%s kinds=%s kills=%llu recovered=%llu seed=%llu\n",
	       r->result, r->allocator, r->workload, r->nthreads, o->procs, st_policy_names[o->policy],
	       o->topology ? "synthetic" : "real", r->npools, r->wall, (unsigned long long)r->frees,
	       r->wall > 0 ? (double)r->frees / r->wall : 0.0,
	       r->frees ? (double)r->cpu_ns / (double)r->frees : 0.0, (unsigned long long)r->allocs,
	       (unsigned long long)r->frees, (unsigned long long)r->fails,
	       (unsigned long long)r->violations, strcmp(r->result, "HANG") == 0, r->bind_failures,
	       r->numa_failures, r->validate_na ? "n/a" : r->validate_ok ? "ok" : "FAILED",
	       r->vkinds[0] ? r->vkinds : "-", (unsigned long long)r->kills, (unsigned long long)r->recovered,
	       (unsigned long long)o->seed);
	fflush(stdout);
}

static FILE *open_out(const char *name)
{
	if (strcmp(name, "-") == 0)
		return stdout;
	FILE *f = fopen(name, "w");
	if (f == NULL)
		fprintf(stderr, "%s: cannot write %s: %s\n", prog, name, strerror(errno));
	return f;
}

static void close_out(FILE *f)
{
	if (f && f != stdout)
		fclose(f);
}

static void write_run_json(const struct st_opts *o, const struct run_res *r)
{
	FILE *f = open_out(o->json);
	if (!f)
		return;
	fprintf(f, "{\n  \"result\": \"%s\", \"allocator\": \"%s\", \"workload\": \"%s\",\n"
		"  \"threads\": %d, \"procs\": %d, \"policy\": \"%s\", \"pools\": %d, \"seed\": %llu,\n"
		"  \"seconds\": %.6f, \"ops\": %llu, \"ops_per_s\": %.1f, \"cpu_ns_per_op\": %.3f,\n"
		"  \"violations\": %llu, \"bind_failures\": %d, \"validate\": \"%s\",\n  \"phases\": [\n",
		r->result, r->allocator, r->workload, r->nthreads, o->procs, st_policy_names[o->policy],
		r->npools, (unsigned long long)o->seed, r->wall, (unsigned long long)r->frees,
		r->wall > 0 ? (double)r->frees / r->wall : 0.0,
		r->frees ? (double)r->cpu_ns / (double)r->frees : 0.0, (unsigned long long)r->violations,
		r->bind_failures, r->validate_na ? "n/a" : r->validate_ok ? "ok" : "FAILED");
	for (int i = 0; i < r->nphases; i++) {
		const struct phase_res *p = &r->ph[i];
		fprintf(f, "    {\"workload\": \"%s\", \"ran\": %s, \"seconds\": %.6f, \"ops\": %llu, "
			"\"ops_per_s\": %.1f, \"cpu_ns_per_op\": %.3f, \"allocs\": %llu, \"alloc_fail\": %llu, "
			"\"reallocs\": %llu, \"violations\": %llu%s%s%s}%s\n",
			st_workload_names[p->w], p->ran ? "true" : "false", p->wall,
			(unsigned long long)p->frees, p->wall > 0 ? (double)p->frees / p->wall : 0.0,
			p->frees ? (double)p->cpu_ns / (double)p->frees : 0.0, (unsigned long long)p->allocs,
			(unsigned long long)p->fails, (unsigned long long)p->reallocs,
			(unsigned long long)p->violations, p->skip_why ? ", \"skipped\": \"" : "",
			p->skip_why ? p->skip_why : "", p->skip_why ? "\"" : "", i + 1 < r->nphases ? "," : "");
	}
	fprintf(f, "  ]\n}\n");
	close_out(f);
}

static void write_run_csv(const struct st_opts *o, const struct run_res *r)
{
	FILE *f = open_out(o->csv);
	if (!f)
		return;
	fprintf(f, "allocator,workload,threads,policy,seconds,ops,ops_per_s,cpu_ns_per_op,allocs,"
		   "alloc_fail,violations,result,seed\n");
	for (int i = 0; i < r->nphases; i++) {
		const struct phase_res *p = &r->ph[i];
		fprintf(f, "%s,%s,%d,%s,%.6f,%llu,%.1f,%.3f,%llu,%llu,%llu,%s,%llu\n", r->allocator,
			st_workload_names[p->w], r->nthreads, st_policy_names[o->policy], p->wall,
			(unsigned long long)p->frees, p->wall > 0 ? (double)p->frees / p->wall : 0.0,
			p->frees ? (double)p->cpu_ns / (double)p->frees : 0.0, (unsigned long long)p->allocs,
			(unsigned long long)p->fails, (unsigned long long)p->violations,
			!p->ran ? "SKIP" : p->violations ? "FAIL" : "PASS", (unsigned long long)o->seed);
	}
	close_out(f);
}

/* ---- a single run ------------------------------------------------------- */

static struct st_topo g_real;     /* this machine; read-only once loaded */
static struct st_run *g_run;      /* for the hang report */
static const struct st_opts *g_opts;

static void *thread_main(void *arg)
{
	struct st_thread *t = arg;
	struct st_run *r = t->run;
	if (t->real_pu >= 0)
		t->bind_rc = st_topo_bind_self(&g_real, t->real_pu, t->bind_err, sizeof t->bind_err);
	uint32_t k = lfp_load32_relaxed(&r->ready); /* relaxed: the CAS's expectation */
	while (!lfp_cas32_acq_rel(&r->ready, &k, k + 1)) /* K1: publishes bind_rc; pairs with K2 */
		;
	return st_worker(t);
}

static void deadline_handler(int sig)
{
	(void)sig;
	static const char msg[] = "HANG: the run overran its deadline (watchdog backstop)\n";
	static const char sum[] = "SUMMARY result=HANG hangs=1 reason=deadline\n";
	ssize_t rc = write(2, msg, sizeof msg - 1);
	rc = write(1, sum, sizeof sum - 1);
	(void)rc;
	_exit(ST_EXIT_HANG);
}

/* Report a hang and leave: stuck threads cannot be joined. */
__attribute__((noreturn)) static void hang_exit(struct st_run *r, struct run_res *res, int who,
						 double stuck_for, int phase)
{
	fprintf(stderr, "HANG: thread %d made no progress for %.1f s in phase %d (%s); "
		"watchdog %.1f s\n", who, stuck_for, phase + 1, st_workload_names[r->o->phases[phase]],
		r->o->watchdog);
	for (int i = 0; i < r->nthreads && i < 64; i++) {
		struct st_thread *t = &r->th[i];
		fprintf(stderr, "HANG:   thread %d: heartbeat %llu, frees %llu, in workload %u, PU %d\n", i,
			(unsigned long long)lfp_load64_relaxed(&t->hb), /* relaxed: a gauge */
			(unsigned long long)lfp_load64_relaxed(&t->pub_frees), /* relaxed: a gauge */
			lfp_load32_relaxed(&t->in_phase), t->real_pu); /* relaxed: a gauge */
	}
	res->result = "HANG";
	res->violations = lfp_load64_relaxed(&r->violations); /* relaxed: a counter */
	vkinds_text(r, res->vkinds, sizeof res->vkinds);
	res->validate_ok = false;
	print_summary(r->o, res);
	_exit(ST_EXIT_HANG);
}

static void progress_line(struct st_run *r, int phase, double elapsed, double rate)
{
	fprintf(stderr, "[%6.1fs] phase %d/%d %-8s %10.3f Mops/s  threads %d  violations %llu\n", elapsed,
		phase + 1, r->o->n_phases, st_workload_names[r->o->phases[phase]], rate / 1e6, r->nthreads,
		(unsigned long long)lfp_load64_relaxed(&r->violations)); /* relaxed: a counter */
}

static uint64_t sum_frees(struct st_run *r)
{
	uint64_t s = 0;
	for (int i = 0; i < r->nthreads; i++)
		s += lfp_load64_relaxed(&r->th[i].pub_frees); /* relaxed: a gauge */
	return s;
}

static size_t auto_blocks(const struct st_opts *o, int threads_on_pool)
{
	size_t per = (size_t)(2 * o->batch + ST_RING + 64);
	size_t n = (size_t)(threads_on_pool > 0 ? threads_on_pool : 1) * per;
	if (n < 16384)
		n = 16384;
	if (n > (1u << 22))
		n = 1u << 22;
	return n;
}

static int run_single(const struct st_opts *o)
{
	char err[512];
	struct run_res res = { .result = "PASS", .validate_ok = true };
	struct st_topo plan_topo, *ptopo = &g_real;
	struct st_plan plan;
	struct st_trace trace;
	bool have_trace = false;
	int rc = ST_EXIT_OK;

	res.allocator = o->label ? o->label : st_backend_names[o->backend];
	if (o->backend == BE_MALLOC)
		res.allocator = st_malloc_identity();
	workload_label(o, res.workload, sizeof res.workload);

	/* A peer must really be the one in LD_PRELOAD. */
	if (o->backend == BE_MALLOC && o->label && strcmp(o->label, "malloc") != 0 &&
	    strcmp(o->label, st_malloc_identity()) != 0) {
		fprintf(stderr, "%s: allocator %s is not loaded (malloc comes from %s): is its library "
			"installed / in LD_LIBRARY_PATH?\n", prog, o->label, st_malloc_identity());
		res.result = "SKIP";
		res.allocator = o->label;
		res.validate_na = true;
		print_summary(o, &res);
		return ST_EXIT_SKIP;
	}
	const char *why;
	if (!st_backend_available(o->backend, &why)) {
		fprintf(stderr, "%s: backend %s unavailable: %s\n", prog, st_backend_names[o->backend], why);
		res.result = "SKIP";
		res.validate_na = true;
		print_summary(o, &res);
		return ST_EXIT_SKIP;
	}
	if (st_topo_load(&g_real, NULL, err, sizeof err) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return ST_EXIT_ERROR;
	}
	if (o->topology) {
		if (st_topo_load(&plan_topo, o->topology, err, sizeof err) < 0) {
			fprintf(stderr, "%s: %s\n", prog, err);
			return ST_EXIT_USAGE;
		}
		ptopo = &plan_topo;
	}
	int real_npus = st_topo_count(&g_real, HWLOC_OBJ_PU);
	int real_nodes = st_topo_count(&g_real, HWLOC_OBJ_NUMANODE);
	int nthreads = o->threads[0] ? o->threads[0] : st_topo_count(ptopo, HWLOC_OBJ_PU);
	if (st_plan_build(ptopo, o->policy, nthreads, &plan, err, sizeof err) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return ST_EXIT_USAGE;
	}
	if (!o->child && (!o->quiet || o->plan_only)) {
		st_topo_describe(&g_real, stderr);
		if (o->topology)
			st_topo_describe(ptopo, stdout);
	}
	if (o->topology || o->plan_only) {
		st_plan_print(&plan, ptopo, stdout);
		if (o->topology && !o->plan_only && o->policy != POL_NONE)
			printf("plan: folded onto this machine: planned PU p runs on real PU floor(p x %d / %d)\n",
			       real_npus, plan.npus);
	}
	if (o->plan_only) {
		st_plan_free(&plan);
		return ST_EXIT_OK;
	}

	/* The run. */
	struct st_run *r = aligned_alloc(LFP_CACHE_LINE, (sizeof *r + LFP_CACHE_LINE - 1) & ~(size_t)(LFP_CACHE_LINE - 1));
	size_t th_bytes = sizeof(struct st_thread) * (size_t)nthreads;
	struct st_thread *th = aligned_alloc(LFP_CACHE_LINE, (th_bytes + LFP_CACHE_LINE - 1) & ~(size_t)(LFP_CACHE_LINE - 1));
	if (r == NULL || th == NULL) {
		fprintf(stderr, "%s: out of memory for %d threads\n", prog, nthreads);
		return ST_EXIT_ERROR;
	}
	memset(r, 0, sizeof *r);
	memset(th, 0, th_bytes);
	g_run = r;
	r->o = o;
	r->backend = o->backend;
	r->pool_backend = o->backend == BE_POOL || o->backend == BE_CACHED;
#ifdef ST_HAVE_HEAP
	r->have_heap = true;
	if (r->pool_backend) {
		bool want = false;
		for (int i = 0; i < o->n_phases; i++)
			want |= o->phases[i] == WL_SIZES || o->phases[i] == WL_TRACE;
		lfp_heap_config_t hc = { .flags = (o->checked ? LFP_HEAP_CHECKED : 0u) |
						  (o->heap_bins ? LFP_HEAP_BINS : 0u) };
		if (want && (r->heap = lfp_heap_create(&hc)) == NULL) {
			fprintf(stderr, "%s: creating the front end (lfp_heap_create) failed: %s\n", prog,
				strerror(errno));
			return ST_EXIT_ERROR;
		}
	}
#endif
	r->nthreads = nthreads;
	r->id_limit = (uint32_t)nthreads;
	r->th = th;
	r->block_size = o->block_size;
	r->npools = plan.npools;
	for (int i = 0; i < nthreads; i++)
		r->pools[plan.place[i].pool].nthreads++;
	st_run_init_sync(r, (uint32_t)nthreads);
	res.nthreads = nthreads;
	res.npools = r->npools;
	res.validate_na = !r->pool_backend;

	/* The trace, if a phase wants one: absent traces skip that phase. */
	for (int i = 0; i < o->n_phases; i++)
		if (o->phases[i] == WL_TRACE && !have_trace) {
			int trc = st_trace_load(o->trace, &trace, err, sizeof err);
			if (trc == 0) {
				have_trace = true;
				r->trace = &trace;
			} else if (trc != -ENOENT) {
				fprintf(stderr, "%s: %s\n", prog, err);
				return ST_EXIT_USAGE;
			} else if (!o->quiet && !o->child) {
				fprintf(stderr, "%s: %s: the trace phase is skipped\n", prog, err);
			}
		}

	/* Pools. */
	size_t max_cap = 0;
	for (int p = 0; p < r->npools; p++) {
		struct st_pool *sp = &r->pools[p];
		lfp_pool_config_t cfg = {
			.block_size = o->block_size,
			.block_count = o->blocks ? o->blocks : auto_blocks(o, sp->nthreads),
			.flags = (o->checked ? LFP_POOL_CHECKED : 0u) | (o->pool_stats ? LFP_POOL_STATS : 0u),
		};
#ifdef ST_HAVE_CACHE
		/* lfpool = the bare shared stack; lfpool-cached = a cache slot
		 * for every thread of the pool (and main), default magazines. */
		if (o->backend == BE_POOL)
			cfg.flags |= LFP_POOL_NO_CACHE;
		else
			cfg.cache_slots = sp->nthreads + 1 < (int)LFP_CACHE_MAX_SLOTS ? (size_t)sp->nthreads + 1
										: LFP_CACHE_MAX_SLOTS;
#endif
		sp->capacity = cfg.block_count;
		sp->node = -1;
		if (cfg.block_count > max_cap)
			max_cap = cfg.block_count;
		if (!r->pool_backend)
			continue;
		if (o->policy == POL_NUMA) {
			sp->node = p % (real_nodes > 0 ? real_nodes : 1);
			sp->pool = lfp_pool_create_on_node(&cfg, sp->node);
			if (sp->pool == NULL) {
				fprintf(stderr, "%s: pool %d: binding its memory to NUMA node %d failed: %s; "
					"using unbound memory (counted in numa_failures)\n", prog, p, sp->node,
					strerror(errno));
				res.numa_failures++;
				sp->node = -1;
			}
		}
		if (sp->pool == NULL)
			sp->pool = lfp_pool_create(&cfg);
		if (sp->pool == NULL) {
			fprintf(stderr, "%s: creating pool %d (%zu blocks of %zu bytes) failed: %s\n", prog, p,
				cfg.block_count, cfg.block_size, strerror(errno));
			return ST_EXIT_ERROR;
		}
	}
	r->nxslots = 64;
	for (int p = 0; p < r->npools; p++)
		if (r->pool_backend && r->pools[p].capacity / 8 < r->nxslots)
			r->nxslots = r->pools[p].capacity / 8 ? (uint32_t)(r->pools[p].capacity / 8) : 1;
	r->rings = aligned_alloc(LFP_CACHE_LINE, sizeof(struct st_ring) * (size_t)(nthreads / 2 + 1));
	if (r->rings == NULL) {
		fprintf(stderr, "%s: out of memory for rings\n", prog);
		return ST_EXIT_ERROR;
	}
	size_t held_cap = max_cap;
	if ((size_t)o->batch > held_cap)
		held_cap = (size_t)o->batch;
	if (have_trace && trace.num_ids > held_cap)
		held_cap = trace.num_ids;
	uint64_t seed = o->seed;
	for (int i = 0; i < nthreads; i++) {
		struct st_thread *t = &th[i];
		t->id = i;
		t->run = r;
		t->pool = plan.place[i].pool;
		t->real_pu = o->policy == POL_NONE ? -1 : st_plan_fold_pu(&plan, i, real_npus);
		t->rng.s = st_splitmix(&seed) | 1;
		t->held_cap = held_cap;
		/* A peer's share of the pool's blocks, at most its held list. */
		t->burst_budget = max_cap / (size_t)nthreads > 0 ? max_cap / (size_t)nthreads : 1;
		t->cur = &t->res[0];
		t->held = mmap(NULL, held_cap * sizeof *t->held, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (t->held == MAP_FAILED) {
			fprintf(stderr, "%s: out of memory for thread %d's block list\n", prog, i);
			return ST_EXIT_ERROR;
		}
		lfp_init64(&t->hb, 0);
		lfp_init64(&t->pub_frees, 0);
		lfp_init64(&t->pub_viol, 0);
		lfp_init32(&t->in_phase, 0);
	}
	if (!o->quiet && !o->child)
		fprintf(stderr, "run: %s, %d threads, policy %s, %d pool%s of %zu x %zu B, %s, seed %llu\n",
			res.allocator, nthreads, st_policy_names[o->policy], r->npools, r->npools == 1 ? "" : "s",
			r->pools[0].capacity, o->block_size,
			o->ops ? "fixed op count" : "timed", (unsigned long long)o->seed);

	bool progress = o->progress == 1 || (o->progress == -1 && !o->child && isatty(2));
	double phase_len = o->ops ? 0 : o->duration / o->n_phases;
	if (!o->ops) {
		signal(SIGALRM, deadline_handler);
		alarm((unsigned)(o->duration + 3 * o->watchdog + 60));
	}

	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (int i = 0; i < nthreads; i++) {
		int e = pthread_create(&th[i].th, &attr, thread_main, &th[i]);
		if (e) {
			fprintf(stderr, "%s: creating thread %d of %d failed: %s\n", prog, i, nthreads, strerror(e));
			_exit(ST_EXIT_ERROR);
		}
	}
	pthread_attr_destroy(&attr);
	{
		struct timespec ts = { 0, 1000 * 1000 };
		while (lfp_load32_acquire(&r->ready) < (uint32_t)nthreads) /* K2: pairs with K1 */
			nanosleep(&ts, NULL);
	}
	for (int i = 0; i < nthreads; i++)
		if (th[i].bind_rc) {
			res.bind_failures++;
			if (res.bind_failures <= 10)
				fprintf(stderr, "%s: BIND FAILURE thread %d: %s\n", prog, i, th[i].bind_err);
		}
	if (res.bind_failures)
		fprintf(stderr, "%s: %d of %d threads could not be bound as planned (bind_failures in SUMMARY)\n",
			prog, res.bind_failures, nthreads);

	double *last_change = calloc((size_t)nthreads, sizeof(double));
	uint64_t *last_hb = calloc((size_t)nthreads, sizeof(uint64_t));
	if (!last_change || !last_hb)
		_exit(ST_EXIT_ERROR);
	double run_t0 = st_now();
	res.nphases = o->n_phases;
	for (int ph = 0; ph < o->n_phases; ph++) {
		struct phase_res *pr = &res.ph[ph];
		pr->w = o->phases[ph];
		pr->ran = st_workload_available(r, pr->w, &pr->skip_why);
		if (!pr->ran && !o->quiet && !o->child)
			fprintf(stderr, "phase %d/%d %s: %s\n", ph + 1, o->n_phases, st_workload_names[pr->w],
				pr->skip_why);
		if (pr->w == WL_HANDOFF)
			for (int i = 0; i < nthreads / 2; i++) {
				lfp_init32(&r->rings[i].head, 0);
				lfp_init32(&r->rings[i].tail, 0);
				lfp_init32(&r->rings[i].closed, 0);
			}
		double t0 = st_now(), next_tick = t0 + 1, now = t0;
		uint64_t frees_at_tick = 0;
		bool stopped = false;
		for (int i = 0; i < nthreads; i++) {
			last_change[i] = t0;
			last_hb[i] = lfp_load64_relaxed(&th[i].hb); /* relaxed: a gauge */
		}
		lfp_store32_release(&r->go, (uint32_t)ph + 1); /* G1: publishes the ring reset; pairs with G2 */
		const uint32_t want = (uint32_t)nthreads * (uint32_t)(ph + 1);
		struct timespec tick = { 0, 10 * 1000 * 1000 };
		while (lfp_load32_acquire(&r->done) < want) { /* D2: pairs with D1 */
			nanosleep(&tick, NULL);
			now = st_now();
			if (!stopped && ((!o->ops && now - t0 >= phase_len) ||
					 lfp_load32_relaxed(&r->abort))) { /* relaxed: flag */
				lfp_store32_relaxed(&r->stop, (uint32_t)ph + 1); /* S1: a flag */
				stopped = true;
			}
			if (now >= next_tick) {
				uint64_t f = sum_frees(r);
				if (progress && pr->ran)
					progress_line(r, ph, now - run_t0, (double)(f - frees_at_tick) / (now - next_tick + 1));
				frees_at_tick = f;
				next_tick = now + 1;
			}
			for (int i = 0; i < nthreads; i++) {
				uint64_t hb = lfp_load64_relaxed(&th[i].hb); /* relaxed: a gauge */
				if (hb != last_hb[i]) {
					last_hb[i] = hb;
					last_change[i] = now;
				} else if (now - last_change[i] > o->watchdog) {
					res.wall = now - run_t0;
					hang_exit(r, &res, i, now - last_change[i], ph);
				}
			}
		}
		pr->wall = st_now() - t0;
		if (!pr->ran)
			pr->wall = 0;
		for (int i = 0; i < nthreads; i++) {
			const struct st_tres *tr = &th[i].res[ph];
			pr->allocs += tr->allocs;
			pr->frees += tr->frees;
			pr->fails += tr->fails;
			pr->reallocs += tr->reallocs;
			pr->cpu_ns += tr->cpu_ns;
		}
		uint64_t v = st_check_quiescent(r, ph);
		pr->frees += r->drained[ph];
		for (int i = 0; i < nthreads; i++)
			pr->violations += th[i].res[ph].violations;
		pr->violations += v;
		if (v && r->pool_backend)
			res.validate_ok = false;
		if (pr->ran && !o->quiet && !o->child)
			fprintf(stderr, "phase %d/%d %-8s %8.3f s %12llu ops %10.3f Mops/s %8.1f cpu-ns/op "
				"%llu alloc-fail  violations %llu\n", ph + 1, o->n_phases, st_workload_names[pr->w],
				pr->wall, (unsigned long long)pr->frees,
				pr->wall > 0 ? (double)pr->frees / pr->wall / 1e6 : 0.0,
				pr->frees ? (double)pr->cpu_ns / (double)pr->frees : 0.0,
				(unsigned long long)pr->fails, (unsigned long long)pr->violations);
		res.wall += pr->wall;
		res.frees += pr->frees;
		res.allocs += pr->allocs;
		res.fails += pr->fails;
		res.cpu_ns += pr->cpu_ns;
	}
	alarm(0);
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i].th, NULL);
	res.violations = lfp_load64_relaxed(&r->violations); /* relaxed: threads joined */

	/* End of run: every pool valid and full, then destroyed. */
	if (r->pool_backend)
		for (int p = 0; p < r->npools; p++) {
			lfp_pool_report_t rep;
			if (lfp_pool_validate(r->pools[p].pool, &rep) != 0 || rep.free != r->pools[p].capacity) {
				st_violation(r, NULL, VK_VALIDATE, "end: pool %d: validate: %s, %llu of %zu free", p,
					     rep.error ? rep.error : "ok", (unsigned long long)rep.free,
					     r->pools[p].capacity);
				res.validate_ok = false;
			}
			if (lfp_pool_destroy(r->pools[p].pool) != 0)
				st_violation(r, NULL, VK_VALIDATE, "end: pool %d: destroy failed", p);
		}
#ifdef ST_HAVE_HEAP
	if (r->heap && lfp_heap_destroy(r->heap) != 0)
		st_violation(r, NULL, VK_VALIDATE, "end: lfp_heap_destroy failed");
#endif
	res.violations = lfp_load64_relaxed(&r->violations); /* relaxed: main alone */
	vkinds_text(r, res.vkinds, sizeof res.vkinds);
	bool any_ran = false;
	for (int i = 0; i < res.nphases; i++)
		any_ran |= res.ph[i].ran;
	if (res.violations) {
		res.result = "FAIL";
		rc = ST_EXIT_VIOLATION;
	} else if (!any_ran) {
		res.result = "SKIP";
		rc = ST_EXIT_SKIP;
	}
	if (o->json)
		write_run_json(o, &res);
	if (o->csv)
		write_run_csv(o, &res);
	print_summary(o, &res);
	for (int i = 0; i < nthreads; i++)
		munmap(th[i].held, th[i].held_cap * sizeof *th[i].held);
	free(last_change);
	free(last_hb);
	free(r->rings);
	free(th);
	free(r);
	g_run = NULL;
	if (have_trace)
		st_trace_free(&trace);
	st_plan_free(&plan);
	if (o->topology)
		st_topo_free(&plan_topo);
	st_topo_free(&g_real);
	return rc;
}

/* ---- drivers: children, sweeps, comparisons ------------------------------- */

struct child_res {
	int status;       /* exit code, or 128 + signal, or -1 timeout */
	char result[64];
	double ops_per_s, cpu_ns_per_op, seconds;
	uint64_t violations;
	char allocator[64];
	char kinds[128];
};

static bool kv(const char *line, const char *key, char *out, size_t n)
{
	char pat[64];
	snprintf(pat, sizeof pat, " %s=", key);
	const char *p = strstr(line, pat);
	if (!p)
		return false;
	p += strlen(pat);
	size_t len = strcspn(p, " \n");
	if (len >= n)
		len = n - 1;
	memcpy(out, p, len);
	out[len] = 0;
	return true;
}

/* Run argv (argv[0] = program) with an optional LD_PRELOAD; parse the last
 * SUMMARY line of its stdout. The child is killed if it overruns timeout. */
static void run_child(char *const argv[], const char *preload, double timeout, struct child_res *cr,
		      bool echo)
{
	memset(cr, 0, sizeof *cr);
	snprintf(cr->result, sizeof cr->result, "ERROR");
	int fd[2];
	if (pipe(fd) < 0) {
		cr->status = -2;
		return;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		cr->status = -2;
		close(fd[0]);
		close(fd[1]);
		return;
	}
	if (pid == 0) {
		dup2(fd[1], 1);
		close(fd[0]);
		close(fd[1]);
		if (preload)
			setenv("LD_PRELOAD", preload, 1);
		else
			unsetenv("LD_PRELOAD");
		if (loader) { /* run the child through the same bundled loader */
			char *lv[72];
			int k = 0;
			lv[k++] = (char *)(uintptr_t)loader;
			for (int i = 0; argv[i] && k < 71; i++)
				lv[k++] = argv[i];
			lv[k] = NULL;
			execv(loader, lv);
		} else {
			execv(argv[0], argv);
		}
		fprintf(stderr, "%s: exec %s: %s\n", prog, argv[0], strerror(errno));
		_exit(ST_EXIT_ERROR);
	}
	close(fd[1]);
	fcntl(fd[0], F_SETFL, O_NONBLOCK);
	char buf[16384];
	size_t len = 0;
	double t_end = st_now() + timeout;
	int status = 0;
	bool exited = false, killed = false;
	for (;;) {
		ssize_t n = read(fd[0], buf + len, sizeof buf - 1 - len);
		if (n > 0) {
			if (echo)
				fwrite(buf + len, 1, (size_t)n, stdout);
			len += (size_t)n;
			if (len > sizeof buf / 2) { /* keep the tail */
				memmove(buf, buf + len - sizeof buf / 4, sizeof buf / 4);
				len = sizeof buf / 4;
			}
			continue;
		}
		if (n == 0)
			break;
		if (!exited && waitpid(pid, &status, WNOHANG) == pid)
			exited = true;
		if (!exited && !killed && st_now() > t_end) {
			fprintf(stderr, "%s: child %d overran %.0f s: killing it (counted as a hang)\n", prog,
				(int)pid, timeout);
			kill(pid, SIGKILL);
			killed = true;
		}
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	close(fd[0]);
	if (!exited)
		waitpid(pid, &status, 0);
	buf[len] = 0;
	cr->status = killed ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	char *line = NULL;
	for (char *p = strstr(buf, "SUMMARY "); p; p = strstr(p + 1, "SUMMARY "))
		if (p == buf || p[-1] == '\n')
			line = p;
	if (killed) {
		snprintf(cr->result, sizeof cr->result, "HANG");
		return;
	}
	if (line == NULL) {
		snprintf(cr->result, sizeof cr->result, WIFSIGNALED(status) ? "CRASH" : "ERROR");
		return;
	}
	char v[64];
	char *nl = strchr(line, '\n');
	if (nl)
		*nl = 0;
	char *sp = line + 7; /* from " result=..." */
	if (kv(sp, "result", v, sizeof v))
		snprintf(cr->result, sizeof cr->result, "%s", v);
	if (kv(sp, "ops_per_s", v, sizeof v))
		cr->ops_per_s = strtod(v, NULL);
	if (kv(sp, "cpu_ns_per_op", v, sizeof v))
		cr->cpu_ns_per_op = strtod(v, NULL);
	if (kv(sp, "seconds", v, sizeof v))
		cr->seconds = strtod(v, NULL);
	if (kv(sp, "violations", v, sizeof v))
		cr->violations = strtoull(v, NULL, 10);
	if (kv(sp, "kinds", cr->kinds, sizeof cr->kinds) && strcmp(cr->kinds, "-") == 0)
		cr->kinds[0] = 0;
	if (kv(sp, "allocator", v, sizeof v))
		snprintf(cr->allocator, sizeof cr->allocator, "%s", v);
}

/* The child command line for one measurement. */
struct argvbuf {
	char *argv[64];
	char store[64][160];
	int n;
};

static void av_add(struct argvbuf *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void av_add(struct argvbuf *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->store[a->n], sizeof a->store[0], fmt, ap);
	va_end(ap);
	a->argv[a->n] = a->store[a->n];
	a->n++;
	a->argv[a->n] = NULL;
}

static void child_args(struct argvbuf *a, const char *exe, const struct st_opts *o, const char *peer,
		       enum st_workload w, int threads, uint64_t seed)
{
	a->n = 0;
	av_add(a, "%s", exe);
	av_add(a, "--child");
	av_add(a, "--backend=%s", peer);
	av_add(a, "--workload=%s", st_workload_names[w]);
	av_add(a, "--threads=%d", threads);
	if (o->ops)
		av_add(a, "--ops=%llu", (unsigned long long)o->ops);
	else
		av_add(a, "--duration=%g", o->duration);
	av_add(a, "--seed=%llu", (unsigned long long)seed);
	av_add(a, "--policy=%s", st_policy_names[o->policy]);
	av_add(a, "--block-size=%zu", o->block_size);
	if (o->blocks)
		av_add(a, "--blocks=%zu", o->blocks);
	av_add(a, "--batch=%d", o->batch);
	av_add(a, "--max-size=%zu", o->max_size);
	av_add(a, "--watchdog=%g", o->watchdog);
	av_add(a, "--trace=%s", o->trace);
	if (o->topology)
		av_add(a, "--topology=%s", o->topology);
	if (o->checked)
		av_add(a, "--checked");
	if (o->pool_stats)
		av_add(a, "--pool-stats");
	if (o->heap_bins)
		av_add(a, "--heap-bins");
	if (o->stop_on_violation)
		av_add(a, "--stop-on-violation");
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	if (n == 0)
		return NAN;
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct point {
	double ops[101], cpu[101];
	int n;
	int bad;       /* runs with violations, hangs or crashes */
	int skipped;
	char allocator[64];
	char status[64];
};

static int run_driver(const struct st_opts *o)
{
	const char *exe = exe_path();
	const char *list[NPEERS];
	int nl = 0;
	int npu = nproc_online();
	bool want[NPEERS] = { false };

	want[o->label ? (int)(find_peer(o->label) - peers) : o->backend == BE_CACHED ? 1 : 0] = true;
	if (o->compare) {
		char buf[256];
		snprintf(buf, sizeof buf, "%s", o->compare);
		want[0] = true;
		for (char *sv = NULL, *tok = strtok_r(buf, ",", &sv); tok; tok = strtok_r(NULL, ",", &sv)) {
			if (strcmp(tok, "all") == 0)
				for (int i = 0; i < NPEERS; i++)
					want[i] = true;
			else
				want[find_peer(tok) - peers] = true;
		}
		const char *why;
		if (st_backend_available(BE_CACHED, &why))
			want[1] = true; /* cached and uncached lfpool both, when there is a cache */
	}
	for (int i = 0; i < NPEERS; i++)
		if (want[i])
			list[nl++] = peers[i].name;

	int nthr = o->n_threads;
	int nw = o->n_phases;
	size_t npts = (size_t)nw * (size_t)nthr * (size_t)nl;
	struct point *pts = calloc(npts, sizeof *pts);
	if (!pts)
		return ST_EXIT_ERROR;
#define PT(w, t, b) pts[((size_t)(w) * (size_t)nthr + (size_t)(t)) * (size_t)nl + (size_t)(b)]
	int total = o->reps * nw * nthr * nl, done = 0, bad = 0, hangs = 0;
	double per = o->ops ? 60 : o->duration;
	double t_start = st_now();
	uint64_t seed = o->seed;
	if (!o->quiet)
		fprintf(stderr, "driver: %d measurements (%d reps x %d workloads x %d thread counts x %d "
			"allocators), about %.0f s\n", total, o->reps, nw, nthr, nl, total * (per + 0.3));
	/* Reps outermost, so slow drifts of a shared machine hit every point. */
	for (int rep = 0; rep < o->reps; rep++)
		for (int w = 0; w < nw; w++)
			for (int t = 0; t < nthr; t++)
				for (int b = 0; b < nl; b++) {
					const struct peer *pe = find_peer(list[b]);
					struct point *pt = &PT(w, t, b);
					struct argvbuf a;
					struct child_res cr;
					int threads = o->threads[t] ? o->threads[t] : npu;
					child_args(&a, exe, o, pe->name, o->phases[w], threads, st_splitmix(&seed));
					run_child(a.argv, pe->preload, per + 3 * o->watchdog + 60, &cr, false);
					done++;
					snprintf(pt->allocator, sizeof pt->allocator, "%s", pe->name);
					snprintf(pt->status, sizeof pt->status, "%s", cr.result);
					if (cr.status == ST_EXIT_SKIP || strcmp(cr.result, "SKIP") == 0) {
						pt->skipped++;
					} else if (cr.status != 0 || strcmp(cr.result, "PASS") != 0) {
						pt->bad++;
						bad++;
						hangs += strcmp(cr.result, "HANG") == 0;
						fprintf(stderr, "driver: %s %s %d threads: %s (exit %d)\n", pe->name,
							st_workload_names[o->phases[w]], threads, cr.result, cr.status);
					} else {
						pt->ops[pt->n] = cr.ops_per_s;
						pt->cpu[pt->n] = cr.cpu_ns_per_op;
						pt->n++;
					}
					if (!o->quiet && (o->progress == 1 || (o->progress == -1 && isatty(2))))
						fprintf(stderr, "[%6.1fs] %d/%d %-13s %-8s %4d threads %10.3f Mops/s %s\n",
							st_now() - t_start, done, total, pe->name,
							st_workload_names[o->phases[w]], threads, cr.ops_per_s / 1e6,
							cr.result);
				}

	/* Report: medians, ranges, efficiency vs 1 thread, ratio to lfpool. */
	char host[128] = "unknown";
	gethostname(host, sizeof host - 1);
	FILE *csv = o->csv ? open_out(o->csv) : NULL;
	FILE *json = o->json ? open_out(o->json) : NULL;
	if (csv)
		fprintf(csv, "host,allocator,workload,threads,cpus,reps,ops_per_s_median,ops_per_s_min,"
			     "ops_per_s_max,cpu_ns_per_op_median,efficiency,rel_to_lfpool,bad_runs,status\n");
	if (json)
		fprintf(json, "{\n  \"host\": \"%s\", \"cpus\": %d, \"reps\": %d, \"seconds_per_run\": %g,\n"
			      "  \"points\": [\n", host, npu, o->reps, per);
	fprintf(stderr, "\n%-13s %-8s %7s %12s %12s %12s %10s %6s %8s\n", "allocator", "workload", "threads",
		"Mops/s med", "min", "max", "cpu-ns/op", "eff", "vs lfpool");
	bool first_json = true;
	for (int w = 0; w < nw; w++)
		for (int t = 0; t < nthr; t++)
			for (int b = 0; b < nl; b++) {
				struct point *pt = &PT(w, t, b);
				int threads = o->threads[t] ? o->threads[t] : npu;
				double med = NAN, mn = NAN, mx = NAN, cpu = NAN, eff = NAN, rel = NAN;
				if (pt->n) {
					double ops[101];
					memcpy(ops, pt->ops, sizeof ops);
					med = median(ops, pt->n);
					mn = ops[0];
					mx = ops[pt->n - 1];
					cpu = median(pt->cpu, pt->n);
					for (int t1 = 0; t1 < nthr; t1++) {
						struct point *p1 = &PT(w, t1, b);
						if ((o->threads[t1] ? o->threads[t1] : npu) == 1 && p1->n) {
							double o1[101];
							memcpy(o1, p1->ops, sizeof o1);
							eff = med / ((threads < npu ? threads : npu) * median(o1, p1->n));
						}
					}
					struct point *pl = &PT(w, t, 0);
					if (pl->n) {
						double o0[101];
						memcpy(o0, pl->ops, sizeof o0);
						rel = med / median(o0, pl->n);
					}
				}
				const char *status = pt->bad ? "FAIL" : pt->n ? "PASS" : "SKIP";
				fprintf(stderr, "%-13s %-8s %7d %12.3f %12.3f %12.3f %10.1f %6.2f %8.2f %s\n",
					pt->allocator, st_workload_names[o->phases[w]], threads, med / 1e6, mn / 1e6,
					mx / 1e6, cpu, eff, rel, pt->n ? (pt->bad ? "FAIL" : "") : "skipped");
				if (csv)
					fprintf(csv, "%s,%s,%s,%d,%d,%d,%.0f,%.0f,%.0f,%.2f,%.4f,%.4f,%d,%s\n", host,
						pt->allocator, st_workload_names[o->phases[w]], threads, npu, pt->n,
						med, mn, mx, cpu, eff, rel, pt->bad, status);
				if (json) {
					fprintf(json, "%s    {\"allocator\": \"%s\", \"workload\": \"%s\", \"threads\": %d, "
						"\"reps\": %d, \"ops_per_s_median\": %.0f, \"ops_per_s_min\": %.0f, "
						"\"ops_per_s_max\": %.0f, \"cpu_ns_per_op_median\": %.2f, "
						"\"efficiency\": %.4f, \"rel_to_lfpool\": %.4f, \"bad_runs\": %d, "
						"\"status\": \"%s\"}", first_json ? "" : ",\n", pt->allocator,
						st_workload_names[o->phases[w]], threads, pt->n, isnan(med) ? 0 : med,
						isnan(mn) ? 0 : mn, isnan(mx) ? 0 : mx, isnan(cpu) ? 0 : cpu,
						isnan(eff) ? 0 : eff, isnan(rel) ? 0 : rel, pt->bad, status);
					first_json = false;
				}
			}
	if (json)
		fprintf(json, "\n  ]\n}\n");
	close_out(csv);
	close_out(json);
	free(pts);
	fflush(stdout);
	printf("SUMMARY result=%s mode=driver runs=%d bad_runs=%d hangs=%d allocators=%d workloads=%d "
	       "thread_counts=%d reps=%d seconds=%.1f seed=%llu\n", bad ? "FAIL" : "PASS", done, bad, hangs,
	       nl, nw, nthr, o->reps, st_now() - t_start, (unsigned long long)o->seed);
	return bad ? ST_EXIT_VIOLATION : ST_EXIT_OK;
#undef PT
}

/* ---- self-test ------------------------------------------------------------ */

/* Workloads that expose ABA with a 2-bit tag: tiny pools, more threads than
 * PUs (so a pop is often preempted between its read of the head and its
 * CAS). Tried in turn, a few seconds each, until one is caught. A try runs
 * its full time rather than stopping at the first violation, so the report
 * shows every kind of check that fired (stamps, canaries, double
 * allocations, not just the pool's own corruption check). */
static const char *const selftest_cfgs[][3] = {
	{ "--workload=random", "--blocks=6", "--batch=3" },
	{ "--workload=hot", "--blocks=4", "--batch=1" },
	{ "--workload=chaos", "--blocks=8", "--batch=3" },
	{ "--workload=lifo", "--blocks=8", "--batch=4" },
};
#define NSELFTEST ((int)(sizeof selftest_cfgs / sizeof selftest_cfgs[0]))

static void self_test_args(struct argvbuf *a, const char *bin, int cfg, int npu, double dur,
			   uint64_t seed, const struct st_opts *o)
{
	a->n = 0;
	av_add(a, "%s", bin);
	av_add(a, "--child");
	for (int i = 0; i < 3; i++)
		av_add(a, "%s", selftest_cfgs[cfg][i]);
	av_add(a, "--threads=%d", 4 * npu < 8 ? 8 : 4 * npu);
	av_add(a, "--duration=%g", dur);
	av_add(a, "--seed=%llu", (unsigned long long)seed);
	av_add(a, "--watchdog=%g", o->watchdog < 5 ? o->watchdog : 5);
}

static int self_test(const struct st_opts *o)
{
	char broken[PATH_MAX];
	const char *dir = st_exe_dir();
	if (o->broken_bin)
		snprintf(broken, sizeof broken, "%s", o->broken_bin);
	else
		snprintf(broken, sizeof broken, "%s/selftest/lfpool-stress", dir ? dir : ".");
	if (access(broken, X_OK) != 0) {
		fprintf(stderr, "%s: self-test: the broken build %s is missing (make stress builds it; "
			"or give --broken-bin PATH)\n", prog, broken);
		printf("SUMMARY result=ERROR mode=self-test caught=0 reason=no-broken-build\n");
		return ST_EXIT_ERROR;
	}
	int npu = nproc_online();
	double budget = o->duration, ctl = 1;
	uint64_t seed = o->seed;
	struct argvbuf a;
	struct child_res good, bad;

	/* 1. Control: every configuration on this (good) build must pass, or
	 * the harness cries wolf and catching the broken build proves nothing. */
	for (int c = 0; c < NSELFTEST; c++) {
		self_test_args(&a, exe_path(), c, npu, ctl, seed, o);
		run_child(a.argv, NULL, ctl + 60, &good, false);
		fprintf(stderr, "self-test: control %s on this build: %s (exit %d, %.0f ops/s)\n",
			selftest_cfgs[c][0] + 2, good.result, good.status, good.ops_per_s);
		if (good.status != 0 || strcmp(good.result, "PASS") != 0) {
			printf("SUMMARY result=FAIL mode=self-test caught=0 reason=control-failed control=%s "
			       "seed=%llu\n", good.result, (unsigned long long)seed);
			return ST_EXIT_VIOLATION;
		}
	}
	/* 2. The broken build (LFP_TAG_BITS=2) must be caught within the budget. */
	fprintf(stderr, "self-test: broken build (ABA tag 2 bits): %s, up to %g s\n", broken, budget);
	double t0 = st_now();
	const char *how = NULL;
	int tries = 0;
	while (!how && st_now() - t0 < budget) {
		int c = tries % NSELFTEST;
		double left = budget - (st_now() - t0), dur = left < 3 ? left : 3;
		if (dur < 0.5)
			dur = 0.5;
		self_test_args(&a, broken, c, npu, dur, st_splitmix(&seed), o);
		run_child(a.argv, NULL, dur + 3 * 5 + 30, &bad, false);
		tries++;
		if (bad.status == ST_EXIT_VIOLATION || bad.violations > 0)
			how = "violations";
		else if (bad.status == ST_EXIT_HANG || bad.status == -1)
			how = "hang";
		else if (bad.status >= 128)
			how = "crash";
		else if (bad.status != 0)
			how = "error";
		fprintf(stderr, "self-test: try %d, %s: %s (exit %d%s%s)\n", tries, selftest_cfgs[c][0] + 2,
			how ? "CAUGHT" : "not caught", bad.status, bad.kinds[0] ? ", " : "", bad.kinds);
	}
	double took = st_now() - t0;
	fprintf(stderr, "self-test: broken build %s after %.1f s and %d tries: %s\n", how ? "caught" : "NOT caught",
		took, tries, how ? "the checks work" : "the harness missed a real bug");
	printf("SUMMARY result=%s mode=self-test caught=%d how=%s kinds=%s tries=%d broken_result=%s "
	       "broken_exit=%d violations=%llu seconds=%.1f seed=%llu\n", how ? "PASS" : "FAIL", how != NULL,
	       how ? how : "none", bad.kinds[0] ? bad.kinds : "-", tries, bad.result, bad.status,
	       (unsigned long long)bad.violations, took, (unsigned long long)o->seed);
	return how ? ST_EXIT_OK : ST_EXIT_VIOLATION;
}

/* ---- processes ------------------------------------------------------------ */

static int run_procs(const struct st_opts *o)
{
#ifdef ST_HAVE_SHM
	return st_procs_run(o);
#else
	(void)o;
	fprintf(stderr, "%s: --procs: process mode needs the shared-memory pool "
		"(include/lfpool/shm.h), which is not built yet\n", prog);
	printf("SUMMARY result=SKIP mode=procs reason=no-shm\n");
	return ST_EXIT_SKIP;
#endif
}

int main(int argc, char **argv)
{
	struct st_opts o;
	const char *slash = strrchr(argv[0], '/');
	prog = slash ? slash + 1 : argv[0];
	init_self_path(argv[0]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(&o, argc, argv);
	g_opts = &o;
	if (o.self_test)
		return self_test(&o);
	if (o.procs)
		return run_procs(&o);
	bool driver = !o.child && !o.plan_only &&
		      (o.compare || o.n_threads > 1 || o.reps > 1 ||
		       (o.backend == BE_MALLOC && o.label && strcmp(o.label, "glibc") != 0));
	if (driver)
		return run_driver(&o);
	if (!o.child && !o.quiet)
		fprintf(stderr, "%s: seed %llu\n", prog, (unsigned long long)o.seed);
	return run_single(&o);
}
