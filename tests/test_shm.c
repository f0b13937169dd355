/*
 * tests/test_shm.c - Criterion tests of the shared-memory pool
 * (include/lfpool/shm.h): the single-process contract, every errno, corrupt
 * and hostile headers, initialisation timeouts, adoption, thread caches,
 * and recovery of participants that die holding blocks or in flight.
 *
 * Suites:
 *   life      create / attach / detach / unlink, names, configs, modes
 *   ops       alloc, free, adopt, owner, caches, exhaustion
 *   fd        memfd create, attach by fd, fork, hugepage fallback, alignment
 *   corrupt   a valid segment copied into a new memfd, one field spoiled
 *             (with and without a recomputed checksum): attach must refuse
 *             with EBADMSG (never crash: run `make asan` style builds too)
 *   init      a creator that never finishes or died: ETIMEDOUT / EOWNERDEAD
 *   recover   a forked child that exits without detaching (holding owned and
 *             cached blocks), dies inside an operation (orphans), is a zombie,
 *             or whose pid is "reused"; departed participants; a dead
 *             recoverer taken over; the exact-inspect timeout
 *   perm      a default-mode segment is closed to another uid (root only for
 *             the cross-uid half; `make test-shm-perm` runs this suite alone)
 *
 * Some tests reach into the segment through pool/shm_internal.h to build the
 * states a crash leaves behind, at exactly the instruction of interest.
 * Segment names are "/lfpt-<pid>-<n>"; the suite's fini unlinks them all, also
 * after a failed assertion.
 */
#include "../pool/shm_internal.h"
#include "lfp_test.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdalign.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ---- helpers ----------------------------------------------------------- */

#define MAX_NAMES 8
static char names[MAX_NAMES][64];
static int n_names;

static const char *tname(void)
{
	cr_assert_lt(n_names, MAX_NAMES);
	snprintf(names[n_names], sizeof names[0], "/lfpt-%d-%d", (int)getpid(), n_names);
	/* A name left by a killed run of a process with our pid (pids wrap)
	 * would make the first create fail with EEXIST. */
	shm_unlink(names[n_names]);
	return names[n_names++];
}

static void cleanup(void)
{
	for (int i = 0; i < n_names; i++)
		shm_unlink(names[i]);
	n_names = 0;
}

TestSuite(life, .fini = cleanup, .timeout = 20);
TestSuite(ops, .fini = cleanup, .timeout = 20);
TestSuite(fd, .fini = cleanup, .timeout = 20);
TestSuite(corrupt, .fini = cleanup, .timeout = 30);
TestSuite(init, .fini = cleanup, .timeout = 20);
TestSuite(recover, .fini = cleanup, .timeout = 30);
TestSuite(perm, .fini = cleanup, .timeout = 20);
TestSuite(cli, .fini = cleanup, .timeout = 30);

static lfp_shm_config_t cfg(size_t size, size_t count)
{
	return (lfp_shm_config_t){ .block_size = size, .block_count = count };
}

static lfp_shm_config_t cfg_nocache(size_t size, size_t count)
{
	lfp_shm_config_t c = cfg(size, count);
	c.flags = LFP_SHM_NOCACHE;
	return c;
}

static lfp_shm_t *make(const char *name, lfp_shm_config_t c)
{
	lfp_shm_t *s = lfp_shm_create(name, &c, 0);
	cr_assert_not_null(s, "create %s: %s (%s)", name, strerror(errno),
			   lfp_shm_last_error() ? lfp_shm_last_error() : "-");
	return s;
}

static lfp_shm_t *attach_opts(const char *name, int fd, unsigned flags, unsigned timeout_ms)
{
	lfp_shm_attach_opts_t o = { .flags = flags, .timeout_ms = timeout_ms };
	return lfp_shm_attach_ex(name, fd, &o);
}

/* Exact inspect through an observer handle; asserts success. */
static lfp_shm_report_t exact(const char *name, lfp_shm_part_info_t *parts, size_t cap)
{
	lfp_shm_t *o = attach_opts(name, -1, LFP_SHM_OBSERVER, 2000);
	cr_assert_not_null(o, "observer attach: %s", strerror(errno));
	lfp_shm_report_t r = { .parts = parts, .parts_cap = cap };
	int rc = lfp_shm_inspect(o, LFP_SHM_EXACT, &r);
	cr_assert_eq(rc, 0, "exact inspect: %d (%s)", rc, r.error ? r.error : "-");
	cr_assert_eq(lfp_shm_detach(o), 0);
	return r;
}

static void assert_accounted(const lfp_shm_report_t *r)
{
	cr_assert_eq(r->free + r->owned + r->cached + r->dead_owned + r->dead_cached + r->orphans +
			     r->unexplained,
		     r->capacity,
		     "free %" PRIu64 " + owned %" PRIu64 " + cached %" PRIu64 " + dead %" PRIu64
		     "/%" PRIu64 " + orphans %" PRIu64 " + unexplained %" PRIu64 " != capacity %" PRIu64,
		     r->free, r->owned, r->cached, r->dead_owned, r->dead_cached, r->orphans,
		     r->unexplained, r->capacity);
}

static pid_t fork_or_die(void)
{
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	return pid;
}

