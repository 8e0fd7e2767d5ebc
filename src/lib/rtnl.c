// SPDX-License-Identifier: MIT
/* rtnl.c - rtnetlink address, route and link messages -> a model -> the external addresses
 *
 * Theory of Operation
 * ===================
 * The port worker keeps a model of the namespace's network configuration:
 * every interface address, every default route of the main table, and
 * the interfaces' names. Dump replies and notifications are the same
 * messages, so one parser (ph_rtnl_parse) serves both: a NEW message adds
 * or replaces its object, a DEL message removes it. Applying a message
 * twice changes nothing, so notifications that arrive during or after a
 * dump which already reflects them are harmless, and a lost one is mended
 * by dumping everything again (rtnl_watch.c).
 *
 * ph_rtnl_select() then reads the external addresses off the model, with
 * the rules of --external-addr (see ph_ext_spec): explicit addresses count
 * only while configured, interface names give all their global and
 * link-local addresses, and without any the default route of each family
 * picks its interface.
 *
 * The parser is pure (no I/O, no clock, no globals) and bounds-checks every
 * message and attribute: it is fuzzed (fuzz/fuzz_rtnl.c) and unit-tested on
 * captured messages (tests/unit/test_rtnl.c). Its model follows
 * discovery_sockdiag.c's dump loop, after iproute2's lib/libnetlink.c.
 */
#include "rtnl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "discovery_listeners.h"

void ph_rtnl_model_clear(struct ph_rtnl_model *m)
{
	m->n_addrs = m->n_routes = m->n_links = 0;
}

void ph_rtnl_model_free(struct ph_rtnl_model *m)
{
	free(m->addrs);
	free(m->routes);
	free(m->links);
	memset(m, 0, sizeof(*m));
}

void ph_rtnl_model_swap(struct ph_rtnl_model *a, struct ph_rtnl_model *b)
{
	struct ph_rtnl_model t = *a;

	*a = *b;
	*b = t;
}

/* ---- attributes ------------------------------------------------------------ */

/* The attributes of one message by type, NULL when absent; every type we
 * read (IFA_FLAGS, RTA_TABLE, IFLA_IFNAME, ...) is below 32 */
struct attrs {
	const struct rtattr *a[32];
};

/* Index the attributes in [@p, @p + @len). Return: 0 or -EPROTO */
static int parse_attrs(const unsigned char *p, size_t len, struct attrs *at)
{
	memset(at, 0, sizeof(*at));
	while (len >= sizeof(struct rtattr)) {
		const struct rtattr *rta = (const struct rtattr *)(const void *)p;
		size_t step;

		if (rta->rta_len < sizeof(*rta) || rta->rta_len > len)
			return -EPROTO;
		if (rta->rta_type < sizeof(at->a) / sizeof(at->a[0]))
			at->a[rta->rta_type] = rta;
		step = RTA_ALIGN(rta->rta_len);
		if (step >= len)
			return 0;
		p += step;
		len -= step;
	}
	return len ? -EPROTO : 0;
}

static size_t attr_len(const struct rtattr *rta)
{
	return rta->rta_len - sizeof(*rta);
}

static const void *attr_data(const struct rtattr *rta)
{
	return (const unsigned char *)rta + sizeof(*rta);
}

/* A u32 attribute, @def when absent. Return: 0 or -EPROTO (wrong size) */
static int attr_u32(const struct rtattr *rta, uint32_t def, uint32_t *out)
{
	*out = def;
	if (!rta)
		return 0;
	if (attr_len(rta) != 4)
		return -EPROTO;
	memcpy(out, attr_data(rta), 4);
	return 0;
}

/* ---- addresses ------------------------------------------------------------ */

static bool addr_same(const struct ph_rtnl_addr *x, const struct ph_rtnl_addr *y)
{
	return x->ifindex == y->ifindex && x->prefixlen == y->prefixlen &&
	       !memcmp(&x->addr, &y->addr, sizeof(x->addr));
}

