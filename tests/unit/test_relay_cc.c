// SPDX-License-Identifier: MIT
/* test_relay_cc.c - relay settings: the client leg's congestion control, the thread count */
#include <arpa/inet.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "porthole.h"
#include "relay.h"
#include "relay_threads.h"

static void test_client_cc(void **state)
{
	static const struct { const char *opt, *addr, *want; } cases[] = {
		/* auto: reno on a link-local external address only, either family */
		{ "", "169.254.0.21", "reno" },
		{ "", "169.254.0.0", "reno" },
		{ "", "169.254.255.255", "reno" },
		{ "", "169.253.255.255", NULL },
		{ "", "169.255.0.1", NULL },
		{ "", "10.0.0.5", NULL },
		{ "", "192.0.2.2", NULL },
		{ "", "fe80::1", "reno" },
		{ "", "febf::1", "reno" },
		{ "", "fec0::1", NULL },
		{ "", "fd00::1", NULL },
		{ "", "2001:db8::1", NULL },
		{ "", "::a9fe:15", NULL },	/* IPv4-compatible, not v4-mapped */
		{ "", "::ffff:169.254.0.21", "reno" },
		/* system: never set */
		{ "system", "169.254.0.21", NULL },
		{ "system", "10.0.0.5", NULL },
		/* a name: always that one */
		{ "cubic", "169.254.0.21", "cubic" },
		{ "bbr", "10.0.0.5", "bbr" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ph_config cfg;
		struct in6_addr a;
		struct in_addr v4;
		const char *got;

		ph_config_defaults(&cfg);
		snprintf(cfg.client_cc, sizeof(cfg.client_cc), "%s", cases[i].opt);
		/* IPv4 as the external address set holds it: v4-mapped */
		if (inet_pton(AF_INET, cases[i].addr, &v4) == 1) {
			memset(&a, 0, sizeof(a));
			a.s6_addr[10] = a.s6_addr[11] = 0xff;
			memcpy(&a.s6_addr[12], &v4, 4);
		} else {
			assert_int_equal(inet_pton(AF_INET6, cases[i].addr, &a), 1);
		}
		got = ph_relay_client_cc(&cfg, &a);
		if (!cases[i].want)
			assert_null(got);
		else
			assert_string_equal(got, cases[i].want);
	}
}

static void test_default_is_auto(void **state)
{
	struct ph_config cfg;

	(void)state;
	ph_config_defaults(&cfg);
	assert_string_equal(cfg.client_cc, "");
}

/* Relay threads: 1 by default; an explicit count stands; auto (0) is one per
 * CPU this process may run on, at least 1, at most PH_RELAY_THREADS_AUTO
 * (restricted here to one CPU and to all of them with sched_setaffinity) */
static void test_relay_thread_count(void **state)
{
	struct ph_config cfg;
	cpu_set_t all, one;
	size_t n;

	(void)state;
	ph_config_defaults(&cfg);
	assert_int_equal(cfg.relay_threads, 1);
	assert_int_equal(ph_relay_thread_count(&cfg), 1);
	cfg.relay_threads = 5;
	assert_int_equal(ph_relay_thread_count(&cfg), 5);
	cfg.relay_threads = PH_RELAY_THREADS_MAX;
	assert_int_equal(ph_relay_thread_count(&cfg), PH_RELAY_THREADS_MAX);

	cfg.relay_threads = 0;
	assert_int_equal(sched_getaffinity(0, sizeof(all), &all), 0);
	n = (size_t)CPU_COUNT(&all);
	assert_int_equal(ph_relay_thread_count(&cfg),
			 n > PH_RELAY_THREADS_AUTO ? PH_RELAY_THREADS_AUTO : n);
	CPU_ZERO(&one);
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &all)) {
			CPU_SET(c, &one);
			break;
		}
	assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
	assert_int_equal(ph_relay_thread_count(&cfg), 1);
	assert_int_equal(sched_setaffinity(0, sizeof(all), &all), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_cc),
		cmocka_unit_test(test_default_is_auto),
		cmocka_unit_test(test_relay_thread_count),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
