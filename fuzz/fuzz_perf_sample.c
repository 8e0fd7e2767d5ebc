// SPDX-License-Identifier: MIT
/* fuzz_perf_sample.c - libFuzzer harness for ph_perf_parse_sample(), the perf source's record parser
 *
 * Besides "no crash, no sanitizer report" (the parser must never read past
 * @len, whatever the raw size field claims) it checks its promises: a
 * success needs at least the header, time, size and the tracepoint fields
 * it reads; a failure is -EINVAL.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "discovery_events.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ph_listen_event e;
	/* an exact-size heap copy: ASan sees any read past the end */
	uint8_t *rec = malloc(size ? size : 1);
	int ret;

	if (!rec)
		return 0;
	memcpy(rec, data, size);
	ret = ph_perf_parse_sample(rec, size, &e);
	if (ret && ret != -EINVAL)
		abort();
	if (!ret && size < 8 + 8 + 4 + 36)
		abort();
	free(rec);
	return 0;
}