static int on_addr(struct ph_rtnl_model *m, uint16_t type, const void *body, size_t len)
{
	const struct ifaddrmsg *ifa = body;
	struct ph_rtnl_addr a = { 0 };
	const struct rtattr *ra;
	size_t hl = NLMSG_ALIGN(sizeof(*ifa)), alen;
	struct attrs at;
	int ret;

	if (len < sizeof(*ifa))
		return -EPROTO;
	if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6)
		return 0;
	ret = parse_attrs((const unsigned char *)body + hl, len > hl ? len - hl : 0, &at);
	if (ret)
		return ret;
	ra = at.a[IFA_LOCAL] ? at.a[IFA_LOCAL] : at.a[IFA_ADDRESS];
	alen = ifa->ifa_family == AF_INET ? 4 : 16;
	if (!ra || attr_len(ra) != alen)
		return -EPROTO;
	if (alen == 4) {
		struct in_addr v4;

		memcpy(&v4, attr_data(ra), 4);
		ph_addr_from_v4(&a.addr, v4);
	} else {
		memcpy(&a.addr, attr_data(ra), 16);
	}
	a.ifindex = ifa->ifa_index;
	a.prefixlen = ifa->ifa_prefixlen;
	a.scope = ifa->ifa_scope;
	ret = attr_u32(at.a[IFA_FLAGS], ifa->ifa_flags, &a.flags);
	if (ret)
		return ret;

	for (size_t i = 0; i < m->n_addrs; i++) {
		if (!addr_same(&m->addrs[i], &a))
			continue;
		if (type == RTM_NEWADDR) {
			m->addrs[i] = a;	/* flags or scope changed: in place */
		} else {
			memmove(&m->addrs[i], &m->addrs[i + 1],
				(m->n_addrs - i - 1) * sizeof(a));
			m->n_addrs--;
		}
		return 0;
	}
	if (type == RTM_DELADDR)
		return 0;
	if (ph_array_grow(&m->addrs, &m->cap_addrs, m->n_addrs + 1, sizeof(a), 16))
		return -ENOMEM;
	m->addrs[m->n_addrs++] = a;
	return 0;
}

/* ---- default routes ---------------------------------------------------------- */

static void routes_remove(struct ph_rtnl_model *m, const struct ph_rtnl_route *r, bool any_if)
{
	size_t k = 0;

	for (size_t i = 0; i < m->n_routes; i++) {
		const struct ph_rtnl_route *x = &m->routes[i];

		if (x->family == r->family && x->priority == r->priority &&
		    (any_if || x->ifindex == r->ifindex))
			continue;
		m->routes[k++] = *x;
	}
	m->n_routes = k;
}

/* The interface of a route: RTA_OIF, else the first next hop of RTA_MULTIPATH */
static int route_ifindex(const struct attrs *at, uint32_t *out)
{
	const struct rtattr *mp = at->a[RTA_MULTIPATH];
	const struct rtnexthop *nh;

	if (at->a[RTA_OIF] || !mp)
		return attr_u32(at->a[RTA_OIF], 0, out);
	if (attr_len(mp) < sizeof(*nh))
		return -EPROTO;
	nh = attr_data(mp);
	if (nh->rtnh_len < sizeof(*nh) || nh->rtnh_len > attr_len(mp))
		return -EPROTO;
	*out = (uint32_t)nh->rtnh_ifindex;
	return 0;
}

static int on_route(struct ph_rtnl_model *m, const struct nlmsghdr *h, const void *body,
		    size_t len, unsigned *what)
{
	const struct rtmsg *rtm = body;
	struct ph_rtnl_route r = { 0 };
	size_t hl = NLMSG_ALIGN(sizeof(*rtm));
	uint32_t table;
	struct attrs at;
	int ret;

	if (len < sizeof(*rtm))
		return -EPROTO;
	if ((rtm->rtm_family != AF_INET && rtm->rtm_family != AF_INET6) || rtm->rtm_dst_len)
		return 0;
	ret = parse_attrs((const unsigned char *)body + hl, len > hl ? len - hl : 0, &at);
	if (!ret)
		ret = attr_u32(at.a[RTA_TABLE], rtm->rtm_table, &table);
	if (!ret)
		ret = attr_u32(at.a[RTA_PRIORITY], 0, &r.priority);
	if (!ret)
		ret = route_ifindex(&at, &r.ifindex);
	if (ret)
		return ret;
	if (table != RT_TABLE_MAIN || rtm->rtm_type != RTN_UNICAST)
		return 0;
	r.family = rtm->rtm_family;
	*what |= PH_RTNL_ROUTE;
	/* a replace notification names the new route only: the old one goes */
	routes_remove(m, &r, h->nlmsg_type == RTM_DELROUTE ? !r.ifindex :
			     !!(h->nlmsg_flags & NLM_F_REPLACE));
	if (h->nlmsg_type == RTM_DELROUTE)
		return 0;
	if (ph_array_grow(&m->routes, &m->cap_routes, m->n_routes + 1, sizeof(r), 8))
		return -ENOMEM;
	m->routes[m->n_routes++] = r;
	return 0;
}

/* ---- links ----------------------------------------------------------------- */

