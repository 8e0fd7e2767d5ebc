// SPDX-License-Identifier: MIT
/* fuzz_mountinfo.c - libFuzzer harness for ph_mountinfo_cgroup2(), the UDP hooks' mountinfo line parser
 *
 * Besides "no crash, no sanitizer report" it checks its promise: a mount
 * point returned lies inside the line and holds no space, and the line
 * says " - cgroup2 ".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "discovery_events.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = malloc(size + 1), *copy = malloc(size + 1), *m;

	if (!line || !copy)
		goto out;
	memcpy(line, data, size);
	line[size] = 0;
	memcpy(copy, line, size + 1);
	m = ph_mountinfo_cgroup2(line);
	if (m) {
		if (m < line || m > line + size || strchr(m, ' ') || !strstr(copy, " - cgroup2 "))
			abort();
	}
out:
	free(line);
	free(copy);
	return 0;
}