static int wait_exit(pid_t pid)
{
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- life ---------------------------------------------------------------- */

Test(life, create_attach_two_addresses)
{
	const char *nm = tname();
	lfp_shm_t *a = make(nm, cfg(48, 100));
	lfp_shm_t *b = lfp_shm_attach(nm);
	cr_assert_not_null(b, "attach: %s", strerror(errno));

	lfp_shm_info_t ia, ib;
	cr_assert_eq(lfp_shm_info(a, &ia), 0);
	cr_assert_eq(lfp_shm_info(b, &ib), 0);
	cr_assert_neq(ia.base, ib.base, "two mappings in one process differ");
	cr_assert_eq(ia.block_count, 100);
	cr_assert_geq(ia.block_size, 48);
	cr_assert_eq(ia.version, LFPI_SHM_VERSION);
	cr_assert_eq(ia.max_participants, LFP_SHM_DEFAULT_PARTICIPANTS);
	cr_assert_eq(ia.creator_pid, getpid());
	cr_assert_eq(ia.self, 0);
	cr_assert_eq(ib.self, 1);
	cr_assert_eq(ia.total_size, ib.total_size);

	/* A block written through a is the same block through b. */
	void *p = lfp_shm_alloc(a);
	cr_assert_not_null(p);
	int64_t idx = lfp_shm_index(a, p);
	cr_assert_geq(idx, 0);
	char *q = lfp_shm_ptr(b, (uint64_t)idx);
	cr_assert_not_null(q);
	cr_assert_neq((void *)q, p);
	strcpy(p, "hello across mappings");
	cr_assert_str_eq(q, "hello across mappings");
	cr_assert_eq(lfp_shm_owner(b, q), 0);
	cr_assert_eq(lfp_shm_adopt(b, q, 0), 0);
	cr_assert_eq(lfp_shm_owner(a, p), 1);
	cr_assert_eq(lfp_shm_free(a, p), -EPERM, "a gave it away");
	cr_assert_eq(lfp_shm_free(b, q), 0);
	cr_assert_eq(lfp_shm_detach(b), 0);
	cr_assert_eq(lfp_shm_detach(a), 0);
	cr_assert_eq(lfp_shm_unlink(nm), 0);
	cr_assert_eq(lfp_shm_unlink(nm), -ENOENT);
	errno = 0;
	cr_assert_null(lfp_shm_attach(nm));
	cr_assert_eq(errno, ENOENT);
}

Test(life, default_mode_is_0600_and_mode_is_exact)
{
	mode_t old = umask(0);
	const char *n1 = tname(), *n2 = tname();
	lfp_shm_t *a = make(n1, cfg(16, 8));
	struct stat st;
	cr_assert_eq(fstat(lfp_shm_fd(a), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600, "default mode %o", st.st_mode & 07777);
	umask(077);
	lfp_shm_config_t c = cfg(16, 8);
	lfp_shm_t *b = lfp_shm_create(n2, &c, 0640);
	cr_assert_not_null(b);
	cr_assert_eq(fstat(lfp_shm_fd(b), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0640, "mode %o despite umask 077", st.st_mode & 07777);
	umask(old);
	lfp_shm_detach(a);
	lfp_shm_detach(b);
}

Test(life, exists_is_refused)
{
	const char *nm = tname();
	lfp_shm_t *a = make(nm, cfg(16, 8));
	lfp_shm_config_t c = cfg(16, 8);
	errno = 0;
	cr_assert_null(lfp_shm_create(nm, &c, 0));
	cr_assert_eq(errno, EEXIST);
	cr_expect(strstr(lfp_shm_last_error(), "exists") != NULL && strstr(lfp_shm_last_error(), "--unlink"),
		  "the reason names the way out: %s", lfp_shm_last_error());
	/* The existing segment is untouched. */
	lfp_shm_t *b = lfp_shm_attach(nm);
	cr_assert_not_null(b);
	lfp_shm_detach(b);
	lfp_shm_detach(a);
}

Test(life, a_missing_name_says_so)
{
	const char *nm = tname();
	errno = 0;
	cr_assert_null(lfp_shm_attach(nm));
	cr_assert_eq(errno, ENOENT);
	cr_expect(strstr(lfp_shm_last_error(), "no segment of that name") != NULL, "%s",
		  lfp_shm_last_error());
}

Test(life, bad_names_and_configs)
{
	lfp_shm_config_t good = cfg(16, 8);
	const char *bad_names[] = { "", "/", "a/b", "/a/b", ".", "/..", NULL };
	for (int i = 0; bad_names[i]; i++) {
		errno = 0;
		cr_assert_null(lfp_shm_create(bad_names[i], &good, 0), "name '%s'", bad_names[i]);
		cr_assert_eq(errno, EINVAL, "name '%s'", bad_names[i]);
		errno = 0;
		cr_assert_null(lfp_shm_attach(bad_names[i]));
		cr_assert_eq(errno, EINVAL);
		cr_assert_eq(lfp_shm_unlink(bad_names[i]), -EINVAL);
	}
	char longname[300];
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	errno = 0;
	cr_assert_null(lfp_shm_create(longname, &good, 0));
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_null(lfp_shm_create(NULL, &good, 0));
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_null(lfp_shm_attach(NULL));
	cr_assert_eq(errno, EINVAL);

	struct {
		lfp_shm_config_t c;
		mode_t mode;
		int err;
	} cases[] = {
		{ cfg(0, 8), 0, EINVAL },
		{ cfg(16, 0), 0, EINVAL },
		{ cfg(16, (size_t)LFP_POOL_MAX_BLOCKS + 1), 0, EINVAL },
		{ { .block_size = 16, .block_count = 8, .block_align = 3 }, 0, EINVAL },
		{ { .block_size = 16, .block_count = 8, .max_participants = 1025 }, 0, EINVAL },
		{ { .block_size = 16, .block_count = 8, .cache_size = LFP_SHM_MAX_CACHE + 1 }, 0, EINVAL },
		{ { .block_size = 16, .block_count = 8, .flags = 1u << 12 }, 0, EINVAL },
		{ { .block_size = 16, .block_count = 8, .flags = LFP_SHM_OBSERVER }, 0, EINVAL },
		{ { .block_size = SIZE_MAX / 2, .block_count = 1000 }, 0, EOVERFLOW },
		{ cfg(16, 8), 04600, EINVAL },
		{ { .block_size = 16, .block_count = 8,
		    .flags = LFP_SHM_HUGEPAGES | LFP_SHM_HUGEPAGES_STRICT }, 0, ENOTSUP },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *nm = tname();
		errno = 0;
		cr_assert_null(lfp_shm_create(nm, &cases[i].c, cases[i].mode), "case %zu", i);
		cr_assert_eq(errno, cases[i].err, "case %zu: errno %d (%s), want %d", i, errno,
			     lfp_shm_last_error() ? lfp_shm_last_error() : "-", cases[i].err);
		cr_assert_not_null(lfp_shm_last_error());
		/* A failed create leaves no name behind. */
		cr_assert_eq(lfp_shm_unlink(nm), -ENOENT, "case %zu left its name", i);
		n_names--;
	}
	errno = 0;
	cr_assert_null(lfp_shm_create(tname(), NULL, 0));
	cr_assert_eq(errno, EINVAL);
}

Test(life, attach_argument_errors)
{
	const char *nm = tname();
	lfp_shm_t *a = make(nm, cfg(16, 8));
	errno = 0;
	cr_assert_null(lfp_shm_attach_ex(nm, lfp_shm_fd(a), NULL), "both name and fd");
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_null(lfp_shm_attach_ex(NULL, -1, NULL), "neither");
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_null(attach_opts(nm, -1, 1u << 20, 0), "unknown flag");
	cr_assert_eq(errno, EINVAL);
	lfp_shm_attach_opts_t o = { .cache_size = LFP_SHM_MAX_CACHE + 1 };
	errno = 0;
	cr_assert_null(lfp_shm_attach_ex(nm, -1, &o));
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_null(lfp_shm_attach_fd(-1));
	cr_assert_eq(errno, EBADF);
	int fd = open("/dev/null", O_RDONLY);
	close(fd);
	errno = 0;
	cr_assert_null(lfp_shm_attach_fd(fd), "closed fd");
	cr_assert_eq(errno, EBADF);
	cr_assert_eq(lfp_shm_detach(NULL), -EINVAL);
	lfp_shm_detach(a);
}

/* Every call on a NULL handle, and every NULL out-pointer or unknown flag,
 * is refused with the documented error (R2 review: only detach and create
 * were covered). Table-driven: one row per public call. */
Test(life, null_handles_out_pointers_and_flags_are_einval)
{
	int local = 0;
	struct {
		const char *what;
		int64_t got;
	} rows[] = {
		{ "free(NULL, p)", lfp_shm_free(NULL, &local) },
		{ "free(NULL, NULL)", lfp_shm_free(NULL, NULL) },
		{ "adopt(NULL)", lfp_shm_adopt(NULL, &local, LFP_SHM_ANY) },
		{ "cache_flush(NULL)", lfp_shm_cache_flush(NULL) },
		{ "self(NULL)", lfp_shm_self(NULL) },
		{ "owner(NULL)", lfp_shm_owner(NULL, &local) },
		{ "index(NULL)", lfp_shm_index(NULL, &local) },
		{ "fd(NULL)", lfp_shm_fd(NULL) },
		{ "info(NULL)", lfp_shm_info(NULL, NULL) },
		{ "inspect(NULL)", lfp_shm_inspect(NULL, 0, NULL) },
		{ "recover(NULL)", lfp_shm_recover(NULL, NULL) },
		{ "detach(NULL)", lfp_shm_detach(NULL) },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		cr_expect_eq(rows[i].got, -EINVAL, "%s: %" PRId64, rows[i].what, rows[i].got);
	errno = 0;
	cr_expect_null(lfp_shm_alloc(NULL));
	cr_expect_eq(errno, EINVAL, "alloc(NULL)");
	cr_expect_null(lfp_shm_ptr(NULL, 0));
	cr_expect_null(lfp_shm_pool(NULL));

	const char *nm = tname();
	lfp_shm_t *a = make(nm, cfg(16, 8));
	lfp_shm_report_t r = { 0 };
	cr_expect_eq(lfp_shm_info(a, NULL), -EINVAL, "info: NULL out");
	cr_expect_eq(lfp_shm_inspect(a, 0, NULL), -EINVAL, "inspect: NULL report");
	cr_expect_eq(lfp_shm_inspect(a, 1u << 20, &r), -EINVAL, "inspect: unknown flag");
	r.parts_cap = 4; /* parts NULL: a capacity without an array writes nothing */
	cr_expect_eq(lfp_shm_inspect(a, LFP_SHM_EXACT, &r), 0);
	cr_expect_eq(lfp_shm_recover(a, NULL), 0, "recover: the report is optional");
	cr_expect_eq(lfp_shm_adopt(a, NULL, LFP_SHM_ANY), -EINVAL, "adopt(NULL block)");
	cr_expect_eq(lfp_shm_adopt(a, &local, LFP_SHM_ANY), -EINVAL, "adopt(foreign)");
	cr_expect_eq(lfp_shm_adopt(a, &local, -7), -EINVAL, "adopt from -7");
	cr_expect_eq(lfp_shm_owner(a, NULL), -EINVAL);
	cr_expect_eq(lfp_shm_owner(a, &local), -EINVAL);
	cr_expect_null(lfp_shm_ptr(a, UINT64_MAX));
	cr_expect_eq(lfp_shm_detach(a), 0);

	/* Sizes near SIZE_MAX overflow the layout: EOVERFLOW, never a wrap. */
	static const size_t ks[] = { 0, 1, 63, 4096 };
	for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
		lfp_shm_config_t c = cfg(SIZE_MAX - ks[i], 2);
		errno = 0;
		cr_expect_null(lfp_shm_create_memfd(NULL, &c), "block_size SIZE_MAX-%zu", ks[i]);
		cr_expect_eq(errno, EOVERFLOW, "block_size SIZE_MAX-%zu: errno %d", ks[i], errno);
	}
	lfp_shm_config_t huge_align = cfg(16, 8);
	huge_align.block_align = (size_t)1 << 63;
	errno = 0;
	cr_expect_null(lfp_shm_create_memfd(NULL, &huge_align), "align 2^63");
	cr_expect(errno == EINVAL || errno == EOVERFLOW, "align 2^63: errno %d", errno);
}

Test(life, table_full_then_dead_slot_is_recycled)
{
	const char *nm = tname();
	lfp_shm_config_t c = cfg(16, 8);
	c.max_participants = 2;
	lfp_shm_t *a = make(nm, c);
	lfp_shm_t *b = lfp_shm_attach(nm);
	cr_assert_not_null(b);
	errno = 0;
	cr_assert_null(lfp_shm_attach(nm));
	cr_assert_eq(errno, EUSERS);
	cr_assert_eq(lfp_shm_detach(b), 0);

	/* A child takes the free slot and dies holding a block. */
	pid_t pid = fork_or_die();
	if (pid == 0) {
		lfp_shm_t *ch = lfp_shm_attach(nm);
		_exit(ch != NULL && lfp_shm_alloc(ch) != NULL ? 0 : 1);
	}
	cr_assert_eq(wait_exit(pid), 0);
	/* Full again, but by a dead process: attach recovers and gets in. */
	lfp_shm_t *d = lfp_shm_attach(nm);
	cr_assert_not_null(d, "attach after a dead holder: %s", strerror(errno));
	lfp_shm_report_t r = exact(nm, NULL, 0);
	cr_assert_eq(r.free, 8, "the dead child's block came back");
	cr_assert_eq(r.live, 2);
	lfp_shm_detach(d);
	lfp_shm_detach(a);
}

/* ---- ops ------------------------------------------------------------------ */

static void ops_contract(lfp_shm_config_t c)
{
	const char *nm = tname();
	lfp_shm_t *a = make(nm, c);
	lfp_shm_t *b = lfp_shm_attach(nm);
	cr_assert_not_null(b);
	void *held[16];
	for (int i = 0; i < 16; i++) {
		held[i] = lfp_shm_alloc(a);
		cr_assert_not_null(held[i], "alloc %d", i);
		cr_assert_eq((uintptr_t)held[i] % alignof(max_align_t), 0);
		cr_assert_eq(lfp_shm_owner(a, held[i]), 0);
		for (int j = 0; j < i; j++)
			cr_assert_neq(held[i], held[j]);
	}
	errno = 0;
	cr_assert_null(lfp_shm_alloc(a));
	cr_assert_eq(errno, ENOMEM, "exhausted");
	errno = 0;
	cr_assert_null(lfp_shm_alloc(b));
	cr_assert_eq(errno, ENOMEM, "exhausted for the other participant too");

	cr_assert_eq(lfp_shm_free(a, NULL), 0);
	cr_assert_eq(lfp_shm_free(a, (char *)held[0] + 1), -EINVAL, "not a block start");
	int local;
	cr_assert_eq(lfp_shm_free(a, &local), -EINVAL, "not in the segment");
	cr_assert_eq(lfp_shm_free(b, held[0]), -EINVAL, "b's mapping is elsewhere");
	int64_t i0 = lfp_shm_index(a, held[0]);
	void *b0 = lfp_shm_ptr(b, (uint64_t)i0);
	cr_assert_eq(lfp_shm_free(b, b0), -EPERM, "owned by a");
	cr_assert_eq(lfp_shm_adopt(b, b0, 5), -EPERM, "not from participant 5");
	cr_assert_eq(lfp_shm_adopt(b, b0, 99), -EINVAL, "no participant 99");
	cr_assert_eq(lfp_shm_adopt(b, b0, 0), 0);
	cr_assert_eq(lfp_shm_adopt(b, b0, 0), -EPERM, "ours now: a second hand-off from 0 is stale");
	cr_assert_eq(lfp_shm_adopt(b, b0, LFP_SHM_ANY), 0, "adopting our own block is a no-op");
	cr_assert_eq(lfp_shm_adopt(b, b0, 1), 0, "...also naming ourselves");
	cr_assert_eq(lfp_shm_free(b, b0), 0);
	cr_assert_eq(lfp_shm_free(b, b0), -EALREADY, "double free");
	cr_assert_eq(lfp_shm_adopt(a, held[0], LFP_SHM_ANY), -EALREADY, "free blocks are not adoptable");
	cr_assert_eq(lfp_shm_owner(a, held[0]), -ENOENT);
	for (int i = 1; i < 16; i++)
		cr_assert_eq(lfp_shm_free(a, held[i]), 0);
	cr_assert_eq(lfp_shm_free(a, held[1]), -EALREADY);
	cr_assert_eq(lfp_shm_self(a), 0);
	cr_assert_eq(lfp_shm_self(b), 1);
	cr_assert_eq(lfp_shm_index(a, NULL), -EINVAL);
	cr_assert_null(lfp_shm_ptr(a, 16));
	cr_assert_eq(lfp_pool_capacity(lfp_shm_pool(a)), 16);

	lfp_shm_report_t r = exact(nm, NULL, 0);
	cr_assert_eq(r.owned, 0);
	cr_assert_eq(r.free + r.cached, 16);
	cr_assert_eq(r.validate, 0);
	cr_assert_eq(lfp_shm_detach(b), 0);
	cr_assert_eq(lfp_shm_detach(a), 0);
	r = exact(nm, NULL, 0);
	cr_assert_eq(r.free, 16, "detach flushed the caches");
	cr_assert_eq(r.live, 0);
}

Test(ops, contract_cached) { ops_contract(cfg(40, 16)); }
Test(ops, contract_uncached) { ops_contract(cfg_nocache(40, 16)); }

Test(ops, observer_cannot_allocate)
{
	const char *nm = tname();
	lfp_shm_t *a = make(nm, cfg(16, 8));
	lfp_shm_t *o = attach_opts(nm, -1, LFP_SHM_OBSERVER, 0);
	cr_assert_not_null(o);
	errno = 0;
	cr_assert_null(lfp_shm_alloc(o));
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(lfp_shm_self(o), -EINVAL);
	void *p = lfp_shm_alloc(a);
	cr_assert_eq(lfp_shm_free(o, lfp_shm_ptr(o, (uint64_t)lfp_shm_index(a, p))), -EINVAL);
	cr_assert_eq(lfp_shm_free(a, p), 0);
	lfp_shm_detach(o);
	lfp_shm_detach(a);
}

Test(ops, cache_counts_and_flush)
{
	const char *nm = tname();
	lfp_shm_config_t c = cfg(32, 64);
	c.cache_size = 8;
	lfp_shm_t *a = make(nm, c);
	void *p = lfp_shm_alloc(a); /* refills half a cache: 4 popped */
	cr_assert_not_null(p);
	lfp_shm_report_t r = exact(nm, NULL, 0);
	cr_assert_eq(r.owned, 1);
	cr_assert_eq(r.cached, 3);
	cr_assert_eq(r.free, 60);
	cr_assert_eq(lfp_shm_free(a, p), 0);
	r = exact(nm, NULL, 0);
	cr_assert_eq(r.owned, 0);
	cr_assert_eq(r.cached, 4);
	cr_assert_eq(lfp_shm_cache_flush(a), 4);
	cr_assert_eq(lfp_shm_cache_flush(a), 0);
	r = exact(nm, NULL, 0);
	cr_assert_eq(r.free, 64);
	/* Freeing past a full cache flushes half of it. */
	void *h[9];
	for (int i = 0; i < 9; i++)
		cr_assert_not_null(h[i] = lfp_shm_alloc(a));
	for (int i = 0; i < 9; i++)
		cr_assert_eq(lfp_shm_free(a, h[i]), 0);
	r = exact(nm, NULL, 0);
	cr_assert_leq(r.cached, 8);
	cr_assert_eq(r.free + r.cached, 64);
	lfp_shm_detach(a);
}

static void *thread_allocs(void *arg)
{
	lfp_shm_t *s = arg;
	void *h[10];
	for (int i = 0; i < 10; i++)
		if ((h[i] = lfp_shm_alloc(s)) == NULL)
			return (void *)1;
	for (int i = 0; i < 10; i++)
		if (lfp_shm_free(s, h[i]) != 0)
			return (void *)2;
	return NULL; /* its cache is full of blocks now; exit must flush */
}

Test(ops, thread_exit_flushes_its_cache)
{
	const char *nm = tname();
	lfp_shm_t *a = make(nm, cfg(32, 64));
	pthread_t t;
	void *res;
	cr_assert_eq(pthread_create(&t, NULL, thread_allocs, a), 0);
	cr_assert_eq(pthread_join(t, &res), 0);
	cr_assert_null(res);
	lfp_shm_report_t r = exact(nm, NULL, 0);
	cr_assert_eq(r.cached, 0, "the exiting thread's cache was flushed");
	cr_assert_eq(r.free, 64);
	lfp_shm_detach(a);
}

Test(ops, five_handles_in_one_thread)
{
	/* More handles than thread-cache slots: the extra ones run uncached. */
	lfp_shm_t *h[5];
	const char *nm[5];
	for (int i = 0; i < 5; i++)
		h[i] = make(nm[i] = tname(), cfg(16, 32));
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < 5; i++) {
			void *p = lfp_shm_alloc(h[i]);
			cr_assert_not_null(p);
			cr_assert_eq(lfp_shm_free(h[i], p), 0);
		}
	for (int i = 0; i < 5; i++) {
		lfp_shm_report_t r = exact(nm[i], NULL, 0);
		cr_assert_eq(r.free + r.cached, 32);
		cr_assert_eq(lfp_shm_detach(h[i]), 0);
	}
}

/* ---- fd ----------------------------------------------------------------- */

Test(fd, memfd_attach_by_fd_and_fork)
{
	lfp_shm_config_t c = cfg(64, 32);
	lfp_shm_t *a = lfp_shm_create_memfd("lfpt", &c);
	cr_assert_not_null(a, "%s", strerror(errno));
	lfp_shm_info_t ia;
	lfp_shm_info(a, &ia);
	cr_assert(ia.sealed, "memfd segments are sealed");
	int fd = lfp_shm_fd(a);
	cr_assert_lt(ftruncate(fd, 4096), 0, "sealed against shrinking");
	void *p = lfp_shm_alloc(a);
	strcpy(p, "from the parent");
	int64_t idx = lfp_shm_index(a, p);

	pid_t pid = fork_or_die();
	if (pid == 0) {
		int bad = 0;
		/* The inherited handle is not the child's. */
		errno = 0;
		bad |= lfp_shm_alloc(a) != NULL || errno != EINVAL;
		bad |= lfp_shm_free(a, p) != -EINVAL;
		lfp_shm_t *ch = lfp_shm_attach_fd(fd);
		if (ch == NULL)
			_exit(10);
		char *q = lfp_shm_ptr(ch, (uint64_t)idx);
		bad |= strcmp(q, "from the parent") != 0;
		bad |= lfp_shm_adopt(ch, q, 0) != 0;
		strcpy(q, "from the child");
		bad |= lfp_shm_detach(ch) != 1; /* still owns q: departed */
		bad |= lfp_shm_detach(a) != 0;  /* inherited: just unmaps */
		_exit(bad ? 11 : 0);
	}
	cr_assert_eq(wait_exit(pid), 0);
	cr_assert_str_eq(p, "from the child");
	cr_assert_eq(lfp_shm_owner(a, p), 1, "still recorded for the departed child");
	cr_assert_eq(lfp_shm_adopt(a, p, 1), 0, "adopt from a departed participant");
	cr_assert_eq(lfp_shm_free(a, p), 0);
	lfp_shm_report_t r = { 0 };
	cr_assert_eq(lfp_shm_recover(a, &r), 0);
	cr_assert_eq(r.departed, 1);
	cr_assert_eq(r.reclaimed, 0);
	cr_assert_eq(lfp_shm_detach(a), 0);
}

Test(fd, create_fd_needs_empty_file)
{
	int fd = memfd_create("lfpt", MFD_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 100), 0);
	lfp_shm_config_t c = cfg(16, 8);
	errno = 0;
	cr_assert_null(lfp_shm_create_fd(fd, &c));
	cr_assert_eq(errno, EEXIST);
	errno = 0;
	cr_assert_null(lfp_shm_create_fd(-1, &c));
	cr_assert_eq(errno, EBADF);
	close(fd);
	fd = memfd_create("lfpt", MFD_CLOEXEC);
	lfp_shm_t *s = lfp_shm_create_fd(fd, &c);
	cr_assert_not_null(s);
	close(fd); /* the handle keeps its own duplicate */
	void *p = lfp_shm_alloc(s);
	cr_assert_not_null(p);
	lfp_shm_t *t = lfp_shm_attach_fd(lfp_shm_fd(s));
	cr_assert_not_null(t);
	lfp_shm_detach(t);
	cr_assert_eq(lfp_shm_detach(s), 1, "one block still owned");
}

Test(fd, hugepages_fallback_and_strict)
{
	lfp_shm_config_t c = cfg(64, 1000);
	c.flags = LFP_SHM_HUGEPAGES;
	lfp_shm_t *s = lfp_shm_create_memfd("lfpt-huge", &c);
	cr_assert_not_null(s, "non-strict huge pages fall back: %s", strerror(errno));
	lfp_shm_info_t in;
	lfp_shm_info(s, &in);
	void *p = lfp_shm_alloc(s);
	cr_assert_not_null(p);
	cr_assert_eq(lfp_shm_free(s, p), 0);
	lfp_shm_t *t = lfp_shm_attach_fd(lfp_shm_fd(s));
	cr_assert_not_null(t, "attach to a (maybe) hugetlb segment");
	lfp_shm_detach(t);
	bool got = in.hugepages;
	lfp_shm_detach(s);

	c.flags = LFP_SHM_HUGEPAGES | LFP_SHM_HUGEPAGES_STRICT;
	errno = 0;
	s = lfp_shm_create_memfd("lfpt-huge", &c);
	if (got) {
		cr_assert_not_null(s, "huge pages are reserved here");
		lfp_shm_detach(s);
	} else {
		cr_assert_null(s, "no huge pages reserved: strict must fail");
		cr_assert(errno == ENOMEM || errno == EINVAL || errno == ENOSYS, "errno %d", errno);
	}
}

Test(fd, block_alignment_above_page_size)
{
	const char *nm = tname();
	lfp_shm_config_t c = { .block_size = 100, .block_count = 6, .block_align = 16384 };
	lfp_shm_t *a = make(nm, c);
	/* Push the next mapping off any lucky alignment. */
	void *pad = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	lfp_shm_t *b = lfp_shm_attach(nm);
	cr_assert_not_null(b, "%s", strerror(errno));
	for (uint64_t i = 0; i < 6; i++) {
		cr_assert_eq((uintptr_t)lfp_shm_ptr(a, i) % 16384, 0);
		cr_assert_eq((uintptr_t)lfp_shm_ptr(b, i) % 16384, 0);
	}
	munmap(pad, 4096);
	lfp_shm_detach(b);
	lfp_shm_detach(a);
}

/* ---- corrupt ------------------------------------------------------------- */

/* A valid segment's bytes, to copy and spoil. */
struct image {
	unsigned char *bytes;
	size_t size;
};

static struct image image_of(lfp_shm_config_t c)
{
	lfp_shm_t *s = lfp_shm_create_memfd("lfpt-img", &c);
	cr_assert_not_null(s);
	struct stat st;
	cr_assert_eq(fstat(lfp_shm_fd(s), &st), 0);
	struct image im = { malloc((size_t)st.st_size), (size_t)st.st_size };
	cr_assert_eq(pread(lfp_shm_fd(s), im.bytes, im.size, 0), (ssize_t)im.size);
	lfp_shm_detach(s);
	return im;
}

/* Write an image (of size bytes) to a new memfd and attach as an observer. */
static lfp_shm_t *attach_image(const unsigned char *bytes, size_t size, unsigned flags,
			       unsigned timeout_ms)
{
	int fd = memfd_create("lfpt-bad", MFD_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	if (size > 0)
		cr_assert_eq(pwrite(fd, bytes, size, 0), (ssize_t)size);
	lfp_shm_t *s = attach_opts(NULL, fd, flags, timeout_ms);
	int err = errno;
	close(fd);
	errno = err;
	return s;
}

static struct lfpi_shm_hdr *hdr_of(struct image *im)
{
	return (struct lfpi_shm_hdr *)(void *)im->bytes;
}

static void expect_refused(struct image *im, size_t size, const char *what, const char *why_part)
{
	errno = 0;
	lfp_shm_t *s = attach_image(im->bytes, size, LFP_SHM_OBSERVER | LFP_SHM_NOWAIT, 0);
	if (s != NULL)
		lfp_shm_detach(s);
	cr_assert_null(s, "%s: attach accepted it", what);
	cr_assert_eq(errno, EBADMSG, "%s: errno %d (%s)", what, errno,
		     lfp_shm_last_error() ? lfp_shm_last_error() : "-");
	const char *why = lfp_shm_last_error();
	cr_assert_not_null(why);
	cr_assert(strstr(why, why_part) != NULL, "%s: reason '%s' lacks '%s'", what, why, why_part);
}

#define FIELD(im, f) (hdr_of(im)->f)
#define RESEAL(im) (hdr_of(im)->checksum = lfpi_shm_checksum(hdr_of(im)))

Test(corrupt, the_unspoiled_copy_attaches)
{
	struct image im = image_of(cfg(64, 100));
	lfp_shm_t *s = attach_image(im.bytes, im.size, LFP_SHM_NOWAIT, 0);
	cr_assert_not_null(s, "control: a faithful copy must attach (%s)", lfp_shm_last_error());
	void *p = lfp_shm_alloc(s);
	cr_assert_not_null(p);
	cr_assert_eq(lfp_shm_free(s, p), 0);
	lfp_shm_detach(s);
	free(im.bytes);
}

Test(corrupt, truncated)
{
	struct image im = image_of(cfg(64, 100));
	expect_refused(&im, im.size - 4096, "one page short", "truncated");
	expect_refused(&im, sizeof(struct lfpi_shm_hdr) - 1, "shorter than a header", "truncated");
	expect_refused(&im, 100, "100 bytes", "truncated");
	free(im.bytes);
}

Test(corrupt, header_fields)
{
	struct image im = image_of(cfg(64, 100));
	unsigned char *orig = malloc(im.size);
	memcpy(orig, im.bytes, im.size);
#define CASE(stmt, reseal, what, why)                                                          \
	do {                                                                                   \
		memcpy(im.bytes, orig, im.size);                                               \
		stmt;                                                                          \
		if (reseal)                                                                    \
			RESEAL(&im);                                                           \
		expect_refused(&im, im.size, what, why);                                       \
	} while (0)
	CASE(FIELD(&im, magic) ^= 1, true, "magic", "magic");
	CASE(FIELD(&im, version) = 2, true, "version 2", "version");
	CASE(FIELD(&im, version) = 0, true, "version 0", "version");
	CASE(FIELD(&im, byte_order) = 0x04030201, true, "byte order", "byte order");
	CASE(FIELD(&im, hdr_size) += 8, true, "header size", "header size");
	CASE(FIELD(&im, tag_bits) = 16, true, "tag width", "ABI");
	CASE(FIELD(&im, index_bits) = 64, true, "index width", "ABI");
	CASE(FIELD(&im, ptr_bits) = 32, true, "pointer size", "ABI");
	CASE(FIELD(&im, block_size) += 1, false, "unsealed change", "checksum");
	CASE(FIELD(&im, flags) |= 1u << 30, true, "flags", "flags");
	CASE(FIELD(&im, part_size) = 64, true, "slot size", "slot size");
	CASE(FIELD(&im, cache_size) = 100000, true, "cache size", "cache");
	CASE(FIELD(&im, max_parts) = 0, true, "no participants", "participant");
	CASE(FIELD(&im, max_parts) = 100000, true, "too many participants", "participant");
	CASE(FIELD(&im, block_count) = UINT64_C(1) << 40, true, "count overflows", "count");
	CASE(FIELD(&im, block_count) = 0, true, "count 0", "block");
	CASE(FIELD(&im, block_count) += 1000, true, "count beyond the file", "");
	CASE(FIELD(&im, block_size) = UINT64_MAX / 4, true, "size overflows", "");
	CASE(FIELD(&im, block_align) = 48, true, "alignment", "block");
	CASE(FIELD(&im, block_align) = 0, true, "alignment 0", "alignment");
	CASE(FIELD(&im, page_size) = 1000, true, "page size", "page size");
	CASE(FIELD(&im, pool_off) = FIELD(&im, total_size) + 4096, true, "pool outside", "offsets");
	CASE(FIELD(&im, owner_off) = UINT64_MAX - 8, true, "owner array outside", "offsets");
	CASE(FIELD(&im, parts_off) = 0, true, "slots over the header", "offsets");
	CASE(FIELD(&im, pool_size) *= 2, true, "pool size", "offsets");
	CASE(FIELD(&im, total_size) += 4096, true, "total beyond the file", "total size");
	CASE(FIELD(&im, total_size) = UINT64_MAX, true, "total overflows", "total size");
	CASE(FIELD(&im, creator_ident) = 0, true, "no creator", "creator");
	/* Every count/offset also beyond the real size: the last guard. */
	CASE((FIELD(&im, block_count) = 100000, FIELD(&im, owner_off) = 320 + 16 * 128,
	      FIELD(&im, pool_off) = 0, FIELD(&im, total_size) = 0),
	     true, "forged layout", "");
	free(orig);
	free(im.bytes);
}

Test(corrupt, pool_header_and_init_word)
{
	struct image im = image_of(cfg(64, 100));
	unsigned char *orig = malloc(im.size);
	memcpy(orig, im.bytes, im.size);
	lfp_pool_t *pool = (lfp_pool_t *)(void *)(im.bytes + FIELD(&im, pool_off));
	CASE(pool->count = 1000000, false, "pool count", "pool header");
	CASE(pool->next_off = UINT64_MAX - 100, false, "pool link offset", "pool header");
	CASE(pool->blocks_off += 64, false, "pool block offset", "pool header");
	CASE(pool->magic = 0, false, "pool magic", "pool header");
	CASE(pool->stride_shift = 3, false, "stride shift", "pool header");
	CASE(lfp_store32_relaxed(&hdr_of(&im)->init_state, 12345), false, "init word", "init state");
	free(orig);
	free(im.bytes);
}

Test(corrupt, garbage_stack_is_reported_not_followed)
{
	/* A valid header over a pool whose free stack is garbage: attach
	 * works (stacks are not validated at attach, they change), and every
	 * operation reports instead of walking out of bounds. */
	struct image im = image_of(cfg_nocache(64, 100));
	lfp_pool_t *pool = (lfp_pool_t *)(void *)(im.bytes + FIELD(&im, pool_off));
	lfp_store64_relaxed(&pool->head, lfp_head_make(99, 0)); /* relaxed: planted while quiescent */
	lfp_store32_relaxed(&lfpi_next(pool)[99], 5000); /* a link out of range */
	lfp_shm_t *s = attach_image(im.bytes, im.size, LFP_SHM_NOWAIT, 0);
	cr_assert_not_null(s);
	errno = 0;
	cr_assert_null(lfp_shm_alloc(s));
	cr_assert_eq(errno, EUCLEAN);
	lfp_shm_report_t r = { 0 };
	cr_assert_eq(lfp_shm_recover(s, &r), -EUCLEAN);
	cr_assert_str_eq(r.error, "free stack link out of range");
	cr_assert_eq(lfp_shm_inspect(s, 0, &r), 0, "a snapshot tolerates it");
	lfp_shm_detach(s);
	free(im.bytes);
}

/* ---- init ----------------------------------------------------------------- */

Test(init, empty_file_times_out_or_eagain)
{
	errno = 0;
	cr_assert_null(attach_image(NULL, 0, LFP_SHM_NOWAIT, 0));
	cr_assert_eq(errno, EAGAIN);
	errno = 0;
	cr_assert_null(attach_image(NULL, 0, 0, 100));
	cr_assert_eq(errno, ETIMEDOUT);
}

static struct image unpublished(uint64_t creator)
{
	struct image im = image_of(cfg(64, 10));
	lfp_store32_relaxed(&hdr_of(&im)->init_state, 0); /* relaxed: planted while quiescent */
	lfp_store64_relaxed(&hdr_of(&im)->creator, creator); /* relaxed: planted while quiescent */
	return im;
}

Test(init, live_creator_that_never_finishes_times_out)
{
	struct image im = unpublished(lfpi_shm_self_ident()); /* we are alive */
	errno = 0;
	cr_assert_null(attach_image(im.bytes, im.size, 0, 150));
	cr_assert_eq(errno, ETIMEDOUT, "errno %d (%s)", errno, lfp_shm_last_error());
	errno = 0;
	cr_assert_null(attach_image(im.bytes, im.size, LFP_SHM_NOWAIT, 0));
	cr_assert_eq(errno, EAGAIN);
	free(im.bytes);
}

Test(init, dead_creator_is_reported)
{
	pid_t pid = fork_or_die();
	if (pid == 0)
		_exit(0);
	uint64_t start = 0;
	/* Its identity while alive does not matter: gone is gone. */
	cr_assert_eq(wait_exit(pid), 0);
	struct image im = unpublished((uint64_t)pid | (start + 1) << LFPI_ID_PID_BITS);
	errno = 0;
	cr_assert_null(attach_image(im.bytes, im.size, 0, 5000));
	cr_assert_eq(errno, EOWNERDEAD, "errno %d (%s)", errno, lfp_shm_last_error());
	free(im.bytes);
}

/* ---- recover ---------------------------------------------------------------- */

/* A child attaches, allocates `owned` blocks (kept) and `cached` more that it
 * frees into its cache, reports its slot and exits without detaching. */
static int child_dies_holding(const char *nm, int owned, int cached, lfp_shm_part_info_t *out)
{
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t pid = fork_or_die();
	if (pid == 0) {
		lfp_shm_t *s = lfp_shm_attach(nm);
		int self = s ? lfp_shm_self(s) : -1;
		for (int i = 0; s && i < owned; i++)
			if (lfp_shm_alloc(s) == NULL)
				self = -2;
		void *tmp[64];
		for (int i = 0; s && i < cached; i++)
			tmp[i] = lfp_shm_alloc(s);
		for (int i = 0; s && i < cached; i++)
			if (lfp_shm_free(s, tmp[i]) != 0)
				self = -3;
		if (write(pfd[1], &self, sizeof self) != sizeof self)
			_exit(2);
		_exit(0);
	}
	close(pfd[1]);
	int self = -9;
	cr_assert_eq(read(pfd[0], &self, sizeof self), (ssize_t)sizeof self);
	close(pfd[0]);
	cr_assert_eq(wait_exit(pid), 0);
	cr_assert_geq(self, 0, "child setup failed (%d)", self);
	if (out)
		out->pid = pid;
	return self;
}

Test(recover, dead_child_owned_and_cached)
{
	const char *nm = tname();
	lfp_shm_config_t c = cfg(32, 100);
	c.cache_size = 16;
	lfp_shm_t *a = make(nm, c);
	void *mine = lfp_shm_alloc(a);
	cr_assert_not_null(mine);
	int id = child_dies_holding(nm, 5, 3, NULL);

	lfp_shm_part_info_t parts[4];
	lfp_shm_report_t r = exact(nm, parts, 4);
	cr_assert_eq(r.dead, 1);
	cr_assert_eq(r.dead_owned, 5);
	cr_assert_geq(r.dead_cached, 3, "the child's cache holds at least what it freed");
	cr_assert_eq(r.orphans, 0);
	assert_accounted(&r);
	cr_assert_eq(r.parts_len, 2);

	lfp_shm_report_t rr = { .parts = parts, .parts_cap = 4 };
	cr_assert_eq(lfp_shm_recover(a, &rr), 0, "%s", rr.error ? rr.error : "-");
	cr_assert_eq(rr.reclaimed, r.dead_owned + r.dead_cached);
	cr_assert_eq(rr.free + rr.owned + rr.cached, 100, "exact after recovery");
	cr_assert_eq(rr.owned, 1);
	cr_assert_eq(rr.unexplained, 0);
	cr_assert_eq(rr.validate, 0);
	bool seen = false;
	for (size_t i = 0; i < rr.parts_len; i++)
		if (parts[i].id == (uint32_t)id) {
			seen = true;
			cr_assert_eq(parts[i].state, LFP_SHM_PART_DEAD);
			cr_assert(parts[i].reclaimed);
			cr_assert_eq(parts[i].owned, 5);
		}
	cr_assert(seen);
	/* Idempotent: nothing more to do. */
	cr_assert_eq(lfp_shm_recover(a, &rr), 0);
	cr_assert_eq(rr.reclaimed, 0);
	cr_assert_eq(rr.dead, 0);
	lfp_shm_info_t in;
	lfp_shm_info(a, &in);
	cr_assert_eq(in.recoveries, 2);
	cr_assert_eq(in.reclaimed, r.dead_owned + r.dead_cached);
	cr_assert_eq(lfp_shm_free(a, mine), 0);
	lfp_shm_detach(a);
}

/* A child enters the gate and stops at an exact crash point. */
enum crash_point { POPPED_NOT_RECORDED, RECORDED_FREE_NOT_PUSHED, FLUSH_HALF_DONE };

static void child_crashes_at(const char *nm, enum crash_point where)
{
	pid_t pid = fork_or_die();
	if (pid == 0) {
		lfp_shm_attach_opts_t o = { .flags = LFP_SHM_NOCACHE };
		lfp_shm_t *s = lfp_shm_attach_ex(nm, -1, &o);
		if (s == NULL)
			_exit(2);
		void *p = lfp_shm_alloc(s), *q = lfp_shm_alloc(s);
		if (p == NULL || q == NULL)
			_exit(3);
		int64_t i = lfp_shm_index(s, p), j = lfp_shm_index(s, q);
		if (lfpi_shm_gate_enter(s, where == POPPED_NOT_RECORDED ? LFP_SHM_OP_ALLOC
					  : where == FLUSH_HALF_DONE   ? LFP_SHM_OP_FLUSH
								       : LFP_SHM_OP_FREE) != 0)
			_exit(4);
		switch (where) {
		case POPPED_NOT_RECORDED:
			(void)lfpi_stack_pop(s->pool); /* then "killed" */
			break;
		case RECORDED_FREE_NOT_PUSHED:
			lfp_store32_relaxed(&s->owner[i], 0); /* relaxed: planted while quiescent */
			break;
		case FLUSH_HALF_DONE: /* relaxed below: planted while quiescent */
			lfp_store32_relaxed(&s->owner[i], 0);
			lfp_store32_relaxed(&s->owner[j], 0);
			lfp_store32_relaxed(&lfpi_next(s->pool)[i], (uint32_t)j);
			break;
		}
		_exit(0); /* no gate exit, no detach: as a SIGKILL would leave it */
	}
	cr_assert_eq(wait_exit(pid), 0);
}

static void crash_point_recovers(enum crash_point where, uint64_t orphans, uint64_t owned)
{
	const char *nm = tname();
	lfp_shm_t *a = make(nm, cfg_nocache(32, 50));
	child_crashes_at(nm, where);
	lfp_shm_part_info_t parts[4];
	lfp_shm_report_t r = exact(nm, parts, 4);
	cr_assert_eq(r.orphans, orphans, "orphans %" PRIu64, r.orphans);
	cr_assert_eq(r.dead_owned, owned);
	cr_assert_eq(r.unexplained, 0);
	cr_assert_eq(r.validate, -EAGAIN, "not validated while orphans remain");
	assert_accounted(&r);
	cr_assert_eq(r.parts_len, 2);
	cr_assert_eq(parts[1].state, LFP_SHM_PART_DEAD);
	cr_assert_eq(parts[1].in_flight, 1, "the journal shows one operation in flight");
	cr_assert_eq(parts[1].orphans, orphans);
	cr_assert_eq(parts[1].last_op, where == POPPED_NOT_RECORDED ? LFP_SHM_OP_ALLOC
				       : where == FLUSH_HALF_DONE   ? LFP_SHM_OP_FLUSH
								    : LFP_SHM_OP_FREE);
	lfp_shm_report_t rr = { 0 };
	cr_assert_eq(lfp_shm_recover(a, &rr), 0, "%s", rr.error ? rr.error : "-");
	cr_assert_eq(rr.reclaimed, orphans + owned);
	cr_assert_eq(rr.free, 50);
	cr_assert_eq(rr.validate, 0);
	/* Every block can be allocated exactly once again. */
	void *all[50];
	for (int i = 0; i < 50; i++)
		cr_assert_not_null(all[i] = lfp_shm_alloc(a), "alloc %d", i);
	cr_assert_null(lfp_shm_alloc(a));
	for (int i = 0; i < 50; i++)
		cr_assert_eq(lfp_shm_free(a, all[i]), 0);
	lfp_shm_detach(a);
}

Test(recover, killed_between_pop_and_record)
{
	crash_point_recovers(POPPED_NOT_RECORDED, 1, 2);
}

Test(recover, killed_between_record_free_and_push)
{
	crash_point_recovers(RECORDED_FREE_NOT_PUSHED, 1, 1);
}

Test(recover, killed_in_the_middle_of_a_flush)
{
	crash_point_recovers(FLUSH_HALF_DONE, 2, 0);
}

Test(recover, zombie_counts_as_dead)
{
	const char *nm = tname();
	lfp_shm_t *a = make(nm, cfg(32, 40));
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t pid = fork_or_die();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
		lfp_shm_t *s = lfp_shm_attach(nm);
		char ok = s != NULL && lfp_shm_alloc(s) != NULL;
		if (write(pfd[1], &ok, 1) != 1)
			_exit(2);
		for (;;)
			pause();
	}
	char ok = 0;
	cr_assert_eq(read(pfd[0], &ok, 1), 1);
	cr_assert(ok);
	kill(pid, SIGKILL);
	siginfo_t si;
	/* Wait for it to die without reaping it: it stays a zombie. */
	cr_assert_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	lfp_shm_report_t r = { 0 };
	cr_assert_eq(lfp_shm_recover(a, &r), 0);
	cr_assert_eq(r.dead, 1);
	cr_assert_eq(r.free, 40);
	waitpid(pid, NULL, 0);
	close(pfd[0]);
	close(pfd[1]);
	lfp_shm_detach(a);
}

Test(recover, reused_pid_is_dead)
{
	const char *nm = tname();
	lfp_shm_t *a = make(nm, cfg_nocache(32, 40));
	int id = child_dies_holding(nm, 3, 0, NULL);
	/* Pretend the dead child's pid was reused by a running process (us):
	 * our pid, a start time that is not ours. Only the start time tells
	 * the recorded process from the running one. */
	uint64_t mine = lfpi_shm_self_ident();
	uint64_t start = (mine >> LFPI_ID_PID_BITS) & LFPI_ID_START_MASK;
	lfp_store64_relaxed(&a->parts[id].ident, /* relaxed: planted while quiescent */
			    (uint64_t)getpid() | (start + 12345) << LFPI_ID_PID_BITS);
	lfp_shm_report_t r = { 0 };
	cr_assert_eq(lfp_shm_inspect(a, 0, &r), 0);
	cr_assert_eq(r.dead, 1, "same pid, other start time: dead");
	/* Control: with our real start time the slot is live. */
	lfp_store64_relaxed(&a->parts[id].ident, mine); /* relaxed: planted while quiescent */
	cr_assert_eq(lfp_shm_inspect(a, 0, &r), 0);
	cr_assert_eq(r.live, 2);
	cr_assert_eq(r.dead, 0);
	lfp_store64_relaxed(&a->parts[id].ident, /* relaxed: planted while quiescent */
			    (uint64_t)getpid() | (start + 12345) << LFPI_ID_PID_BITS);
	cr_assert_eq(lfp_shm_recover(a, &r), 0);
	cr_assert_eq(r.dead, 1);
	cr_assert_eq(r.reclaimed, 3);
	cr_assert_eq(r.free, 40);
	lfp_shm_detach(a);
}

Test(recover, departed_holdings_are_reclaimed)
{
	const char *nm = tname();
	lfp_shm_t *a = make(nm, cfg(32, 20));
	lfp_shm_t *b = lfp_shm_attach(nm);
	cr_assert_not_null(b);
	for (int i = 0; i < 4; i++)
		cr_assert_not_null(lfp_shm_alloc(b));
	cr_assert_eq(lfp_shm_detach(b), 4, "detach reports what it leaves owned");
	lfp_shm_report_t r = exact(nm, NULL, 0);
	cr_assert_eq(r.departed, 1);
	cr_assert_eq(r.dead_owned, 4);
	cr_assert_eq(lfp_shm_recover(a, &r), 0);
	cr_assert_eq(r.reclaimed, 4);
	cr_assert_eq(r.free + r.cached, 20);
	r = exact(nm, NULL, 0);
	cr_assert_eq(r.departed, 0, "its slot is free again");
	lfp_shm_detach(a);
}

Test(recover, inspect_times_out_on_a_stuck_live_participant)
{
	const char *nm = tname();
	lfp_shm_t *a = make(nm, cfg(32, 20));
	cr_assert_eq(lfpi_shm_gate_enter(a, LFP_SHM_OP_ALLOC), 0); /* "inside an operation" */
	lfp_shm_t *o = attach_opts(nm, -1, LFP_SHM_OBSERVER, 150);
	cr_assert_not_null(o);
	lfp_shm_report_t r = { 0 };
	cr_assert_eq(lfp_shm_recover(o, &r), -ETIMEDOUT);
	lfpi_shm_gate_exit(a);
	/* The world was let go again: we can still allocate... */
	void *p = lfp_shm_alloc(a);
	cr_assert_not_null(p);
	cr_assert_eq(lfp_shm_free(a, p), 0);
	/* ...and a recovery now succeeds. */
	cr_assert_eq(lfp_shm_recover(o, &r), 0);
	lfp_shm_detach(o);
	lfp_shm_detach(a);
}

Test(recover, busy_lock_and_takeover_from_a_dead_recoverer)
{
	const char *nm = tname();
	lfp_shm_t *a = make(nm, cfg_nocache(32, 20));
	lfp_shm_t *o = attach_opts(nm, -1, LFP_SHM_OBSERVER, 500);
	cr_assert_not_null(o);
	lfp_shm_report_t r = { 0 };

	/* The lock held by another live process: -EBUSY. */
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t pid = fork_or_die();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
		uint64_t me = lfpi_shm_self_ident();
		if (write(pfd[1], &me, sizeof me) != sizeof me)
			_exit(2);
		for (;;)
			pause();
	}
	uint64_t child = 0;
	cr_assert_eq(read(pfd[0], &child, sizeof child), (ssize_t)sizeof child);
	close(pfd[0]);
	close(pfd[1]);
	lfp_store64_relaxed(&a->shdr->recovery_lock, child); /* relaxed: planted while quiescent */
	cr_assert_eq(lfp_shm_recover(o, &r), -EBUSY);

	/* It dies after stopping everyone: participants must not wait
	 * forever; the next one that needs the shared stack takes over. */
	for (uint32_t i = 0; i < a->hdr.max_parts; i++)
		lfp_fetch_or32_acq_rel(&a->parts[i].gate, LFPI_GATE_STOP);
	kill(pid, SIGKILL);
	cr_assert_eq(wait_exit(pid), 128 + SIGKILL);
	void *p = lfp_shm_alloc(a);
	cr_assert_not_null(p, "takeover: %s", strerror(errno));
	/* relaxed: the takeover ran in this thread */
	cr_assert_eq(lfp_load64_relaxed(&a->shdr->recovery_lock), 0);
	for (uint32_t i = 0; i < a->hdr.max_parts; i++)
		cr_assert_eq(lfp_load32_relaxed(&a->parts[i].gate) & LFPI_GATE_STOP, 0);
	cr_assert_eq(lfp_shm_free(a, p), 0);
	cr_assert_eq(lfp_shm_recover(o, &r), 0);
	cr_assert_eq(r.free, 20);
	lfp_shm_detach(o);
	lfp_shm_detach(a);
}

