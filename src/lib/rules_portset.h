/* SPDX-License-Identifier: MIT */
/* rules_portset.h - sets of TCP ports parsed from "22,5000-5999" */
#ifndef PH_RULES_PORTSET_H
#define PH_RULES_PORTSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * struct ph_portset - bitmap of ports 1..65535 (zero-initialised: empty, unset)
 * @bits:	one bit per port
 * @set:	a list was given (an empty @bits with @set means "no port")
 */
struct ph_portset {
	uint64_t bits[65536 / 64];
	bool set;
};

/**
 * ph_portset_parse() - parse a comma list of ports and ranges
 * @ps:		result; may already hold ports (repeated flags accumulate)
 * @spec:	e.g. "22,5000-5999"; whitespace around items is allowed
 * @err:	human-readable reason on failure
 * @errlen:	size of @err
 *
 * Port 0, values above 65535, reversed ranges, empty items and trailing
 * garbage are errors. Return: 0 or -EINVAL
 */
int ph_portset_parse(struct ph_portset *ps, const char *spec, char *err, size_t errlen);
bool ph_portset_has(const struct ph_portset *ps, uint16_t port);
void ph_portset_add(struct ph_portset *ps, uint16_t port);

#endif /* PH_RULES_PORTSET_H */
