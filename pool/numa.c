/*
 * pool/numa.c - pools whose memory lives on a chosen NUMA node (hwloc).
 *
 * Not part of the core: it links hwloc and is built into the full library
 * only (mk/stress.mk adds it to LIB_SRCS and hwloc to LIB_PKGS).
 *
 * lfp_pool_create_on_node() maps the region as lfp_pool_create() does, binds
 * the mapping to the node's nodeset with hwloc_set_area_membind(BIND) while
 * no page has been touched yet, lays the pool out with the public
 * lfp_pool_init(), and finally marks the header as owning its mapping so that
 * lfp_pool_destroy() unmaps it like any created pool. Those three header
 * fields are immutable after init and written before the handle is returned,
 * so the usual hand-off of the handle publishes them.
 *
 * The machine topology is loaded once per process (pthread_once) and only
 * read afterwards; hwloc documents concurrent read-only use of a loaded
 * topology as safe.
 */
#define _DEFAULT_SOURCE
#include "internal.h"

#include <hwloc.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

static pthread_once_t topo_once = PTHREAD_ONCE_INIT;
static hwloc_topology_t topo;      /* immutable after topo_once */
static int topo_err;               /* immutable after topo_once: 0 or -errno */

static void topo_load(void)
{
	if (hwloc_topology_init(&topo) < 0) {
		topo_err = -ENOSYS;
		return;
	}
	/* HWLOC_SYNTHETIC or HWLOC_XMLFILE in the environment makes hwloc
	 * describe another machine: its nodes are not where memory can be
	 * bound here, so placement is refused rather than done wrongly. */
	if (hwloc_topology_load(topo) < 0 || !hwloc_topology_is_thissystem(topo)) {
		hwloc_topology_destroy(topo);
		topo_err = -ENOSYS;
	}
}

/* The node's object, or NULL with *err set. */
static hwloc_obj_t node_obj(int node, int *err)
{
	pthread_once(&topo_once, topo_load);
	if (topo_err) {
		*err = topo_err;
		return NULL;
	}
	hwloc_obj_t o = node < 0 ? NULL : hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, (unsigned)node);
	if (o == NULL)
		*err = -EINVAL;
	return o;
}

int lfp_numa_node_count(void)
{
	pthread_once(&topo_once, topo_load);
	if (topo_err)
		return topo_err;
	int n = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
	return n > 0 ? n : 1;
}

static int bind_area(hwloc_obj_t o, void *mem, size_t size)
{
	if (hwloc_set_area_membind(topo, mem, size, o->nodeset, HWLOC_MEMBIND_BIND,
				   HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_STRICT) == 0)
		return 0;
	/* hwloc reports "cannot do this here" as ENOSYS and "not allowed
	 * with these arguments" as EXDEV; anything else is unexpected. */
	return errno == ENOSYS ? -ENOSYS : -EXDEV;
}

int lfp_numa_bind_region(void *mem, size_t size, int node)
{
	int err = 0;
	if (mem == NULL || size == 0)
		return -EINVAL;
	hwloc_obj_t o = node_obj(node, &err);
	if (o == NULL)
		return err;
	return bind_area(o, mem, size);
}

lfp_pool_t *lfp_pool_create_on_node(const lfp_pool_config_t *cfg, int node)
{
	struct lfpi_layout lay;
	int err = lfpi_layout(cfg, &lay);
	if (err < 0) {
		errno = -err;
		return NULL;
	}
	hwloc_obj_t o = node_obj(node, &err);
	if (o == NULL) {
		errno = -err;
		return NULL;
	}
	struct lfpi_mapping m;
	err = lfpi_map_region(&lay, &m);
	if (err < 0) {
		errno = -err;
		return NULL;
	}
	/* Bind before the first touch: lfp_pool_init writes header and links. */
	err = bind_area(o, m.map, (size_t)m.size);
	lfp_pool_t *p = NULL;
	if (err == 0)
		err = lfp_pool_init(m.base, (size_t)(m.size - (uint64_t)(m.base - m.map)), cfg, &p);
	if (err < 0) {
		lfpi_unmap_region(&m);
		errno = -err;
		return NULL;
	}
	/* Owner-only until returned: hand the mapping to lfp_pool_destroy. */
	lfpi_adopt_mapping(p, &m);
	return p;
}

int lfp_numa_node_of(const void *addr)
{
	int err = 0;
	if (addr == NULL)
		return -EINVAL;
	if (node_obj(0, &err) == NULL)
		return err;
	hwloc_bitmap_t set = hwloc_bitmap_alloc();
	if (set == NULL)
		return -ENOMEM;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	const void *pg = (const void *)((uintptr_t)addr & ~(page - 1));
	int rc = hwloc_get_area_memlocation(topo, pg, (size_t)page, set, HWLOC_MEMBIND_BYNODESET);
	if (rc < 0) {
		rc = errno == ENOSYS ? -ENOSYS : -ENOENT;
	} else if (hwloc_bitmap_weight(set) != 1) {
		rc = -ENOENT;
	} else {
		hwloc_obj_t o = hwloc_get_numanode_obj_by_os_index(topo, (unsigned)hwloc_bitmap_first(set));
		rc = o ? (int)o->logical_index : -ENOENT;
	}
	hwloc_bitmap_free(set);
	return rc;
}

int lfp_numa_bind_fd(int fd, size_t size, int node)
{
	int err = 0;
	if (fd < 0)
		return -EBADF;
	hwloc_obj_t o = node_obj(node, &err);
	if (o == NULL)
		return err;
	if (size == 0)
		size = (size_t)1 << 40; /* "all of it": address space only, no memory */
	/* The policy of a shared-memory object's pages lives with the object
	 * (the kernel's shared policy of a tmpfs/memfd inode), so binding a
	 * temporary mapping of it binds every later mapping, in any process. */
	void *m = mmap(NULL, size, PROT_NONE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return errno == EBADF || errno == EACCES || errno == ENODEV ? -errno : -ENOMEM;
	err = bind_area(o, m, size);
	munmap(m, size);
	return err;
}
