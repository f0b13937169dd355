/*
 * pool/heap.c - the fallback free-list heap (lfp_flheap_*).
 *
 * A classic boundary-tag heap over one contiguous region that only grows at
 * its end (an mmap reservation committed step by step, or caller memory
 * grown by a callback: a simulated sbrk heap, shared memory, bare metal).
 *
 * Blocks. Every block starts with a 4-byte header {size | flags}; the payload
 * follows at an address that is a multiple of the alignment G (8 or 16), so
 * block sizes are multiples of G and headers sit at G-4 modulo G. Flags:
 * ALLOC (this block is allocated), PREV (the block before it is
 * allocated) and PIN (allocated and owned by the front end: a pool region,
 * which the public free and realloc refuse). Allocated blocks have no footer: the PREV bit of the next
 * header says whether the 4 bytes before a header are a free block's footer.
 * A free block holds {header, next link, prev link, ..., footer}, so the
 * minimum block is 16 bytes. Links are 32-bit payload offsets / 8 (0 = none):
 * the region holds no pointers and may be mapped anywhere.
 *
 *   region: [G-4 pad][blk][blk]...[blk][epilogue hdr: size 0, ALLOC]
 *            ^ first header at G-4      ^ extent-4          extent ^
 *
 * Free lists. The segregated-fits policy keeps one list per bin: exact bins
 * for sizes up to 256 bytes, four bins per power of two above; a bitmap of
 * non-empty bins finds the next candidate bin in O(1). The first/next/best
 * policies keep every free block on bin 0. Lists are LIFO.
 *
 * Placement. A request takes a fitting free block (per policy) and splits off
 * the rest when the rest is at least min_split. Below-average requests are
 * carved from the high end of a free block and the rest from the low end, so
 * small and large blocks collect apart and large frees coalesce into runs
 * that later large requests can reuse (docs/frontend.md has the numbers).
 * When nothing fits the heap grows at its end by what is missing, plus a
 * growth chunk that scales with the heap (so the split above has room to
 * work); a free block at the end is used first.
 *
 * Invariants (checked by lfp_flheap_validate):
 *   - the blocks tile [G-4, extent-4) exactly, then the epilogue;
 *   - no two free blocks are adjacent (coalescing is immediate);
 *   - a block's PREV bit equals its predecessor's ALLOC bit;
 *   - a free block's footer equals its header's size, and it is on exactly
 *     the list of its bin, with prev/next links that agree;
 *   - alloc_blocks + free_blocks = blocks walked; alloc_bytes + free_bytes
 *     = extent - G;
 *   - checked mode: a bitmap bit is set exactly for each live payload.
 *
 * Locking: one pthread mutex per heap around every call (the heap is the
 * slow path behind the pools), or none with LFP_FLHEAP_UNLOCKED. No atomics:
 * the mutex orders everything.
 */
#include "heap_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HDR 4u                   /* header bytes */
#define MINB 16u                 /* minimum block: hdr + 2 links + footer */
#define F_ALLOC 1u
#define F_PREV 2u
#define F_PIN 4u                 /* allocated, owned by the front end */
#define SIZE_MASK (~(uint32_t)7u)
#define MAX_BLOCK UINT32_C(0xFFFFFFF0)
#define NIL 0u

#define EXACT_MAX 256u           /* exact bins up to here (by size / 8) */
#define NBINS 132u               /* 33 exact + 4 per power of two 2^8..2^31 */
#define BITMAP_WORDS ((NBINS + 63u) / 64u)

#define MAX_REGION ((size_t)32 << 30) /* links are u32 (payload offset / 8) */
#define COMMIT_MIN ((size_t)64 << 10)
#define RELEASE_MIN ((size_t)256 << 10) /* frees this big give pages back */

#define LFPI_FLHEAP_MAGIC UINT64_C(0x4c4650464c484550) /* "LFPFLHEP" */

struct lfp_flheap {
	uint64_t magic;     /* immutable after create (until destroy) */
	char *base;         /* region start; immutable */
	size_t extent;      /* bytes in use: epilogue header at extent-4 */
	size_t committed;   /* usable bytes (granted by grow / mprotect) */
	size_t region_max;  /* immutable */
	char *reserve;      /* mmap reservation (NULL: caller region); this
			     * control block sits at its start */
	size_t reserve_len; /* its length */
	lfp_flheap_grow_fn grow;
	void *grow_ctx;
	unsigned fit, flags;
	uint32_t G;         /* alignment, 8 or 16; immutable */
	uint32_t min_split; /* >= MINB, multiple of G; immutable */
	size_t grow_chunk;  /* 0 = adaptive; immutable */
	uint32_t rover;     /* next fit: link of the block to search from */
	uint32_t avg;       /* running average of request sizes (placement) */
	uint64_t bitmap[BITMAP_WORDS];
	uint32_t bins[NBINS];
	uint64_t alloc_blocks, alloc_bytes, free_blocks, free_bytes;
	uint64_t grows, bad_frees;
	uint8_t *check;     /* checked mode: bit per granule of payload offset */
	size_t check_len;
	pthread_mutex_t lock; /* everything above that is not immutable */
};

/* ---- raw words ------------------------------------------------------------ */

static inline uint32_t rd(const lfp_flheap_t *h, size_t off)
{
	uint32_t v;
	memcpy(&v, h->base + off, sizeof v);
	return v;
}

static inline void wr(lfp_flheap_t *h, size_t off, uint32_t v)
{
	memcpy(h->base + off, &v, sizeof v);
}

static inline uint32_t bsize(uint32_t hdr) { return hdr & SIZE_MASK; }

