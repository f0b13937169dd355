/*
 * tests/test_plan.c - the stress harness's placement planner (stress/plan.c,
 * stress/topo.c) against synthetic, restricted (asymmetric) and XML
 * topologies, and the NUMA pool calls (pool/numa.c).
 *
 * Properties pinned for every topology and policy: every thread gets a PU
 * that exists, oversubscription wraps round, and the policies differ as
 * docs/stress.md says: compact fills a core's PUs first, scatter spreads over
 * packages, then NUMA nodes, then cores before any SMT sibling, numa places
 * as scatter and gives each node its own pool.
 */
#include "../stress/stress.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static struct st_topo load(const char *spec)
{
	struct st_topo tp;
	char err[256];
	int rc = st_topo_load(&tp, spec, err, sizeof err);
	cr_assert_eq(rc, 0, "load %s: %s", spec ? spec : "real", err);
	return tp;
}

static struct st_plan plan(const struct st_topo *tp, enum st_policy pol, int n)
{
	struct st_plan p;
	char err[256];
	int rc = st_plan_build(tp, pol, n, &p, err, sizeof err);
	cr_assert_eq(rc, 0, "plan %s x %d: %s", st_policy_names[pol], n, err);
	return p;
}

/* Every thread on a PU of tp whose core/node/package agree with hwloc. */
static void check_every_thread_placed(const struct st_topo *tp, const struct st_plan *p)
{
	int npus = st_topo_count(tp, HWLOC_OBJ_PU);
	cr_assert_eq(p->npus, npus);
	for (int i = 0; i < p->nthreads; i++) {
		const struct st_place *pl = &p->place[i];
		if (p->policy == POL_NONE) {
			cr_assert_eq(pl->pu, -1, "none binds nothing (thread %d)", i);
			cr_assert_eq(pl->pool, 0);
			continue;
		}
		cr_assert(pl->pu >= 0 && pl->pu < npus, "thread %d on PU %d of %d", i, pl->pu, npus);
		hwloc_obj_t pu = hwloc_get_obj_by_type(tp->t, HWLOC_OBJ_PU, (unsigned)pl->pu);
		cr_assert_not_null(pu);
		cr_assert_eq(pl->pu_os, (int)pu->os_index);
		hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(tp->t, HWLOC_OBJ_CORE, pu);
		if (core)
			cr_assert_eq(pl->core, (int)core->logical_index, "thread %d core", i);
		hwloc_obj_t node = hwloc_get_obj_by_type(tp->t, HWLOC_OBJ_NUMANODE, (unsigned)pl->node);
		cr_assert_not_null(node);
		cr_assert(hwloc_bitmap_isset(node->cpuset, pu->os_index), "thread %d: PU not in its node", i);
		cr_assert_eq(pl->pool, p->policy == POL_NUMA ? pl->node : 0, "thread %d pool", i);
		/* Wrap-round: thread i and i + npus share a PU. */
		if (i >= npus)
			cr_assert_eq(pl->pu, p->place[i - npus].pu, "thread %d wraps onto thread %d's PU", i, i - npus);
	}
}

/* The first k threads use k distinct values of field. */
static bool distinct_first(const struct st_plan *p, int k, size_t off)
{
	for (int i = 0; i < k; i++)
		for (int j = 0; j < i; j++)
			if (*(const int *)(const void *)((const char *)&p->place[i] + off) ==
			    *(const int *)(const void *)((const char *)&p->place[j] + off))
				return false;
	return true;
}

static void check_scatter_spread(const struct st_topo *tp, const struct st_plan *p)
{
	int npk = st_topo_count(tp, HWLOC_OBJ_PACKAGE);
	int nnodes = st_topo_count(tp, HWLOC_OBJ_NUMANODE);
	int ncores = st_topo_count(tp, HWLOC_OBJ_CORE);
	if (npk > 1 && p->nthreads >= npk)
		cr_assert(distinct_first(p, npk, offsetof(struct st_place, package)),
			  "scatter: the first %d threads are on distinct packages", npk);
	if (p->nthreads >= nnodes)
		cr_assert(distinct_first(p, nnodes, offsetof(struct st_place, node)),
			  "scatter: the first %d threads are on distinct NUMA nodes", nnodes);
	int k = p->nthreads < ncores ? p->nthreads : ncores;
	cr_assert(distinct_first(p, k, offsetof(struct st_place, core)),
		  "scatter: no SMT sibling before every core has a thread (first %d threads)", k);
}

