// SPDX-License-Identifier: MIT
/* test_proctcp.c - /proc/net/tcp{,6} line and file parsing */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "discovery.h"

/* Real lines, as Linux 6.18 on x86_64 (little-endian) prints them */
#define HDR4 "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     \n"
#define HDR6 "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
#define L4_LISTEN "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 000000005823ad6b 100 0 0 10 0                      \n"
#define L4_ANY    "   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1604 1 000000005823ad6b 100 0 0 10 0                      \n"
#define L4_ESTAB  "   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 5555 1 0000000033e9bb2c 20 4 30 10 -1                     \n"
#define L4_TW     "   3: 020200C0:E7A0 507100CB:0050 06 00000000:00000000 03:000007A8 00000000     0        0 0 3 0000000035e9bb2c                                      \n"
#define L6_LO     "   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 7777 1 00000000aa5c1b5e 100 0 0 10 0\n"
#define L6_MAPPED "   1: 0000000000000000FFFF00000100007F:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7778 1 00000000aa5c1b5e 100 0 0 10 0\n"
#define L6_DOC    "   2: B80D0120000000000000000034120000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 7779 1 00000000aa5c1b5e 100 0 0 10 0\n"
#define L6_ESTAB  "   3: 00000000000000000000000001000000:1F91 00000000000000000000000001000000:D431 01 00000000:00000000 02:0000A3F1 00000000  1000        0 8888 2 00000000ba5c1b5e 20 4 30 10 -1\n"

static void assert_addr(const struct ph_listener *l, const char *want)
{
	char buf[INET6_ADDRSTRLEN];

	assert_string_equal(ph_addr_str(&l->addr, buf, sizeof(buf)), want);
}

/*
 * The kernel's rule, independent of the host's byte order: each 32-bit word
 * of the address as it lies in memory, printed with %08X.
 */
static void kernel_hex(const char *addr, char *out)
{
	struct in6_addr a;
	uint32_t w;

	assert_int_equal(inet_pton(AF_INET6, addr, &a), 1);
	for (int i = 0; i < 4; i++) {
		memcpy(&w, &a.s6_addr[4 * i], 4);
		sprintf(out + 8 * i, "%08X", w);
	}
}

static void test_tcp_listen(void **state)
{
	struct ph_listener l;

	(void)state;
	assert_int_equal(ph_proctcp_parse_line(L4_LISTEN, AF_INET, &l), 1);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	assert_addr(&l, "127.0.0.1");
	assert_true(ph_addr_is_loopback(&l.addr));
#endif
	assert_true(ph_addr_is_v4(&l.addr));
	assert_int_equal(l.port, 8080);
	assert_int_equal(l.uid, 1000);
	assert_int_equal(l.inode, 4242);
	assert_int_equal(l.family, AF_INET);
	assert_true(l.v6only_known);
	assert_false(l.v6only);

	assert_int_equal(ph_proctcp_parse_line(L4_ANY, AF_INET, &l), 1);
	assert_true(ph_addr_is_any(&l.addr));
	assert_int_equal(l.port, 2024);
	assert_int_equal(l.inode, 1604);
	assert_int_equal(l.uid, 0);
}

/* tcp prints the address word as a host-order number: check the round trip */
static void test_tcp_byte_order(void **state)
{
	struct ph_listener l;
	struct in_addr a;
	uint32_t w;
	char line[256];

	(void)state;
	assert_int_equal(inet_pton(AF_INET, "10.1.2.3", &a), 1);
	memcpy(&w, &a.s_addr, 4);
	snprintf(line, sizeof(line), "   0: %08X:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9 1 0000000000000000 100 0 0 10 0", w);
	assert_int_equal(ph_proctcp_parse_line(line, AF_INET, &l), 1);
	assert_addr(&l, "10.1.2.3");
	assert_int_equal(l.port, 80);
}

static void test_tcp6_listen(void **state)
{
	struct ph_listener l;

	(void)state;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	assert_int_equal(ph_proctcp_parse_line(L6_LO, AF_INET6, &l), 1);
	assert_addr(&l, "::1");
	assert_true(ph_addr_is_loopback(&l.addr));
	assert_int_equal(l.port, 8081);
	assert_int_equal(l.inode, 7777);
	assert_int_equal(l.uid, 1000);
	assert_int_equal(l.family, AF_INET6);
	assert_false(l.v6only_known);	/* /proc does not say */

	/* an AF_INET6 socket on a v4-mapped address */
	assert_int_equal(ph_proctcp_parse_line(L6_MAPPED, AF_INET6, &l), 1);
	assert_addr(&l, "127.0.0.1");
	assert_true(ph_addr_is_v4(&l.addr));
	assert_int_equal(l.family, AF_INET6);

	/* distinct bytes in every word: a swapped word order would show */
	assert_int_equal(ph_proctcp_parse_line(L6_DOC, AF_INET6, &l), 1);
	assert_addr(&l, "2001:db8::1234");
	assert_int_equal(l.port, 22);
	assert_int_equal(l.uid, 33);
#else
	skip();
#endif
}

