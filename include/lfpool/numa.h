/*
 * lfpool/numa.h - NUMA placement of pool memory (hwloc). Included by
 * lfpool.h; do not include directly.
 *
 * These calls live in the full library (liblfpool.a / .so, which links
 * hwloc); the dependency-free core (liblfpool-core.a) does not have them.
 *
 * Nodes are numbered by hwloc's logical index of NUMA nodes on this machine:
 * 0 .. lfp_numa_node_count() - 1 (hwloc-ls / lstopo show them as
 * "NUMANode L#n"). The binding is a memory policy on the pool's pages
 * (hwloc_set_area_membind, HWLOC_MEMBIND_BIND): pages are placed on the node
 * when first touched, so bind before the memory is written (lfp_pool_init
 * writes the header and link array; the blocks are touched by their users).
 *
 * Concurrency: every call here may run concurrently with any other call in
 * this header and with any pool call. The first call loads the machine's
 * topology once (blocking, a few milliseconds); later calls reuse it.
 */
#ifndef LFPOOL_NUMA_H
#define LFPOOL_NUMA_H

#ifdef __cplusplus
extern "C" {
#endif

/**
 * NUMA nodes on this machine (1 on a machine without NUMA).
 * @return the count, or -ENOSYS if the topology cannot be loaded, or if it
 *         is not this machine's (HWLOC_SYNTHETIC or HWLOC_XMLFILE set, and no
 *         HWLOC_THISSYSTEM=1 saying it is): every function here then fails
 *         with ENOSYS.
 * Concurrency: any. Ordering: none. Progress: blocking on the first call.
 */
LFP_API int lfp_numa_node_count(void);

/**
 * Create a pool, as lfp_pool_create(), whose memory is bound to a NUMA node.
 * lfp_pool_destroy() unmaps it as it does a created pool.
 * @param cfg   the pool's config
 * @param node  logical NUMA node index, 0 .. lfp_numa_node_count() - 1
 * @return the pool, or NULL with errno EINVAL (bad config or node out of
 *         range), EOVERFLOW (size), ENOMEM (mapping failed), ENOSYS (no
 *         topology, or this system cannot bind memory), EXDEV (the binding
 *         was refused, e.g. the node is not allowed to this process).
 * Concurrency: independent calls may run at once. Ordering: as
 * lfp_pool_create. Progress: blocking (mmap, mbind).
 */
LFP_API lfp_pool_t *lfp_pool_create_on_node(const lfp_pool_config_t *cfg, int node)
	LFP_WARN_UNUSED;

/**
 * Bind the pages of [mem, mem + size) to a NUMA node, for regions the caller
 * maps itself (shared memory, hugepages) before laying a pool out in them
 * with lfp_pool_init(). Call it before the pages are first written.
 * @return 0; -EINVAL (NULL mem, size 0, node out of range), -ENOSYS,
 *         -EXDEV as for lfp_pool_create_on_node.
 * Concurrency: any; the caller owns the range. Ordering: none. Progress:
 * blocking (mbind).
 */
LFP_API int lfp_numa_bind_region(void *mem, size_t size, int node);

/**
 * Bind the pages of a shared-memory file (a memfd, a file on tmpfs, a POSIX
 * shm object) to a NUMA node before they exist: the policy is kept by the
 * file, so every mapping of it, in any process, gets its pages on that node.
 * Use it on an empty file before lfp_shm_create_fd() lays a segment out in
 * it (or before mapping and lfp_pool_init()).
 * @param size  bytes from offset 0 to cover; 0 = the whole file, however
 *              large it grows
 * @return 0; -EBADF (fd < 0 or not open); -EACCES, -ENODEV (fd cannot be
 *         mapped shared); -EINVAL (node out of range); -ENOMEM; -ENOSYS,
 *         -EXDEV as for lfp_pool_create_on_node.
 * Concurrency: any; pages already allocated keep their place. Ordering:
 * none. Progress: blocking (mmap, mbind).
 */
LFP_API int lfp_numa_bind_fd(int fd, size_t size, int node);

/**
 * The NUMA node holding the (touched) page at addr.
 * @return the logical node index; -EINVAL for NULL; -ENOENT if the page is
 *         not resident or lies on several nodes; -ENOSYS without topology
 *         or memory-location support.
 * Concurrency: any. Ordering: none. Progress: blocking (a system call).
 */
LFP_API int lfp_numa_node_of(const void *addr);

#ifdef __cplusplus
}
#endif

#endif /* LFPOOL_NUMA_H */
