// SPDX-License-Identifier: MIT
/* test_uffd_trace.c - trace file format and the latency histogram */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uffd.h"

static void test_parse(void **state)
{
	const char *t = "# porthole-uffd trace v1\n0x1000\n  2000\t\n\n0X3000\r\n# end\n0";
	uint64_t *o;
	size_t n;

	(void)state;
	assert_int_equal(ph_uffd_trace_parse(t, strlen(t), &o, &n, NULL, 0), 0);
	assert_int_equal(n, 4);
	assert_int_equal(o[0], 0x1000);
	assert_int_equal(o[1], 0x2000);
	assert_int_equal(o[2], 0x3000);
	assert_int_equal(o[3], 0);
	free(o);
	assert_int_equal(ph_uffd_trace_parse("", 0, &o, &n, NULL, 0), 0);
	assert_int_equal(n, 0);
}

static void bad(const char *t, const char *why)
{
	uint64_t *o = (uint64_t *)1;
	size_t n = 7;
	char err[128] = "";

	assert_int_equal(ph_uffd_trace_parse(t, strlen(t), &o, &n, err, sizeof(err)), -EINVAL);
	assert_null(o);
	assert_int_equal(n, 0);
	if (!strstr(err, why))
		fail_msg("'%s': '%s' lacks '%s'", t, err, why);
}

static void test_bad(void **state)
{
	(void)state;
	bad("0x1000\n0x1001\n", "line 2");	/* unaligned */
	bad("0x\n", "line 1");
	bad("zz\n", "line 1");
	bad("0x1000 0x2000\n", "line 1");
	bad("0x10000000000000000\n", "line 1");	/* 65 bits */
	bad("\n\n# c\n-0x1000\n", "line 4");
}

static void test_save_load(void **state)
{
	char path[] = "/tmp/test_uffd_trace.XXXXXX";
	uint64_t in[3] = { 0x7000, 0x1000, 0x40000000 }, *out;
	size_t n;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(ph_uffd_trace_save(path, in, 3), 0);
	assert_int_equal(ph_uffd_trace_load(path, &out, &n, NULL, 0), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(in, out, sizeof(in));
	free(out);
	unlink(path);
	assert_int_equal(ph_uffd_trace_load(path, &out, &n, NULL, 0), -ENOENT);
}

static void test_hist(void **state)
{
	struct ph_uffd_hist *h = calloc(1, sizeof(*h));
	uint64_t p50, p99;

	(void)state;
	assert_non_null(h);
	assert_int_equal(ph_uffd_hist_quantile(h, 0.5), 0);
	/* 1..10000 us: p50 ~ 5000 us, p99 ~ 9900 us, within the 1.6% bucket error */
	for (uint64_t v = 1; v <= 10000; v++)
		ph_uffd_hist_add(h, v * 1000);
	p50 = ph_uffd_hist_quantile(h, 0.5);
	p99 = ph_uffd_hist_quantile(h, 0.99);
	assert_true(p50 > 4920000 && p50 < 5080000);
	assert_true(p99 > 9740000 && p99 < 10000001);
	assert_int_equal(ph_uffd_hist_quantile(h, 1.0), 10000000);
	assert_int_equal(h->n, 10000);
	/* small values are exact */
	memset(h, 0, sizeof(*h));
	ph_uffd_hist_add(h, 7);
	ph_uffd_hist_add(h, 7);
	ph_uffd_hist_add(h, 40);
	assert_int_equal(ph_uffd_hist_quantile(h, 0.5), 7);
	assert_int_equal(ph_uffd_hist_quantile(h, 0.99), 40);
	/* huge values do not overflow the bucket table */
	ph_uffd_hist_add(h, UINT64_MAX);
	assert_int_equal(ph_uffd_hist_quantile(h, 1.0), UINT64_MAX);
	free(h);
}

static void test_prefetch_names(void **state)
{
	enum ph_uffd_prefetch m;

	(void)state;
	assert_int_equal(ph_uffd_prefetch_parse("trace+all", &m), 0);
	assert_int_equal(m, PH_PREFETCH_TRACE_ALL);
	assert_string_equal(ph_uffd_prefetch_name(m), "trace+all");
	assert_int_equal(ph_uffd_prefetch_parse("some", &m), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_hist),
		cmocka_unit_test(test_prefetch_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
