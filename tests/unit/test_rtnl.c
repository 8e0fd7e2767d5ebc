// SPDX-License-Identifier: MIT
/* test_rtnl.c - rtnetlink parser and external address selection: captured and hand-made messages */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>

#include "discovery_listeners.h"
#include "rtnl.h"
#include "rtnl_captures.h"

#define FEED(m, cap, seq, what) ph_rtnl_parse(cap, sizeof(cap), seq, m, what)

static void load_dump(struct ph_rtnl_model *m)
{
	unsigned what = 0;

	assert_int_equal(FEED(m, cap_link_0, 42, &what), 0);
	assert_int_equal(FEED(m, cap_link_1, 42, &what), 0);
	assert_int_equal(FEED(m, cap_link_2, 42, &what), 1);
	assert_int_equal(FEED(m, cap_addr_0, 42, &what), 0);
	assert_int_equal(FEED(m, cap_addr_1, 42, &what), 1);
	assert_int_equal(FEED(m, cap_route_0, 42, &what), 0);
	assert_int_equal(FEED(m, cap_route_1, 42, &what), 1);
	assert_true(what & PH_RTNL_ADDR);
	assert_true(what & PH_RTNL_ROUTE);
	assert_true(what & PH_RTNL_LINK);
}

static void expect_set(const struct ph_addr_set *s, const char *want)
{
	char buf[256];

	ph_addr_set_str(s, buf, sizeof(buf));
	if (strcmp(buf, want))
		fail_msg("got '%s', want '%s'", buf, want);
}

static void test_captured_dump_defaults(void **state)
{
	struct ph_rtnl_model m = { 0 };
	struct ph_addr_set s;

	(void)state;
	load_dump(&m);
	assert_int_equal(m.n_routes, 2);
	assert_int_equal(ph_rtnl_select(&m, NULL, 0, &s), 0);
	expect_set(&s, "10.1.2.3, fd00::7");
	ph_rtnl_model_free(&m);
}

static void test_specs(void **state)
{
	struct ph_rtnl_model m = { 0 };
	struct ph_ext_spec sp[3];
	struct ph_addr_set s;

	(void)state;
	load_dump(&m);
	assert_int_equal(ph_ext_spec_parse("fd00::7", &sp[0]), 0);
	assert_int_equal(ph_ext_spec_parse("192.0.2.9", &sp[1]), 0);
	assert_int_equal(ph_ext_spec_parse("eth0", &sp[2]), 0);
	/* 192.0.2.9 is configured nowhere: reported missing, not served */
	assert_int_equal(ph_rtnl_select(&m, sp, 3, &s), 2u);
	assert_true(s.n >= 2);
	expect_set(&(struct ph_addr_set){ .a = { s.a[0] }, .n = 1 }, "fd00::7");
	{
		struct ph_ext_addr v4 = { 0 };

		ph_addr_from_v4(&v4.addr, (struct in_addr){ htonl(0x0a010203) });
		assert_true(ph_addr_set_has(&s, &v4));	/* from the interface spec */
	}
	ph_rtnl_model_free(&m);
}

static void test_notifications(void **state)
{
	struct ph_rtnl_model m = { 0 };
	struct ph_ext_spec sp;
	struct ph_addr_set s;
	unsigned what = 0;

	(void)state;
	load_dump(&m);
	assert_int_equal(ph_ext_spec_parse("10.9.9.9", &sp), 0);
	assert_int_equal(ph_rtnl_select(&m, &sp, 1, &s), 1u);
	assert_int_equal(FEED(&m, cap_notify_newaddr, 0, &what), 0);
	assert_true(what & PH_RTNL_ADDR);
	assert_int_equal(ph_rtnl_select(&m, &sp, 1, &s), 0);
	expect_set(&s, "10.9.9.9");
	/* applying it twice changes nothing (dump/notification overlap) */
	assert_int_equal(FEED(&m, cap_notify_newaddr, 0, &what), 0);
	assert_int_equal(FEED(&m, cap_notify_deladdr, 0, &what), 0);
	assert_true(what & PH_RTNL_DELADDR);
	assert_int_equal(ph_rtnl_select(&m, &sp, 1, &s), 1u);
	assert_int_equal(s.n, 0);
	ph_rtnl_model_free(&m);
}