/* A link names a free block by its payload offset / 8 (never 0). */
static inline uint32_t to_link(size_t off) { return (uint32_t)((off + HDR) >> 3); }
static inline size_t from_link(uint32_t l) { return ((size_t)l << 3) - HDR; }

static inline uint32_t lnext(const lfp_flheap_t *h, size_t off) { return rd(h, off + 4); }
static inline uint32_t lprev(const lfp_flheap_t *h, size_t off) { return rd(h, off + 8); }
static inline void set_lnext(lfp_flheap_t *h, size_t off, uint32_t l) { wr(h, off + 4, l); }
static inline void set_lprev(lfp_flheap_t *h, size_t off, uint32_t l) { wr(h, off + 8, l); }

static inline size_t epi_off(const lfp_flheap_t *h) { return h->extent - HDR; }
static inline size_t first_off(const lfp_flheap_t *h) { return h->G - HDR; }

/* Set or clear the PREV bit of the block at off. */
static inline void set_prev_bit(lfp_flheap_t *h, size_t off, bool alloc)
{
	uint32_t v = rd(h, off);
	wr(h, off, alloc ? (v | F_PREV) : (v & ~F_PREV));
}

/* A free block: header (keeping PREV) and footer. */
static inline void mark_free(lfp_flheap_t *h, size_t off, uint32_t size, uint32_t prevbit)
{
	wr(h, off, size | prevbit);
	wr(h, off + size - 4, size);
}

/* ---- checked-mode bitmap ------------------------------------------------- */

static inline size_t gran(const lfp_flheap_t *h, size_t off) { return (off + HDR) / h->G; }

static inline void check_set(lfp_flheap_t *h, size_t off, bool on)
{
	if (h->check == NULL)
		return;
	size_t g = gran(h, off);
	if (on)
		h->check[g >> 3] |= (uint8_t)(1u << (g & 7));
	else
		h->check[g >> 3] &= (uint8_t)~(1u << (g & 7));
}

static inline bool check_get(const lfp_flheap_t *h, size_t off)
{
	size_t g = gran(h, off);
	return (h->check[g >> 3] >> (g & 7)) & 1u;
}

/* ---- bins ------------------------------------------------------------------ */

static inline unsigned bin_of(const lfp_flheap_t *h, uint32_t size)
{
	if (h->fit != LFP_FIT_SEGREGATED)
		return 0;
	if (size <= EXACT_MAX)
		return size >> 3; /* 2 .. 32 */
	unsigned e = 31u - (unsigned)__builtin_clz(size); /* 8 .. 31 */
	unsigned sub = (size >> (e - 2)) & 3u;
	return 33u + (e - 8u) * 4u + sub;
}

static inline bool bin_is_exact(const lfp_flheap_t *h, unsigned b)
{
	return h->fit == LFP_FIT_SEGREGATED && b <= EXACT_MAX / 8;
}

static void list_insert(lfp_flheap_t *h, size_t off, uint32_t size)
{
	unsigned b = bin_of(h, size);
	uint32_t l = to_link(off), head = h->bins[b];
	set_lnext(h, off, head);
	set_lprev(h, off, NIL);
	if (head != NIL)
		set_lprev(h, from_link(head), l);
	h->bins[b] = l;
	h->bitmap[b >> 6] |= UINT64_C(1) << (b & 63);
	h->free_blocks++;
	h->free_bytes += size;
}

static void list_remove(lfp_flheap_t *h, size_t off, uint32_t size)
{
	unsigned b = bin_of(h, size);
	uint32_t n = lnext(h, off), p = lprev(h, off);
	if (h->rover == to_link(off))
		h->rover = n;
	if (p != NIL)
		set_lnext(h, from_link(p), n);
	else
		h->bins[b] = n;
	if (n != NIL)
		set_lprev(h, from_link(n), p);
	if (h->bins[b] == NIL)
		h->bitmap[b >> 6] &= ~(UINT64_C(1) << (b & 63));
	h->free_blocks--;
	h->free_bytes -= size;
}

/* First non-empty bin >= b, or NBINS. */
static unsigned next_bin(const lfp_flheap_t *h, unsigned b)
{
	while (b < NBINS) {
		uint64_t w = h->bitmap[b >> 6] >> (b & 63);
		if (w)
			return b + (unsigned)__builtin_ctzll(w);
		b = (b | 63u) + 1u;
	}
	return NBINS;
}

/* ---- finding a fit ------------------------------------------------------- */

#define SCAN_CAP 64u /* blocks examined for a best fit within one bin */

/* Best fit on one list, examining at most cap blocks after the first fit. */
static size_t best_in_list(const lfp_flheap_t *h, uint32_t l, uint32_t asize, unsigned cap)
{
	size_t best = SIZE_MAX;
	uint32_t best_size = UINT32_MAX;
	unsigned seen = 0;
	while (l != NIL) {
		size_t off = from_link(l);
		uint32_t s = bsize(rd(h, off));
		if (s >= asize && s < best_size) {
			best = off;
			best_size = s;
			if (s == asize)
				break;
		}
		if (best != SIZE_MAX && ++seen >= cap)
			break;
		l = lnext(h, off);
	}
	return best;
}

