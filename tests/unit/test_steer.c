// SPDX-License-Identifier: MIT
/* test_steer.c - steering's pure parts: the sock_diag dump walk and which sockets are steered */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "discovery_listeners.h"
#include "steer.h"

/* A datagram being built: messages appended at 4-byte alignment */
struct dgram {
	uint8_t b[1024];
	size_t len;
};

static void put_msg(struct dgram *d, uint16_t type, const void *payload, size_t n)
{
	struct nlmsghdr h = { .nlmsg_len = (uint32_t)NLMSG_LENGTH(n), .nlmsg_type = type };

	memcpy(d->b + d->len, &h, sizeof(h));
	memcpy(d->b + d->len + NLMSG_HDRLEN, payload, n);
	d->len += NLMSG_ALIGN(h.nlmsg_len);
}

static void put_conn(struct dgram *d, int family, const char *src, uint16_t sport)
{
	struct inet_diag_msg m;

	memset(&m, 0, sizeof(m));
	m.idiag_family = (uint8_t)family;
	m.idiag_state = 1;	/* ESTABLISHED */
	m.id.idiag_sport = htons(sport);
	inet_pton(family, src, m.id.idiag_src);
	put_msg(d, SOCK_DIAG_BY_FAMILY, &m, sizeof(m));
}

struct seen {
	int n;
	uint16_t ports[8];
};

static void on_msg(const struct inet_diag_msg *m, void *arg)
{
	struct seen *s = arg;

	if (s->n < 8)
		s->ports[s->n] = ntohs(m->id.idiag_sport);
	s->n++;
}

static void test_parse_messages_then_done(void **state)
{
	struct dgram d = { .len = 0 };
	struct seen s = { 0 };

	(void)state;
	put_conn(&d, AF_INET, "169.254.0.21", 5501);
	put_conn(&d, AF_INET6, "fd00::1", 5502);
	assert_int_equal(ph_steer_diag_parse(d.b, d.len, on_msg, &s), 0);	/* more to come */
	assert_int_equal(s.n, 2);
	assert_int_equal(s.ports[0], 5501);
	assert_int_equal(s.ports[1], 5502);

	put_msg(&d, NLMSG_DONE, &(int){ 0 }, sizeof(int));
	put_conn(&d, AF_INET, "169.254.0.21", 5503);	/* after the end: not read */
	s.n = 0;
	assert_int_equal(ph_steer_diag_parse(d.b, d.len, on_msg, &s), 1);
	assert_int_equal(s.n, 2);
}

static void test_parse_error_answer(void **state)
{
	struct dgram d = { .len = 0 };
	struct nlmsgerr e = { .error = -EPERM };
	struct seen s = { 0 };

	(void)state;
	put_msg(&d, NLMSG_ERROR, &e, sizeof(e));
	assert_int_equal(ph_steer_diag_parse(d.b, d.len, on_msg, &s), -EPERM);
	/* an ack (error 0) is not a dump's answer */
	d.len = 0;
	e.error = 0;
	put_msg(&d, NLMSG_ERROR, &e, sizeof(e));
	assert_int_equal(ph_steer_diag_parse(d.b, d.len, on_msg, &s), -EPROTO);
	assert_int_equal(s.n, 0);
}

static void test_parse_malformed(void **state)
{
	struct dgram d = { .len = 0 };
	struct seen s = { 0 };
	struct nlmsghdr h;

	(void)state;
	put_conn(&d, AF_INET, "169.254.0.21", 5501);
	/* a length beyond the datagram */
	assert_int_equal(ph_steer_diag_parse(d.b, d.len - 4, on_msg, &s), -EPROTO);
	/* a length shorter than a header */
	memcpy(&h, d.b, sizeof(h));
	h.nlmsg_len = 8;
	memcpy(d.b, &h, sizeof(h));
	assert_int_equal(ph_steer_diag_parse(d.b, d.len, on_msg, &s), -EPROTO);
	/* a diag message too short for its struct */
	h.nlmsg_len = NLMSG_LENGTH(8);
	memcpy(d.b, &h, sizeof(h));
	assert_int_equal(ph_steer_diag_parse(d.b, NLMSG_ALIGN(h.nlmsg_len), on_msg, &s), -EPROTO);
	/* trailing bytes shorter than a header */
	d.len = 0;
	put_conn(&d, AF_INET, "169.254.0.21", 5501);
	assert_int_equal(ph_steer_diag_parse(d.b, d.len + 3, on_msg, &s), -EPROTO);
	assert_int_equal(ph_steer_diag_parse(d.b, 0, on_msg, &s), 0);
}

static void test_sel_find(void **state)
{
	struct ph_addr_set ext = { .n = 2 };
	struct in_addr v4;
	uint8_t a4[4], a6[16], lo[4];
	const uint16_t ports[] = { 5501, 5502 };
	const uint8_t fams[] = { PH_FAM_V4, PH_FAM_V4 | PH_FAM_V6 };
	struct ph_steer_sel sel = { .ext = &ext, .ports = ports, .fams = fams, .n = 2 };

	(void)state;
	memset(&ext, 0, sizeof(ext));
	ext.n = 2;
	inet_pton(AF_INET, "169.254.0.21", &v4);
	ph_addr_from_v4(&ext.a[0].addr, v4);
	inet_pton(AF_INET6, "fe80::1", &ext.a[1].addr);
	ext.a[1].ifindex = 2;	/* a scope: not part of a socket's id */
	inet_pton(AF_INET, "169.254.0.21", a4);
	inet_pton(AF_INET6, "fe80::1", a6);
	inet_pton(AF_INET, "127.0.0.1", lo);

	assert_int_equal(ph_steer_sel_find(&sel, AF_INET, a4, 5501), 0);
	assert_int_equal(ph_steer_sel_find(&sel, AF_INET, a4, 5502), 1);
	assert_int_equal(ph_steer_sel_find(&sel, AF_INET, a4, 5503), -1);	/* not steered */
	assert_int_equal(ph_steer_sel_find(&sel, AF_INET, lo, 5501), -1);	/* not external */
	assert_int_equal(ph_steer_sel_find(&sel, AF_INET6, a6, 5501), -1);	/* IPv4 only */
	assert_int_equal(ph_steer_sel_find(&sel, AF_INET6, a6, 5502), 1);
	sel.n = 0;
	assert_int_equal(ph_steer_sel_find(&sel, AF_INET, a4, 5501), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_messages_then_done),
		cmocka_unit_test(test_parse_error_answer),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_sel_find),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
