/*
 * pool/internal.h - the pool region's layout, shared by every pool/ file.
 *
 * A region is, at offsets from its start (all multiples of 64):
 *
 *   [ struct lfp_pool header | next[count] (uint32 links) | blocks ]
 *
 * Only offsets and indices are stored, so the region is position independent.
 *
 * Link word states, next[i]:
 *   0..count-1   i is free and the next free block below it is next[i]
 *   LFP_NIL      i is free and is the bottom of the free stack
 *   LFPI_ALLOC   i is allocated (written by the popper after its CAS)
 *   LFPI_FREEING i is being freed (checked mode, between the state CAS and
 *                the push)
 *
 * Invariant (quiescent): |blocks reachable from head| + |blocks marked
 * LFPI_ALLOC| = count, and the walk from head reaches LFP_NIL in at most
 * count steps.
 */
#ifndef LFP_POOL_INTERNAL_H
#define LFP_POOL_INTERNAL_H

#include "../atomics/lfp_atomic.h"
#include "../include/lfpool.h"

#include <errno.h>

#if defined(__GNUC__) || defined(__clang__)
#define LFPI_HIDDEN __attribute__((visibility("hidden")))
#define lfpi_likely(x) __builtin_expect(!!(x), 1)
#define lfpi_unlikely(x) __builtin_expect(!!(x), 0)
#else
#define LFPI_HIDDEN
#define lfpi_likely(x) (x)
#define lfpi_unlikely(x) (x)
#endif

#define LFPI_POOL_MAGIC UINT64_C(0x4c46504f4f4c3031) /* "LFPOOL01" */
#define LFPI_POOL_DEAD UINT64_C(0x4c46504445414421)  /* "LFPDEAD!" */
#define LFPI_LAYOUT_VERSION 1u

#define LFPI_ALLOC UINT32_C(0xFFFFFFFE)
#define LFPI_FREEING UINT32_C(0xFFFFFFFD)

/* Internal flags, above the public ones. */
#define LFPI_OWNS_MAPPING (1u << 31)

struct lfp_pool {
	/* Immutable after init (written before the handle is published). */
	uint64_t magic;
	uint32_t version;
	uint32_t flags;
	uint64_t block_size;  /* as configured */
	uint64_t stride;      /* block_size rounded up to align */
	uint64_t count;
	uint64_t align;
	uint64_t next_off;    /* offset of next[] from the region start */
	uint64_t blocks_off;  /* offset of block 0 from the region start */
	uint64_t region_size; /* bytes the layout needs */
	uint64_t map_lead;    /* created pools: bytes mapped before the region */
	uint64_t map_size;    /* created pools: bytes mapped in all */
	uint32_t stride_shift; /* log2(stride) if a power of two, else 0xFF */
	uint32_t reserved0;

	/* The free-stack head {tag:32 | index:32}: CAS by alloc (A2) and
	 * free (R1); alone on its line so counters never false-share with it. */
	LFP_CACHE_ALIGNED lfp_atomic_u64 head;

	/* Counters: relaxed, they order nothing (statistics only). */
	LFP_CACHE_ALIGNED lfp_atomic_u64 n_alloc;
	lfp_atomic_u64 n_free;
	lfp_atomic_u64 n_fail;
	lfp_atomic_u64 high_water;
};

#define LFPI_HEADER_SIZE ((sizeof(struct lfp_pool) + 63u) & ~(size_t)63u)

struct lfpi_layout {
	uint64_t stride, align, next_off, blocks_off, region_size;
	uint32_t stride_shift;
};

/* Compute the layout of cfg; 0 or -EINVAL / -EOVERFLOW. */
LFPI_HIDDEN int lfpi_layout(const lfp_pool_config_t *cfg, struct lfpi_layout *lay);

static inline lfp_atomic_u32 *lfpi_next(const lfp_pool_t *p)
{
	return (lfp_atomic_u32 *)(uintptr_t)((const char *)p + p->next_off);
}

static inline char *lfpi_blocks(const lfp_pool_t *p)
{
	return (char *)(uintptr_t)((const char *)p + p->blocks_off);
}

static inline bool lfpi_live(const lfp_pool_t *p)
{
	return p != NULL && p->magic == LFPI_POOL_MAGIC;
}

static inline void *lfpi_ptr(const lfp_pool_t *p, uint32_t i)
{
	return lfpi_blocks(p) + (uint64_t)i * p->stride;
}

/* Index of ptr, or -EINVAL if ptr is not a block start of p. */
static inline int64_t lfpi_index(const lfp_pool_t *p, const void *ptr)
{
	uintptr_t off = (uintptr_t)ptr - (uintptr_t)lfpi_blocks(p);
	uint64_t i;
	if (lfpi_unlikely((uintptr_t)ptr < (uintptr_t)lfpi_blocks(p)))
		return -EINVAL;
	if (lfpi_likely(p->stride_shift != 0xFF)) {
		if (off & (p->stride - 1))
			return -EINVAL;
		i = off >> p->stride_shift;
	} else {
		if (off % p->stride)
			return -EINVAL;
		i = off / p->stride;
	}
	return i < p->count ? (int64_t)i : -EINVAL;
}

/* The free-index stack (pool/stack.c). */
LFPI_HIDDEN uint32_t lfpi_stack_pop(lfp_pool_t *p);
LFPI_HIDDEN void lfpi_stack_push(lfp_pool_t *p, uint32_t i);
/* Push a chain first..last already linked through next[] in one CAS. */
LFPI_HIDDEN void lfpi_stack_push_chain(lfp_pool_t *p, uint32_t first, uint32_t last);

#define LFPI_POP_EMPTY LFP_NIL
#define LFPI_POP_CORRUPT UINT32_C(0xFFFFFFFC)

#endif /* LFP_POOL_INTERNAL_H */