static int on_link(struct ph_rtnl_model *m, uint16_t type, const void *body, size_t len)
{
	const struct ifinfomsg *ifi = body;
	struct ph_rtnl_link l = { 0 };
	size_t hl = NLMSG_ALIGN(sizeof(*ifi)), k = 0, nl;
	const struct rtattr *rn;
	struct attrs at;
	int ret;

	if (len < sizeof(*ifi))
		return -EPROTO;
	ret = parse_attrs((const unsigned char *)body + hl, len > hl ? len - hl : 0, &at);
	if (ret)
		return ret;
	l.ifindex = (uint32_t)ifi->ifi_index;
	rn = at.a[IFLA_IFNAME];
	if (rn) {
		nl = strnlen(attr_data(rn), attr_len(rn));
		if (nl >= sizeof(l.name))
			return -EPROTO;
		memcpy(l.name, attr_data(rn), nl);
	}
	for (size_t i = 0; i < m->n_links; i++)
		if (m->links[i].ifindex != l.ifindex)
			m->links[k++] = m->links[i];
	m->n_links = k;
	if (type == RTM_DELLINK || !l.name[0])
		return 0;
	if (ph_array_grow(&m->links, &m->cap_links, m->n_links + 1, sizeof(l), 8))
		return -ENOMEM;
	m->links[m->n_links++] = l;
	return 0;
}

/* ---- datagrams ------------------------------------------------------------- */

static int on_message(struct ph_rtnl_model *m, const struct nlmsghdr *h, unsigned *what)
{
	const void *body = NLMSG_DATA(h);
	size_t len = h->nlmsg_len - NLMSG_HDRLEN;
	int ret;

	switch (h->nlmsg_type) {
	case RTM_NEWADDR:
	case RTM_DELADDR:
		ret = on_addr(m, h->nlmsg_type, body, len);
		if (!ret)
			*what |= PH_RTNL_ADDR | (h->nlmsg_type == RTM_DELADDR ? PH_RTNL_DELADDR : 0);
		return ret;
	case RTM_NEWROUTE:
	case RTM_DELROUTE:
		return on_route(m, h, body, len, what);
	case RTM_NEWLINK:
	case RTM_DELLINK:
		ret = on_link(m, h->nlmsg_type, body, len);
		if (!ret)
			*what |= PH_RTNL_LINK;
		return ret;
	default:
		return 0;	/* NLMSG_NOOP, other families' messages */
	}
}

int ph_rtnl_parse(const void *buf, size_t len, uint32_t seq, struct ph_rtnl_model *m,
		  unsigned *what)
{
	const unsigned char *p = buf;
	bool intr = false;
	int ret;

	while (len > 0) {
		const struct nlmsghdr *h = (const struct nlmsghdr *)(const void *)p;
		size_t step;

		if (len < sizeof(*h) || h->nlmsg_len < NLMSG_HDRLEN || h->nlmsg_len > len)
			return -EPROTO;
		step = NLMSG_ALIGN(h->nlmsg_len);
		if (!seq || h->nlmsg_seq == seq) {
			if (h->nlmsg_flags & NLM_F_DUMP_INTR)
				intr = true;
			if (h->nlmsg_type == NLMSG_DONE) {
				int err = 0;

				if (h->nlmsg_len >= NLMSG_HDRLEN + sizeof(int))
					memcpy(&err, NLMSG_DATA(h), sizeof(err));
				return err < 0 ? err : intr ? -EINTR : 1;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr e;

				if (h->nlmsg_len < NLMSG_HDRLEN + sizeof(e))
					return -EPROTO;
				memcpy(&e, NLMSG_DATA(h), sizeof(e));
				if (e.error > 0 || e.error < -4095)
					return -EPROTO;
				if (e.error)
					return e.error;
			} else {
				ret = on_message(m, h, what);
				if (ret)
					return ret;
			}
		}
		if (step >= len)
			break;
		p += step;
		len -= step;
	}
	return intr ? -EINTR : 0;
}

/* ---- selection -------------------------------------------------------------- */

static bool usable(const struct ph_rtnl_addr *a)
{
	return !(a->flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)) && a->scope != RT_SCOPE_HOST &&
	       a->scope != RT_SCOPE_NOWHERE;
}

static struct ph_ext_addr ext_of(const struct ph_rtnl_addr *a)
{
	struct ph_ext_addr e = { .addr = a->addr };

	if (ph_addr_is_v6_linklocal(&a->addr))
		e.ifindex = a->ifindex;
	return e;
}

/* The interface of @family's default route with the lowest metric, 0: none */
static uint32_t default_if(const struct ph_rtnl_model *m, uint8_t family)
{
	const struct ph_rtnl_route *best = NULL;

	for (size_t i = 0; i < m->n_routes; i++) {
		const struct ph_rtnl_route *r = &m->routes[i];

		if (r->family == family && r->ifindex && (!best || r->priority < best->priority))
			best = r;
	}
	return best ? best->ifindex : 0;
}

/* The defaults: first primary IPv4 address and first global IPv6 address of
 * the interfaces holding each family's default route */
