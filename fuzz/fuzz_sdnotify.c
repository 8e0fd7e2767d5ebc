// SPDX-License-Identifier: MIT
/* fuzz_sdnotify.c - libFuzzer harness for the fd store protocol parsers (sdnotify.c)
 *
 * The input drives all three: ph_notify_parse() on the raw bytes (a notify
 * datagram from any process), ph_fdnames_split() on it as LISTEN_FDNAMES
 * (NUL-terminated, with the count from the first byte), and
 * ph_fdname_parse() on each name. Besides "no crash, no sanitizer report"
 * it checks their promises: a parsed FDNAME is valid; split names are
 * valid; a TCP/UDP name parses to an address whose canonical name parses
 * back to the same address.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sdnotify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_name(const char *name)
{
	struct ph_fdname n, again;
	char canon[PH_FDNAME_MAX + 1];

	if (ph_fdname_parse(name, &n)) {
		if (n.kind != PH_FDKIND_OTHER)
			abort();
		return;
	}
	if (n.kind != PH_FDKIND_TCP && n.kind != PH_FDKIND_UDP)
		return;
	if (ph_fdname_format(canon, sizeof(canon), n.kind, (struct sockaddr *)&n.sa) ||
	    !ph_fdname_valid(canon) || ph_fdname_parse(canon, &again) || again.kind != n.kind ||
	    !ph_sockaddr_same((struct sockaddr *)&n.sa, (struct sockaddr *)&again.sa))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char names[16][PH_FDNAME_MAX + 1];
	struct ph_notify m;
	size_t n;
	char *s;

	if (!ph_notify_parse((const char *)data, size, &m) && m.has_fdname &&
	    !ph_fdname_valid(m.fdname))
		abort();
	if (!size)
		return 0;
	n = data[0] % 17;
	s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	if (!ph_fdnames_split(s, n, names)) {
		for (size_t i = 0; i < n; i++) {
			if (!ph_fdname_valid(names[i]))
				abort();
			check_name(names[i]);
		}
	}
	check_name(s);
	free(s);
	return 0;
}
