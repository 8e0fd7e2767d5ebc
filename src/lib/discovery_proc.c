// SPDX-License-Identifier: MIT
/* discovery_proc.c - fallback listener discovery: parse /proc/net/{tcp,tcp6,udp,udp6}
 *
 * Theory of Operation
 *
 * Each line after the header describes one socket:
 *
 *    sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
 *     0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000   0  4242 ...
 *
 * The kernel prints every 32-bit word of an address with "%08X" of the word
 * as it sits in memory, i.e. the network-order bytes read as a host-order
 * integer: 127.0.0.1 is "0100007F" on little-endian machines, and tcp6
 * prints four such words ("00000000000000000000000001000000" is ::1). So a
 * word is parsed as a number and stored back with memcpy() in host order,
 * which restores the original bytes on any endianness. The port is plain
 * host-order hex. State 0A is TCP_LISTEN.
 *
 * /proc/net/udp{,6} has the same first ten fields (the columns after the
 * inode differ: ref, pointer, drops), so one line parser serves all four
 * files; only the state that makes a line count differs: a bound UDP
 * socket without a peer is in state 07 (TCP_CLOSE), a connect()ed one in
 * 01 (TCP_ESTABLISHED), and a connected socket is a client, never reported.
 *
 * The first ten fields are checked strictly for every line, listener or
 * not; anything unexpected is -EINVAL and the reader then rejects the whole
 * file, because a half-understood file must never look like "no listeners".
 * The file is read with plain read(2) into a stack buffer, so there is no
 * allocation per scan. /proc does not tell whether an IPv6 socket is
 * v6only: v6only_known stays false.
 */
#include "discovery.h"
#include "parse.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TCP_STATE_LISTEN 0x0A
#define UDP_STATE_UNCONNECTED 0x07	/* TCP_CLOSE */
/* Real lines are ~150 (tcp) / ~180 (tcp6) characters; this is generous */
#define PROCTCP_LINE_MAX 1024
#define PROCTCP_BUF	 16384

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

static const char *skip_space(const char *s)
{
	while (is_space(*s))
		s++;
	return s;
}

/**
 * hex_fixed() - exactly @n hex digits
 * @s:		input, advanced past the digits on success
 * @n:		digit count, at most 8
 * @out:	value
 *
 * Return: 0 or -EINVAL
 */
static int hex_fixed(const char **s, int n, uint32_t *out)
{
	uint32_t v = 0;

	for (int i = 0; i < n; i++) {
		int d = ph_hexval((*s)[i]);

		if (d < 0)
			return -EINVAL;
		v = v << 4 | (uint32_t)d;
	}
	*s += n;
	*out = v;
	return 0;
}

/**
 * hex_var() - 1 to 16 hex digits
 * @s:		input, advanced past the digits on success
 * @out:	value
 *
 * Return: 0 or -EINVAL
 */
static int hex_var(const char **s, uint64_t *out)
{
	uint64_t v = 0;
	int i, d;

	for (i = 0; (d = ph_hexval((*s)[i])) >= 0; i++) {
		if (i == 16)
			return -EINVAL;
		v = v << 4 | (uint64_t)d;
	}
	if (!i)
		return -EINVAL;
	*s += i;
	*out = v;
	return 0;
}

/**
 * dec() - unsigned decimal number not above @max
 * @s:		input, advanced past the digits on success
 * @max:	largest accepted value
 * @out:	value
 *
 * Return: 0 or -EINVAL
 */
