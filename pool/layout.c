/*
 * pool/layout.c - computing, laying out and ending a pool region.
 *
 * lfp_pool_init() writes a fresh header, links every block into the free
 * stack (0 -> 1 -> ... -> N-1 -> NIL) and only then sets the magic, so a
 * half-initialised region is never taken for a pool. Nothing here allocates;
 * lfp_pool_create() is the one place that maps memory (mmap).
 */
#define _DEFAULT_SOURCE
#include "internal.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define DEFAULT_ALIGN _Alignof(max_align_t)

static bool is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

/* a + b and round up to align (a power of two); false on overflow. */
static bool add_round(uint64_t a, uint64_t b, uint64_t align, uint64_t *out)
{
	uint64_t s;
	if (__builtin_add_overflow(a, b, &s) || __builtin_add_overflow(s, align - 1, &s))
		return false;
	*out = s & ~(align - 1);
	return true;
}

static uint64_t pow2_floor(uint64_t x) { return x ? UINT64_C(1) << (63 - __builtin_clzll(x)) : 0; }

static uint64_t clamp_u64(uint64_t x, uint64_t lo, uint64_t hi) { return x < lo ? lo : x > hi ? hi : x; }

/* The cache's shape (docs/caches.md): S slots, k entries per magazine, M
 * magazines. Defaults keep the worst-case hoard of the slots (2 k S blocks)
 * at or below a quarter of the pool and give it magazines for every block
 * (about 4.6 bytes per block of address space, resident only as threads
 * fill them); what does not fit in magazines (a custom depot, or pools past
 * the 65535-magazine limit) travels as in-band batches. S grows with the
 * pool up to 1024 threads: with the old cap of 64, threads past the 64th of
 * a big pool ran on the shared stack, and 256 threads on 16 cores paid 8x
 * per pair (docs/benchmarks.md). 0 everywhere means no cache. */
static int cache_shape(const lfp_pool_config_t *cfg, struct lfpi_layout *lay)
{
	uint64_t count = cfg->block_count, S, k, D;

	lay->cache_slots = lay->cache_size = lay->n_mags = lay->mag_stride = 0;
	if (cfg->cache_size > LFP_CACHE_MAX_SIZE || cfg->cache_slots > LFP_CACHE_MAX_SLOTS ||
	    cfg->cache_depot > LFPI_CACHE_MAX_MAGS)
		return -EINVAL;
	if (cfg->flags & LFP_POOL_NO_CACHE)
		return 0;
	if (cfg->cache_slots)
		S = cfg->cache_slots;
	else if (count < LFPI_CACHE_MIN_BLOCKS)
		return 0;
	else
		S = clamp_u64(count / 1024, 1, LFPI_CACHE_DEF_SLOTS);
	k = cfg->cache_size ? cfg->cache_size
			    : clamp_u64(pow2_floor(count / (8 * S)), 4, LFPI_CACHE_DEF_SIZE);
	D = cfg->cache_depot ? cfg->cache_depot : 2 * S;
	/* By default enough magazines for the whole pool: past them free
	 * blocks travel as in-band batches, written by one thread into the
	 * blocks and unpacked by another, and two threads that each free 10k
	 * blocks of a 34k-block pool paid 1.15-1.26x mimalloc for that (with
	 * the magazines: 0.92-1.01x; docs/benchmarks.md). The spare ones cost
	 * address space until a thread fills one (lfpi_cache_init leaves them
	 * untouched), and they are no thread's hoard: any thread takes them. */
	if (!cfg->cache_depot && 2 * S + D < (count + k - 1) / k) {
		D = (count + k - 1) / k - 2 * S;
		/* A grown default that would not fit is cut to fit, never
		 * below 2 S: an explicit cache_slots stays valid. */
		if (2 * S + D > LFPI_CACHE_MAX_MAGS)
			D = LFPI_CACHE_MAX_MAGS - 2 * S > 2 * S ? LFPI_CACHE_MAX_MAGS - 2 * S : 2 * S;
	}
	if (2 * S + D > LFPI_CACHE_MAX_MAGS) {
		if (cfg->cache_depot || cfg->cache_slots)
			return -EINVAL;
		D = LFPI_CACHE_MAX_MAGS - 2 * S; /* a default that would not fit */
	}
	lay->cache_slots = (uint32_t)S;
	lay->cache_size = (uint32_t)k;
	lay->n_mags = (uint32_t)(2 * S + D);
	lay->mag_stride = (uint32_t)((4 + 4 * k + 63) & ~UINT64_C(63));
	return 0;
}

