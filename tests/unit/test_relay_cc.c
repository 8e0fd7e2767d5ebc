// SPDX-License-Identifier: MIT
/* test_relay_cc.c - which congestion control the client leg of a relay gets */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "porthole.h"
#include "relay.h"

static void test_client_cc(void **state)
{
	static const struct { const char *opt, *addr, *want; } cases[] = {
		/* auto: reno on a link-local external address only */
		{ "", "169.254.0.21", "reno" },
		{ "", "169.254.0.0", "reno" },
		{ "", "169.254.255.255", "reno" },
		{ "", "169.253.255.255", NULL },
		{ "", "169.255.0.1", NULL },
		{ "", "10.0.0.5", NULL },
		{ "", "192.0.2.2", NULL },
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
		struct in_addr a;
		const char *got;

		ph_config_defaults(&cfg);
		snprintf(cfg.client_cc, sizeof(cfg.client_cc), "%s", cases[i].opt);
		assert_int_equal(inet_pton(AF_INET, cases[i].addr, &a), 1);
		got = ph_relay_client_cc(&cfg, a);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_cc),
		cmocka_unit_test(test_default_is_auto),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
