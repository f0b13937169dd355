/*
 * stress/topo.c - machine topologies for the harness (hwloc).
 *
 * A topology is this machine (what the threads really run on), an hwloc
 * synthetic description ("pack:2 numa:4 core:16 pu:2": counts per parent,
 * so that one has 2 x 4 x 16 x 2 = 256 PUs), or an hwloc XML file (lstopo
 * foo.xml writes one). Plans are made on any of them; threads are only ever
 * bound on this machine's, with singlified cpusets, and a binding that fails
 * or does not take effect is reported with the reason, never ignored.
 */
#include "stress.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int st_topo_load(struct st_topo *tp, const char *spec, char *err, size_t errlen)
{
	memset(tp, 0, sizeof *tp);
	if (hwloc_topology_init(&tp->t) < 0) {
		snprintf(err, errlen, "hwloc_topology_init failed: %s", strerror(errno));
		return -1;
	}
	tp->real = spec == NULL;
	if (spec == NULL) {
		snprintf(tp->source, sizeof tp->source, "this machine");
	} else {
		struct stat sb;
		snprintf(tp->source, sizeof tp->source, "%s", spec);
		bool looks_like_file = strchr(spec, '/') || strstr(spec, ".xml");
		if (stat(spec, &sb) == 0 && S_ISREG(sb.st_mode)) {
			if (hwloc_topology_set_xml(tp->t, spec) < 0) {
				snprintf(err, errlen, "--topology %s: not an hwloc XML topology file (%s)",
					 spec, strerror(errno));
				goto fail;
			}
		} else if (looks_like_file) {
			snprintf(err, errlen, "--topology %s: no such XML file", spec);
			goto fail;
		} else if (hwloc_topology_set_synthetic(tp->t, spec) < 0) {
			snprintf(err, errlen, "--topology \"%s\": not a valid hwloc synthetic topology "
				 "(expected counts per level, e.g. \"pack:2 numa:4 core:16 pu:2\")", spec);
			goto fail;
		}
	}
	if (hwloc_topology_load(tp->t) < 0) {
		snprintf(err, errlen, "loading the topology of %s failed: %s", tp->source, strerror(errno));
		goto fail;
	}
	if (hwloc_get_nbobjs_by_type(tp->t, HWLOC_OBJ_PU) < 1) {
		snprintf(err, errlen, "the topology of %s has no PU", tp->source);
		goto fail;
	}
	return 0;
fail:
	hwloc_topology_destroy(tp->t);
	tp->t = NULL;
	return -1;
}

void st_topo_free(struct st_topo *tp)
{
	if (tp->t)
		hwloc_topology_destroy(tp->t);
	tp->t = NULL;
}

int st_topo_count(const struct st_topo *tp, hwloc_obj_type_t type)
{
	int n = hwloc_get_nbobjs_by_type(tp->t, type);
	return n < 0 ? 0 : n;
}

static void human_size(uint64_t b, char *buf, size_t n)
{
	if (b >= (UINT64_C(1) << 20) && b % (UINT64_C(1) << 20) == 0)
		snprintf(buf, n, "%lluMB", (unsigned long long)(b >> 20));
	else if (b >= 1024)
		snprintf(buf, n, "%lluKB", (unsigned long long)(b >> 10));
	else
		snprintf(buf, n, "%lluB", (unsigned long long)b);
}

void st_topo_describe(const struct st_topo *tp, FILE *f)
{
	static const hwloc_obj_type_t caches[] = {
		HWLOC_OBJ_L1CACHE, HWLOC_OBJ_L2CACHE, HWLOC_OBJ_L3CACHE,
		HWLOC_OBJ_L4CACHE, HWLOC_OBJ_L5CACHE,
	};
	fprintf(f, "topology: %s: %d packages, %d NUMA nodes, %d cores, %d PUs",
		tp->source, st_topo_count(tp, HWLOC_OBJ_PACKAGE), st_topo_count(tp, HWLOC_OBJ_NUMANODE),
		st_topo_count(tp, HWLOC_OBJ_CORE), st_topo_count(tp, HWLOC_OBJ_PU));
	const char *sep = "; caches:";
	for (size_t i = 0; i < sizeof caches / sizeof caches[0]; i++) {
		int n = st_topo_count(tp, caches[i]);
		if (n <= 0)
			continue;
		hwloc_obj_t o = hwloc_get_obj_by_type(tp->t, caches[i], 0);
		char sz[32];
		human_size(o->attr->cache.size, sz, sizeof sz);
		fprintf(f, "%s L%u%s %dx%s", sep, o->attr->cache.depth,
			o->attr->cache.type == HWLOC_OBJ_CACHE_INSTRUCTION ? "i" :
			o->attr->cache.type == HWLOC_OBJ_CACHE_DATA ? "d" : "", n, sz);
		sep = ",";
	}
	fputc('\n', f);
}

int st_topo_bind_self(const struct st_topo *real, int pu, char *err, size_t errlen)
{
	hwloc_obj_t o = hwloc_get_obj_by_type(real->t, HWLOC_OBJ_PU, (unsigned)pu);
	if (o == NULL) {
		snprintf(err, errlen, "no PU L#%d on this machine", pu);
		return -EINVAL;
	}
	hwloc_bitmap_t set = hwloc_bitmap_dup(o->cpuset), now = hwloc_bitmap_alloc();
	int rc = 0;
	if (set == NULL || now == NULL) {
		snprintf(err, errlen, "out of memory for a cpuset");
		rc = -ENOMEM;
		goto out;
	}
	/* A PU's set has one bit already; singlify keeps this right if the
	 * plan ever hands us a wider object (and is what hwloc advises). */
	hwloc_bitmap_singlify(set);
	if (hwloc_set_cpubind(real->t, set, HWLOC_CPUBIND_THREAD) < 0) {
		rc = -errno;
		snprintf(err, errlen, "binding to PU L#%d (P#%u) failed: %s", pu, o->os_index,
			 strerror(errno));
		goto out;
	}
	if (hwloc_get_cpubind(real->t, now, HWLOC_CPUBIND_THREAD) == 0 && !hwloc_bitmap_isequal(now, set)) {
		char *a = NULL;
		hwloc_bitmap_asprintf(&a, now);
		snprintf(err, errlen, "bound to PU L#%d (P#%u) but the thread's cpuset reads %s",
			 pu, o->os_index, a ? a : "?");
		free(a);
		rc = -EXDEV;
	}
out:
	hwloc_bitmap_free(set);
	hwloc_bitmap_free(now);
	return rc;
}
