// SPDX-License-Identifier: MIT
/* fuzz_portset.c - libFuzzer harness for ph_portset_parse() (ports, ranges, tcp:/udp:)
 *
 * Besides "no crash, no sanitizer report" it checks the parser's promises:
 * a failure leaves the set untouched and explains itself; a success marks
 * the set as given, never contains port 0 for either protocol, and the
 * canonical form of the result ("tcp:a-b,tcp:c,...,udp:...") parses back to
 * the same two sets.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "rules_portset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Canonical text of @ps: maximal ranges per protocol, ascending. Return: @buf
 * or NULL if too small */
static char *format(const struct ph_portset *ps, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = 0;
	for (unsigned i = 0; i < 2 * 65536; i++) {
		int proto = i < 65536 ? IPPROTO_TCP : IPPROTO_UDP;
		const uint64_t *bits = proto == IPPROTO_UDP ? ps->udp : ps->bits;
		const char *name = proto == IPPROTO_UDP ? "udp" : "tcp";
		unsigned p = i % 65536, q = p;
		int w;

		if (!bits[p / 64] && p % 64 == 0) {
			i += 63;	/* skip an empty word quickly */
			continue;
		}
		if (!p || !ph_portset_has_proto(ps, proto, (uint16_t)p))
			continue;
		while (q + 1 < 65536 && ph_portset_has_proto(ps, proto, (uint16_t)(q + 1)))
			q++;
		w = q == p ? snprintf(buf + off, len - off, "%s%s:%u", off ? "," : "", name, p)
			   : snprintf(buf + off, len - off, "%s%s:%u-%u", off ? "," : "", name, p, q);
		if (w < 0 || (size_t)w >= len - off)
			return NULL;
		off += (size_t)w;
		i += q - p;
	}
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ph_portset ps, before, again;
	static char canon[2 * 65536 * 11];
	char err[96];
	char *s = malloc(size + 1);

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;

	/* start from a non-empty set: parsing accumulates */
	memset(&ps, 0, sizeof(ps));
	ph_portset_add(&ps, 7);
	ps.set = false;
	before = ps;
	err[0] = 0;

	if (ph_portset_parse(&ps, s, err, sizeof(err))) {
		if (memcmp(&ps, &before, sizeof(ps)) || !err[0] || !memchr(err, 0, sizeof(err)))
			abort();
		goto out;
	}
	if (!ps.set || ph_portset_has(&ps, 0) || !ph_portset_has(&ps, 7) ||
	    ph_portset_has_proto(&ps, IPPROTO_UDP, 0) || !ph_portset_has_proto(&ps, IPPROTO_UDP, 7))
		abort();
	if (format(&ps, canon, sizeof(canon))) {
		memset(&again, 0, sizeof(again));
		if (ph_portset_parse(&again, canon, err, sizeof(err)))
			abort();
		if (memcmp(again.bits, ps.bits, sizeof(ps.bits)) ||
		    memcmp(again.udp, ps.udp, sizeof(ps.udp)))
			abort();
	}
out:
	free(s);
	return 0;
}
