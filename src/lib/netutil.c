// SPDX-License-Identifier: MIT
/* netutil.c - small socket helpers and external address helpers (addrset.h) */
#include "netutil.h"

#include <errno.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addrset.h"
#include "discovery_listeners.h"
#include "porthole.h"

int ph_sock_keepalive(int fd, const struct ph_keepalive *ka, bool user_timeout)
{
	int one = 1, idle = (int)ka->idle_s, intvl = (int)ka->interval_s, cnt = (int)ka->count;
	unsigned int ut = (ka->idle_s + ka->interval_s * ka->count) * 1000u;

	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) ||
	    (user_timeout && setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut))))
		return -errno;
	return 0;
}

int ph_sock_congestion(int fd, const char *name)
{
	if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, (socklen_t)strlen(name)))
		return -errno;
	return 0;
}

void ph_sock_set_rst(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

void ph_sock_abort(int fd)
{
	if (fd < 0)
		return;
	ph_sock_set_rst(fd);
	close(fd);
}

uint64_t ph_sock_inode(int fd)
{
	struct stat st;

	if (fstat(fd, &st))
		return 0;
	return (uint64_t)st.st_ino;
}

socklen_t ph_sockaddr_from(struct sockaddr_storage *ss, const struct in6_addr *addr, uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	if (IN6_IS_ADDR_V4MAPPED(addr)) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, &addr->s6_addr[12], 4);
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	sin6->sin6_addr = *addr;
	return sizeof(*sin6);
}

/* ---- external addresses (addrset.h) --------------------------------------- */

unsigned ph_ext_addr_fam(const struct ph_ext_addr *a)
{
	return IN6_IS_ADDR_V4MAPPED(&a->addr) ? PH_FAM_V4 : PH_FAM_V6;
}

bool ph_addr_is_v6_linklocal(const struct in6_addr *a)
{
	return a->s6_addr[0] == 0xfe && (a->s6_addr[1] & 0xc0) == 0x80;
}

const char *ph_ext_addr_str(const struct ph_ext_addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN], ifn[IF_NAMESIZE];

	ph_addr_str(&a->addr, ip, sizeof(ip));
	if (!ph_addr_is_v6_linklocal(&a->addr) || !a->ifindex)
		snprintf(buf, len, "%s", ip);
	else if (if_indextoname(a->ifindex, ifn))
		snprintf(buf, len, "%s%%%s", ip, ifn);
	else
		snprintf(buf, len, "%s%%%u", ip, a->ifindex);
	return buf;
}

socklen_t ph_ext_addr_sockaddr(const struct ph_ext_addr *a, uint16_t port,
			       struct sockaddr_storage *ss)
{
	socklen_t len = ph_sockaddr_from(ss, &a->addr, port);

	if (ss->ss_family == AF_INET6 && ph_addr_is_v6_linklocal(&a->addr))
		((struct sockaddr_in6 *)ss)->sin6_scope_id = a->ifindex;
	return len;
}

static bool ext_addr_eq(const struct ph_ext_addr *x, const struct ph_ext_addr *y)
{
	return !memcmp(&x->addr, &y->addr, sizeof(x->addr)) && x->ifindex == y->ifindex;
}

bool ph_addr_set_has(const struct ph_addr_set *s, const struct ph_ext_addr *a)
{
	for (uint32_t i = 0; i < s->n; i++)
		if (ext_addr_eq(&s->a[i], a))
			return true;
	return false;
}

bool ph_addr_set_equal(const struct ph_addr_set *x, const struct ph_addr_set *y)
{
	if (x->n != y->n)
		return false;
	for (uint32_t i = 0; i < x->n; i++)
		if (!ext_addr_eq(&x->a[i], &y->a[i]))
			return false;
	return true;
}

bool ph_addr_set_add(struct ph_addr_set *s, const struct ph_ext_addr *a)
{
	if (s->n >= PH_MAX_EXT_ADDRS || ph_addr_set_has(s, a))
		return false;
	s->a[s->n++] = *a;
	return true;
}

unsigned ph_addr_set_fams(const struct ph_addr_set *s)
{
	unsigned f = 0;

	for (uint32_t i = 0; i < s->n; i++)
		f |= ph_ext_addr_fam(&s->a[i]);
	return f;
}

const char *ph_addr_set_str(const struct ph_addr_set *s, char *buf, size_t len)
{
	size_t off = 0;

	snprintf(buf, len, "none");
	for (uint32_t i = 0; i < s->n && off + 1 < len; i++) {
		char one[PH_ADDR_STRLEN];
		int k = snprintf(buf + off, len - off, "%s%s", i ? ", " : "",
				 ph_ext_addr_str(&s->a[i], one, sizeof(one)));

		if (k < 0)
			break;
		off += (size_t)k;
	}
	return buf;
}

/* See netutil.h */
int ph_loopback_listen(int family, uint16_t *port)
{
	struct sockaddr_storage ss = { .ss_family = (sa_family_t)family };
	socklen_t len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
	if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 1) ||
	    getsockname(fd, (struct sockaddr *)&ss, &len)) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	*port = ntohs(((struct sockaddr_in *)&ss)->sin_port);	/* same offset in sin6 */
	return fd;
}