int lfpi_layout(const lfp_pool_config_t *cfg, struct lfpi_layout *lay)
{
	uint64_t align, stride, blocks_bytes, next_end, region;
	int rc;

	if (cfg == NULL || cfg->block_size == 0 || cfg->block_count == 0 ||
	    cfg->block_count > LFP_POOL_MAX_BLOCKS)
		return -EINVAL;
	/* Unknown flag bits are refused, not ignored: a flag from a newer
	 * header must not silently do nothing. */
	if (cfg->flags & ~(unsigned)(LFP_POOL_CHECKED | LFP_POOL_STATS | LFP_POOL_NO_CACHE))
		return -EINVAL;
	align = cfg->block_align ? cfg->block_align : DEFAULT_ALIGN;
	if (!is_pow2(align))
		return -EINVAL;
	/* Alignments above 1 GiB make no sense for a block and would make the
	 * caller's region alignment requirement absurd. */
	if (align > (UINT64_C(1) << 30))
		return -EINVAL;
	if (!add_round(cfg->block_size, 0, align, &stride))
		return -EOVERFLOW;
	if (__builtin_mul_overflow(stride, (uint64_t)cfg->block_count, &blocks_bytes))
		return -EOVERFLOW;
	if (!add_round(LFPI_HEADER_SIZE, (uint64_t)cfg->block_count * 4u, LFP_REGION_ALIGN, &next_end))
		return -EOVERFLOW;
	/* The cache area follows next[] (bounded sizes: no overflow here). */
	rc = cache_shape(cfg, lay);
	if (rc < 0)
		return rc;
	lay->cache_off = lay->mag_next_off = lay->mags_off = 0;
	if (lay->cache_slots) {
		lay->cache_off = next_end;
		lay->mag_next_off = next_end + (uint64_t)lay->cache_slots * sizeof(struct lfpi_slot);
		lay->mags_off = (lay->mag_next_off + 4u * (uint64_t)lay->n_mags + 63u) & ~UINT64_C(63);
		if (!add_round(lay->mags_off, (uint64_t)lay->n_mags * lay->mag_stride,
			       LFP_REGION_ALIGN, &next_end))
			return -EOVERFLOW;
	}
	/* Blocks start at a multiple of the block alignment from a region start
	 * that is itself aligned to max(64, align), so every mapping of the
	 * region sees aligned blocks. */
	if (!add_round(next_end, 0, align, &lay->blocks_off))
		return -EOVERFLOW;
	if (__builtin_add_overflow(lay->blocks_off, blocks_bytes, &region) || region > SIZE_MAX)
		return -EOVERFLOW;
	lay->stride = stride;
	lay->align = align;
	lay->next_off = LFPI_HEADER_SIZE;
	lay->region_size = region;
	lay->stride_shift = is_pow2(stride) ? (uint32_t)__builtin_ctzll(stride) : 0xFFu;
	return 0;
}

/* A value no earlier pool at this address in this process had (a counter),
 * mixed with addresses that ASLR varies between processes, so that a pool
 * another process made at this address does not match either. */
static uint64_t new_instance(const void *p)
{
	static lfp_atomic_u64 counter; /* zero-initialised: a valid atomic */
	/* K10 relaxed: only uniqueness matters, no data hangs off the value. */
	uint64_t n = lfp_fetch_add64_relaxed(&counter, 1) + 1;
	uint64_t z = n * UINT64_C(0x9E3779B97F4A7C15) ^ (uint64_t)(uintptr_t)&counter ^
		     ((uint64_t)(uintptr_t)p << 17);
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return (z ^ (z >> 31)) | 1; /* never 0 */
}

size_t lfp_pool_region_size(const lfp_pool_config_t *cfg)
{
	struct lfpi_layout lay;
	int rc = lfpi_layout(cfg, &lay);
	if (rc < 0) {
		errno = -rc;
		return 0;
	}
	return (size_t)lay.region_size;
}

