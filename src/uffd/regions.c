// SPDX-License-Identifier: MIT
/* regions.c - parse and validate Firecracker's guest memory region table
 *
 * Firecracker's handshake body is a JSON array with one object per guest
 * memory region:
 *   {"base_host_virt_addr": A, "size": S, "offset": O, "page_size": P}
 * page_size is in bytes since v1.12; older versions send page_size_kib, which
 * despite its name also holds bytes; older still send neither (4 KiB pages).
 * Unknown keys are ignored so newer Firecrackers keep working.
 *
 * Everything here is pure (no I/O) so it can be unit tested and fuzzed. A
 * table is accepted only if serving it can never touch memory outside what
 * Firecracker registered or read outside the memory file: every region is
 * page aligned in address and size, 4 KiB aligned in the file (the UFFDIO_COPY
 * source must be page aligned), lies inside the file, and no two regions
 * overlap, neither in the address space nor in the file.
 */
#include "uffd.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* a non-negative JSON integer member; absent is -ENOENT */
static int get_u64(const json_t *o, const char *key, uint64_t *v)
{
	json_t *j = json_object_get(o, key);

	if (!j)
		return -ENOENT;
	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return -EINVAL;
	*v = (uint64_t)json_integer_value(j);
	return 0;
}

static int cmp_base(const void *a, const void *b)
{
	const struct ph_uffd_region *x = a, *y = b;

	return x->base < y->base ? -1 : x->base > y->base;
}

static int cmp_offset(const void *a, const void *b)
{
	const struct ph_uffd_region *x = a, *y = b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int parse_one(const json_t *o, size_t i, uint64_t file_size, struct ph_uffd_region *r,
		     char *err, size_t errlen)
{
	static const char *const req[] = { "base_host_virt_addr", "size", "offset" };
	uint64_t *dst[] = { &r->base, &r->size, &r->offset };
	int ret;

	if (!json_is_object(o))
		return fail(err, errlen, "region %zu: not a JSON object", i);
	for (size_t k = 0; k < 3; k++) {
		ret = get_u64(o, req[k], dst[k]);
		if (ret == -ENOENT)
			return fail(err, errlen, "region %zu: missing \"%s\"", i, req[k]);
		if (ret)
			return fail(err, errlen, "region %zu: \"%s\" is not a non-negative integer",
				    i, req[k]);
	}
	/* page_size (bytes) wins; page_size_kib is bytes too; neither: 4 KiB */
	ret = get_u64(o, "page_size", &r->page_size);
	if (ret == -ENOENT)
		ret = get_u64(o, "page_size_kib", &r->page_size);
	if (ret == -ENOENT) {
		r->page_size = 4096;
		ret = 0;
	}
	if (ret)
		return fail(err, errlen, "region %zu: page size is not a non-negative integer", i);
	if (r->page_size < 4096 || r->page_size > PH_UFFD_MAX_PAGE ||
	    (r->page_size & (r->page_size - 1)))
		return fail(err, errlen, "region %zu: bad page size %llu", i,
			    (unsigned long long)r->page_size);
	if (!r->size)
		return fail(err, errlen, "region %zu: empty", i);
	if ((r->base | r->size) & (r->page_size - 1))
		return fail(err, errlen, "region %zu: address or size not aligned to page size %llu",
			    i, (unsigned long long)r->page_size);
	if (r->offset & 4095)
		return fail(err, errlen, "region %zu: file offset not 4 KiB aligned", i);
	if (r->base + r->size < r->base)
		return fail(err, errlen, "region %zu: address range wraps", i);
	if (r->offset > file_size || r->size > file_size - r->offset)
		return fail(err, errlen,
			    "region %zu: file range [%llu, +%llu) outside the memory file (%llu bytes)",
			    i, (unsigned long long)r->offset, (unsigned long long)r->size,
			    (unsigned long long)file_size);
	return 0;
}

/**
 * ph_uffd_regions_parse() - parse and validate the handshake region table
 * @buf:	JSON text (not NUL terminated)
 * @len:	bytes in @buf
 * @file_size:	size of the memory file every region must lie in
 * @out:	receives the regions, sorted by base address
 * @max:	capacity of @out
 * @n:		receives the number of regions
 * @err:	receives a one-line reason on failure (may be NULL)
 * @errlen:	size of @err
 *
 * Return: 0 or -EINVAL (malformed or unsafe table, @err says why)
 */
int ph_uffd_regions_parse(const char *buf, size_t len, uint64_t file_size,
			  struct ph_uffd_region *out, size_t max, size_t *n,
			  char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root;
	size_t cnt, i;
	int ret = 0;

	*n = 0;
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return fail(err, errlen, "bad JSON: %s (line %d column %d)", jerr.text,
			    jerr.line, jerr.column);
	if (!json_is_array(root)) {
		ret = fail(err, errlen, "not a JSON array of regions");
		goto out;
	}
	cnt = json_array_size(root);
	if (!cnt) {
		ret = fail(err, errlen, "no regions");
		goto out;
	}
	if (cnt > max) {
		ret = fail(err, errlen, "%zu regions, at most %zu supported", cnt, max);
		goto out;
	}
	for (i = 0; i < cnt; i++) {
		ret = parse_one(json_array_get(root, i), i, file_size, &out[i], err, errlen);
		if (ret)
			goto out;
	}
	/* overlap checks on sorted copies: address space, then file */
	qsort(out, cnt, sizeof(*out), cmp_offset);
	for (i = 1; i < cnt; i++) {
		if (out[i - 1].offset + out[i - 1].size > out[i].offset) {
			ret = fail(err, errlen, "regions overlap in the memory file at offset %llu",
				   (unsigned long long)out[i].offset);
			goto out;
		}
	}
	qsort(out, cnt, sizeof(*out), cmp_base);
	for (i = 1; i < cnt; i++) {
		if (out[i - 1].base + out[i - 1].size > out[i].base) {
			ret = fail(err, errlen, "regions overlap at address 0x%llx",
				   (unsigned long long)out[i].base);
			goto out;
		}
	}
	*n = cnt;
out:
	json_decref(root);
	return ret;
}

/**
 * ph_uffd_regions_find() - which region holds an address
 * @r:		regions sorted by base (as ph_uffd_regions_parse() returns them)
 * @n:		number of regions
 * @addr:	host virtual address
 *
 * Return: index into @r, or -1 when no region holds @addr
 */
ssize_t ph_uffd_regions_find(const struct ph_uffd_region *r, size_t n, uint64_t addr)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (addr < r[mid].base)
			hi = mid;
		else if (addr - r[mid].base >= r[mid].size)
			lo = mid + 1;
		else
			return (ssize_t)mid;
	}
	return -1;
}
