// SPDX-License-Identifier: MIT
/* test_udp_discovery.c - UDP in the port pipeline: /proc/net/udp lines, sock_diag UDP
 * replies, ip_local_port_range, tcp:/udp: port lists, and the rules keyed by (port, proto)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "discovery.h"
#include "rules.h"

/* Real lines of /proc/net/udp{,6} (Linux 6.1) */
#define U4_SERVICE "  123: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 17423 2 0000000000000000 0\n"
#define U4_CLIENT  "  124: 0100007F:9C40 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 17424 2 0000000000000000 0\n"
#define U4_ANY     "  125: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 17425 2 0000000000000000 7\n"
#define U6_SERVICE "  200: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 31337 2 0000000000000000 0\n"

static void test_procudp_lines(void **state)
{
	struct ph_listener l;
	char buf[64];

	(void)state;
	assert_int_equal(ph_procudp_parse_line(U4_SERVICE, AF_INET, &l), 1);
	assert_int_equal(l.port, 53);
	assert_int_equal(l.proto, IPPROTO_UDP);
	assert_int_equal(l.inode, 17423);
	assert_string_equal(ph_addr_str(&l.addr, buf, sizeof(buf)), "127.0.0.1");
	/* a connected socket is a client: a valid line, not a listener */
	assert_int_equal(ph_procudp_parse_line(U4_CLIENT, AF_INET, &l), 0);
	assert_int_equal(ph_procudp_parse_line(U4_ANY, AF_INET, &l), 1);
	assert_int_equal(l.port, 68);
	assert_int_equal(ph_procudp_parse_line(U6_SERVICE, AF_INET6, &l), 1);
	assert_string_equal(ph_addr_str(&l.addr, buf, sizeof(buf)), "::1");
	assert_int_equal(l.uid, 101);
	assert_int_equal(l.family, AF_INET6);
	/* a TCP reader does not take UDP's state 07 for LISTEN */
	assert_int_equal(ph_proctcp_parse_line(U4_SERVICE, AF_INET, &l), 0);
	/* state 07 with port 0: not bound yet */
	assert_int_equal(ph_procudp_parse_line("  1: 0100007F:0000 00000000:0000 07 00000000:00000000 "
					       "00:00000000 00000000 0 0 5 2 0000000000000000 0\n",
					       AF_INET, &l), 0);
	assert_int_equal(ph_procudp_parse_line("  1: 0100007F:0035 00000000:0000 07 garbage\n",
					       AF_INET, &l), -EINVAL);
}

static void test_port_range(void **state)
{
	uint16_t lo, hi;

	(void)state;
	assert_int_equal(ph_port_range_parse("32768\t60999\n", &lo, &hi), 0);
	assert_int_equal(lo, 32768);
	assert_int_equal(hi, 60999);
	assert_int_equal(ph_port_range_parse("1024 1024", &lo, &hi), 0);
	assert_int_equal(ph_port_range_parse("60999\t32768\n", &lo, &hi), -EINVAL);
	assert_int_equal(ph_port_range_parse("0 10\n", &lo, &hi), -EINVAL);
	assert_int_equal(ph_port_range_parse("1 70000\n", &lo, &hi), -EINVAL);
	assert_int_equal(ph_port_range_parse("1 2 3\n", &lo, &hi), -EINVAL);
	assert_int_equal(ph_port_range_parse("", &lo, &hi), -EINVAL);
}

/* One SOCK_DIAG_BY_FAMILY message for an IPv4 socket */
static size_t diag_msg(uint8_t *buf, uint8_t state, uint16_t sport, uint16_t dport, uint32_t inode)
{
	struct nlmsghdr h = {
		.nlmsg_len = NLMSG_LENGTH(sizeof(struct inet_diag_msg)),
		.nlmsg_type = SOCK_DIAG_BY_FAMILY,
		.nlmsg_flags = NLM_F_MULTI,
		.nlmsg_seq = 7,
	};
	struct inet_diag_msg m = {
		.idiag_family = AF_INET,
		.idiag_state = state,
		.idiag_inode = inode,
	};

	m.id.idiag_sport = htons(sport);
	m.id.idiag_dport = htons(dport);
	m.id.idiag_src[0] = htonl(INADDR_LOOPBACK);
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + NLMSG_HDRLEN, &m, sizeof(m));
	return NLMSG_ALIGN(h.nlmsg_len);
}