static int init_at(void *mem, size_t size, const lfp_pool_config_t *cfg, unsigned iflags,
		   lfp_pool_t **out)
{
	struct lfpi_layout lay;
	lfp_pool_t *p = mem;
	int rc;

	if (mem == NULL || out == NULL)
		return -EINVAL;
	rc = lfpi_layout(cfg, &lay);
	if (rc < 0)
		return rc;
	if ((uintptr_t)mem % LFP_REGION_ALIGN || (uintptr_t)mem % lay.align)
		return -EINVAL;
	if (size < lay.region_size)
		return -ENOSPC;

	memset(p, 0, LFPI_HEADER_SIZE);
	p->version = LFPI_LAYOUT_VERSION;
	p->flags = (cfg->flags & (LFP_POOL_CHECKED | LFP_POOL_STATS)) | iflags;
	p->block_size = cfg->block_size;
	p->stride = lay.stride;
	p->count = cfg->block_count;
	p->align = lay.align;
	p->next_off = lay.next_off;
	p->blocks_off = lay.blocks_off;
	p->region_size = lay.region_size;
	p->stride_shift = lay.stride_shift;
	p->cache_off = lay.cache_off;
	p->mag_next_off = lay.mag_next_off;
	p->mags_off = lay.mags_off;
	p->cache_slots = lay.cache_slots;
	p->cache_size = lay.cache_size;
	p->n_mags = lay.n_mags;
	p->mag_stride = lay.mag_stride;
	p->instance = new_instance(p);

	lfp_atomic_u32 *next = lfpi_next(p);
	for (uint64_t i = 0; i + 1 < p->count; i++)
		lfp_init32(&next[i], (uint32_t)(i + 1));
	lfp_init32(&next[p->count - 1], LFP_NIL);
	lfp_init64(&p->head, lfp_head_make(0, 0));
	lfp_init64(&p->n_alloc, 0);
	lfp_init64(&p->n_free, 0);
	lfp_init64(&p->n_fail, 0);
	lfp_init64(&p->high_water, 0);
	lfp_init64(&p->depot_full, lfp_head_make(LFP_NIL, 0));
	lfp_init64(&p->depot_empty, lfp_head_make(LFP_NIL, 0));
	lfp_init64(&p->depot_batch, lfp_head_make(LFP_NIL, 0));
	lfp_init64(&p->batched, 0);
	lfp_init32(&p->claimed, 0);
	if (p->cache_slots)
		lfpi_cache_init(p);
	/* The handle reaches other threads through the caller's own
	 * synchronisation (thread creation, a release store, a mutex), which
	 * orders these plain writes before any use. */
	p->magic = LFPI_POOL_MAGIC;
	*out = p;
	return 0;
}

int lfp_pool_init(void *mem, size_t size, const lfp_pool_config_t *cfg, lfp_pool_t **out)
{
	return init_at(mem, size, cfg, 0, out);
}

int lfpi_map_region(const struct lfpi_layout *lay, struct lfpi_mapping *m)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	/* mmap gives page alignment; for larger block alignment map extra and
	 * start the region at the first aligned address. */
	uint64_t lead_room = lay->align > page ? lay->align - page : 0;

	if (__builtin_add_overflow(lay->region_size, lead_room, &m->size) || m->size > SIZE_MAX)
		return -EOVERFLOW;
	m->map = mmap(NULL, (size_t)m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	if (m->map == MAP_FAILED)
		return -ENOMEM;
	m->base = (char *)(((uintptr_t)m->map + lay->align - 1) & ~(uintptr_t)(lay->align - 1));
	return 0;
}

void lfpi_unmap_region(const struct lfpi_mapping *m)
{
	munmap(m->map, (size_t)m->size);
}

void *lfpi_map_zeroed(size_t size)
{
	int saved = errno;
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	errno = saved;
	return m == MAP_FAILED ? NULL : m;
}

void lfpi_adopt_mapping(lfp_pool_t *p, const struct lfpi_mapping *m)
{
	p->flags |= LFPI_OWNS_MAPPING;
	p->map_lead = (uint64_t)(m->base - m->map);
	p->map_size = m->size;
}

lfp_pool_t *lfp_pool_create(const lfp_pool_config_t *cfg)
{
	struct lfpi_layout lay;
	struct lfpi_mapping m;
	lfp_pool_t *p = NULL;
	int rc = lfpi_layout(cfg, &lay);

	if (rc == 0)
		rc = lfpi_map_region(&lay, &m);
	if (rc < 0) {
		errno = -rc;
		return NULL;
	}
	rc = init_at(m.base, (size_t)(m.size - (uint64_t)(m.base - m.map)), cfg, 0, &p);
	if (rc < 0) {
		lfpi_unmap_region(&m);
		errno = -rc;
		return NULL;
	}
	lfpi_adopt_mapping(p, &m);
	return p;
}

int lfp_pool_destroy(lfp_pool_t *pool)
{
	if (!lfpi_live(pool))
		return -EINVAL;
	/* No thread of ours keeps a key to it: lfp_pool_cache() makes a
	 * thread-table entry for a pool without a cache too. */
	lfpi_cache_destroy(pool);
	pool->magic = LFPI_POOL_DEAD;
	if (pool->flags & LFPI_OWNS_MAPPING)
		munmap((char *)pool - pool->map_lead, (size_t)pool->map_size);
	return 0;
}
