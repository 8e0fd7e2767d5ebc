// SPDX-License-Identifier: MIT
/* test_parse.c - strict value parsers: numbers, durations, ADDR:PORT */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "parse.h"

static void test_uint(void **state)
{
	static const struct { const char *s; uint64_t min, max; int ret; uint64_t v; } cases[] = {
		{ "0", 0, 10, 0, 0 },		{ "10", 0, 10, 0, 10 },
		{ "11", 0, 10, -EINVAL, 0 },	{ "", 0, 10, -EINVAL, 0 },
		{ "-1", 0, 10, -EINVAL, 0 },	{ "+1", 0, 10, -EINVAL, 0 },
		{ " 1", 0, 10, -EINVAL, 0 },	{ "1 ", 0, 10, -EINVAL, 0 },
		{ "1x", 0, 10, -EINVAL, 0 },	{ "0x10", 0, 100, -EINVAL, 0 },
		{ "5", 6, 10, -EINVAL, 0 },
		{ "18446744073709551615", 0, UINT64_MAX, 0, UINT64_MAX },
		{ "18446744073709551616", 0, UINT64_MAX, -EINVAL, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;
		int ret = ph_parse_uint(cases[i].s, cases[i].min, cases[i].max, &v);

		assert_int_equal(ret, cases[i].ret);
		if (!ret)
			assert_int_equal(v, cases[i].v);
		else
			assert_int_equal(v, 12345); /* untouched on error */
	}
	assert_int_equal(ph_parse_uint(NULL, 0, 1, &(uint64_t){ 0 }), -EINVAL);
}

static void test_duration(void **state)
{
	static const struct { const char *s; int ret; uint64_t ms; } cases[] = {
		{ "250ms", 0, 250 },	{ "5s", 0, 5000 },	{ "1.5s", 0, 1500 },
		{ "2m", 0, 120000 },	{ "1h", 0, 3600000 },	{ "3", 0, 3000 },
		{ "0", 0, 0 },		{ ".5s", 0, 500 },	{ "640s", 0, 640000 },
		{ "", -EINVAL, 0 },	{ "s", -EINVAL, 0 },	{ "-1s", -EINVAL, 0 },
		{ "5 s", -EINVAL, 0 },	{ "5sec", -EINVAL, 0 },	{ "5d", -EINVAL, 0 },
		{ "1e20h", -EINVAL, 0 },{ "nan", -EINVAL, 0 },	{ "inf", -EINVAL, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t ms = 777;
		int ret = ph_parse_duration_ms(cases[i].s, &ms);

		assert_int_equal(ret, cases[i].ret);
		if (!ret)
			assert_int_equal(ms, cases[i].ms);
	}
}

static void test_hostport(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	char buf[INET6_ADDRSTRLEN];

	(void)state;
	assert_int_equal(ph_parse_hostport("169.254.0.21:49982", &ss, &len, 0), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(len, sizeof(*sin));
	assert_int_equal(ntohs(sin->sin_port), 49982);
	assert_string_equal(inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)), "169.254.0.21");

	assert_int_equal(ph_parse_hostport("[::1]:80", &ss, &len, 0), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(len, sizeof(*sin6));
	assert_int_equal(ntohs(sin6->sin6_port), 80);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));

	assert_int_equal(ph_parse_hostport("localhost:8080", &ss, &len, 0), 0);
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_LOOPBACK));

	/* port 0 only when asked for */
	assert_int_equal(ph_parse_hostport("0.0.0.0:0", &ss, &len, 0), -EINVAL);
	assert_int_equal(ph_parse_hostport("0.0.0.0:0", &ss, &len, 1), 0);

	static const char *const bad[] = {
		"", ":80", "1.2.3.4", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:-1", "1.2.3.4:8o",
		"::1:80", "[::1]", "[::1:80", "::1]:80", "[1.2.3.4]:80", "example.com:80",
		"1.2.3:80", "[]:80", "1.2.3.4:80:90",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int ret = ph_parse_hostport(bad[i], &ss, &len, 1);

		if (ret != -EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uint),
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_hostport),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
