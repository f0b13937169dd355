/* lfpool/shm.h - included by lfpool.h; do not include directly. (placeholder) */
#ifndef LFPOOL_SHM_H
#define LFPOOL_SHM_H
#endif
