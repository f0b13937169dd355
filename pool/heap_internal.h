/*
 * pool/heap_internal.h - what the front end (pool/frontend.c) needs from the
 * fallback heap (pool/heap.c) beyond the public API.
 */
#ifndef LFP_HEAP_INTERNAL_H
#define LFP_HEAP_INTERNAL_H

#include "internal.h"

/* The region a heap hands blocks out of: [*base, *base + *len). */
LFPI_HIDDEN void lfpi_flheap_range(const lfp_flheap_t *h, uintptr_t *base, size_t *len);

/*
 * Pin live block p: lfp_flheap_free/_realloc then refuse it with -EINVAL, as
 * if it were not a block (the front end carves pool regions out of the heap
 * and must never see one freed through lfp_heap_free). 0 or -EINVAL.
 */
LFPI_HIDDEN int lfpi_flheap_pin(lfp_flheap_t *h, void *p);

/* Unpin and free a pinned block. 0 or -EINVAL (not a pinned live block). */
LFPI_HIDDEN int lfpi_flheap_free_pinned(lfp_flheap_t *h, void *p);

/* A fallback heap's reservation when its config gives none (16 GiB of
 * address space); the front end sizes its pool limits by it. */
#define LFPI_FLHEAP_DEFAULT_RESERVE ((size_t)16 << 30)

#endif /* LFP_HEAP_INTERNAL_H */