static void test_sockdiag_udp(void **state)
{
	uint8_t buf[1024];
	struct ph_scan s = { 0 };
	size_t n = 0;

	(void)state;
	n += diag_msg(buf + n, TCP_CLOSE, 53, 0, 100);		/* a service */
	n += diag_msg(buf + n, TCP_ESTABLISHED, 40000, 53, 101);	/* a client */
	n += diag_msg(buf + n, TCP_CLOSE, 5353, 1234, 102);	/* CLOSE but a peer: not ours */
	n += diag_msg(buf + n, TCP_LISTEN, 80, 0, 103);	/* not UDP's state */
	assert_int_equal(ph_sockdiag_parse_proto(buf, n, 7, IPPROTO_UDP, &s), 0);
	assert_int_equal(s.len, 1);
	assert_int_equal(s.v[0].port, 53);
	assert_int_equal(s.v[0].proto, IPPROTO_UDP);
	assert_int_equal(s.v[0].inode, 100);
	ph_scan_clear(&s);
	/* the same datagram read as a TCP dump: the LISTEN one only */
	assert_int_equal(ph_sockdiag_parse(buf, n, 7, &s), 0);
	assert_int_equal(s.len, 1);
	assert_int_equal(s.v[0].port, 80);
	assert_int_equal(s.v[0].proto, IPPROTO_TCP);
	ph_scan_free(&s);
}

static void test_portset_protos(void **state)
{
	struct ph_portset ps = { 0 }, before;
	char err[128] = "";

	(void)state;
	assert_int_equal(ph_portset_parse(&ps, "22, udp:53 ,tcp:5000-5001", err, sizeof(err)), 0);
	assert_true(ph_portset_has_proto(&ps, IPPROTO_TCP, 22));
	assert_true(ph_portset_has_proto(&ps, IPPROTO_UDP, 22));
	assert_true(ph_portset_has_proto(&ps, IPPROTO_UDP, 53));
	assert_false(ph_portset_has_proto(&ps, IPPROTO_TCP, 53));
	assert_true(ph_portset_has(&ps, 5001));
	assert_false(ph_portset_has_proto(&ps, IPPROTO_UDP, 5001));
	before = ps;
	static const char *const bads[] = { "sctp:5", "udp:", "udp:0", "UDP:53", "tcp:5-4",
					    "udp 53", "udp:53x", ":53", "tcp::53" };
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		err[0] = '\0';
		assert_int_equal(ph_portset_parse(&ps, bads[i], err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, bads[i]));
		assert_memory_equal(&ps, &before, sizeof(ps));
	}
}

static struct ph_listener lst(const char *v4, uint16_t port, uint8_t proto, uint64_t inode)
{
	struct ph_listener l = { .port = port, .proto = proto, .inode = inode, .family = AF_INET,
				 .v6only_known = true };
	struct in_addr a;

	assert_int_equal(inet_pton(AF_INET, v4, &a), 1);
	ph_addr_from_v4(&l.addr, a);
	return l;
}

/* Decide @scan with ephemeral range 32768-60999 and the external 169.254.0.21 */
static size_t decide(const struct ph_scan *scan, const char *allow, struct ph_decision **d)
{
	static struct ph_portset al;
	struct ph_rules_input in = { .scan = scan, .ephemeral_lo = 32768, .ephemeral_hi = 60999 };
	size_t n;

	memset(&al, 0, sizeof(al));
	if (allow) {
		assert_int_equal(ph_portset_parse(&al, allow, NULL, 0), 0);
		in.allow = &al;
	}
	inet_pton(AF_INET, "169.254.0.21", &in.external);
	assert_int_equal(ph_rules_decide(&in, d, &n), 0);
	return n;
}

