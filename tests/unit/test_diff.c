// SPDX-License-Identifier: MIT
/* test_diff.c - ph_rules_diff(): changes between two sorted decision sets */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

#define MAXCH 16

struct rec {
	size_t n;
	struct ph_change ch[MAXCH];
};

static void collect(void *arg, const struct ph_change *c)
{
	struct rec *r = arg;

	assert_true(r->n < MAXCH);
	r->ch[r->n++] = *c;
}

static struct ph_decision dv4(uint16_t port, enum ph_decision_kind kind, const char *a,
			      uint64_t inode)
{
	struct ph_decision d = { .port = port, .kind = kind, .family = AF_INET, .inode = inode };
	struct in_addr v4;

	assert_int_equal(inet_pton(AF_INET, a, &v4), 1);
	ph_addr_from_v4(&d.addr, v4);
	return d;
}

static struct ph_decision dv6(uint16_t port, enum ph_decision_kind kind, const char *a,
			      uint64_t inode)
{
	struct ph_decision d = { .port = port, .kind = kind, .family = AF_INET6, .inode = inode };

	assert_int_equal(inet_pton(AF_INET6, a, &d.addr), 1);
	return d;
}

/* check change #i: kind and the exact array elements it points at */
static void expect(const struct rec *r, size_t i, enum ph_change_kind kind,
		   const struct ph_decision *old, const struct ph_decision *nw)
{
	assert_true(i < r->n);
	assert_int_equal(r->ch[i].kind, kind);
	assert_ptr_equal(r->ch[i].old, old);
	assert_ptr_equal(r->ch[i].new, nw);
}

static void test_empty_sides(void **state)
{
	struct ph_decision a[2] = { dv4(22, PH_DECIDE_EXPOSE, "127.0.0.1", 1),
				    dv4(80, PH_DECIDE_PUBLIC, "0.0.0.0", 2) };
	struct rec r = { 0 };

	(void)state;
	assert_int_equal(ph_rules_diff(NULL, 0, NULL, 0, collect, &r), 0);
	assert_int_equal(r.n, 0);

	assert_int_equal(ph_rules_diff(NULL, 0, a, 2, collect, &r), 2);
	expect(&r, 0, PH_CHANGE_ADDED, NULL, &a[0]);
	expect(&r, 1, PH_CHANGE_ADDED, NULL, &a[1]);

	r.n = 0;
	assert_int_equal(ph_rules_diff(a, 2, NULL, 0, collect, &r), 2);
	expect(&r, 0, PH_CHANGE_REMOVED, &a[0], NULL);
	expect(&r, 1, PH_CHANGE_REMOVED, &a[1], NULL);

	/* a NULL callback only counts */
	assert_int_equal(ph_rules_diff(a, 2, NULL, 0, NULL, NULL), 2);
}

static void test_identical(void **state)
{
	struct ph_decision a[3] = { dv4(22, PH_DECIDE_EXPOSE, "127.0.0.1", 1),
				    dv6(80, PH_DECIDE_EXCLUDED, "::1", 2),
				    dv4(443, PH_DECIDE_PUBLIC, "0.0.0.0", 3) };
	struct ph_decision b[3];
	struct rec r = { 0 };

	(void)state;
	memcpy(b, a, sizeof(a));
	b[1].uid = 1234;	/* owner alone is not a change: it comes with a new inode */
	assert_int_equal(ph_rules_diff(a, 3, b, 3, collect, &r), 0);
	assert_int_equal(r.n, 0);
}

static void test_each_kind(void **state)
{
	struct ph_decision a[] = {
		dv4(10, PH_DECIDE_EXPOSE, "127.0.0.1", 1),	/* removed */
		dv4(20, PH_DECIDE_EXPOSE, "127.0.0.1", 2),	/* restarted */
		dv4(30, PH_DECIDE_EXPOSE, "127.0.0.1", 3),	/* kind -> public */
		dv4(40, PH_DECIDE_EXPOSE, "127.0.0.1", 4),	/* family -> ::1 */
		dv4(50, PH_DECIDE_EXPOSE, "127.0.0.1", 5),	/* addr -> 127.0.0.2 */
		dv4(60, PH_DECIDE_EXPOSE, "127.0.0.1", 6),	/* excluded, same inode */
		dv4(70, PH_DECIDE_EXPOSE, "127.0.0.1", 7),	/* unchanged */
	};
	struct ph_decision b[] = {
		dv4(20, PH_DECIDE_EXPOSE, "127.0.0.1", 12),
		dv4(30, PH_DECIDE_PUBLIC, "127.0.0.1", 3),
		dv6(40, PH_DECIDE_EXPOSE, "::1", 4),
		dv4(50, PH_DECIDE_EXPOSE, "127.0.0.2", 15),
		dv4(60, PH_DECIDE_EXCLUDED, "127.0.0.1", 6),
		dv4(70, PH_DECIDE_EXPOSE, "127.0.0.1", 7),
		dv4(80, PH_DECIDE_EXPOSE, "127.0.0.1", 8),	/* added */
	};
	struct rec r = { 0 };

	(void)state;
	assert_int_equal(ph_rules_diff(a, 7, b, 7, collect, &r), 7);
	assert_int_equal(r.n, 7);
	expect(&r, 0, PH_CHANGE_REMOVED, &a[0], NULL);
	expect(&r, 1, PH_CHANGE_RESTARTED, &a[1], &b[0]);
	expect(&r, 2, PH_CHANGE_UPDATED, &a[2], &b[1]);
	expect(&r, 3, PH_CHANGE_UPDATED, &a[3], &b[2]);
	expect(&r, 4, PH_CHANGE_UPDATED, &a[4], &b[3]);	/* addr and inode: UPDATED wins */
	expect(&r, 5, PH_CHANGE_UPDATED, &a[5], &b[4]);
	/* port 70 unchanged: nothing */
	expect(&r, 6, PH_CHANGE_ADDED, NULL, &b[6]);
}