Test(plan, two_packages_two_nodes_32_cores_2_pus)
{
	struct st_topo tp = load("pack:2 numa:2 core:32 pu:2");
	cr_assert_eq(st_topo_count(&tp, HWLOC_OBJ_PU), 256);
	cr_assert_eq(st_topo_count(&tp, HWLOC_OBJ_NUMANODE), 4);
	cr_assert_eq(st_topo_count(&tp, HWLOC_OBJ_CORE), 128);
	const int counts[] = { 1, 2, 3, 4, 64, 128, 255, 256, 300, 512 };
	for (int pol = 0; pol < POL_COUNT; pol++)
		for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
			struct st_plan p = plan(&tp, (enum st_policy)pol, counts[c]);
			cr_assert_eq(p.nthreads, counts[c]);
			cr_assert_eq(p.npools, pol == POL_NUMA ? 4 : 1);
			check_every_thread_placed(&tp, &p);
			if (pol == POL_SCATTER || pol == POL_NUMA)
				check_scatter_spread(&tp, &p);
			st_plan_free(&p);
		}
	st_topo_free(&tp);
}

Test(plan, compact_fills_a_core_then_the_next)
{
	struct st_topo tp = load("pack:2 numa:2 core:32 pu:2");
	struct st_plan p = plan(&tp, POL_COMPACT, 256);
	for (int i = 0; i < 256; i++)
		cr_assert_eq(p.place[i].pu, i, "compact: thread %d on PU L#%d", i, i);
	for (int i = 0; i < 256; i += 2)
		cr_assert_eq(p.place[i].core, p.place[i + 1].core, "compact: threads %d and %d share a core", i, i + 1);
	/* 128 threads fill package 0 before touching package 1. */
	for (int i = 0; i < 128; i++)
		cr_assert_eq(p.place[i].package, 0);
	st_plan_free(&p);
	st_topo_free(&tp);
}

Test(plan, scatter_differs_from_compact_and_covers_every_pu)
{
	struct st_topo tp = load("pack:2 numa:2 core:32 pu:2");
	struct st_plan s = plan(&tp, POL_SCATTER, 256), c = plan(&tp, POL_COMPACT, 256);
	cr_assert_neq(s.place[1].package, c.place[1].package, "thread 1: scatter crosses packages, compact does not");
	cr_assert_eq(s.place[1].package, 1);
	bool seen[256] = { false };
	for (int i = 0; i < 256; i++) {
		cr_assert(!seen[s.place[i].pu], "scatter: PU %d used twice before wrapping", s.place[i].pu);
		seen[s.place[i].pu] = true;
	}
	/* 128 threads: one per core, no core has two. */
	for (int i = 0; i < 128; i++)
		for (int j = 0; j < i; j++)
			cr_assert_neq(s.place[i].core, s.place[j].core);
	st_plan_free(&s);
	st_plan_free(&c);
	st_topo_free(&tp);
}

Test(plan, numa_gives_each_node_its_pool)
{
	struct st_topo tp = load("pack:2 numa:4 core:16 pu:2");
	struct st_plan n = plan(&tp, POL_NUMA, 64), s = plan(&tp, POL_SCATTER, 64);
	cr_assert_eq(n.npools, 8);
	cr_assert_eq(s.npools, 1);
	int per_pool[8] = { 0 };
	for (int i = 0; i < 64; i++) {
		cr_assert_eq(n.place[i].pu, s.place[i].pu, "numa places as scatter");
		cr_assert_eq(n.place[i].pool, n.place[i].node);
		cr_assert_eq(s.place[i].pool, 0);
		per_pool[n.place[i].pool]++;
	}
	for (int k = 0; k < 8; k++)
		cr_assert_eq(per_pool[k], 8, "numa: 64 threads over 8 nodes, 8 each (pool %d has %d)", k, per_pool[k]);
	st_plan_free(&n);
	st_plan_free(&s);
	st_topo_free(&tp);
}

