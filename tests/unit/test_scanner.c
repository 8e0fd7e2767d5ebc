// SPDX-License-Identifier: MIT
/* test_scanner.c - the scanner facade: /proc fixtures, and live listeners through both methods */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>

#include <cmocka.h>

#include "discovery.h"

#define HDR4 "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
#define HDR6 "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

static char root[64];

static int setup_root(void **state)
{
	char net[96];

	(void)state;
	strcpy(root, "/tmp/ph-test-scanner-XXXXXX");
	if (!mkdtemp(root))
		return -1;
	snprintf(net, sizeof(net), "%s/net", root);
	return mkdir(net, 0700);
}

static int teardown_root(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

static void put(const char *name, const char *text)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/net/%s", root, name);
	if (!text) {
		unlink(path);
		return;
	}
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* One tcp6 word per 8 hex digits, as the kernel prints them on this host */
static void hex6(const char *addr, char *out)
{
	struct in6_addr a;
	uint32_t w;

	assert_int_equal(inet_pton(AF_INET6, addr, &a), 1);
	for (int i = 0; i < 4; i++) {
		memcpy(&w, &a.s6_addr[4 * i], 4);
		sprintf(out + 8 * i, "%08X", w);
	}
}

static const struct ph_listener *find(const struct ph_scan *s, int family, uint16_t port)
{
	for (size_t i = 0; i < s->len; i++)
		if (s->v[i].port == port && s->v[i].family == family)
			return &s->v[i];
	return NULL;
}

static void init_fixture(struct ph_scanner *sc)
{
	assert_int_equal(ph_scanner_init(sc, true), 0);
	assert_string_equal(ph_scanner_method(sc), "proc");
	assert_int_equal(sc->diag_fd, -1);
	sc->proc_root = root;
}

static void test_fixture(void **state)
{
	struct ph_scan out = { 0 };
	struct ph_scanner sc;
	struct in_addr lo = { htonl(INADDR_LOOPBACK) };
	char line4[512], line6[512], t4[1024], t6[1024], hex[33];
	uint32_t w;

	(void)state;
	memcpy(&w, &lo.s_addr, 4);
	snprintf(line4, sizeof(line4), "   0: %08X:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0\n"
				       "   1: %08X:1F90 %08X:C350 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0000000000000000 20 4 30 10 -1\n", w, w, w);
	hex6("::1", hex);
	snprintf(line6, sizeof(line6), "   0: %s:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     7        0 5151 1 0000000000000000 100 0 0 10 0\n", hex);

	snprintf(t4, sizeof(t4), "%s%s", HDR4, line4);
	snprintf(t6, sizeof(t6), "%s%s", HDR6, line6);
	put("tcp", t4);
	put("tcp6", t6);

	init_fixture(&sc);
	/* stale content in @out is replaced */
	assert_int_equal(ph_scan_push(&out, &(struct ph_listener){ .port = 1 }), 0);
	assert_int_equal(ph_scanner_run(&sc, &out), 0);
	assert_int_equal(out.len, 2);
	assert_non_null(find(&out, AF_INET, 8080));
	assert_int_equal(find(&out, AF_INET, 8080)->inode, 4242);
	assert_true(ph_addr_is_loopback(&find(&out, AF_INET, 8080)->addr));
	assert_non_null(find(&out, AF_INET6, 8081));
	assert_int_equal(find(&out, AF_INET6, 8081)->uid, 7);
	assert_true(ph_addr_is_loopback(&find(&out, AF_INET6, 8081)->addr));

	/* IPv6 disabled: no tcp6 file is no IPv6 listeners, not an error */
	put("tcp6", NULL);
	assert_int_equal(ph_scanner_run(&sc, &out), 0);
	assert_int_equal(out.len, 1);
	assert_int_equal(out.v[0].port, 8080);

	/* a malformed tcp6 fails the scan, and @out holds nothing */
	put("tcp6", HDR6 "   0: 0000:1F91 broken\n");
	assert_int_equal(ph_scanner_run(&sc, &out), -EINVAL);
	assert_int_equal(out.len, 0);

	/* no tcp at all is an error, never "no listeners" */
	put("tcp6", t6);
	put("tcp", NULL);
	assert_int_equal(ph_scanner_run(&sc, &out), -ENOENT);
	assert_int_equal(out.len, 0);

	ph_scanner_fini(&sc);
	ph_scanner_fini(&sc);	/* idempotent */
	ph_scan_free(&out);
}

/* --- live --------------------------------------------------------------- */

struct live {
	int fd;
	int family;
	uint16_t port;
	uint64_t inode;
};

static void live_open(struct live *l, int family, bool v6only)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	struct stat st;
	int one = 1;

	l->family = family;
	l->fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(l->fd >= 0);
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		len = sizeof(*a);
		if (v6only)
			assert_int_equal(setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)), 0);
	}
	assert_int_equal(bind(l->fd, (struct sockaddr *)&ss, len), 0);
	assert_int_equal(listen(l->fd, 4), 0);
	assert_int_equal(getsockname(l->fd, (struct sockaddr *)&ss, &len), 0);
	l->port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					  : ((struct sockaddr_in6 *)&ss)->sin6_port);
	assert_int_equal(fstat(l->fd, &st), 0);
	l->inode = st.st_ino;
}

