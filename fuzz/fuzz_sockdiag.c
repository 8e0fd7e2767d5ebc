// SPDX-License-Identifier: MIT
/* fuzz_sockdiag.c - libFuzzer harness: one sock_diag reply datagram into ph_sockdiag_parse(), as TCP and as UDP */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "discovery.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ph_scan out;	/* reused like the scanner does */
	uint32_t seq = 42;		/* the seed captures use 42 */
	int ret;

	ph_scan_clear(&out);
	ret = ph_sockdiag_parse(data, size, seq, &out);
	if (ret < 0)
		return 0;
	for (size_t i = 0; i < out.len; i++)	/* results must be sane */
		if (out.v[i].family != 2 && out.v[i].family != 10)
			__builtin_trap();

	/* Again with the first message's own seq, so mutated seqs still parse */
	if (size >= 12) {
		memcpy(&seq, data + 8, sizeof(seq));
		ph_scan_clear(&out);
		ph_sockdiag_parse(data, size, seq, &out);
	}

	/* As a UDP dump: only unconnected sockets with a port, tagged UDP */
	ph_scan_clear(&out);
	if (ph_sockdiag_parse_proto(data, size, seq, IPPROTO_UDP, &out) < 0)
		return 0;
	for (size_t i = 0; i < out.len; i++)
		if (out.v[i].proto != IPPROTO_UDP || !out.v[i].port ||
		    (out.v[i].family != 2 && out.v[i].family != 10))
			__builtin_trap();
	return 0;
}