/* Unequal nodes: drop 3 of node 0's 4 cores and 1 of node 3's. */
static struct st_topo asymmetric(void)
{
	struct st_topo tp = load("pack:2 numa:2 core:4 pu:2");
	hwloc_bitmap_t keep = hwloc_bitmap_alloc();
	hwloc_bitmap_set_range(keep, 6, 29); /* PUs 0-5 (node 0's cores 0-2) and 30-31 go */
	cr_assert_eq(hwloc_topology_restrict(tp.t, keep, HWLOC_RESTRICT_FLAG_REMOVE_CPULESS), 0);
	hwloc_bitmap_free(keep);
	return tp;
}

static void check_asymmetric(const struct st_topo *tp)
{
	cr_assert_eq(st_topo_count(tp, HWLOC_OBJ_PU), 24);
	cr_assert_eq(st_topo_count(tp, HWLOC_OBJ_CORE), 12);
	cr_assert_eq(st_topo_count(tp, HWLOC_OBJ_NUMANODE), 4);
	for (int pol = 0; pol < POL_COUNT; pol++)
		for (int n = 1; n <= 60; n += 7) {
			struct st_plan p = plan(tp, (enum st_policy)pol, n);
			check_every_thread_placed(tp, &p);
			if (pol == POL_SCATTER || pol == POL_NUMA)
				check_scatter_spread(tp, &p);
			st_plan_free(&p);
		}
	/* 24 threads, numa: each node's pool gets as many threads as it has PUs. */
	struct st_plan p = plan(tp, POL_NUMA, 24);
	int per[4] = { 0 }, pus[4] = { 0 };
	for (int i = 0; i < 24; i++)
		per[p.place[i].pool]++;
	for (int k = 0; k < 4; k++) {
		hwloc_obj_t node = hwloc_get_obj_by_type(tp->t, HWLOC_OBJ_NUMANODE, (unsigned)k);
		pus[k] = hwloc_bitmap_weight(node->cpuset);
		cr_assert_eq(per[k], pus[k], "node %d: %d threads for %d PUs", k, per[k], pus[k]);
	}
	cr_assert_neq(pus[0], pus[1], "the nodes really are unequal");
	st_plan_free(&p);
}

Test(plan, asymmetric_nodes)
{
	struct st_topo tp = asymmetric();
	check_asymmetric(&tp);
	st_topo_free(&tp);
}

Test(plan, asymmetric_from_xml_file)
{
	struct st_topo tp = asymmetric();
	char path[] = "/tmp/lfpool-plan-XXXXXX.xml";
	int fd = mkstemps(path, 4);
	cr_assert(fd >= 0);
	close(fd);
	cr_assert_eq(hwloc_topology_export_xml(tp.t, path, 0), 0);
	st_topo_free(&tp);
	struct st_topo x = load(path);
	cr_assert(!x.real);
	check_asymmetric(&x);
	st_topo_free(&x);
	unlink(path);
}

Test(plan, other_shapes)
{
	const char *shapes[] = { "pack:4 core:8 pu:1", "numa:1 core:2 pu:4", "pack:1 pu:3", "pack:8 numa:1 l3:1 core:6 pu:2" };
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
		struct st_topo tp = load(shapes[i]);
		for (int pol = 0; pol < POL_COUNT; pol++) {
			struct st_plan p = plan(&tp, (enum st_policy)pol, 37);
			check_every_thread_placed(&tp, &p);
			if (pol == POL_SCATTER || pol == POL_NUMA)
				check_scatter_spread(&tp, &p);
			st_plan_free(&p);
		}
		st_topo_free(&tp);
	}
}

Test(plan, this_machine)
{
	struct st_topo tp = load(NULL);
	cr_assert(tp.real);
	int n = st_topo_count(&tp, HWLOC_OBJ_PU);
	for (int pol = 0; pol < POL_COUNT; pol++) {
		struct st_plan p = plan(&tp, (enum st_policy)pol, 2 * n + 1);
		check_every_thread_placed(&tp, &p);
		st_plan_free(&p);
	}
	/* Binding the calling thread to each real PU works and is reported. */
	char err[200];
	for (int i = 0; i < n; i++)
		cr_assert_eq(st_topo_bind_self(&tp, i, err, sizeof err), 0, "bind to PU %d: %s", i, err);
	cr_assert_eq(st_topo_bind_self(&tp, n, err, sizeof err), -EINVAL);
	cr_assert(strstr(err, "no PU") != NULL, "message: %s", err);
	st_topo_free(&tp);
}