static void live_check(bool force_proc)
{
	struct ph_scan out = { 0 };
	const struct ph_listener *f;
	struct ph_scanner sc;
	struct live v4, v6;
	void *first;

	assert_int_equal(ph_scanner_init(&sc, force_proc), 0);
	assert_string_equal(ph_scanner_method(&sc), force_proc ? "proc" : "sock_diag");
	live_open(&v4, AF_INET, false);
	live_open(&v6, AF_INET6, true);

	assert_int_equal(ph_scanner_run(&sc, &out), 0);
	f = find(&out, AF_INET, v4.port);
	assert_non_null(f);
	assert_int_equal(f->inode, v4.inode);
	assert_int_equal(f->uid, getuid());
	assert_true(ph_addr_is_loopback(&f->addr));
	assert_true(ph_addr_is_v4(&f->addr));

	f = find(&out, AF_INET6, v6.port);
	assert_non_null(f);
	assert_int_equal(f->inode, v6.inode);
	assert_true(ph_addr_is_loopback(&f->addr));
	assert_false(ph_addr_is_v4(&f->addr));
	if (!force_proc) {
		assert_true(f->v6only_known);
		assert_true(f->v6only);
	} else {
		assert_false(f->v6only_known);
	}

	/* a closed listener is gone from the next scan, the other stays */
	close(v4.fd);
	first = out.v;
	assert_int_equal(ph_scanner_run(&sc, &out), 0);
	assert_null(find(&out, AF_INET, v4.port));
	assert_non_null(find(&out, AF_INET6, v6.port));
	/* warm buffers are reused, not reallocated */
	assert_ptr_equal(out.v, first);

	close(v6.fd);
	assert_int_equal(ph_scanner_run(&sc, &out), 0);
	assert_null(find(&out, AF_INET6, v6.port));

	ph_scanner_fini(&sc);
	assert_int_equal(sc.diag_fd, -1);
	ph_scan_free(&out);
}

static void test_live_sockdiag(void **state)
{
	(void)state;
	live_check(false);
}

static void test_live_proc(void **state)
{
	(void)state;
	live_check(true);
}

/* Many scans on one scanner: sequence numbers advance, nothing leaks or sticks */
static void test_live_repeat(void **state)
{
	struct ph_scan out = { 0 };
	struct ph_scanner sc;
	struct live v4;

	(void)state;
	live_open(&v4, AF_INET, false);
	assert_int_equal(ph_scanner_init(&sc, false), 0);
	for (int i = 0; i < 500; i++) {
		assert_int_equal(ph_scanner_run(&sc, &out), 0);
		assert_non_null(find(&out, AF_INET, v4.port));
	}
	assert_true(sc.seq > 1000);
	ph_scanner_fini(&sc);
	close(v4.fd);
	ph_scan_free(&out);
}

/*
 * A dump left unread on the scanner's socket (the kernel refuses a new dump
 * there with EBUSY until the old one is read to its end) must not wedge the
 * scanner: it moves to a fresh socket within the same run. Reading nothing
 * keeps the old dump pending: the kernel builds its second part (here: DONE)
 * only once the first has been read.
 */
static void test_unfinished_dump(void **state)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg = {
		.nlh = { .nlmsg_len = sizeof(msg), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
			 .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 77 },
		.req = { .sdiag_family = AF_INET, .sdiag_protocol = IPPROTO_TCP,
			 .idiag_states = 1U << TCP_LISTEN },
	};
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	struct ph_scan out = { 0 };
	struct ph_scanner sc;
	struct live l[2];

	(void)state;
	for (size_t i = 0; i < 2; i++)
		live_open(&l[i], AF_INET, false);
	assert_int_equal(ph_scanner_init(&sc, false), 0);
	assert_true(sc.diag_fd >= 0);
	assert_int_equal(sendto(sc.diag_fd, &msg, sizeof(msg), 0, (struct sockaddr *)&kernel, sizeof(kernel)), (ssize_t)sizeof(msg));

	assert_int_equal(ph_scanner_run(&sc, &out), 0);
	assert_int_not_equal(sc.diag_fd, -1);
	for (size_t i = 0; i < 2; i++) {
		assert_non_null(find(&out, AF_INET, l[i].port));
		close(l[i].fd);
	}
	ph_scanner_fini(&sc);
	ph_scan_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture),
		cmocka_unit_test(test_live_sockdiag),
		cmocka_unit_test(test_live_proc),
		cmocka_unit_test(test_live_repeat),
		cmocka_unit_test(test_unfinished_dump),
	};

	return cmocka_run_group_tests(tests, setup_root, teardown_root);
}