static void test_rules_udp(void **state)
{
	struct ph_scan s = { 0 };
	struct ph_decision *d;
	struct ph_listener ls[] = {
		lst("127.0.0.1", 53, IPPROTO_UDP, 1),	/* UDP service */
		lst("127.0.0.1", 53, IPPROTO_TCP, 2),	/* TCP on the same port */
		lst("0.0.0.0", 8000, IPPROTO_UDP, 3),	/* a wildcard UDP socket ... */
		lst("127.0.0.1", 8000, IPPROTO_TCP, 4),	/* ... does not cover TCP 8000 */
		lst("127.0.0.1", 40000, IPPROTO_UDP, 5),	/* ephemeral: a client's */
		lst("0.0.0.0", 50000, IPPROTO_UDP, 6),	/* ephemeral wildcard: not listed */
		lst("127.0.0.1", 40000, IPPROTO_TCP, 7),	/* TCP keeps its rules */
		lst("127.0.0.1", 7, 0, 8),		/* proto 0 reads as TCP */
	};
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(ls) / sizeof(ls[0]); i++)
		assert_int_equal(ph_scan_push(&s, &ls[i]), 0);
	n = decide(&s, NULL, &d);
	assert_int_equal(n, 6);
	/* sorted by port, TCP first on a tie */
	assert_int_equal(d[0].port, 7);
	assert_int_equal(d[0].proto, IPPROTO_TCP);
	assert_int_equal(d[1].port, 53);
	assert_int_equal(d[1].proto, IPPROTO_TCP);
	assert_int_equal(d[1].kind, PH_DECIDE_EXPOSE);
	assert_int_equal(d[1].inode, 2);
	assert_int_equal(d[2].port, 53);
	assert_int_equal(d[2].proto, IPPROTO_UDP);
	assert_int_equal(d[2].kind, PH_DECIDE_EXPOSE);
	assert_int_equal(d[2].inode, 1);
	assert_int_equal(d[3].port, 8000);
	assert_int_equal(d[3].proto, IPPROTO_TCP);
	assert_int_equal(d[3].kind, PH_DECIDE_EXPOSE);
	assert_int_equal(d[4].port, 8000);
	assert_int_equal(d[4].proto, IPPROTO_UDP);
	assert_int_equal(d[4].kind, PH_DECIDE_PUBLIC);
	assert_int_equal(d[5].port, 40000);
	assert_int_equal(d[5].proto, IPPROTO_TCP);
	free(d);

	/* --allow naming the ephemeral UDP port brings it in; a TCP-only
	 * allow excludes the UDP service */
	n = decide(&s, "udp:40000,tcp:53", &d);
	assert_int_equal(n, 7);
	assert_int_equal(d[1].port, 53);
	assert_int_equal(d[1].kind, PH_DECIDE_EXPOSE);
	assert_int_equal(d[2].proto, IPPROTO_UDP);
	assert_int_equal(d[2].kind, PH_DECIDE_EXCLUDED);
	assert_int_equal(d[5].port, 40000);
	assert_int_equal(d[5].proto, IPPROTO_TCP);
	assert_int_equal(d[5].kind, PH_DECIDE_EXCLUDED);
	assert_int_equal(d[6].port, 40000);
	assert_int_equal(d[6].proto, IPPROTO_UDP);
	assert_int_equal(d[6].kind, PH_DECIDE_EXPOSE);
	free(d);
	ph_scan_free(&s);
}

static size_t count_fn_calls;
static enum ph_change_kind last_kind;

static void on_change(void *arg, const struct ph_change *c)
{
	(void)arg;
	count_fn_calls++;
	last_kind = c->kind;
}

