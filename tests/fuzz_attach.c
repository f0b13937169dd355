/*
 * tests/fuzz_attach.c - libFuzzer target: attach to a segment whose header
 * (and pool header, links, owner words, first participant slot) an input
 * has spoiled, then use it.
 *
 *   make fuzz [FUZZ_TIME=60]      (clang -fsanitize=fuzzer,address,undefined)
 *
 * A valid segment (20 blocks of 48 B, 3 participant slots, caches of 4) is
 * made once and copied. An input is
 *   byte 0      control bits: 1 re-seal the header checksum after the
 *               mutation (so the field checks behind it are reached),
 *               2 cut the file short by byte 1 * 64 bytes, 4 attach as a
 *               participant (else observer), 8 then allocate, free, adopt,
 *               inspect and recover on it
 *   byte 1      the cut
 *   bytes 2..   XORed, in order, onto the segment header, the pool header,
 *               the free-stack links, the owner words and slot 0
 * so the empty input is the valid segment and every mutation is a change of
 * a few bytes. The copy goes into a fresh memfd, which is attached with
 * LFP_SHM_NOWAIT and a 1 ms timeout (nothing may wait longer). Whatever the
 * bytes, attach must either refuse with a documented errno or give a handle
 * on which every call returns a documented result - never an out-of-bounds
 * access (ASan), undefined behaviour (UBSan) or a hang (-timeout).
 */
#include "../pool/shm_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned char *tmpl;
static size_t tmpl_size;

struct span {
	size_t off, len;
};
static struct span spans[5];

static void make_template(void)
{
	lfp_shm_config_t c = { .block_size = 48, .block_count = 20, .max_participants = 3,
			       .cache_size = 4 };
	lfp_shm_t *s = lfp_shm_create_memfd("fuzz", &c);
	if (s == NULL) {
		fprintf(stderr, "fuzz_attach: cannot make the template: %s\n", strerror(errno));
		abort();
	}
	tmpl_size = s->hdr.total_size;
	tmpl = malloc(tmpl_size);
	if (tmpl == NULL || pread(lfp_shm_fd(s), tmpl, tmpl_size, 0) != (ssize_t)tmpl_size)
		abort();
	spans[0] = (struct span){ 0, offsetof(struct lfpi_shm_hdr, init_state) + 64 };
	spans[1] = (struct span){ s->hdr.pool_off, sizeof(struct lfp_pool) };
	spans[2] = (struct span){ s->hdr.pool_off + s->pool->next_off, 20 * 4 };
	spans[3] = (struct span){ s->hdr.owner_off, 20 * 4 };
	spans[4] = (struct span){ s->hdr.parts_off, sizeof(struct lfpi_shm_part) };
	size_t slot0 = s->hdr.parts_off;
	lfp_shm_detach(s);
	/* The creator's slot: free in the template (it has left). */
	memset(tmpl + slot0 + offsetof(struct lfpi_shm_part, ident), 0, 8);
}

static void use(lfp_shm_t *s, bool participant)
{
	lfp_shm_info_t in;
	lfp_shm_report_t r = { 0 };
	void *held[8];
	int n = 0;

	if (lfp_shm_info(s, &in) != 0)
		abort();
	if (participant) {
		for (int i = 0; i < 8; i++) {
			void *p = lfp_shm_alloc(s);
			if (p == NULL) {
				if (errno != ENOMEM && errno != EUCLEAN && errno != ETIMEDOUT)
					abort();
				break;
			}
			memset(p, 0xA5, in.block_size); /* ASan: the whole block is ours */
			held[n++] = p;
		}
		for (int i = 0; i < n; i++) {
			int rc = lfp_shm_adopt(s, held[i], LFP_SHM_ANY);
			if (rc != 0 && rc != -ETIMEDOUT)
				abort();
			rc = lfp_shm_free(s, held[i]);
			if (rc != 0 && rc != -ETIMEDOUT && rc != -EPERM && rc != -EALREADY)
				abort();
		}
		(void)lfp_shm_cache_flush(s);
		(void)lfp_shm_owner(s, lfp_shm_ptr(s, 0));
	}
	int rc = lfp_shm_inspect(s, 0, &r);
	if (rc != 0 && rc != -EUCLEAN && rc != -ENOMEM)
		abort();
	rc = lfp_shm_recover(s, &r);
	if (rc != 0 && rc != -EUCLEAN && rc != -EBUSY && rc != -ETIMEDOUT && rc != -ENOMEM)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (tmpl == NULL)
		make_template();
	uint8_t ctl = size > 0 ? data[0] : 0;
	uint8_t cut = size > 1 ? data[1] : 0;
	unsigned char *img = malloc(tmpl_size);
	if (img == NULL)
		abort();
	memcpy(img, tmpl, tmpl_size);
	size_t k = 2;
	for (size_t sp = 0; sp < sizeof spans / sizeof spans[0] && k < size; sp++)
		for (size_t i = 0; i < spans[sp].len && k < size; i++)
			img[spans[sp].off + i] ^= data[k++];
	struct lfpi_shm_hdr *h = (struct lfpi_shm_hdr *)(void *)img;
	if (ctl & 1)
		h->checksum = lfpi_shm_checksum(h);
	size_t len = tmpl_size;
	if (ctl & 2)
		len = (size_t)cut * 64 < len ? len - (size_t)cut * 64 : 0;

	int fd = memfd_create("fuzz-img", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (ftruncate(fd, (off_t)len) != 0 || (len && pwrite(fd, img, len, 0) != (ssize_t)len))
		abort();
	free(img);
	bool participant = ctl & 4;
	lfp_shm_attach_opts_t o = { .flags = LFP_SHM_NOWAIT | (participant ? 0 : LFP_SHM_OBSERVER),
				    .timeout_ms = 1 };
	errno = 0;
	lfp_shm_t *s = lfp_shm_attach_ex(NULL, fd, &o);
	if (s == NULL) {
		switch (errno) {
		case EBADMSG: case EAGAIN: case ETIMEDOUT: case EOWNERDEAD: case EUSERS:
		case ENOMEM:
			break;
		default:
			fprintf(stderr, "undocumented attach errno %d (%s)\n", errno,
				lfp_shm_last_error() ? lfp_shm_last_error() : "-");
			abort();
		}
	} else {
		if (ctl & 8)
			use(s, participant);
		if (lfp_shm_detach(s) < 0)
			abort();
	}
	close(fd);
	return 0;
}
