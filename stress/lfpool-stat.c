/*
 * stress/lfpool-stat.c - inspect (and optionally recover) a live lfpool
 * shared-memory segment.
 *
 *   lfpool-stat [--snapshot] [--recover] [--timeout MS] NAME
 *   lfpool-stat --fd N ...               (an inherited memfd instead of a name)
 *   lfpool-stat --create --blocks N --size S [--align A] [--participants P]
 *               [--cache C] [--mode OCTAL] NAME
 *   lfpool-stat --unlink NAME
 *
 * It attaches as an observer (no participant slot), prints the header, the
 * block accounting (capacity, free, owned, in caches, held by dead or
 * departed participants, in flight), one line per participant and a verdict.
 * By default the count is exact: it takes the segment's recovery lock and
 * briefly stops every participant's shared-stack slow path (thread-cache
 * hits go on). --snapshot counts without stopping anyone. --recover returns
 * what dead and departed participants hold to the free stack.
 *
 * Exit status: 0 consistent, nobody dead; 1 dead/departed participants or
 * blocks in flight (run --recover) or unexplained blocks; 2 usage error or
 * the segment could not be attached (errno and reason printed); 3 the
 * segment is corrupt (validate failed), or recovery could not run.
 */
#include "../include/lfpool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_OK 0
#define EXIT_DIRTY 1
#define EXIT_USAGE 2
#define EXIT_CORRUPT 3

static const char *prog = "lfpool-stat";

/* The usage text: on stdout with exit 0 when asked for (--help), on
 * stderr with EXIT_USAGE after a bad command line. */
static void usage_to(FILE *f, int code)
{
	fprintf(f,
		"usage: %s [--snapshot] [--recover] [--timeout MS] NAME\n"
		"       %s [--snapshot] [--recover] [--timeout MS] --fd N\n"
		"       %s --create --blocks N --size S [--align A] [--participants P]\n"
		"                   [--cache C] [--mode OCTAL] NAME\n"
		"       %s --unlink NAME\n"
		"exit: 0 consistent, 1 dead participants/blocks in flight (use --recover),\n"
		"      2 usage or attach error, 3 corrupt or recovery failed\n",
		prog, prog, prog, prog);
	exit(code);
}

static void usage(void)
{
	usage_to(stderr, EXIT_USAGE);
}

static unsigned long long num(const char *s, int base)
{
	char *end;
	errno = 0;
	if (s == NULL || *s == '\0' || *s == '-')
		usage();
	unsigned long long v = strtoull(s, &end, base);
	if (errno != 0 || *end != '\0')
		usage();
	return v;
}

static const char *state_name(uint32_t s)
{
	switch (s) {
	case LFP_SHM_PART_LIVE: return "live";
	case LFP_SHM_PART_DEAD: return "DEAD";
	case LFP_SHM_PART_DEPARTED: return "departed";
	default: return "free";
	}
}

static const char *op_name(uint32_t op)
{
	static const char *names[] = { "-", "alloc", "free", "refill", "flush", "adopt", "detach" };
	return op < sizeof names / sizeof names[0] ? names[op] : "?";
}

/* The validate verdict of the region (counted only with the world stopped). */
static const char *validate_word(const lfp_shm_report_t *r)
{
	if (!r->exact)
		return "not run (snapshot)";
	return r->validate == 0 ? "ok" : r->validate == -EAGAIN ? "not run" : "FAILED";
}

