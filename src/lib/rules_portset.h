/* SPDX-License-Identifier: MIT */
/* rules_portset.h - sets of TCP and UDP ports parsed from "22,udp:53,tcp:5000-5999" */
#ifndef PH_RULES_PORTSET_H
#define PH_RULES_PORTSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * struct ph_portset - bitmaps of ports 1..65535 per protocol (zero-initialised:
 * empty, unset)
 * @bits:	one bit per TCP port
 * @udp:	one bit per UDP port
 * @set:	a list was given (empty bitmaps with @set mean "no port")
 */
struct ph_portset {
	uint64_t bits[65536 / 64];
	uint64_t udp[65536 / 64];
	bool set;
};

/**
 * ph_portset_parse() - parse a comma list of ports and ranges
 * @ps:		result; may already hold ports (repeated flags accumulate)
 * @spec:	e.g. "22,udp:53,tcp:5000-5999"; an item is [tcp:|udp:]PORT[-PORT]
 *		(a bare one names both protocols); whitespace around items is allowed
 * @err:	human-readable reason on failure
 * @errlen:	size of @err
 *
 * Port 0, values above 65535, reversed ranges, empty items, unknown
 * protocols and trailing garbage are errors. Return: 0 or -EINVAL
 */
int ph_portset_parse(struct ph_portset *ps, const char *spec, char *err, size_t errlen);
/* @port is in the TCP set */
bool ph_portset_has(const struct ph_portset *ps, uint16_t port);
/* @port is in the set of @proto (IPPROTO_UDP; anything else: TCP) */
bool ph_portset_has_proto(const struct ph_portset *ps, int proto, uint16_t port);
/* Adds @port for both protocols (0 is never a member) and marks the set as given */
void ph_portset_add(struct ph_portset *ps, uint16_t port);

#endif /* PH_RULES_PORTSET_H */