Test(recover, stray_owner_words_are_unexplained)
{
	const char *nm = tname();
	lfp_shm_t *a = make(nm, cfg_nocache(32, 20));
	void *p = lfp_shm_alloc(a);
	int64_t i = lfp_shm_index(a, p);
	lfp_store32_relaxed(&a->owner[i], 9); /* slot 8: never claimed */
	lfp_shm_report_t r = { 0 };
	cr_assert_eq(lfp_shm_recover(a, &r), 0);
	cr_assert_eq(r.unexplained, 1);
	cr_assert_not_null(r.error);
	cr_assert_eq(r.reclaimed, 1);
	cr_assert_eq(r.free, 20);
	/* A block on the free stack that also has an owner is corruption:
	 * refused, nothing changed. */
	lfp_store32_relaxed(&a->owner[i], 1); /* relaxed: planted while quiescent */
	cr_assert_eq(lfp_shm_recover(a, &r), -EUCLEAN);
	cr_assert_str_eq(r.error, "a block on the free stack also has an owner");
	lfp_store32_relaxed(&a->owner[i], 0); /* relaxed: planted while quiescent */
	lfp_shm_detach(a);
}

/* ---- perm -------------------------------------------------------------------- */

/* In a child that became nobody: can it open the segment? 0 = refused with
 * EACCES both ways, 1 = it got in, 2 = could not drop privileges. */
