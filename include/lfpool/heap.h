/* lfpool/heap.h - included by lfpool.h; do not include directly. (placeholder) */
#ifndef LFPOOL_HEAP_H
#define LFPOOL_HEAP_H
#endif
