// SPDX-License-Identifier: MIT
/* test_portset.c - PORTS list parsing ("22,5000-5999") and membership */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>

#include "rules_portset.h"

static size_t count(const struct ph_portset *ps)
{
	size_t n = 0;

	for (unsigned p = 0; p < 65536; p++)
		n += ph_portset_has(ps, (uint16_t)p);
	return n;
}

static void test_zero_is_empty(void **state)
{
	struct ph_portset ps = { 0 };

	(void)state;
	assert_false(ps.set);
	assert_int_equal(count(&ps), 0);
	assert_false(ph_portset_has(NULL, 22));
}

static void test_single_and_range(void **state)
{
	struct ph_portset ps = { 0 };
	char err[128] = "";

	(void)state;
	assert_int_equal(ph_portset_parse(&ps, "22,5000-5999", err, sizeof(err)), 0);
	assert_true(ps.set);
	assert_true(ph_portset_has(&ps, 22));
	assert_true(ph_portset_has(&ps, 5000));
	assert_true(ph_portset_has(&ps, 5999));
	assert_false(ph_portset_has(&ps, 4999));
	assert_false(ph_portset_has(&ps, 6000));
	assert_false(ph_portset_has(&ps, 21));
	assert_false(ph_portset_has(&ps, 23));
	assert_int_equal(count(&ps), 1001);
}

static void test_bounds_and_whitespace(void **state)
{
	struct ph_portset ps = { 0 };
	char err[128] = "";

	(void)state;
	assert_int_equal(ph_portset_parse(&ps, " 1 ,\t65535 , 80-80,0080 ", err, sizeof(err)), 0);
	assert_true(ph_portset_has(&ps, 1));
	assert_true(ph_portset_has(&ps, 65535));
	assert_true(ph_portset_has(&ps, 80));
	assert_false(ph_portset_has(&ps, 0));
	assert_int_equal(count(&ps), 3);

	memset(&ps, 0, sizeof(ps));
	assert_int_equal(ph_portset_parse(&ps, "1-65535", err, sizeof(err)), 0);
	assert_int_equal(count(&ps), 65535);
	assert_false(ph_portset_has(&ps, 0));
}

static void test_accumulates(void **state)
{
	struct ph_portset ps = { 0 };
	char err[128] = "";

	(void)state;
	assert_int_equal(ph_portset_parse(&ps, "22", err, sizeof(err)), 0);
	assert_int_equal(ph_portset_parse(&ps, "80,443", err, sizeof(err)), 0);
	assert_true(ph_portset_has(&ps, 22));
	assert_true(ph_portset_has(&ps, 80));
	assert_true(ph_portset_has(&ps, 443));
	assert_int_equal(count(&ps), 3);
	/* a failing parse leaves what was there */
	assert_int_equal(ph_portset_parse(&ps, "8080,x", err, sizeof(err)), -EINVAL);
	assert_false(ph_portset_has(&ps, 8080));
	assert_int_equal(count(&ps), 3);
}

static void test_add(void **state)
{
	struct ph_portset ps = { 0 };

	(void)state;
	ph_portset_add(&ps, 8080);
	assert_true(ps.set);
	assert_true(ph_portset_has(&ps, 8080));
	assert_int_equal(count(&ps), 1);
}

static const struct bad {
	const char *spec;
	const char *must_name;	/* the error text must contain this */
} bad[] = {
	{ "", "empty" },
	{ "   ", "empty" },
	{ "1,,2", "#2" },
	{ "22,", "#2" },
	{ ",22", "#1" },
	{ "22, ,23", "#2" },
	{ "0", "\"0\"" },
	{ "0-10", "\"0-10\"" },
	{ "65536", "\"65536\"" },
	{ "1-65536", "\"1-65536\"" },
	{ "5999-5000", "\"5999-5000\"" },
	{ "abc", "\"abc\"" },
	{ "22,http", "\"http\"" },
	{ "+22", "\"+22\"" },
	{ "-22", "\"-22\"" },
	{ "22-", "\"22-\"" },
	{ "22--30", "\"22--30\"" },
	{ "1-2-3", "\"1-2-3\"" },
	{ "22 23", "\"22 23\"" },
	{ "22x", "\"22x\"" },
	{ "99999999999999999999", "\"99999999999999999999\"" },
	{ "1-99999999999999999999", "\"1-99999999999999999999\"" },
	{ "0x16", "\"0x16\"" },
	{ "22;23", "\"22;23\"" },
};

static void test_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ph_portset ps = { 0 };
		char err[128] = "";

		if (ph_portset_parse(&ps, bad[i].spec, err, sizeof(err)) != -EINVAL)
			fail_msg("\"%s\" was accepted", bad[i].spec);
		if (!strstr(err, bad[i].must_name))
			fail_msg("\"%s\": error \"%s\" lacks %s", bad[i].spec, err, bad[i].must_name);
		assert_false(ps.set);
		assert_int_equal(count(&ps), 0);
	}
}

static void test_error_buffer_limits(void **state)
{
	struct ph_portset ps = { 0 };
	char err[8];
	char longbad[300];

	(void)state;
	/* NULL / zero-sized error buffers are allowed */
	assert_int_equal(ph_portset_parse(&ps, "x", NULL, 0), -EINVAL);
	assert_int_equal(ph_portset_parse(&ps, NULL, err, sizeof(err)), -EINVAL);
	/* a small buffer is truncated, still terminated */
	memset(err, 'Z', sizeof(err));
	assert_int_equal(ph_portset_parse(&ps, "bogus-item", err, sizeof(err)), -EINVAL);
	assert_int_equal(strlen(err), sizeof(err) - 1);
	/* a huge item is quoted in part only */
	memset(longbad, 'q', sizeof(longbad) - 1);
	longbad[sizeof(longbad) - 1] = 0;
	{
		char big[512] = "";

		assert_int_equal(ph_portset_parse(&ps, longbad, big, sizeof(big)), -EINVAL);
		assert_non_null(strstr(big, "..."));
		assert_true(strlen(big) < 100);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero_is_empty),
		cmocka_unit_test(test_single_and_range),
		cmocka_unit_test(test_bounds_and_whitespace),
		cmocka_unit_test(test_accumulates),
		cmocka_unit_test(test_add),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_error_buffer_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