static int nobody_tries(const char *nm)
{
	pid_t pid = fork_or_die();
	if (pid == 0) {
		if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
			_exit(2);
		int fd = shm_open(nm, O_RDONLY, 0);
		int ro_err = fd < 0 ? errno : 0;
		if (fd >= 0)
			close(fd);
		errno = 0;
		lfp_shm_t *s = lfp_shm_attach(nm);
		int at_err = errno;
		if (s != NULL || ro_err == 0)
			_exit(1);
		_exit(ro_err == EACCES && at_err == EACCES ? 0 : 3);
	}
	return wait_exit(pid);
}

/* ---- cli --------------------------------------------------------------------- */

/* Run $LFP_STAT (lfpool-stat, set by mk/shm.mk) with args; its output goes
 * to out. Returns the exit status. */
static int run_stat(const char *args, char *out, size_t len)
{
	const char *stat = getenv("LFP_STAT");
	if (stat == NULL || *stat == '\0')
		cr_skip_test("LFP_STAT not set (make test-shm sets it)");
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "%s %s 2>&1", stat, args);
	fflush(NULL);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p, "popen %s", cmd);
	size_t n = fread(out, 1, len - 1, p);
	out[n] = '\0';
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* --help is a request, not a mistake: usage and exit 0; a bad option
 * stays a usage error (exit 2). */
