// SPDX-License-Identifier: MIT
/* test_ctl_json.c - unit tests of portholectl's JSON reader (ctl_json.c) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_json.h"

static void test_daemon_body(void **state)
{
	struct ph_jv *v = ph_json_parse(
		" {\"ports\":[{\"port\":8000,\"family\":\"ipv4\",\"connections\":2,\"x\":null},"
		"{\"port\":22,\"ok\":true,\"r\":-1.5e3}],\"n\":0}\n", false);
	struct ph_jv *ports, *p;

	(void)state;
	assert_non_null(v);
	ports = ph_json_get(v, "ports");
	assert_true(ph_json_is(ports, PH_J_ARR));
	assert_int_equal(ports->n, 2);
	p = &ports->kids[0];
	assert_int_equal(ph_json_get(p, "port")->i, 8000);
	assert_string_equal(ph_json_get(p, "family")->s, "ipv4");
	assert_true(ph_json_is(ph_json_get(p, "x"), PH_J_NULL));
	assert_null(ph_json_get(p, "missing"));
	p = &ports->kids[1];
	assert_true(ph_json_get(p, "ok")->b);
	assert_true(ph_json_is(ph_json_get(p, "r"), PH_J_REAL));
	assert_true(ph_json_get(p, "r")->d == -1500.0);
	assert_int_equal(ph_json_get(v, "n")->i, 0);
	assert_null(ph_json_get(ports, "port"));	/* not an object */
	ph_json_free(v);
}

static void test_strings(void **state)
{
	struct ph_jv *v = ph_json_parse("\"a\\\"\\\\\\/\\n\\u00e9\\u20ac\\ud83d\\ude00\\u0000z\"", false);

	(void)state;
	assert_non_null(v);
	assert_int_equal(v->len, 1 + 1 + 1 + 1 + 1 + 2 + 3 + 4 + 1 + 1);
	assert_memory_equal(v->s, "a\"\\/\n\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0z", v->len);
	ph_json_free(v);
}

static void test_invalid(void **state)
{
	static const char *const bad[] = {
		"", " ", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "01", "1.", "-", "1e",
		"\"\\ud800\"", "\"\\udc00\"", "\"\\x\"", "\"a\nb\"", "\"open", "tru", "nul",
		"[1] x", "{\"a\":1}}", "NaN", "+1",
		"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ph_jv *v = ph_json_parse(bad[i], false);

		if (v)
			fail_msg("accepted '%s'", bad[i]);
	}
}

static void test_prefix_and_numbers(void **state)
{
	struct ph_jv *v = ph_json_parse("{\"error\":\"no\"} trailing", true);

	(void)state;
	assert_non_null(v);
	assert_string_equal(ph_json_get(v, "error")->s, "no");
	ph_json_free(v);
	v = ph_json_parse("99999999999999999999", false);	/* too big for long long */
	assert_true(ph_json_is(v, PH_J_REAL));
	ph_json_free(v);
	v = ph_json_parse("-9223372036854775808", false);
	assert_true(ph_json_is(v, PH_J_INT));
	ph_json_free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_daemon_body),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_prefix_and_numbers),
	};

	return cmocka_run_group_tests_name("ctl_json", tests, NULL, NULL);
}