static void print_header(const char *what, const lfp_shm_info_t *in)
{
	char when[64] = "?";
	time_t t = (time_t)(in->created_ns / 1000000000u);
	struct tm tm;
	if (localtime_r(&t, &tm) != NULL)
		strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
	printf("segment %s\n", what);
	printf("  layout v%u: %" PRIu64 " blocks of %" PRIu64 " B (align %" PRIu64
	       "), %u participant slots, thread cache %u (this handle)\n",
	       in->version, in->block_count, in->block_size, in->block_align, in->max_participants,
	       in->cache_size);
	printf("  size %" PRIu64 " B: slots @%" PRIu64 ", owner words @%" PRIu64 ", pool @%" PRIu64
	       " (%" PRIu64 " B); huge pages %s; %s\n",
	       in->total_size, in->parts_off, in->owner_off, in->pool_off, in->pool_size,
	       in->hugepages ? "yes" : "no", in->sealed ? "sealed memfd" : "not sealed");
	printf("  created %s by pid %" PRId64 " (start %" PRIu64 "); recoveries %" PRIu64
	       " (reclaimed %" PRIu64 " blocks)\n",
	       when, in->creator_pid, in->creator_start, in->recoveries, in->reclaimed);
}

static int do_create(const char *name, lfp_shm_config_t *c, unsigned mode)
{
	lfp_shm_t *s = lfp_shm_create(name, c, (mode_t)mode);
	if (s == NULL) {
		fprintf(stderr, "%s: create %s: %s (%s)\n", prog, name, strerror(errno),
			lfp_shm_last_error() ? lfp_shm_last_error() : "-");
		return EXIT_USAGE;
	}
	lfp_shm_info_t in;
	lfp_shm_info(s, &in);
	print_header(name, &in);
	lfp_shm_detach(s);
	printf("created (the segment stays until lfpool-stat --unlink %s)\n", name);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	bool snapshot = false, recover = false, create = false, unlink_it = false;
	unsigned timeout = 0, mode = 0;
	int fd = -1;
	const char *name = NULL;
	lfp_shm_config_t c = { 0 };

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--snapshot"))
			snapshot = true;
		else if (!strcmp(a, "--recover"))
			recover = true;
		else if (!strcmp(a, "--create"))
			create = true;
		else if (!strcmp(a, "--unlink"))
			unlink_it = true;
		else if (!strcmp(a, "--timeout") && v)
			timeout = (unsigned)num(argv[++i], 10);
		else if (!strcmp(a, "--fd") && v)
			fd = (int)num(argv[++i], 10);
		else if (!strcmp(a, "--blocks") && v)
			c.block_count = (size_t)num(argv[++i], 0);
		else if (!strcmp(a, "--size") && v)
			c.block_size = (size_t)num(argv[++i], 0);
		else if (!strcmp(a, "--align") && v)
			c.block_align = (size_t)num(argv[++i], 0);
		else if (!strcmp(a, "--participants") && v)
			c.max_participants = (unsigned)num(argv[++i], 0);
		else if (!strcmp(a, "--cache") && v)
			c.cache_size = (unsigned)num(argv[++i], 0);
		else if (!strcmp(a, "--mode") && v)
			mode = (unsigned)num(argv[++i], 8);
		else if (!strcmp(a, "-h") || !strcmp(a, "--help"))
			usage_to(stdout, 0);
		else if (a[0] == '-' && a[1] == '-')
			usage();
		else if (name == NULL)
			name = a;
		else
			usage();
	}
	if ((name == NULL) == (fd < 0) || (snapshot && recover) ||
	    create + unlink_it + (recover || snapshot) > 1)
		usage();
	if (create) {
		if (name == NULL)
			usage();
		return do_create(name, &c, mode);
	}
	if (unlink_it) {
		int rc = name ? lfp_shm_unlink(name) : -EINVAL;
		if (rc < 0) {
			fprintf(stderr, "%s: unlink %s: %s\n", prog, name ? name : "?", strerror(-rc));
			return EXIT_USAGE;
		}
		return EXIT_OK;
	}

	lfp_shm_attach_opts_t o = { .flags = LFP_SHM_OBSERVER, .timeout_ms = timeout };
	lfp_shm_t *s = lfp_shm_attach_ex(name, fd, &o);
	if (s == NULL) {
		fprintf(stderr, "%s: attach %s: %s (%s)\n", prog, name ? name : "fd", strerror(errno),
			lfp_shm_last_error() ? lfp_shm_last_error() : "-");
		return EXIT_USAGE;
	}
	lfp_shm_info_t in;
	lfp_shm_info(s, &in);
	print_header(name ? name : "(fd)", &in);

	size_t cap = in.max_participants;
	lfp_shm_part_info_t *parts = calloc(cap, sizeof *parts);
	lfp_shm_report_t r = { .parts = parts, .parts_cap = parts ? cap : 0 };
	unsigned flags = recover ? LFP_SHM_RECOVER : snapshot ? 0 : LFP_SHM_EXACT;
	int rc = lfp_shm_inspect(s, flags, &r);

	printf("blocks (%s): capacity %" PRIu64 ", free %" PRIu64 ", owned %" PRIu64
	       ", in caches %" PRIu64 "\n",
	       r.exact ? "exact" : "snapshot", r.capacity, r.free, r.owned, r.cached);
	printf("  held by dead/departed participants: owned %" PRIu64 ", cached %" PRIu64
	       "; in flight %" PRIu64 "; unexplained %" PRIu64 "\n",
	       r.dead_owned, r.dead_cached, r.orphans, r.unexplained);
	if (recover)
		printf("  reclaimed now: %" PRIu64 "\n", r.reclaimed);
	printf("participants: %u live, %u dead, %u departed\n", r.live, r.dead, r.departed);
	if (r.parts_len > 0)
		printf("  %4s %-8s %8s %12s %8s %8s %9s %-7s %s\n", "id", "state", "pid", "start",
		       "owned", "cached", "in-flight", "last-op", "");
	for (size_t k = 0; k < r.parts_len && k < r.parts_cap; k++) {
		const lfp_shm_part_info_t *p = &parts[k];
		char extra[64] = "";
		if (p->state != LFP_SHM_PART_LIVE)
			snprintf(extra, sizeof extra, "orphans %" PRIu64 "%s", p->orphans,
				 p->reclaimed ? ", reclaimed" : "");
		printf("  %4u %-8s %8" PRId64 " %12" PRIu64 " %8" PRIu64 " %8" PRIu64 " %9u %-7s %s\n",
		       p->id, state_name(p->state), p->pid, p->start_time, p->owned, p->cached,
		       p->in_flight, op_name(p->last_op), extra);
	}

	int status;
	if (rc == -EUCLEAN) {
		printf("verdict: CORRUPT: %s\n", r.error ? r.error : "?");
		status = EXIT_CORRUPT;
	} else if (rc < 0) {
		printf("verdict: could not %s: %s (%s)\n", recover ? "recover" : "count",
		       strerror(-rc), r.error ? r.error : "-");
		status = EXIT_CORRUPT;
	} else if (r.unexplained > 0) {
		printf("verdict: INCONSISTENT: %" PRIu64 " blocks neither free nor owned by anyone%s; "
		       "validate: %s\n",
		       r.unexplained, recover ? " (reclaimed)" : "", validate_word(&r));
		status = EXIT_DIRTY;
	} else if (!recover && (r.dead + r.departed > 0 || (r.exact && r.orphans > 0))) {
		printf("verdict: %u dead and %u departed participants hold %" PRIu64
		       " blocks (+%" PRIu64 " in flight): run %s --recover; validate: %s\n",
		       r.dead, r.departed, r.dead_owned + r.dead_cached, r.orphans, prog,
		       validate_word(&r));
		status = EXIT_DIRTY;
	} else {
		const char *v = validate_word(&r);
		printf("verdict: consistent%s (free + owned + cached = %" PRIu64 " of %" PRIu64
		       "; validate: %s)\n",
		       r.exact ? "" : " as far as a snapshot shows",
		       r.free + r.owned + r.cached, r.capacity, v);
		status = EXIT_OK;
	}
	free(parts);
	lfp_shm_detach(s);
	return status;
}