static void test_diff_by_proto(void **state)
{
	struct ph_decision a[] = { { .port = 53, .proto = IPPROTO_TCP, .inode = 1 } };
	struct ph_decision b[] = { { .port = 53, .proto = IPPROTO_TCP, .inode = 1 },
				   { .port = 53, .proto = IPPROTO_UDP, .inode = 2 } };

	(void)state;
	/* the UDP row is added; the TCP row of the same port is unchanged */
	assert_int_equal(ph_rules_diff(a, 1, b, 2, on_change, NULL), 1);
	assert_int_equal(count_fn_calls, 1);
	assert_int_equal(last_kind, PH_CHANGE_ADDED);
	assert_int_equal(ph_rules_diff(b, 2, a, 1, on_change, NULL), 1);
	assert_int_equal(last_kind, PH_CHANGE_REMOVED);
	assert_int_equal(ph_rules_diff(b, 2, b, 2, NULL, NULL), 0);
	assert_true(ph_decision_cmp(53, IPPROTO_TCP, 53, IPPROTO_UDP) < 0);
	assert_true(ph_decision_cmp(53, IPPROTO_UDP, 54, IPPROTO_TCP) < 0);
	assert_int_equal(ph_decision_cmp(53, 0, 53, IPPROTO_TCP), 0);
}


#define T_HEADER "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
#define T4_LISTEN(port) "   0: 0100007F:" port " 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9001 1 0000000000000000 100 0 0 10 0\n"

static void put(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static size_t count(const struct ph_scan *s, int proto, uint16_t port)
{
	size_t n = 0;

	for (size_t i = 0; i < s->len; i++)
		n += s->v[i].proto == proto && s->v[i].port == port;
	return n;
}

/* A scan of one protocol keeps the last picture of the other, and fails whole */
static void test_scan_some(void **state)
{
	char root[] = "/tmp/ph-scan-some.XXXXXX", net[300], path[320];
	struct ph_scanner sc;
	struct ph_scan s = { 0 };

	(void)state;
	assert_non_null(mkdtemp(root));
	snprintf(net, sizeof(net), "%s/net", root);
	assert_int_equal(mkdir(net, 0700), 0);
	put(net, "tcp", T_HEADER T4_LISTEN("1F90"));		/* 8080 */
	put(net, "udp", T_HEADER U4_SERVICE);			/* 53 */
	assert_int_equal(ph_scanner_init(&sc, true), 0);
	sc.proc_root = root;
	assert_int_equal(ph_scanner_enable_udp(&sc), 0);
	assert_int_equal(ph_scanner_run(&sc, &s), 0);
	assert_int_equal(count(&s, IPPROTO_TCP, 8080), 1);
	assert_int_equal(count(&s, IPPROTO_UDP, 53), 1);

	/* TCP again: 8080 gone, 8081 new; UDP 53 kept although the file changed */
	put(net, "tcp", T_HEADER T4_LISTEN("1F91"));
	put(net, "udp", T_HEADER);
	assert_int_equal(ph_scanner_run_some(&sc, &s, true, false), 0);
	assert_int_equal(s.len, 2);
	assert_int_equal(count(&s, IPPROTO_TCP, 8081), 1);
	assert_int_equal(count(&s, IPPROTO_UDP, 53), 1);
	/* UDP again: now it is gone, TCP kept */
	assert_int_equal(ph_scanner_run_some(&sc, &s, false, true), 0);
	assert_int_equal(s.len, 1);
	assert_int_equal(count(&s, IPPROTO_TCP, 8081), 1);

	/* a failed part fails the whole: nothing left to mistake for a picture */
	snprintf(path, sizeof(path), "%s/tcp", net);
	unlink(path);
	assert_int_not_equal(ph_scanner_run_some(&sc, &s, true, false), 0);
	assert_int_equal(s.len, 0);

	ph_scan_free(&s);
	ph_scanner_fini(&sc);
	snprintf(path, sizeof(path), "%s/udp", net);
	unlink(path);
	rmdir(net);
	rmdir(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_procudp_lines),
		cmocka_unit_test(test_port_range),
		cmocka_unit_test(test_sockdiag_udp),
		cmocka_unit_test(test_portset_protos),
		cmocka_unit_test(test_rules_udp),
		cmocka_unit_test(test_diff_by_proto),
		cmocka_unit_test(test_scan_some),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