static int dec(const char **s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	int i;

	for (i = 0; (*s)[i] >= '0' && (*s)[i] <= '9'; i++) {
		unsigned d = (unsigned)((*s)[i] - '0');

		if (v > (max - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	if (!i)
		return -EINVAL;
	*s += i;
	*out = v;
	return 0;
}

/* A field must be followed by whitespace (or end the line, if @last) */
static int field_end(const char **s, bool last)
{
	char c = **s;

	if (is_space(c)) {
		*s = skip_space(*s);
		return 0;
	}
	if (last && (c == '\0' || c == '\n'))
		return 0;
	return -EINVAL;
}

/**
 * parse_endpoint() - "ADDR:PORT" in /proc notation
 * @s:		input, advanced past the endpoint and following blanks
 * @family:	AF_INET (8 digits) or AF_INET6 (32 digits)
 * @addr:	address, IPv4 stored v4-mapped (may be NULL: validate only)
 * @port:	port, host order (may be NULL)
 *
 * Return: 0 or -EINVAL
 */
static int parse_endpoint(const char **s, int family, struct in6_addr *addr, uint16_t *port)
{
	int words = family == AF_INET ? 1 : 4;
	uint32_t w[4], p;

	for (int i = 0; i < words; i++)
		if (hex_fixed(s, 8, &w[i]))
			return -EINVAL;
	if (**s != ':')
		return -EINVAL;
	(*s)++;
	if (hex_fixed(s, 4, &p) || field_end(s, false))
		return -EINVAL;

	if (addr) {
		if (family == AF_INET) {
			struct in_addr a;

			memcpy(&a.s_addr, &w[0], 4);	/* host order word = original bytes */
			ph_addr_from_v4(addr, a);
		} else {
			memcpy(addr->s6_addr, w, 16);
		}
	}
	if (port)
		*port = (uint16_t)p;
	return 0;
}

/**
 * parse_line() - one line of /proc/net/{tcp,udp}{,6}
 * @line:	NUL-terminated line (trailing newline allowed)
 * @family:	AF_INET or AF_INET6
 * @proto:	IPPROTO_TCP (lines in LISTEN count) or IPPROTO_UDP (unconnected)
 * @out:	filled when the line counts
 *
 * Return: 1 for a listener, 0 for a valid line that is not one, -EINVAL
 */
static int parse_line(const char *line, int family, int proto, struct ph_listener *out)
{
	const char *s = skip_space(line);
	struct ph_listener l = { 0 };
	struct in6_addr peer;
	uint64_t v, uid, inode;
	uint32_t st;
	uint16_t peer_port;

	if (family != AF_INET && family != AF_INET6)
		return -EINVAL;

	/* Header: "  sl  local_address ..." */
	if (s[0] == 's' && s[1] == 'l' && is_space(s[2]))
		return 0;

	/* sl: "N:" */
	if (dec(&s, UINT32_MAX, &v) || *s != ':')
		return -EINVAL;
	s++;
	if (field_end(&s, false))
		return -EINVAL;

	if (parse_endpoint(&s, family, &l.addr, &l.port) ||
	    parse_endpoint(&s, family, &peer, &peer_port))
		return -EINVAL;

	if (hex_fixed(&s, 2, &st) || field_end(&s, false))
		return -EINVAL;

	/* tx_queue:rx_queue and tr:tm->when */
	for (int i = 0; i < 2; i++) {
		if (hex_var(&s, &v) || *s != ':')
			return -EINVAL;
		s++;
		if (hex_var(&s, &v) || field_end(&s, false))
			return -EINVAL;
	}
	/* retrnsmt */
	if (hex_var(&s, &v) || field_end(&s, false))
		return -EINVAL;
	if (dec(&s, UINT32_MAX, &uid) || field_end(&s, false))
		return -EINVAL;
	/* timeout */
	if (dec(&s, UINT64_MAX, &v) || field_end(&s, false))
		return -EINVAL;
	if (dec(&s, UINT64_MAX, &inode) || field_end(&s, true))
		return -EINVAL;
	/* The rest (refcount, pointer, timers) differs between socket kinds */

	if (proto == IPPROTO_UDP) {
		/* a peer makes it a client; port 0: not bound yet */
		if (st != UDP_STATE_UNCONNECTED || peer_port || !l.port)
			return 0;
	} else if (st != TCP_STATE_LISTEN) {
		return 0;
	}
	l.proto = (uint8_t)proto;
	l.family = (uint8_t)family;
	l.uid = (uint32_t)uid;
	l.inode = inode;
	l.v6only = false;
	l.v6only_known = family == AF_INET;
	*out = l;
	return 1;
}

int ph_proctcp_parse_line(const char *line, int family, struct ph_listener *out)
{
	return parse_line(line, family, IPPROTO_TCP, out);
}

int ph_procudp_parse_line(const char *line, int family, struct ph_listener *out)
{
	return parse_line(line, family, IPPROTO_UDP, out);
}

/**
 * parse_chunk() - parse the complete lines at the start of @buf
 * @buf, @len:	text; a partial last line is left alone
 * @family:	AF_INET or AF_INET6
 * @proto:	IPPROTO_TCP or IPPROTO_UDP
 * @out:	listeners are appended
 * @used:	bytes consumed (whole lines)
 *
 * Return: 0 or -EINVAL / -ENOMEM
 */
static int parse_chunk(char *buf, size_t len, int family, int proto, struct ph_scan *out,
		       size_t *used)
{
	size_t off = 0;

	for (;;) {
		char *nl = memchr(buf + off, '\n', len - off);
		struct ph_listener l;
		int ret;

		if (!nl)
			break;
		*nl = '\0';
		ret = parse_line(buf + off, family, proto, &l);
		if (ret < 0)
			return ret;
		if (ret == 1 && ph_scan_push(out, &l))
			return -ENOMEM;
		off = (size_t)(nl - buf) + 1;
	}
	*used = off;
	return 0;
}

/* A whole file of @proto (see ph_proctcp_read) */
static int read_file(const char *path, int family, int proto, struct ph_scan *out)
{
	char buf[PROCTCP_BUF + 1];
	size_t have = 0, mark = out->len;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;

	for (;;) {
		size_t used = 0;
		ssize_t n = read(fd, buf + have, PROCTCP_BUF - have);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		if (n == 0)
			break;
		have += (size_t)n;

		ret = parse_chunk(buf, have, family, proto, out, &used);
		if (ret)
			goto out;
		memmove(buf, buf + used, have - used);
		have -= used;
		if (have > PROCTCP_LINE_MAX) {	/* no newline in sight */
			ret = -EINVAL;
			goto out;
		}
	}

	/* A last line without its newline */
	if (have) {
		struct ph_listener l;

		buf[have] = '\0';
		ret = parse_line(buf, family, proto, &l);
		if (ret < 0)
			goto out;
		ret = ret == 1 ? ph_scan_push(out, &l) : 0;
	}
out:
	close(fd);
	if (ret)
		out->len = mark;	/* never a half-parsed file */
	return ret;
}

int ph_proctcp_read(const char *path, int family, struct ph_scan *out)
{
	return read_file(path, family, IPPROTO_TCP, out);
}

int ph_procudp_read(const char *path, int family, struct ph_scan *out)
{
	return read_file(path, family, IPPROTO_UDP, out);
}

int ph_port_range_parse(const char *text, uint16_t *lo, uint16_t *hi)
{
	const char *s = skip_space(text);
	uint64_t a, b;

	if (dec(&s, 65535, &a) || field_end(&s, false) || dec(&s, 65535, &b))
		return -EINVAL;
	s = skip_space(s);
	if (*s == '\n')
		s++;
	if (*s || !a || a > b)
		return -EINVAL;
	*lo = (uint16_t)a;
	*hi = (uint16_t)b;
	return 0;
}