static void select_defaults(const struct ph_rtnl_model *m, struct ph_addr_set *out)
{
	uint32_t if4 = default_if(m, AF_INET), if6 = default_if(m, AF_INET6);
	const struct ph_rtnl_addr *v4 = NULL, *v6 = NULL;

	for (size_t i = 0; i < m->n_addrs; i++) {
		const struct ph_rtnl_addr *a = &m->addrs[i];
		bool is4 = ph_addr_is_v4(&a->addr);

		if (!usable(a))
			continue;
		if (is4 && a->ifindex == if4 &&
		    (!v4 || ((v4->flags & IFA_F_SECONDARY) && !(a->flags & IFA_F_SECONDARY))))
			v4 = a;
		if (!is4 && !v6 && a->ifindex == if6 && a->scope == RT_SCOPE_UNIVERSE)
			v6 = a;
	}
	if (v4) {
		struct ph_ext_addr e = ext_of(v4);

		ph_addr_set_add(out, &e);
	}
	if (v6) {
		struct ph_ext_addr e = ext_of(v6);

		ph_addr_set_add(out, &e);
	}
}

static uint32_t if_by_name(const struct ph_rtnl_model *m, const char *name)
{
	for (size_t i = 0; i < m->n_links; i++)
		if (!strcmp(m->links[i].name, name))
			return m->links[i].ifindex;
	return 0;
}

/* Add what @s names. Return: true when it names something configured */
static bool select_spec(const struct ph_rtnl_model *m, const struct ph_ext_spec *s,
			struct ph_addr_set *out)
{
	uint32_t ifx = s->ifname[0] ? if_by_name(m, s->ifname) : 0;
	bool found = false;

	if (s->ifname[0] && !ifx)
		return false;
	for (size_t i = 0; i < m->n_addrs; i++) {
		const struct ph_rtnl_addr *a = &m->addrs[i];
		struct ph_ext_addr e;

		if (!usable(a))
			continue;
		if (ifx) {
			if (a->ifindex != ifx ||
			    (a->scope != RT_SCOPE_UNIVERSE && a->scope != RT_SCOPE_LINK))
				continue;
		} else if (memcmp(&a->addr, &s->addr, sizeof(a->addr)) ||
			   (s->scope && a->ifindex != s->scope)) {
			continue;
		}
		e = ext_of(a);
		ph_addr_set_add(out, &e);
		found = true;
		if (!ifx)
			break;	/* one address: the first interface that has it */
	}
	return found;
}

uint32_t ph_rtnl_select(const struct ph_rtnl_model *m, const struct ph_ext_spec *specs,
			size_t n, struct ph_addr_set *out)
{
	uint32_t missing = 0;

	memset(out, 0, sizeof(*out));
	if (!n)
		select_defaults(m, out);
	for (size_t i = 0; i < n; i++)
		if (!select_spec(m, &specs[i], out) && i < 32)
			missing |= 1u << i;
	return missing;
}

/* ---- --external-addr ------------------------------------------------------- */

int ph_ext_spec_parse(const char *s, struct ph_ext_spec *out)
{
	char ip[INET6_ADDRSTRLEN];
	const char *pct = strchr(s, '%');
	struct in_addr v4;
	size_t n = pct ? (size_t)(pct - s) : strlen(s);

	memset(out, 0, sizeof(*out));
	if (!n || n >= sizeof(ip))
		goto name;
	memcpy(ip, s, n);
	ip[n] = '\0';
	if (!pct && inet_pton(AF_INET, ip, &v4) == 1) {
		if (!v4.s_addr)
			return -EINVAL;
		ph_addr_from_v4(&out->addr, v4);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &out->addr) == 1) {
		if (IN6_IS_ADDR_UNSPECIFIED(&out->addr) || IN6_IS_ADDR_V4MAPPED(&out->addr))
			return -EINVAL;
		if (!pct)
			return 0;
		if (!ph_addr_is_v6_linklocal(&out->addr) || !pct[1])
			return -EINVAL;
		out->scope = if_nametoindex(pct + 1);
		if (!out->scope && strspn(pct + 1, "0123456789") == strlen(pct + 1))
			out->scope = (uint32_t)strtoul(pct + 1, NULL, 10);
		return out->scope ? 0 : -EINVAL;
	}
name:
	memset(out, 0, sizeof(*out));
	n = strlen(s);
	if (!n || n >= IF_NAMESIZE || strpbrk(s, "/:% \t\n") ||
	    strspn(s, "0123456789.") == n)
		return -EINVAL;
	memcpy(out->ifname, s, n);
	return 0;
}

const char *ph_ext_spec_str(const struct ph_ext_spec *s, char *buf, size_t len)
{
	struct ph_ext_addr a = { .addr = s->addr, .ifindex = s->scope };

	if (s->ifname[0])
		snprintf(buf, len, "%s", s->ifname);
	else
		ph_ext_addr_str(&a, buf, len);
	return buf;
}