static void test_tcp6_byte_order(void **state)
{
	static const char *const addrs[] = { "::1", "2001:db8:1:2:3:4:5:6", "fe80::aabb:ccdd", "::ffff:127.1.2.3" };
	struct ph_listener l;
	char hex[33], line[300];

	(void)state;
	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		struct in6_addr want;

		kernel_hex(addrs[i], hex);
		snprintf(line, sizeof(line), "  12: %s:ABCD 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 100 0 0 10 0\n", hex);
		assert_int_equal(ph_proctcp_parse_line(line, AF_INET6, &l), 1);
		assert_int_equal(inet_pton(AF_INET6, addrs[i], &want), 1);
		assert_memory_equal(&l.addr, &want, 16);
		assert_int_equal(l.port, 0xABCD);
	}
}

static void test_not_listen(void **state)
{
	struct ph_listener l = { .port = 1 };

	(void)state;
	assert_int_equal(ph_proctcp_parse_line(HDR4, AF_INET, &l), 0);
	assert_int_equal(ph_proctcp_parse_line(HDR6, AF_INET6, &l), 0);
	assert_int_equal(ph_proctcp_parse_line(L4_ESTAB, AF_INET, &l), 0);
	assert_int_equal(ph_proctcp_parse_line(L4_TW, AF_INET, &l), 0);
	assert_int_equal(ph_proctcp_parse_line(L6_ESTAB, AF_INET6, &l), 0);
	assert_int_equal(l.port, 1);	/* untouched */
	/* no trailing newline, no trailing fields after the inode */
	assert_int_equal(ph_proctcp_parse_line("   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242", AF_INET, &l), 1);
	assert_int_equal(l.inode, 4242);
}

static void test_malformed(void **state)
{
	static const char *const bad4[] = {
		"",
		"\n",
		"   0:",
		"   0: 0100007F:1F90",					/* short */
		"   0: 0100007F:1F90 00000000:0000 0A",			/* short */
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0",	/* no inode */
		"   0: 0100007G:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 4242",	/* bad hex */
		"   0: 100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 4242",	/* 7 digits */
		"   0: 0100007F01:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 4242",	/* 10 digits */
		"   0: 0100007F1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 4242",	/* no colon */
		"   0: 0100007F:1F9 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 4242",		/* short port */
		"   0: 0100007F:1F90 00000000:0000 A 00000000:00000000 00:00000000 00000000  1000 0 4242",		/* state */
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  10x0 0 4242",	/* uid */
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  4294967296 0 4242",	/* uid > 32 bit */
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 99999999999999999999",	/* inode overflow */
		"   0: 0100007F:1F90 00000000:0000 0A 00000000 00:00000000 00000000  1000 0 4242",		/* tx:rx */
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 4242x",	/* junk glued on */
		"   x: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 4242",	/* sl */
		"   0 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 4242",	/* sl colon */
		"slx local",
	};
	struct ph_listener l;

	(void)state;
	for (size_t i = 0; i < sizeof(bad4) / sizeof(bad4[0]); i++) {
		print_message("bad line %zu\n", i);
		assert_int_equal(ph_proctcp_parse_line(bad4[i], AF_INET, &l), -EINVAL);
	}
	/* a line of the other family has the wrong address width */
	assert_int_equal(ph_proctcp_parse_line(L4_LISTEN, AF_INET6, &l), -EINVAL);
	assert_int_equal(ph_proctcp_parse_line(L6_LO, AF_INET, &l), -EINVAL);
	assert_int_equal(ph_proctcp_parse_line(L4_LISTEN, AF_UNIX, &l), -EINVAL);
}

/* --- whole files -------------------------------------------------------- */

static char tmpdir[64];

static int setup_dir(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/ph-test-proctcp-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *text)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	return path;
}

