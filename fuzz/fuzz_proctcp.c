// SPDX-License-Identifier: MIT
/* fuzz_proctcp.c - libFuzzer harness: /proc/net/tcp{,6} text, line by line and as a whole file */
#include <stdio.h>
#include <stdint.h>
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

	/* Line parser: every line, both families */
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		ph_proctcp_parse_line(line, AF_INET, &l);
		ph_proctcp_parse_line(line, AF_INET6, &l);
	}
	free(text);

	/* File reader: the same bytes as a file (buffering, partial lines) */
	if (memfd < 0) {
		memfd = memfd_create("fuzz_proctcp", MFD_CLOEXEC);
		if (memfd < 0)
			return 0;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	}
	if (ftruncate(memfd, 0) || pwrite(memfd, data, size, 0) != (ssize_t)size)
		return 0;
	ph_scan_clear(&out);
	if (ph_proctcp_read(path, (size & 1) ? AF_INET6 : AF_INET, &out) != 0 && out.len)
		__builtin_trap();	/* a rejected file must leave nothing behind */
	return 0;
}
