/* tests/core_standalone.c - the core, linked with nothing but libc and
 * pthreads, lays a pool out in a static array and cycles every block. */
#include <lfpool.h>

#include <stdio.h>

static _Alignas(LFP_REGION_ALIGN) unsigned char region[1 << 16];

int main(void)
{
	lfp_pool_config_t cfg = { .block_size = 48, .block_count = 100 };
	lfp_pool_t *pool;
	void *held[100];
	int rc = lfp_pool_init(region, sizeof region, &cfg, &pool);

	if (rc != 0) {
		fprintf(stderr, "init: %d\n", rc);
		return 1;
	}
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 100; i++)
			if ((held[i] = lfp_pool_alloc(pool)) == NULL) {
				fprintf(stderr, "alloc %d failed\n", i);
				return 1;
			}
		if (lfp_pool_alloc(pool) != NULL) {
			fprintf(stderr, "pool over-delivered\n");
			return 1;
		}
		for (int i = 99; i >= 0; i--)
			if (lfp_pool_free(pool, held[i]) != 0)
				return 1;
	}
	if (lfp_pool_validate(pool, NULL) != 0 || lfp_pool_free_count(pool) != 100) {
		fprintf(stderr, "validate/free_count wrong\n");
		return 1;
	}
	return lfp_pool_destroy(pool) == 0 ? 0 : 1;
}