/* Every truncation of every capture: an error or a clean parse, never a crash */
static void test_truncation(void **state)
{
	static const struct { const unsigned char *p; size_t n; } caps[] = {
		{ cap_link_0, sizeof(cap_link_0) }, { cap_addr_0, sizeof(cap_addr_0) },
		{ cap_route_0, sizeof(cap_route_0) }, { cap_notify_newaddr, sizeof(cap_notify_newaddr) },
	};

	(void)state;
	for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
		for (size_t len = 1; len < caps[c].n; len++) {
			struct ph_rtnl_model m = { 0 };
			unsigned char *copy = malloc(len);
			unsigned what = 0;
			int ret;

			memcpy(copy, caps[c].p, len);
			ret = ph_rtnl_parse(copy, len, 0, &m, &what);
			/* a cut inside a message is malformed */
			if (ret != -EPROTO && ret != 0)
				fail_msg("capture %zu cut at %zu: %d", c, len, ret);
			free(copy);
			ph_rtnl_model_free(&m);
		}
	}
}

static void test_error_and_intr(void **state)
{
	struct {
		struct nlmsghdr h;
		struct nlmsgerr e;
	} err = { .h = { .nlmsg_len = sizeof(err), .nlmsg_type = NLMSG_ERROR, .nlmsg_seq = 7 },
		  .e = { .error = -EPERM } };
	struct {
		struct nlmsghdr h;
		int v;
	} done = { .h = { .nlmsg_len = sizeof(done), .nlmsg_type = NLMSG_DONE, .nlmsg_seq = 7,
			  .nlmsg_flags = NLM_F_MULTI | NLM_F_DUMP_INTR } };
	struct ph_rtnl_model m = { 0 };
	unsigned what = 0;

	(void)state;
	assert_int_equal(ph_rtnl_parse(&err, sizeof(err), 7, &m, &what), -EPERM);
	assert_int_equal(ph_rtnl_parse(&err, sizeof(err), 8, &m, &what), 0);	/* other seq */
	assert_int_equal(ph_rtnl_parse(&done, sizeof(done), 7, &m, &what), -EINTR);
	done.h.nlmsg_flags = NLM_F_MULTI;
	assert_int_equal(ph_rtnl_parse(&done, sizeof(done), 7, &m, &what), 1);
	done.h.nlmsg_len = 8;	/* shorter than a header */
	assert_int_equal(ph_rtnl_parse(&done, sizeof(done), 7, &m, &what), -EPROTO);
	ph_rtnl_model_free(&m);
}

static void test_spec_parse(void **state)
{
	static const char *const good[] = { "10.0.0.1", "fd00::1", "fe80::1%1", "eth0", "br-x.10" };
	static const char *const bad[] = { "", "1.2.3", "0.0.0.0", "::", "fd00::1%eth0", "a/b",
					   "fe80::1%", "averyveryverylongname", "1.2.3.4.5" };
	struct ph_ext_spec s;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (ph_ext_spec_parse(good[i], &s))
			fail_msg("'%s' rejected", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (!ph_ext_spec_parse(bad[i], &s))
			fail_msg("'%s' accepted", bad[i]);
	assert_int_equal(ph_ext_spec_parse("eth0", &s), 0);
	assert_string_equal(s.ifname, "eth0");
	assert_int_equal(ph_ext_spec_parse("fe80::1%3", &s), 0);
	assert_int_equal(s.scope, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_captured_dump_defaults),
		cmocka_unit_test(test_specs),
		cmocka_unit_test(test_notifications),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_error_and_intr),
		cmocka_unit_test(test_spec_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