Test(plan, fold_is_proportional)
{
	struct st_topo tp = load("pack:2 numa:2 core:4 pu:2");
	struct st_plan p = plan(&tp, POL_SCATTER, 32);
	int on[3] = { 0 };
	for (int i = 0; i < 32; i++) {
		int r = st_plan_fold_pu(&p, i, 2);
		cr_assert(r >= 0 && r < 2);
		cr_assert_eq(r, p.place[i].package, "package k of 2 folds onto real PU k");
		on[r]++;
	}
	cr_assert_eq(on[0], 16);
	cr_assert_eq(on[1], 16);
	for (int i = 0; i < 32; i++)
		cr_assert_eq(st_plan_fold_pu(&p, i, 3), p.place[i].pu * 3 / 32);
	st_plan_free(&p);
	struct st_plan none = plan(&tp, POL_NONE, 4);
	cr_assert_eq(st_plan_fold_pu(&none, 0, 2), -1, "none: unbound");
	st_plan_free(&none);
	st_topo_free(&tp);
}

Test(plan, bad_input_gives_messages)
{
	struct st_topo tp;
	char err[256] = "";
	cr_assert_eq(st_topo_load(&tp, "pack:two", err, sizeof err), -1);
	cr_assert(strstr(err, "synthetic") != NULL, "message: %s", err);
	cr_assert_eq(st_topo_load(&tp, "/nonexistent/topo.xml", err, sizeof err), -1);
	cr_assert(strstr(err, "no such XML file") != NULL, "message: %s", err);
	tp = load("pack:1 core:2 pu:1");
	struct st_plan p;
	cr_assert_eq(st_plan_build(&tp, POL_COMPACT, 0, &p, err, sizeof err), -1);
	cr_assert(strstr(err, "out of range") != NULL, "message: %s", err);
	cr_assert_eq(st_plan_build(&tp, POL_COMPACT, ST_MAX_THREADS + 1, &p, err, sizeof err), -1);
	cr_assert_eq(st_plan_build(&tp, (enum st_policy)99, 2, &p, err, sizeof err), -1);
	cr_assert(strstr(err, "policy") != NULL, "message: %s", err);
	st_topo_free(&tp);
}

/* ---- NUMA pools (pool/numa.c) ---------------------------------------------- */

Test(numa, pool_on_each_node)
{
	int n = lfp_numa_node_count();
	cr_assert(n >= 1, "node count %d", n);
	lfp_pool_config_t cfg = { .block_size = 64, .block_count = 4096 };
	for (int node = 0; node < n; node++) {
		lfp_pool_t *p = lfp_pool_create_on_node(&cfg, node);
		cr_assert_not_null(p, "node %d: %s", node, strerror(errno));
		void *b[64];
		for (int i = 0; i < 64; i++) {
			b[i] = lfp_pool_alloc(p);
			cr_assert_not_null(b[i]);
			memset(b[i], 0x5a, 64);
		}
		cr_assert_eq(lfp_numa_node_of(b[0]), node, "block memory lives on node %d", node);
		cr_assert_eq(lfp_numa_node_of(p), node, "pool header lives on node %d", node);
		for (int i = 0; i < 64; i++)
			cr_assert_eq(lfp_pool_free(p, b[i]), 0);
		lfp_pool_report_t rep;
		cr_assert_eq(lfp_pool_validate(p, &rep), 0, "%s", rep.error);
		cr_assert_eq(rep.free, 4096);
		cr_assert_eq(lfp_pool_destroy(p), 0);
	}
}

Test(numa, large_alignment)
{
	lfp_pool_config_t cfg = { .block_size = 100, .block_count = 10, .block_align = 1u << 16 };
	lfp_pool_t *p = lfp_pool_create_on_node(&cfg, 0);
	cr_assert_not_null(p, "%s", strerror(errno));
	void *b = lfp_pool_alloc(p);
	cr_assert_not_null(b);
	cr_assert_eq((uintptr_t)b % (1u << 16), 0);
	cr_assert_eq(lfp_pool_free(p, b), 0);
	cr_assert_eq(lfp_pool_destroy(p), 0);
}