Test(cli, help_exits_0_and_a_bad_option_2)
{
	char out[2048];
	cr_expect_eq(run_stat("--help", out, sizeof out), 0, "%s", out);
	cr_expect(strstr(out, "usage:") != NULL, "%s", out);
	cr_expect_eq(run_stat("--no-such-option", out, sizeof out), 2, "%s", out);
}

/* lfpool-stat reports each dead participant's holdings on its own line,
 * their sum, and a validate verdict also when participants are dead.
 * Regression (R2 review): the verdict named the dead holdings but dropped
 * the validate result unless the segment was already clean. */
Test(cli, stat_reports_dead_holdings_per_owner_and_validate)
{
	const char *nm = tname();
	lfp_shm_config_t c = cfg(32, 100);
	c.cache_size = 16;
	lfp_shm_t *a = make(nm, c);
	int d1 = child_dies_holding(nm, 5, 3, NULL);
	int d2 = child_dies_holding(nm, 2, 0, NULL);
	lfp_shm_part_info_t parts[4];
	lfp_shm_report_t r = exact(nm, parts, 4);
	cr_assert_eq(r.dead, 2);
	static char out[8192];
	char args[128], line[160];
	snprintf(args, sizeof args, "%s", nm);
	cr_assert_eq(run_stat(args, out, sizeof out), 1, "dead participants: exit 1\n%s", out);
	for (size_t k = 0; k < r.parts_len && k < 4; k++) {
		if (parts[k].state != LFP_SHM_PART_DEAD)
			continue;
		cr_assert(parts[k].id == (uint32_t)d1 || parts[k].id == (uint32_t)d2);
		/* "  id DEAD  pid start owned cached ..." */
		snprintf(line, sizeof line, "%4u %-8s %8" PRId64 " %12" PRIu64 " %8" PRIu64 " %8" PRIu64,
			 parts[k].id, "DEAD", parts[k].pid, parts[k].start_time, parts[k].owned,
			 parts[k].cached);
		cr_assert_not_null(strstr(out, line), "no line '%s' in\n%s", line, out);
	}
	snprintf(line, sizeof line, "owned %" PRIu64 ", cached %" PRIu64, r.dead_owned, r.dead_cached);
	cr_assert_not_null(strstr(out, line), "no '%s' in\n%s", line, out);
	cr_assert_not_null(strstr(out, "2 dead"), "%s", out);
	cr_assert_not_null(strstr(out, "validate: ok"), "the verdict names validate\n%s", out);

	snprintf(args, sizeof args, "--recover %s", nm);
	cr_assert_eq(run_stat(args, out, sizeof out), 0, "--recover: exit 0\n%s", out);
	snprintf(line, sizeof line, "reclaimed now: %" PRIu64, r.dead_owned + r.dead_cached);
	cr_assert_not_null(strstr(out, line), "no '%s' in\n%s", line, out);
	cr_assert_not_null(strstr(out, "validate: ok"), "%s", out);
	cr_assert_eq(run_stat(args + sizeof "--recover", out, sizeof out), 0, "clean after\n%s", out);
	cr_assert_eq(lfp_shm_detach(a), 0);
}

Test(perm, default_mode_closed_to_other_uid)
{
	const char *nm = tname();
	lfp_shm_t *a = make(nm, cfg(16, 8));
	struct stat st;
	cr_assert_eq(fstat(lfp_shm_fd(a), &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(st.st_uid, geteuid());
	if (geteuid() != 0)
		cr_skip_test("not root: cannot switch to another uid (mode bits checked)");
	cr_assert_eq(nobody_tries(nm), 0, "nobody got into a 0600 segment");

	/* Control: the same check sees a world-readable segment as open, so it
	 * can fail. */
	const char *open_nm = tname();
	lfp_shm_config_t c = cfg(16, 8);
	lfp_shm_t *b = lfp_shm_create(open_nm, &c, 0644);
	cr_assert_not_null(b);
	cr_assert_eq(nobody_tries(open_nm), 1, "control: nobody can read a 0644 segment");
	lfp_shm_detach(b);
	lfp_shm_detach(a);
}