static void test_read_file(void **state)
{
	struct ph_scan s = { 0 };
	const char *p;

	(void)state;
	p = write_file("tcp", HDR4 L4_LISTEN L4_ESTAB L4_ANY L4_TW);
	assert_int_equal(ph_proctcp_read(p, AF_INET, &s), 0);
	assert_int_equal(s.len, 2);
	assert_int_equal(s.v[0].inode, 4242);
	assert_int_equal(s.v[1].inode, 1604);

	p = write_file("tcp6", HDR6 L6_LO L6_ESTAB L6_MAPPED);
	assert_int_equal(ph_proctcp_read(p, AF_INET6, &s), 0);	/* appends */
	assert_int_equal(s.len, 4);
	assert_int_equal(s.v[2].inode, 7777);
	assert_int_equal(s.v[3].inode, 7778);
	assert_int_equal(s.v[3].family, AF_INET6);

	/* empty file and header only: no listeners, no error */
	ph_scan_clear(&s);
	assert_int_equal(ph_proctcp_read(write_file("e", ""), AF_INET, &s), 0);
	assert_int_equal(ph_proctcp_read(write_file("h", HDR4), AF_INET, &s), 0);
	assert_int_equal(s.len, 0);
	/* last line without newline */
	assert_int_equal(ph_proctcp_read(write_file("n", HDR4 "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4243 1"), AF_INET, &s), 0);
	assert_int_equal(s.len, 1);
	assert_int_equal(s.v[0].inode, 4243);
	ph_scan_free(&s);
}

/* One bad line rejects the whole file and leaves @out as it was */
static void test_read_malformed(void **state)
{
	struct ph_listener keep = { .port = 1, .inode = 11 };
	struct ph_scan s = { 0 };

	(void)state;
	assert_int_equal(ph_scan_push(&s, &keep), 0);
	assert_int_equal(ph_proctcp_read(write_file("bad", HDR4 L4_LISTEN L4_ANY "   2: 0100007F:1F90 garbage\n" L4_ESTAB), AF_INET, &s), -EINVAL);
	assert_int_equal(s.len, 1);
	assert_int_equal(s.v[0].inode, 11);

	/* malformed last line without newline */
	assert_int_equal(ph_proctcp_read(write_file("bad2", HDR4 L4_LISTEN "   1: 01"), AF_INET, &s), -EINVAL);
	assert_int_equal(s.len, 1);

	/* an endless line */
	char *big = malloc(5000);

	assert_non_null(big);
	memset(big, 'A', 4999);
	big[4999] = '\0';
	assert_int_equal(ph_proctcp_read(write_file("big", big), AF_INET, &s), -EINVAL);
	free(big);
	assert_int_equal(s.len, 1);

	assert_int_equal(ph_proctcp_read("/nonexistent/tcp", AF_INET, &s), -ENOENT);
	assert_int_equal(ph_proctcp_read(tmpdir, AF_INET, &s), -EISDIR);
	ph_scan_free(&s);
}

/* A file far larger than the read buffer: lines split across reads */
static void test_read_large(void **state)
{
	const size_t n = 3000;
	size_t cap = 200 * (n + 1), len;
	char *text = malloc(cap);
	struct ph_scan s = { 0 };

	(void)state;
	assert_non_null(text);
	len = (size_t)snprintf(text, cap, "%s", HDR4);
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(text + len, cap - len,
			"%4zu: 0100007F:%04zX 00000000:0000 %s 00000000:00000000 00:00000000 00000000  1000        0 %zu 1 000000005823ad6b 100 0 0 10 0                      \n",
			i, 1000 + i, i % 3 ? "01" : "0A", 100000 + i);
	assert_int_equal(ph_proctcp_read(write_file("large", text), AF_INET, &s), 0);
	free(text);
	assert_int_equal(s.len, n / 3);
	for (size_t i = 0; i < s.len; i++) {
		assert_int_equal(s.v[i].port, 1000 + 3 * i);
		assert_int_equal(s.v[i].inode, 100000 + 3 * i);
	}
	ph_scan_free(&s);
}

/* This kernel's own files parse without error */
static void test_read_live(void **state)
{
	struct ph_scan s = { 0 };

	(void)state;
	assert_int_equal(ph_proctcp_read("/proc/net/tcp", AF_INET, &s), 0);
	if (access("/proc/net/tcp6", R_OK) == 0)
		assert_int_equal(ph_proctcp_read("/proc/net/tcp6", AF_INET6, &s), 0);
	ph_scan_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp_listen),
		cmocka_unit_test(test_tcp_byte_order),
		cmocka_unit_test(test_tcp6_listen),
		cmocka_unit_test(test_tcp6_byte_order),
		cmocka_unit_test(test_not_listen),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_read_file),
		cmocka_unit_test(test_read_malformed),
		cmocka_unit_test(test_read_large),
		cmocka_unit_test(test_read_live),
	};

	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
