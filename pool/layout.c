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

int lfpi_layout(const lfp_pool_config_t *cfg, struct lfpi_layout *lay)
{
	uint64_t align, stride, blocks_bytes, next_end, region;

	if (cfg == NULL || cfg->block_size == 0 || cfg->block_count == 0 ||
	    cfg->block_count > LFP_POOL_MAX_BLOCKS)
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

	lfp_atomic_u32 *next = lfpi_next(p);
	for (uint64_t i = 0; i + 1 < p->count; i++)
		lfp_init32(&next[i], (uint32_t)(i + 1));
	lfp_init32(&next[p->count - 1], LFP_NIL);
	lfp_init64(&p->head, lfp_head_make(0, 0));
	lfp_init64(&p->n_alloc, 0);
	lfp_init64(&p->n_free, 0);
	lfp_init64(&p->n_fail, 0);
	lfp_init64(&p->high_water, 0);
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

lfp_pool_t *lfp_pool_create(const lfp_pool_config_t *cfg)
{
	struct lfpi_layout lay;
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t lead_room, map_size;
	lfp_pool_t *p = NULL;
	int rc = lfpi_layout(cfg, &lay);

	if (rc < 0) {
		errno = -rc;
		return NULL;
	}
	/* mmap gives page alignment; for larger block alignment map extra and
	 * start the region at the first aligned address. */
	lead_room = lay.align > page ? lay.align - page : 0;
	if (__builtin_add_overflow(lay.region_size, lead_room, &map_size) || map_size > SIZE_MAX) {
		errno = EOVERFLOW;
		return NULL;
	}
	char *map = mmap(NULL, (size_t)map_size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		errno = ENOMEM;
		return NULL;
	}
	char *base = (char *)(((uintptr_t)map + lay.align - 1) & ~(uintptr_t)(lay.align - 1));
	rc = init_at(base, (size_t)(map_size - (uint64_t)(base - map)), cfg, LFPI_OWNS_MAPPING, &p);
	if (rc < 0) {
		munmap(map, (size_t)map_size);
		errno = -rc;
		return NULL;
	}
	p->map_lead = (uint64_t)(base - map);
	p->map_size = map_size;
	return p;
}

int lfp_pool_destroy(lfp_pool_t *pool)
{
	if (!lfpi_live(pool))
		return -EINVAL;
	pool->magic = LFPI_POOL_DEAD;
	if (pool->flags & LFPI_OWNS_MAPPING)
		munmap((char *)pool - pool->map_lead, (size_t)pool->map_size);
	return 0;
}
