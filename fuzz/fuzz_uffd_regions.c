// SPDX-License-Identifier: MIT
/* fuzz_uffd_regions.c - libFuzzer harness for porthole-uffd's untrusted parsers:
 * the Firecracker handshake region table and the working-set trace format.
 * Accepted tables are checked against the invariants the server relies on.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "uffd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t file_size = 1ull << 30;
	struct ph_uffd_region r[PH_UFFD_MAX_REGIONS];
	char err[256];
	uint64_t *offs;
	size_t n;

	if (!ph_uffd_regions_parse((const char *)data, size, file_size, r, PH_UFFD_MAX_REGIONS, &n,
				   err, sizeof(err))) {
		for (size_t i = 0; i < n; i++) {
			if (!n || r[i].size == 0 || (r[i].base | r[i].size) & (r[i].page_size - 1) ||
			    r[i].offset + r[i].size > file_size || r[i].offset & 4095)
				abort();
			if (i && r[i - 1].base + r[i - 1].size > r[i].base)
				abort();	/* sorted, disjoint */
			if (ph_uffd_regions_find(r, n, r[i].base) != (ssize_t)i ||
			    ph_uffd_regions_find(r, n, r[i].base + r[i].size - 1) != (ssize_t)i)
				abort();
		}
	}
	if (!ph_uffd_trace_parse((const char *)data, size, &offs, &n, err, sizeof(err))) {
		for (size_t i = 0; i < n; i++)
			if (offs[i] & 4095)
				abort();
		free(offs);
	}
	return 0;
}