static size_t find_fit(lfp_flheap_t *h, uint32_t asize)
{
	uint32_t l;
	switch (h->fit) {
	case LFP_FIT_FIRST:
		for (l = h->bins[0]; l != NIL; l = lnext(h, from_link(l)))
			if (bsize(rd(h, from_link(l))) >= asize)
				return from_link(l);
		return SIZE_MAX;
	case LFP_FIT_NEXT: {
		/* The caller removes the block found; list_remove then moves
		 * the rover to its successor. */
		uint32_t start = h->rover != NIL ? h->rover : h->bins[0];
		for (l = start; l != NIL; l = lnext(h, from_link(l)))
			if (bsize(rd(h, from_link(l))) >= asize)
				return h->rover = l, from_link(l);
		for (l = h->bins[0]; l != NIL && l != start; l = lnext(h, from_link(l)))
			if (bsize(rd(h, from_link(l))) >= asize)
				return h->rover = l, from_link(l);
		return SIZE_MAX;
	}
	case LFP_FIT_BEST:
		return best_in_list(h, h->bins[0], asize, UINT32_MAX);
	default: {
		unsigned b = bin_of(h, asize);
		if (bin_is_exact(h, b)) {
			if (h->bins[b] != NIL)
				return from_link(h->bins[b]);
			b++;
		} else if (h->bins[b] != NIL) {
			/* The request's own range bin may hold blocks too small. */
			size_t off = best_in_list(h, h->bins[b], asize, SCAN_CAP);
			if (off != SIZE_MAX)
				return off;
			b++;
		}
		b = next_bin(h, b);
		if (b >= NBINS)
			return SIZE_MAX;
		/* Every block in a higher bin fits; prefer the smallest few. */
		if (bin_is_exact(h, b))
			return from_link(h->bins[b]);
		return best_in_list(h, h->bins[b], asize, SCAN_CAP);
	}
	}
}

/* ---- growing --------------------------------------------------------------- */

/* Make [0, need) of the region usable. 0 or -ENOMEM. */
static int ensure_committed(lfp_flheap_t *h, size_t need)
{
	if (need <= h->committed)
		return 0;
	if (need > h->region_max)
		return -ENOMEM;
	if (h->reserve != NULL) {
		/* Commit in steps that grow with the heap: few mprotect calls.
		 * base + committed is always a page boundary. */
		size_t step = h->committed / 4 > COMMIT_MIN ? h->committed / 4 : COMMIT_MIN;
		size_t page = (size_t)sysconf(_SC_PAGESIZE);
		size_t want = need - h->committed < step ? h->committed + step : need;
		uintptr_t end = ((uintptr_t)h->base + want + page - 1) & ~(uintptr_t)(page - 1);
		want = end - (uintptr_t)h->base;
		if (want > h->region_max)
			want = h->region_max;
		if (mprotect(h->base + h->committed, want - h->committed, PROT_READ | PROT_WRITE) != 0)
			return -ENOMEM;
		h->committed = want;
		return 0;
	}
	if (h->grow == NULL)
		return -ENOMEM;
	if (h->grow(h->grow_ctx, h->base, need) != 0)
		return -ENOMEM;
	h->committed = need;
	return 0;
}

/*
 * Grow the heap at its end by `bytes` (a multiple of G) and return the free
 * block that ends there (coalesced with a free last block), off the lists.
 * SIZE_MAX if the region cannot grow.
 */
static size_t extend(lfp_flheap_t *h, size_t bytes)
{
	size_t old_epi = epi_off(h);
	uint32_t epi = rd(h, old_epi);
	if (bytes > MAX_BLOCK || h->extent + bytes > MAX_REGION ||
	    ensure_committed(h, h->extent + bytes) != 0)
		return SIZE_MAX;
	h->grows++;
	h->extent += bytes;
	wr(h, epi_off(h), F_ALLOC); /* new epilogue; its predecessor is free */
	size_t off = old_epi;
	uint32_t size = (uint32_t)bytes;
	uint32_t prevbit = epi & F_PREV;
	if (!prevbit) {
		uint32_t psize = rd(h, old_epi - 4);
		off = old_epi - psize;
		list_remove(h, off, psize);
		size += psize;
		prevbit = rd(h, off) & F_PREV;
	}
	/* Not on a list: count it as free bytes the caller takes. */
	mark_free(h, off, size, prevbit);
	return off;
}

/*
 * Growth beyond the need, for requests placed at the high end: 1/64 of the
 * heap (at most 1 MiB), so the free rest below the new block can take the
 * next large requests. A request at the low end grows the heap by exactly
 * what it lacks (the end of the heap is then free for the next one anyway).
 * The chunk is the utilization price of segregation: at most 1/64 of the
 * extent is left unused at the top.
 */
static size_t growth_chunk(const lfp_flheap_t *h, bool high)
{
	if ((h->flags & LFP_FLHEAP_PLAIN_SPLIT) || !high)
		return 0;
	if (h->grow_chunk != 0)
		return h->grow_chunk;
	size_t c = h->extent / 64;
	if (c > ((size_t)1 << 20))
		c = (size_t)1 << 20;
	return c & ~(size_t)(h->G - 1);
}

/* ---- placing --------------------------------------------------------------- */

/*
 * Allocate asize bytes out of free block off (size bsz, already off its
 * list). The rest, if at least min_split, stays free on the low side (high
 * = true: the new block takes the high end) or the high side.
 * @return the allocated block's offset.
 */
static size_t place(lfp_flheap_t *h, size_t off, uint32_t bsz, uint32_t asize, bool high)
{
	uint32_t prevbit = rd(h, off) & F_PREV;
	uint32_t rest = bsz - asize;
	size_t a;
	if (rest >= h->min_split) {
		if (high) {
			mark_free(h, off, rest, prevbit);
			list_insert(h, off, rest);
			a = off + rest;
			wr(h, a, asize | F_ALLOC); /* PREV clear: the rest is free */
			set_prev_bit(h, a + asize, true);
		} else {
			a = off;
			wr(h, a, asize | F_ALLOC | prevbit);
			mark_free(h, a + asize, rest, F_PREV);
			list_insert(h, a + asize, rest);
			/* the block after the rest already has PREV clear */
		}
	} else {
		a = off;
		asize = bsz;
		wr(h, a, asize | F_ALLOC | prevbit);
		set_prev_bit(h, a + asize, true);
	}
	h->alloc_blocks++;
	h->alloc_bytes += asize;
	check_set(h, a, true);
	return a;
}

