/* lfpool/numa.h - included by lfpool.h; do not include directly. (placeholder) */
#ifndef LFPOOL_NUMA_H
#define LFPOOL_NUMA_H
#endif
