/*
 * stress/plan.c - the placement planner: which PU each thread runs on and
 * which pool it allocates from.
 *
 * Policies (docs/stress.md):
 *   none     no binding; one shared pool.
 *   compact  PUs in hwloc's logical order: fill a core's PUs (SMT siblings),
 *            then the next core, the next node, the next package. One pool.
 *   scatter  spread first across packages, then across the NUMA nodes (or
 *            groups, L3 caches) inside a package, then across cores, and only
 *            then onto SMT siblings: PUs sorted by their rank among their
 *            siblings, then their core's rank, and so on up the tree, so the
 *            outermost level varies fastest. One pool.
 *   numa     the scatter placement, and one pool per NUMA node: each thread
 *            allocates from the pool of the node its PU belongs to.
 * With more threads than PUs the order wraps round (thread i takes the
 * (i mod PUs)-th PU of the order), so every thread always gets a PU.
 *
 * The planner only reads the topology; it works the same on a synthetic or
 * XML topology as on this machine. A plan made for N PUs is folded onto this
 * machine's R PUs proportionally: planned PU p runs on real PU floor(p R / N),
 * so threads that are neighbours in the plan stay neighbours here.
 */
#include "stress.h"

#include <stdlib.h>
#include <string.h>

const char *const st_policy_names[POL_COUNT] = { "none", "compact", "scatter", "numa" };

#define MAX_DEPTH 16

struct pu_info {
	struct st_place pl;
	int ndepth;
	/* Rank of the PU among its siblings, of its parent among its
	 * siblings, ... up to the children of the machine: innermost first. */
	int rank[MAX_DEPTH];
};

/* Scatter order: compare innermost ranks first, so the outermost level
 * (packages) varies fastest: one thread per package, then per node or group
 * inside them, per core, and SMT siblings last. */
static int cmp_scatter(const void *a, const void *b)
{
	const struct pu_info *x = a, *y = b;
	for (int d = 0; d < x->ndepth && d < y->ndepth; d++)
		if (x->rank[d] != y->rank[d])
			return x->rank[d] - y->rank[d];
	return x->pl.pu - y->pl.pu;
}

/* Describe every PU of tp in logical order; NULL on allocation failure. */
static struct pu_info *collect(const struct st_topo *tp, int npus, int nnodes)
{
	struct pu_info *v = calloc((size_t)npus, sizeof *v);
	if (v == NULL)
		return NULL;
	for (int i = 0; i < npus; i++) {
		hwloc_obj_t pu = hwloc_get_obj_by_type(tp->t, HWLOC_OBJ_PU, (unsigned)i);
		hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(tp->t, HWLOC_OBJ_CORE, pu);
		hwloc_obj_t pk = hwloc_get_ancestor_obj_by_type(tp->t, HWLOC_OBJ_PACKAGE, pu);
		struct pu_info *p = &v[i];
		p->pl.pu = i;
		p->pl.pu_os = (int)pu->os_index;
		p->pl.core = core ? (int)core->logical_index : i;
		p->pl.package = pk ? (int)pk->logical_index : 0;
		p->pl.node = 0;
		for (int n = 0; n < nnodes; n++) {
			hwloc_obj_t no = hwloc_get_obj_by_type(tp->t, HWLOC_OBJ_NUMANODE, (unsigned)n);
			if (no && no->cpuset && hwloc_bitmap_isset(no->cpuset, pu->os_index)) {
				p->pl.node = n;
				break;
			}
		}
		/* Walk up to (not including) the machine, innermost first. */
		for (hwloc_obj_t o = pu; o && o->parent && p->ndepth < MAX_DEPTH; o = o->parent)
			p->rank[p->ndepth++] = (int)o->sibling_rank;
	}
	return v;
}