/* Round a request up to a block size; 0 if it cannot be one. The margin
 * (the largest min_split) keeps every merge in realloc below MAX_BLOCK. */
#define MAX_REQUEST ((size_t)MAX_BLOCK - ((size_t)1 << 20) - 64u)
static uint32_t adjust(const lfp_flheap_t *h, size_t n)
{
	if (n > MAX_REQUEST)
		return 0;
	size_t a = (n + HDR + h->G - 1) & ~(size_t)(h->G - 1);
	return (uint32_t)(a < MINB ? MINB : a);
}

/* log2(x) * 256, with the mantissa interpolated linearly (x > 0). */
static inline uint32_t log2_fix(uint32_t x)
{
	uint32_t msb = 31u - (uint32_t)__builtin_clz(x);
	uint32_t frac = msb >= 8 ? (x >> (msb - 8)) & 0xFFu : (x << (8 - msb)) & 0xFFu;
	return msb << 8 | frac;
}

/*
 * Should this request take the high end of the block it splits? Yes when it
 * is below half the running geometric mean of request sizes (an EWMA of
 * log2(size), weight 1/16): small blocks then gather at the high ends of
 * free blocks and large ones at the low ends, so when the large ones die they
 * coalesce into runs instead of holes between small survivors. Working in
 * log2 keeps a rare huge request from flipping the classification of
 * everything after it. Measured in docs/benchmarks-heap.md.
 */
static bool place_high(lfp_flheap_t *h, uint32_t asize)
{
	if (h->flags & LFP_FLHEAP_PLAIN_SPLIT)
		return false;
	uint32_t lg = log2_fix(asize);
	bool high = lg + 256u < h->avg; /* asize < geomean / 2 */
	int32_t d = (int32_t)lg - (int32_t)h->avg;
	h->avg = (uint32_t)((int32_t)h->avg + d / 16);
	return high;
}

static void *malloc_unlocked(lfp_flheap_t *h, size_t n)
{
	uint32_t asize = adjust(h, n);
	if (asize == 0) {
		errno = ENOMEM;
		return NULL;
	}
	bool high = place_high(h, asize);
	size_t off = find_fit(h, asize);
	uint32_t bsz;
	if (off != SIZE_MAX) {
		bsz = bsize(rd(h, off));
		list_remove(h, off, bsz);
	} else {
		/* Grow by what is missing beyond a free last block, plus the
		 * chunk (so the split policy has room on later requests). */
		uint32_t epi = rd(h, epi_off(h));
		size_t have = (epi & F_PREV) ? 0 : rd(h, epi_off(h) - 4);
		size_t need = asize - have;
		size_t chunk = growth_chunk(h, high);
		if ((uint64_t)asize + chunk > MAX_BLOCK)
			chunk = 0; /* the merged block must fit a header */
		size_t want = need + chunk;
		off = extend(h, want);
		if (off == SIZE_MAX && chunk != 0)
			off = extend(h, need);
		if (off == SIZE_MAX) {
			errno = ENOMEM;
			return NULL;
		}
		bsz = bsize(rd(h, off));
	}
	size_t a = place(h, off, bsz, asize, high);
	return h->base + a + HDR;
}

/* ---- freeing --------------------------------------------------------------- */

/* Return block off to the free lists, coalescing with both neighbours.
 * @return the offset of the resulting free block. */
static size_t release(lfp_flheap_t *h, size_t off)
{
	uint32_t v = rd(h, off);
	uint32_t size = bsize(v);
	uint32_t prevbit = v & F_PREV;
	size_t next = off + size;
	uint32_t nv = rd(h, next);
	h->alloc_blocks--;
	h->alloc_bytes -= size;
	check_set(h, off, false);
	/* Coalesce, unless the sum would not fit a header (blocks < 4 GiB):
	 * the one case where two free blocks may touch. */
	if (!(nv & F_ALLOC) && (uint64_t)size + bsize(nv) <= MAX_BLOCK) {
		uint32_t ns = bsize(nv);
		list_remove(h, next, ns);
		size += ns;
	} else {
		set_prev_bit(h, next, false);
	}
	if (!prevbit && (uint64_t)size + rd(h, off - 4) <= MAX_BLOCK) {
		uint32_t ps = rd(h, off - 4);
		off -= ps;
		list_remove(h, off, ps);
		size += ps;
		prevbit = rd(h, off) & F_PREV;
	}
	mark_free(h, off, size, prevbit);
	list_insert(h, off, size);
	return off;
}

/* Give the whole pages inside [lo, hi) back to the kernel (mmap mode). */
static void release_pages(lfp_flheap_t *h, size_t lo, size_t hi)
{
	if (h->reserve == NULL)
		return;
	/* Whole pages of the address range: h->base itself is not page
	 * aligned, so offsets rounded from it gave madvise an unaligned
	 * address, and every call failed with EINVAL (until 0.2.1: freed
	 * memory never went back to the kernel). */
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = ((uintptr_t)(h->base + lo) + page - 1) & ~(page - 1);
	uintptr_t b = (uintptr_t)(h->base + hi) & ~(page - 1);
	if (b > a) {
		int saved = errno; /* the callers' errno is the caller's */
		(void)madvise((void *)a, b - a, MADV_DONTNEED);
		errno = saved;
	}
}

/*
 * Is p a live block of h? 0, -EINVAL (not a block of h) or -EALREADY (a
 * free block). Sets *offp. Never reads outside the region.
 */