Test(numa, errors)
{
	lfp_pool_config_t cfg = { .block_size = 64, .block_count = 16 };
	int n = lfp_numa_node_count();
	errno = 0;
	cr_assert_null(lfp_pool_create_on_node(&cfg, n));
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_null(lfp_pool_create_on_node(&cfg, -1));
	cr_assert_eq(errno, EINVAL);
	lfp_pool_config_t bad = { .block_size = 0, .block_count = 16 };
	errno = 0;
	cr_assert_null(lfp_pool_create_on_node(&bad, 0));
	cr_assert_eq(errno, EINVAL);
	lfp_pool_config_t huge = { .block_size = SIZE_MAX / 2, .block_count = 1000 };
	errno = 0;
	cr_assert_null(lfp_pool_create_on_node(&huge, 0));
	cr_assert_eq(errno, EOVERFLOW);
	errno = 0;
	cr_assert_null(lfp_pool_create_on_node(NULL, 0));
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(lfp_numa_bind_region(NULL, 4096, 0), -EINVAL);
	char x;
	cr_assert_eq(lfp_numa_bind_region(&x, 0, 0), -EINVAL);
	cr_assert_eq(lfp_numa_node_of(NULL), -EINVAL);
}

/* The environment can make hwloc describe another machine (the stress
 * harness uses that for placement logic); the library must not place
 * memory by it. Criterion runs each test in a process of its own, so the
 * variable reaches the library's first topology load here. */
Test(numa, a_topology_of_another_machine_is_refused)
{
	cr_assert_eq(setenv("HWLOC_SYNTHETIC", "pack:2 numa:2 core:2 pu:1", 1), 0);
	cr_expect_eq(lfp_numa_node_count(), -ENOSYS);
	lfp_pool_config_t cfg = { .block_size = 64, .block_count = 16 };
	errno = 0;
	cr_expect_null(lfp_pool_create_on_node(&cfg, 0));
	cr_expect_eq(errno, ENOSYS);
}

Test(numa, bind_a_caller_region_then_init)
{
	lfp_pool_config_t cfg = { .block_size = 256, .block_count = 1000 };
	size_t size = lfp_pool_region_size(&cfg);
	void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	cr_assert_eq(lfp_numa_bind_region(mem, size, 0), 0);
	lfp_pool_t *p = NULL;
	cr_assert_eq(lfp_pool_init(mem, size, &cfg, &p), 0);
	void *b = lfp_pool_alloc(p);
	cr_assert_not_null(b);
	memset(b, 1, 256);
	cr_assert_eq(lfp_numa_node_of(b), 0);
	cr_assert_eq(lfp_pool_free(p, b), 0);
	cr_assert_eq(lfp_pool_destroy(p), 0);
	munmap(mem, size);
}

#ifdef ST_HAVE_SHM /* the shared-memory pool is in this library */
Test(numa, shared_memory_segment_on_a_node)
{
	int n = lfp_numa_node_count();
	for (int node = 0; node < n; node++) {
		int fd = memfd_create("lfpool-numa-test", 0);
		cr_assert(fd >= 0);
		cr_assert_eq(lfp_numa_bind_fd(fd, 0, node), 0);
		lfp_shm_config_t cfg = { .block_size = 128, .block_count = 5000 };
		lfp_shm_t *s = lfp_shm_create_fd(fd, &cfg);
		cr_assert_not_null(s, "lfp_shm_create_fd: %s", strerror(errno));
		void *b = lfp_shm_alloc(s);
		cr_assert_not_null(b);
		memset(b, 7, 128);
		lfp_shm_info_t info;
		cr_assert_eq(lfp_shm_info(s, &info), 0);
		cr_assert_eq(lfp_numa_node_of(info.base), node, "segment header on node %d", node);
		cr_assert_eq(lfp_numa_node_of(b), node, "block on node %d", node);
		cr_assert_eq(lfp_shm_free(s, b), 0);
		cr_assert_eq(lfp_shm_detach(s), 0);
		close(fd);
	}
	cr_assert_eq(lfp_numa_bind_fd(-1, 0, 0), -EBADF);
	int fd = memfd_create("lfpool-numa-test", 0);
	cr_assert_eq(lfp_numa_bind_fd(fd, 0, n), -EINVAL);
	close(fd);
}
#endif