int st_plan_build(const struct st_topo *tp, enum st_policy pol, int nthreads,
		  struct st_plan *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	if (nthreads < 1 || nthreads > ST_MAX_THREADS) {
		snprintf(err, errlen, "thread count %d out of range 1..%d", nthreads, ST_MAX_THREADS);
		return -1;
	}
	if ((unsigned)pol >= POL_COUNT) {
		snprintf(err, errlen, "unknown placement policy %d", (int)pol);
		return -1;
	}
	int npus = st_topo_count(tp, HWLOC_OBJ_PU);
	int nnodes = st_topo_count(tp, HWLOC_OBJ_NUMANODE);
	int ncores = st_topo_count(tp, HWLOC_OBJ_CORE);
	int npk = st_topo_count(tp, HWLOC_OBJ_PACKAGE);
	if (nnodes < 1)
		nnodes = 1;
	if (npk < 1)
		npk = 1;
	if (npus < 1) {
		snprintf(err, errlen, "topology has no PU");
		return -1;
	}
	if (pol == POL_NUMA && nnodes > ST_MAX_POOLS) {
		snprintf(err, errlen, "%d NUMA nodes: the numa policy supports at most %d pools",
			 nnodes, ST_MAX_POOLS);
		return -1;
	}
	struct pu_info *v = collect(tp, npus, nnodes);
	out->place = calloc((size_t)nthreads, sizeof *out->place);
	if (v == NULL || out->place == NULL) {
		free(v);
		free(out->place);
		out->place = NULL;
		snprintf(err, errlen, "out of memory planning %d threads", nthreads);
		return -1;
	}
	if (pol == POL_SCATTER || pol == POL_NUMA)
		qsort(v, (size_t)npus, sizeof *v, cmp_scatter);
	out->policy = pol;
	out->nthreads = nthreads;
	out->npus = npus;
	out->ncores = ncores > 0 ? ncores : npus;
	out->nnodes = nnodes;
	out->npackages = npk;
	out->npools = pol == POL_NUMA ? nnodes : 1;
	for (int i = 0; i < nthreads; i++) {
		struct st_place pl = v[i % npus].pl;
		pl.pool = pol == POL_NUMA ? pl.node : 0;
		if (pol == POL_NONE)
			pl.pu = pl.pu_os = -1;
		out->place[i] = pl;
	}
	free(v);
	return 0;
}

void st_plan_free(struct st_plan *p)
{
	free(p->place);
	p->place = NULL;
}

int st_plan_fold_pu(const struct st_plan *p, int thread, int real_npus)
{
	int pu = p->place[thread].pu;
	if (pu < 0 || real_npus < 1)
		return -1;
	/* Proportional: planned PUs [k N/R, (k+1) N/R) share real PU k, so
	 * neighbours in the plan (a core, a node, a package) stay together. */
	return (int)((int64_t)pu * real_npus / p->npus);
}

void st_plan_print(const struct st_plan *p, const struct st_topo *tp, FILE *f)
{
	fprintf(f, "plan: policy %s, %d threads on %s (%d packages, %d NUMA nodes, %d cores, %d PUs), %d pool%s\n",
		st_policy_names[p->policy], p->nthreads, tp->source, p->npackages, p->nnodes,
		p->ncores, p->npus, p->npools, p->npools == 1 ? "" : "s");
	/* Load per package / node / core: how the policy spread the threads. */
	int *per_pk = calloc((size_t)p->npackages, sizeof(int));
	int *per_node = calloc((size_t)p->nnodes, sizeof(int));
	int *per_core = calloc((size_t)p->ncores, sizeof(int));
	if (per_pk && per_node && per_core && p->policy != POL_NONE) {
		int cores_used = 0, cores_shared = 0;
		for (int i = 0; i < p->nthreads; i++) {
			per_pk[p->place[i].package]++;
			per_node[p->place[i].node]++;
			if (p->place[i].core < p->ncores && per_core[p->place[i].core]++ == 1)
				cores_shared++;
		}
		for (int c = 0; c < p->ncores; c++)
			cores_used += per_core[c] > 0;
		fprintf(f, "plan: threads per package [");
		for (int k = 0; k < p->npackages; k++)
			fprintf(f, "%s%d", k ? " " : "", per_pk[k]);
		fprintf(f, "], per NUMA node [");
		for (int k = 0; k < p->nnodes; k++)
			fprintf(f, "%s%d", k ? " " : "", per_node[k]);
		fprintf(f, "], cores used %d, cores with 2+ threads %d\n", cores_used, cores_shared);
	}
	free(per_pk);
	free(per_node);
	free(per_core);
	fprintf(f, "plan: %6s %6s %6s %6s %5s %7s %5s\n", "thread", "PU L#", "PU P#", "core", "node",
		"package", "pool");
	for (int i = 0; i < p->nthreads; i++) {
		const struct st_place *pl = &p->place[i];
		if (pl->pu < 0)
			fprintf(f, "plan: %6d %6s %6s %6s %5s %7s %5d\n", i, "-", "-", "-", "-", "-", pl->pool);
		else
			fprintf(f, "plan: %6d %6d %6d %6d %5d %7d %5d\n", i, pl->pu, pl->pu_os, pl->core,
				pl->node, pl->package, pl->pool);
	}
}
