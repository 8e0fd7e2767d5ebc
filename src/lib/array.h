/* SPDX-License-Identifier: MIT */
/* array.h - growable arrays: one doubling rule for every buffer and table */
#ifndef PH_ARRAY_H
#define PH_ARRAY_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/**
 * ph_array_grow() - make room for @need elements of @size bytes
 * @v:		the array (may be NULL); replaced on growth
 * @cap:	its capacity in elements; updated on growth
 * @need:	elements that must fit
 * @size:	bytes per element
 * @min:	capacity of a first allocation
 *
 * Doubles the capacity until @need fits, so appending n elements one by one
 * costs O(n) copies in all. On failure *@v and *@cap are unchanged.
 *
 * Return: 0 or -ENOMEM (also on overflow)
 */
static inline int ph_array_grow(void *v, size_t *cap, size_t need, size_t size, size_t min)
{
	void **vp = v;
	size_t ncap = *cap ? *cap : (min ? min : 1);
	void *nv;

	if (need <= *cap)
		return 0;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			return -ENOMEM;
		ncap *= 2;
	}
	if (ncap > SIZE_MAX / size)
		return -ENOMEM;
	nv = realloc(*vp, ncap * size);
	if (!nv)
		return -ENOMEM;
	*vp = nv;
	*cap = ncap;
	return 0;
}

#endif /* PH_ARRAY_H */
