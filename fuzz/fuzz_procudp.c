// SPDX-License-Identifier: MIT
/* fuzz_procudp.c - libFuzzer harness: /proc/net/udp{,6} text and ip_local_port_range
 *
 * Line by line (both families) and as a whole file. Beyond "no crash": a
 * line that counts is an unconnected UDP socket with a port; a rejected
 * file leaves nothing behind; a parsed port range is 1 <= lo <= hi.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "discovery.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ph_scan out;
	static int memfd = -1;
	static char path[64];
	struct ph_listener l;
	char *text, *line, *save = NULL;
	uint16_t lo, hi;

	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (!ph_port_range_parse(text, &lo, &hi) && (!lo || lo > hi))
		__builtin_trap();
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		for (int fam = AF_INET; fam <= AF_INET6; fam += AF_INET6 - AF_INET) {
			if (ph_procudp_parse_line(line, fam, &l) == 1 &&
			    (l.proto != IPPROTO_UDP || !l.port || l.family != fam))
				__builtin_trap();
		}
	}
	free(text);

	if (memfd < 0) {
		memfd = memfd_create("fuzz_procudp", MFD_CLOEXEC);
		if (memfd < 0)
			return 0;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	}
	if (ftruncate(memfd, 0) || pwrite(memfd, data, size, 0) != (ssize_t)size)
		return 0;
	ph_scan_clear(&out);
	if (ph_procudp_read(path, (size & 1) ? AF_INET6 : AF_INET, &out) != 0 && out.len)
		__builtin_trap();	/* a rejected file must leave nothing behind */
	return 0;
}