/* family differs but the bytes of addr are equal: still an update */
static void test_family_only(void **state)
{
	struct ph_decision a = dv6(5, PH_DECIDE_EXPOSE, "::1", 1), b = a;
	struct rec r = { 0 };

	(void)state;
	b.family = AF_INET;
	assert_int_equal(ph_rules_diff(&a, 1, &b, 1, collect, &r), 1);
	expect(&r, 0, PH_CHANGE_UPDATED, &a, &b);
}

static void test_interleaved(void **state)
{
	/* old: 1 3 5 7 9; new: 2 3 4 7 8 10 */
	struct ph_decision a[] = {
		dv4(1, PH_DECIDE_EXPOSE, "127.0.0.1", 1), dv4(3, PH_DECIDE_EXPOSE, "127.0.0.1", 3),
		dv4(5, PH_DECIDE_EXPOSE, "127.0.0.1", 5), dv4(7, PH_DECIDE_EXPOSE, "127.0.0.1", 7),
		dv4(9, PH_DECIDE_EXPOSE, "127.0.0.1", 9),
	};
	struct ph_decision b[] = {
		dv4(2, PH_DECIDE_EXPOSE, "127.0.0.1", 2), dv4(3, PH_DECIDE_EXPOSE, "127.0.0.1", 3),
		dv4(4, PH_DECIDE_EXPOSE, "127.0.0.1", 4), dv4(7, PH_DECIDE_EXPOSE, "127.0.0.1", 70),
		dv4(8, PH_DECIDE_EXPOSE, "127.0.0.1", 8), dv4(10, PH_DECIDE_EXPOSE, "127.0.0.1", 10),
	};
	struct rec r = { 0 };

	(void)state;
	assert_int_equal(ph_rules_diff(a, 5, b, 6, collect, &r), 8);
	expect(&r, 0, PH_CHANGE_REMOVED, &a[0], NULL);		/* 1 */
	expect(&r, 1, PH_CHANGE_ADDED, NULL, &b[0]);		/* 2 */
	expect(&r, 2, PH_CHANGE_ADDED, NULL, &b[2]);		/* 4 */
	expect(&r, 3, PH_CHANGE_REMOVED, &a[2], NULL);		/* 5 */
	expect(&r, 4, PH_CHANGE_RESTARTED, &a[3], &b[3]);	/* 7 */
	expect(&r, 5, PH_CHANGE_ADDED, NULL, &b[4]);		/* 8 */
	expect(&r, 6, PH_CHANGE_REMOVED, &a[4], NULL);		/* 9 */
	expect(&r, 7, PH_CHANGE_ADDED, NULL, &b[5]);		/* 10 */
}

/* decide() output of two scans feeds diff(): a restart and a new ::1 peer */
static void test_decide_then_diff(void **state)
{
	struct ph_scan s1 = { 0 }, s2 = { 0 };
	struct ph_listener l = { .port = 8080, .family = AF_INET, .inode = 100 };
	struct ph_rules_input in = { .scan = &s1 };
	struct ph_decision *a, *b;
	size_t na, nb;
	struct rec r = { 0 };

	(void)state;
	ph_addr_from_v4(&l.addr, (struct in_addr){ htonl(INADDR_LOOPBACK) });
	assert_int_equal(ph_scan_push(&s1, &l), 0);
	l.inode = 101;					/* the service restarted */
	assert_int_equal(ph_scan_push(&s2, &l), 0);
	l = (struct ph_listener){ .port = 8080, .family = AF_INET6, .inode = 102,
				  .addr = in6addr_loopback, .v6only = true, .v6only_known = true };
	assert_int_equal(ph_scan_push(&s2, &l), 0);	/* ::1 too: still one decision */

	assert_int_equal(ph_rules_decide(&in, &a, &na), 0);
	in.scan = &s2;
	assert_int_equal(ph_rules_decide(&in, &b, &nb), 0);
	assert_int_equal(ph_rules_diff(a, na, b, nb, collect, &r), 1);
	expect(&r, 0, PH_CHANGE_RESTARTED, &a[0], &b[0]);
	assert_int_equal(r.ch[0].new->inode, 101);
	free(a);
	free(b);
	ph_scan_free(&s1);
	ph_scan_free(&s2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_sides),
		cmocka_unit_test(test_identical),
		cmocka_unit_test(test_each_kind),
		cmocka_unit_test(test_family_only),
		cmocka_unit_test(test_interleaved),
		cmocka_unit_test(test_decide_then_diff),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