static int check_live(const lfp_flheap_t *h, const void *p, size_t *offp)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)h->base;
	if (a < b + h->G || a >= b + epi_off(h) || (a - b) % h->G)
		return -EINVAL;
	size_t off = a - b - HDR;
	uint32_t v = rd(h, off);
	uint32_t size = bsize(v);
	bool sane = size >= MINB && size % h->G == 0 && off + size <= epi_off(h);
	if (v & F_PIN)
		return -EINVAL; /* the front end's, not the caller's */
	if (h->check != NULL) {
		if (check_get(h, off)) {
			*offp = off;
			return 0; /* the bitmap is the truth */
		}
		/* Not a live payload start: a free block that is still a
		 * block, or anything else. */
		if (sane && !(v & F_ALLOC) && rd(h, off + size - 4) == size)
			return -EALREADY;
		return -EINVAL;
	}
	if (!sane)
		return -EINVAL;
	if (!(v & F_ALLOC))
		return -EALREADY;
	if (!(rd(h, off + size) & F_PREV))
		return -EINVAL; /* the next block disagrees: not a header */
	*offp = off;
	return 0;
}

static int free_unlocked(lfp_flheap_t *h, void *p)
{
	size_t off;
	int rc = check_live(h, p, &off);
	if (rc != 0) {
		h->bad_frees++;
		return rc;
	}
	uint32_t size = bsize(rd(h, off));
	(void)release(h, off);
	if (size >= RELEASE_MIN)
		release_pages(h, off + MINB, off + size - 4);
	return 0;
}

/* ---- locking --------------------------------------------------------------- */

static inline void lock(lfp_flheap_t *h)
{
	if (!(h->flags & LFP_FLHEAP_UNLOCKED))
		pthread_mutex_lock(&h->lock);
}

static inline void unlock(lfp_flheap_t *h)
{
	if (!(h->flags & LFP_FLHEAP_UNLOCKED))
		pthread_mutex_unlock(&h->lock);
}

static inline bool live(const lfp_flheap_t *h)
{
	return h != NULL && h->magic == LFPI_FLHEAP_MAGIC;
}

/* ---- create / destroy ------------------------------------------------------- */

/* Unmap everything a heap mapped (the control block last: it may live in
 * the reservation). */
static void unmap_heap(lfp_flheap_t *h)
{
	if (h->check)
		munmap(h->check, h->check_len);
	if (h->reserve != NULL)
		munmap(h->reserve, h->reserve_len); /* h is gone after this */
	else
		munmap(h, sizeof *h);
}

