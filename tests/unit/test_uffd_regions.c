// SPDX-License-Identifier: MIT
/* test_uffd_regions.c - Firecracker handshake region table parsing and validation */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "uffd.h"

#define MiB (1ull << 20)
#define FILE_SIZE (64 * MiB)

static int parse(const char *json, struct ph_uffd_region *r, size_t *n, char *err)
{
	return ph_uffd_regions_parse(json, strlen(json), FILE_SIZE, r, 8, n, err, 256);
}

static void test_two_regions_sorted(void **state)
{
	struct ph_uffd_region r[8];
	char err[256];
	size_t n;

	(void)state;
	/* announced out of address order; the mmio gap splits them */
	assert_int_equal(parse("[{\"base_host_virt_addr\":1073741824,\"size\":4194304,\"offset\":8388608,"
			       "\"page_size\":4096},"
			       "{\"base_host_virt_addr\":1048576,\"size\":8388608,\"offset\":0,"
			       "\"page_size\":4096,\"unknown_future_key\":[1,2]}]", r, &n, err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(r[0].base, 1048576);
	assert_int_equal(r[0].offset, 0);
	assert_int_equal(r[1].base, 1073741824);
	assert_int_equal(r[1].offset, 8 * MiB);
	assert_int_equal(ph_uffd_regions_find(r, n, 1048576), 0);
	assert_int_equal(ph_uffd_regions_find(r, n, 1048576 + 8 * MiB - 1), 0);
	assert_int_equal(ph_uffd_regions_find(r, n, 1048576 + 8 * MiB), -1);
	assert_int_equal(ph_uffd_regions_find(r, n, 1073741824 + 4096), 1);
	assert_int_equal(ph_uffd_regions_find(r, n, 0), -1);
}

static void test_page_size_keys(void **state)
{
	struct ph_uffd_region r[8];
	char err[256];
	size_t n;

	(void)state;
	/* page_size_kib holds bytes despite its name (older Firecracker) */
	assert_int_equal(parse("[{\"base_host_virt_addr\":2097152,\"size\":4194304,\"offset\":0,"
			       "\"page_size_kib\":2097152}]", r, &n, err), 0);
	assert_int_equal(r[0].page_size, 2 * MiB);
	/* neither key: 4 KiB */
	assert_int_equal(parse("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":4096}]",
			       r, &n, err), 0);
	assert_int_equal(r[0].page_size, 4096);
	/* both: page_size wins */
	assert_int_equal(parse("[{\"base_host_virt_addr\":2097152,\"size\":2097152,\"offset\":0,"
			       "\"page_size\":2097152,\"page_size_kib\":4096}]", r, &n, err), 0);
	assert_int_equal(r[0].page_size, 2 * MiB);
}

static void refused(const char *json, const char *why)
{
	struct ph_uffd_region r[8];
	char err[256] = "";
	size_t n = 99;

	assert_int_equal(parse(json, r, &n, err), -EINVAL);
	assert_int_equal(n, 0);
	if (!strstr(err, why))
		fail_msg("'%s': reason '%s' lacks '%s'", json, err, why);
}

static void test_refused(void **state)
{
	(void)state;
	refused("[{\"base_host_virt_addr\":4096,", "bad JSON");
	refused("", "bad JSON");
	refused("{}", "not a JSON array");
	refused("[]", "no regions");
	refused("[1]", "not a JSON object");
	refused("[{\"size\":4096,\"offset\":0}]", "missing \"base_host_virt_addr\"");
	refused("[{\"base_host_virt_addr\":4096,\"offset\":0}]", "missing \"size\"");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096}]", "missing \"offset\"");
	refused("[{\"base_host_virt_addr\":-4096,\"size\":4096,\"offset\":0}]", "non-negative");
	refused("[{\"base_host_virt_addr\":\"4096\",\"size\":4096,\"offset\":0}]", "non-negative");
	refused("[{\"base_host_virt_addr\":4096.0,\"size\":4096,\"offset\":0}]", "non-negative");
	refused("[{\"base_host_virt_addr\":4096,\"size\":0,\"offset\":0}]", "empty");
	refused("[{\"base_host_virt_addr\":4097,\"size\":4096,\"offset\":0}]", "not aligned");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4000,\"offset\":0}]", "not aligned");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":100}]", "4 KiB aligned");
	refused("[{\"base_host_virt_addr\":4096,\"size\":2097152,\"offset\":0,\"page_size\":2097152}]",
		"not aligned");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":3000}]",
		"bad page size");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":0}]",
		"bad page size");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":67108864}]", "outside");
	refused("[{\"base_host_virt_addr\":4096,\"size\":67112960,\"offset\":0}]", "outside");
	refused("[{\"base_host_virt_addr\":18446744073709547520,\"size\":8192,\"offset\":0}]",
		"bad JSON");	/* beyond int64: jansson rejects it */
	refused("[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0},"
		"{\"base_host_virt_addr\":8192,\"size\":4096,\"offset\":8192}]", "overlap at address");
	refused("[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0},"
		"{\"base_host_virt_addr\":1048576,\"size\":4096,\"offset\":4096}]", "in the memory file");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"size\":4096}]", "bad JSON");
}

static void test_too_many(void **state)
{
	char json[8192];
	size_t len = 0, n;
	struct ph_uffd_region r[8];
	char err[256];

	(void)state;
	len += (size_t)snprintf(json + len, sizeof(json) - len, "[");
	for (int i = 0; i < 9; i++)
		len += (size_t)snprintf(json + len, sizeof(json) - len,
					"%s{\"base_host_virt_addr\":%d,\"size\":4096,\"offset\":%d}",
					i ? "," : "", (i + 1) * 8192, i * 4096);
	snprintf(json + len, sizeof(json) - len, "]");
	assert_int_equal(ph_uffd_regions_parse(json, strlen(json), FILE_SIZE, r, 8, &n, err,
					       sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "at most 8"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_regions_sorted),
		cmocka_unit_test(test_page_size_keys),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_too_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
