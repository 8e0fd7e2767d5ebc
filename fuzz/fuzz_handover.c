// SPDX-License-Identifier: MIT
/* fuzz_handover.c - libFuzzer harness for the upgrade state parser (handover_state.c)
 *
 * The bytes are a state a new process received from an old one. Besides
 * "no crash, no sanitizer report" it checks the parser's promises, which the
 * importer relies on: every descriptor index is below n_fds and used once,
 * buffers lie inside the input, names are valid; and a state that parses
 * encodes again to bytes that parse to the same counts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "handover_state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void use(uint8_t *seen, uint32_t n_fds, uint32_t i, int optional)
{
	if (optional && i == PH_HO_NONE)
		return;
	if (i >= n_fds || seen[i])
		abort();
	seen[i] = 1;
}

static void inside(const uint8_t *p, size_t n, const uint8_t *data, size_t size)
{
	if (n && (p < data || p + n > data + size))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ph_ho_state s, again;
	uint8_t *seen, *b = NULL;
	size_t len;

	if (ph_ho_parse(data, size, &s)) {
		ph_ho_state_free(&s);
		return 0;
	}
	seen = calloc(s.n_fds + 1, 1);
	if (!seen)
		abort();
	for (size_t i = 0; i < s.n_socks; i++) {
		use(seen, s.n_fds, s.socks[i].fd, 0);
		if (!ph_fdname_valid(s.socks[i].name))
			abort();
	}
	for (size_t i = 0; i < s.n_relays; i++) {
		const struct ph_ho_relay *r = &s.relays[i];

		use(seen, s.n_fds, r->fd[0], 0);
		use(seen, s.n_fds, r->fd[1], 0);
		for (int d = 0; d < 2; d++) {
			use(seen, s.n_fds, r->dir[d].pipe[0], 1);
			use(seen, s.n_fds, r->dir[d].pipe[1], 1);
			if (r->dir[d].pipe_len > r->dir[d].pipe_cap)
				abort();
			inside(r->dir[d].buf, r->dir[d].buf_len, data, size);
		}
	}
	free(seen);
	if (ph_ho_encode(&s, &b, &len) || ph_ho_parse(b, len, &again) ||
	    again.n_relays != s.n_relays || again.n_socks != s.n_socks || again.argc != s.argc ||
	    again.n_counters != s.n_counters)
		abort();
	ph_ho_state_free(&again);
	free(b);
	ph_ho_state_free(&s);
	return 0;
}