lfp_flheap_t *lfp_flheap_create(const lfp_flheap_config_t *cfg)
{
	lfp_flheap_config_t def = { 0 };
	if (cfg == NULL)
		cfg = &def;
	size_t G = cfg->align ? cfg->align : 16;
	if ((G != 8 && G != 16) || cfg->fit > LFP_FIT_BEST ||
	    (cfg->flags & ~(unsigned)(LFP_FLHEAP_CHECKED | LFP_FLHEAP_UNLOCKED |
				      LFP_FLHEAP_PLAIN_SPLIT))) {
		errno = EINVAL;
		return NULL;
	}
	size_t min_split = cfg->min_split ? cfg->min_split : MINB;
	if (min_split < MINB || min_split > ((size_t)1 << 20)) {
		errno = EINVAL;
		return NULL;
	}
	min_split = (min_split + G - 1) & ~(G - 1);
	/* Memory source B's fields without its region: a caller who forgot
	 * `region` would silently get a 16 GiB reservation instead. */
	if (cfg->region == NULL && (cfg->region_size || cfg->region_max || cfg->grow)) {
		errno = EINVAL;
		return NULL;
	}
	if (cfg->region != NULL) {
		size_t max = cfg->region_max ? cfg->region_max : cfg->region_size;
		if ((uintptr_t)cfg->region % G || max < cfg->region_size) {
			errno = EINVAL;
			return NULL;
		}
	}

	/* The control block: at the start of our own reservation, or in a
	 * mapping of its own when the caller provides the region (which then
	 * holds nothing but blocks). */
	const size_t ctl = (sizeof(lfp_flheap_t) + 63) & ~(size_t)63;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	lfp_flheap_t *h;
	char *res = NULL;
	size_t res_len = 0;
	if (cfg->region != NULL) {
		h = mmap(NULL, sizeof *h, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (h == MAP_FAILED) {
			errno = ENOMEM;
			return NULL;
		}
	} else {
		res_len = cfg->reserve ? cfg->reserve : LFPI_FLHEAP_DEFAULT_RESERVE;
		if (res_len > MAX_REGION)
			res_len = MAX_REGION;
		res_len = (res_len + page - 1) & ~(page - 1);
		if (res_len < 2 * COMMIT_MIN)
			res_len = 2 * COMMIT_MIN;
		res = mmap(NULL, res_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (res == MAP_FAILED) {
			errno = ENOMEM;
			return NULL;
		}
		if (mprotect(res, COMMIT_MIN, PROT_READ | PROT_WRITE) != 0) {
			munmap(res, res_len);
			errno = ENOMEM;
			return NULL;
		}
		h = (lfp_flheap_t *)(void *)res;
	}
	memset(h, 0, sizeof *h);
	h->G = (uint32_t)G;
	h->min_split = (uint32_t)min_split;
	h->fit = cfg->fit;
	h->flags = cfg->flags;
	h->grow_chunk = (cfg->grow_chunk + G - 1) & ~(G - 1);
	h->avg = 0;

	if (cfg->region != NULL) {
		h->base = cfg->region;
		h->committed = cfg->region_size;
		h->region_max = cfg->region_max ? cfg->region_max : cfg->region_size;
		if (h->region_max > MAX_REGION)
			h->region_max = MAX_REGION;
		h->grow = cfg->grow;
		h->grow_ctx = cfg->grow_ctx;
	} else {
		h->reserve = res;
		h->reserve_len = res_len;
		h->base = res + ctl;
		h->committed = COMMIT_MIN - ctl;
		h->region_max = res_len - ctl;
	}
	if (cfg->flags & LFP_FLHEAP_CHECKED) {
		h->check_len = ((h->region_max / G + 7) / 8 + page - 1) & ~(page - 1);
		void *m = mmap(NULL, h->check_len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED) {
			unmap_heap(h);
			errno = ENOMEM;
			return NULL;
		}
		h->check = m;
	}
	/* The empty heap: padding, then the epilogue (its predecessor, the
	 * start of the heap, counts as allocated). */
	h->extent = G;
	if (ensure_committed(h, G) != 0) {
		unmap_heap(h);
		errno = ENOMEM;
		return NULL;
	}
	wr(h, epi_off(h), F_ALLOC | F_PREV);
	pthread_mutex_init(&h->lock, NULL);
	h->magic = LFPI_FLHEAP_MAGIC;
	return h;
}

int lfp_flheap_destroy(lfp_flheap_t *h)
{
	if (!live(h))
		return -EINVAL;
	h->magic = 0;
	pthread_mutex_destroy(&h->lock);
	unmap_heap(h);
	return 0;
}

/* ---- the public calls ----------------------------------------------------- */

void *lfp_flheap_malloc(lfp_flheap_t *h, size_t n)
{
	if (!live(h)) {
		errno = EINVAL;
		return NULL;
	}
	lock(h);
	void *p = malloc_unlocked(h, n);
	unlock(h);
	return p;
}

void *lfp_flheap_calloc(lfp_flheap_t *h, size_t n, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	void *p = lfp_flheap_malloc(h, total);
	if (p != NULL)
		memset(p, 0, total);
	return p;
}

int lfp_flheap_free(lfp_flheap_t *h, void *p)
{
	if (!live(h))
		return -EINVAL;
	if (p == NULL)
		return 0;
	int saved = errno;
	lock(h);
	int rc = free_unlocked(h, p);
	unlock(h);
	errno = saved;
	return rc;
}

/* Shrink block off (size cur) to asize, freeing the tail if worth it. */
static void shrink(lfp_flheap_t *h, size_t off, uint32_t cur, uint32_t asize)
{
	uint32_t rest = cur - asize;
	if (rest < h->min_split)
		return;
	uint32_t v = rd(h, off);
	wr(h, off, asize | (v & F_PREV) | F_ALLOC);
	h->alloc_bytes -= rest;
	size_t t = off + asize;
	size_t next = t + rest;
	uint32_t nv = rd(h, next);
	if (!(nv & F_ALLOC)) {
		uint32_t ns = bsize(nv);
		list_remove(h, next, ns);
		rest += ns;
	} else {
		set_prev_bit(h, next, false);
	}
	mark_free(h, t, rest, F_PREV);
	list_insert(h, t, rest);
}

/*
 * Grow block off (size cur) to at least asize without moving it, into a
 * free next block and/or the end of the heap. @return true on success.
 */
static bool grow_in_place(lfp_flheap_t *h, size_t off, uint32_t cur, uint32_t asize)
{
	size_t next = off + cur;
	uint32_t nv = rd(h, next);
	uint64_t avail = cur;
	bool next_free = !(nv & F_ALLOC);
	if (next_free)
		avail += bsize(nv);
	if (avail < asize) {
		/* Only the end of the heap can help now. */
		size_t after = next_free ? next + bsize(nv) : next;
		if (after != epi_off(h))
			return false;
		size_t got = extend(h, asize - avail);
		if (got == SIZE_MAX)
			return false;
		/* extend() merged the free next block (if any) with the new
		 * space and took it off the lists; it starts at next. */
		avail = cur + bsize(rd(h, got));
	} else if (next_free) {
		list_remove(h, next, bsize(nv));
	}
	/* Merge [off, off+avail) into one allocated block, split the rest
	 * (rest < the free next block, so it fits a header; and if it is
	 * below min_split, avail < asize + min_split <= MAX_BLOCK). */
	uint32_t v = rd(h, off);
	uint32_t rest = (uint32_t)(avail - asize);
	h->alloc_bytes += avail - cur;
	if (rest >= h->min_split) {
		wr(h, off, asize | (v & F_PREV) | F_ALLOC);
		h->alloc_bytes -= rest;
		mark_free(h, off + asize, rest, F_PREV);
		list_insert(h, off + asize, rest);
		/* the block after the rest already has PREV clear */
	} else {
		wr(h, off, (uint32_t)avail | (v & F_PREV) | F_ALLOC);
		set_prev_bit(h, off + avail, true);
	}
	return true;
}

/* Slide block off into a free previous neighbour (and a free next one) if
 * together they hold asize. @return the new offset or SIZE_MAX. */
static size_t grow_backward(lfp_flheap_t *h, size_t off, uint32_t cur, uint32_t asize)
{
	uint32_t v = rd(h, off);
	if (v & F_PREV)
		return SIZE_MAX;
	uint32_t ps = rd(h, off - 4);
	size_t next = off + cur;
	uint32_t nv = rd(h, next);
	uint32_t ns = (nv & F_ALLOC) ? 0 : bsize(nv);
	uint64_t total = (uint64_t)ps + cur + ns;
	if (total < asize || total > MAX_BLOCK)
		return SIZE_MAX;
	size_t p = off - ps;
	list_remove(h, p, ps);
	if (ns)
		list_remove(h, next, ns);
	uint32_t pprev = rd(h, p) & F_PREV;
	check_set(h, off, false);
	memmove(h->base + p + HDR, h->base + off + HDR, cur - HDR);
	uint32_t t = (uint32_t)total;
	uint32_t rest = t - asize;
	h->alloc_bytes += t - cur;
	if (rest >= h->min_split) {
		wr(h, p, asize | pprev | F_ALLOC);
		h->alloc_bytes -= rest;
		mark_free(h, p + asize, rest, F_PREV);
		list_insert(h, p + asize, rest);
		if (!ns)
			set_prev_bit(h, p + t, false);
	} else {
		wr(h, p, t | pprev | F_ALLOC);
		set_prev_bit(h, p + t, true);
	}
	check_set(h, p, true);
	return p;
}

void *lfp_flheap_realloc(lfp_flheap_t *h, void *p, size_t n)
{
	if (!live(h)) {
		errno = EINVAL;
		return NULL;
	}
	if (p == NULL)
		return lfp_flheap_malloc(h, n);
	if (n == 0) {
		int rc = lfp_flheap_free(h, p);
		if (rc != 0)
			errno = -rc == EALREADY ? EINVAL : -rc;
		return NULL;
	}
	lock(h);
	size_t off;
	int rc = check_live(h, p, &off);
	if (rc != 0) {
		unlock(h);
		errno = EINVAL;
		return NULL;
	}
	uint32_t asize = adjust(h, n);
	if (asize == 0) {
		unlock(h);
		errno = ENOMEM;
		return NULL;
	}
	uint32_t cur = bsize(rd(h, off));
	if (asize <= cur) {
		shrink(h, off, cur, asize);
		unlock(h);
		return p;
	}
	if (grow_in_place(h, off, cur, asize)) {
		unlock(h);
		return p;
	}
	size_t noff = grow_backward(h, off, cur, asize);
	if (noff != SIZE_MAX) {
		unlock(h);
		return h->base + noff + HDR;
	}
	void *q = malloc_unlocked(h, n);
	if (q == NULL) {
		unlock(h);
		return NULL; /* errno ENOMEM; p intact */
	}
	memcpy(q, p, cur - HDR);
	(void)release(h, off);
	unlock(h);
	return q;
}

/* Carve an aligned block: over-allocate, then free the lead and the tail. */
static void *aligned_unlocked(lfp_flheap_t *h, size_t align, size_t n)
{
	uint32_t asize = adjust(h, n);
	if (asize == 0 || (uint64_t)asize + align + MINB > MAX_BLOCK) {
		errno = ENOMEM;
		return NULL;
	}
	/* Room for the block plus a lead of at least MINB before an aligned
	 * payload (a lead of 0 needs no room, but we cannot know in advance). */
	void *raw = malloc_unlocked(h, (size_t)asize - HDR + align + MINB);
	if (raw == NULL)
		return NULL;
	size_t off = (size_t)((char *)raw - h->base) - HDR;
	uint32_t bs = bsize(rd(h, off));
	uintptr_t pay = (uintptr_t)raw;
	uintptr_t want = (pay + align - 1) & ~(uintptr_t)(align - 1);
	while (want != pay && want - pay < MINB)
		want += align;
	size_t lead = want - pay;
	if (lead) {
		/* Split the lead off as its own allocated block and free it. */
		uint32_t v = rd(h, off);
		size_t noff = off + lead;
		wr(h, off, (uint32_t)lead | (v & F_PREV) | F_ALLOC);
		wr(h, noff, (uint32_t)(bs - lead) | F_PREV | F_ALLOC);
		h->alloc_blocks++;
		check_set(h, noff, true);
		(void)release(h, off);
		off = noff;
		bs -= (uint32_t)lead;
	}
	shrink(h, off, bs, asize);
	return h->base + off + HDR;
}

void *lfp_flheap_aligned_alloc(lfp_flheap_t *h, size_t align, size_t n)
{
	if (!live(h) || align == 0 || (align & (align - 1)) || align > ((size_t)1 << 30)) {
		errno = EINVAL;
		return NULL;
	}
	if (align <= h->G)
		return lfp_flheap_malloc(h, n);
	lock(h);
	void *p = aligned_unlocked(h, align, n);
	unlock(h);
	return p;
}

size_t lfp_flheap_usable_size(lfp_flheap_t *h, const void *p)
{
	if (!live(h) || p == NULL)
		return 0;
	lock(h);
	size_t off, n = 0;
	if (check_live(h, p, &off) == 0)
		n = bsize(rd(h, off)) - HDR;
	unlock(h);
	return n;
}

bool lfp_flheap_contains(const lfp_flheap_t *h, const void *p)
{
	if (!live(h))
		return false;
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)h->base;
	return a >= b && a - b < h->region_max;
}

int lfp_flheap_trim(lfp_flheap_t *h)
{
	if (!live(h))
		return -EINVAL;
	lock(h);
	for (unsigned b = 0; b < NBINS; b++)
		for (uint32_t l = h->bins[b]; l != NIL; l = lnext(h, from_link(l))) {
			size_t off = from_link(l);
			release_pages(h, off + MINB, off + bsize(rd(h, off)) - 4);
		}
	unlock(h);
	return 0;
}

int lfp_flheap_stats(lfp_flheap_t *h, lfp_flheap_stats_t *out)
{
	if (!live(h) || out == NULL)
		return -EINVAL;
	lock(h);
	uint64_t largest = 0;
	for (unsigned b = 0; b < NBINS; b++)
		for (uint32_t l = h->bins[b]; l != NIL; l = lnext(h, from_link(l))) {
			uint32_t s = bsize(rd(h, from_link(l)));
			if (s > largest)
				largest = s;
		}
	*out = (lfp_flheap_stats_t){
		.extent = h->extent,
		.committed = h->committed,
		.alloc_blocks = h->alloc_blocks,
		.alloc_bytes = h->alloc_bytes,
		.free_blocks = h->free_blocks,
		.free_bytes = h->free_bytes,
		.largest_free = largest,
		.meta_bytes = sizeof *h,
		.check_bytes = h->check_len,
		.grows = h->grows,
		.bad_frees = h->bad_frees,
	};
	unlock(h);
	return 0;
}

/* ---- validate ---------------------------------------------------------------- */

static int bad(const char **why, const char *msg)
{
	if (why)
		*why = msg;
	return -EUCLEAN;
}

static int validate_unlocked(lfp_flheap_t *h, const char **why)
{
	size_t off = first_off(h), epi = epi_off(h);
	uint64_t nalloc = 0, nfree = 0, balloc = 0, bfree = 0;
	bool prev_alloc = true;
	while (off < epi) {
		uint32_t v = rd(h, off), s = bsize(v);
		if (s < MINB || s % h->G || off + s > epi)
			return bad(why, "block size out of range or misaligned");
		if (!!(v & F_PREV) != prev_alloc)
			return bad(why, "PREV bit disagrees with the previous block");
		if (!(v & F_ALLOC) && (v & F_PIN))
			return bad(why, "free block marked pinned");
		if (v & F_ALLOC) {
			nalloc++;
			balloc += s;
			if (h->check && !check_get(h, off))
				return bad(why, "live block missing from the checked bitmap");
		} else {
			if (!prev_alloc && (uint64_t)s + rd(h, off - 4) <= MAX_BLOCK)
				return bad(why, "two adjacent free blocks (missed coalesce)");
			if (rd(h, off + s - 4) != s)
				return bad(why, "free block footer differs from header");
			if (h->check && check_get(h, off))
				return bad(why, "free block marked live in the checked bitmap");
			nfree++;
			bfree += s;
		}
		prev_alloc = (v & F_ALLOC) != 0;
		off += s;
	}
	if (off != epi)
		return bad(why, "blocks do not end at the epilogue");
	uint32_t ev = rd(h, epi);
	if (bsize(ev) != 0 || !(ev & F_ALLOC) || !!(ev & F_PREV) != prev_alloc)
		return bad(why, "bad epilogue");
	if (nalloc != h->alloc_blocks || balloc != h->alloc_bytes)
		return bad(why, "allocated counters differ from the walk");
	if (nfree != h->free_blocks || bfree != h->free_bytes)
		return bad(why, "free counters differ from the walk");
	if (balloc + bfree != h->extent - h->G)
		return bad(why, "blocks do not tile the extent");
	/* Lists: each entry free, in its bin, links consistent; count them. */
	uint64_t listed = 0;
	for (unsigned b = 0; b < NBINS; b++) {
		bool nonempty = h->bins[b] != NIL;
		if (nonempty != !!(h->bitmap[b >> 6] & (UINT64_C(1) << (b & 63))))
			return bad(why, "bin bitmap disagrees with the bin");
		uint32_t prev = NIL;
		for (uint32_t l = h->bins[b]; l != NIL; l = lnext(h, from_link(l))) {
			size_t o = from_link(l);
			if (o < first_off(h) || o >= epi || (o + HDR) % h->G)
				return bad(why, "free list link out of range");
			uint32_t v = rd(h, o);
			if (v & F_ALLOC)
				return bad(why, "allocated block on a free list");
			if (bin_of(h, bsize(v)) != b)
				return bad(why, "free block in the wrong bin");
			if (lprev(h, o) != prev)
				return bad(why, "free list back link broken");
			if (++listed > nfree)
				return bad(why, "free lists longer than the free blocks (cycle?)");
			prev = l;
		}
	}
	if (listed != nfree)
		return bad(why, "a free block is on no list");
	if (h->check) {
		uint64_t bits = 0;
		size_t bytes = (epi / h->G + 8) / 8;
		for (size_t i = 0; i < bytes; i++)
			bits += (uint64_t)__builtin_popcount(h->check[i]);
		if (bits != nalloc)
			return bad(why, "checked bitmap has stray bits");
	}
	return 0;
}

int lfp_flheap_validate(lfp_flheap_t *h, const char **why)
{
	if (!live(h)) {
		if (why)
			*why = "not a live heap";
		return -EINVAL;
	}
	lock(h);
	int rc = validate_unlocked(h, why);
	unlock(h);
	if (rc == 0 && why)
		*why = NULL;
	return rc;
}

/* ---- the front end's hooks (pool/heap_internal.h) ------------------------- */

void lfpi_flheap_range(const lfp_flheap_t *h, uintptr_t *base, size_t *len)
{
	*base = (uintptr_t)h->base;
	*len = h->region_max;
}

int lfpi_flheap_pin(lfp_flheap_t *h, void *p)
{
	size_t off;
	lock(h);
	int rc = check_live(h, p, &off);
	if (rc == 0)
		wr(h, off, rd(h, off) | F_PIN);
	unlock(h);
	return rc == 0 ? 0 : -EINVAL;
}

int lfpi_flheap_free_pinned(lfp_flheap_t *h, void *p)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)h->base;
	int rc = -EINVAL;
	lock(h);
	if (a >= b + h->G && a < b + epi_off(h) && (a - b) % h->G == 0) {
		size_t off = a - b - HDR;
		uint32_t v = rd(h, off);
		if ((v & (F_PIN | F_ALLOC)) == (F_PIN | F_ALLOC)) {
			wr(h, off, v & ~F_PIN);
			uint32_t size = bsize(v);
			(void)release(h, off);
			if (size >= RELEASE_MIN)
				release_pages(h, off + MINB, off + size - 4);
			rc = 0;
		}
	}
	unlock(h);
	return rc;
}
