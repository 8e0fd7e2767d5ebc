// SPDX-License-Identifier: MIT
/* handover_state.c - encode and parse the versioned upgrade state (pure: no I/O, no descriptors)
 *
 * Layout (little-endian; docs/design.md, "Upgrades"):
 *
 *   "PHHO" u32 version u32 n_fds
 *   u32 argc      { u32 len, bytes }                       the command line
 *   u32 n         { u64 }                                  counters
 *   u32 n         { u32 fd, u16 len, name }                listeners
 *   u32 n         { u16 port, u8 proto, u8 state, i64 since_ms, u64 cap_hits }
 *   u32 n         { u32 fd[2], u8 family, u16 port, u8 addr[16], u32 scope,
 *                   u8 flags, u32 idle_ms,
 *                   2 x { u32 pipe[2], u32 pipe_len, u32 pipe_cap, u8 flags,
 *                         u32 buf_len, bytes } }              relays
 *
 * The parser trusts nothing: counts are bounded by the bytes left, every
 * descriptor index must be below n_fds and appear once (the importer takes
 * ownership of each), names must be valid fd store names.
 */
#include "handover_state.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* ---- writer ---------------------------------------------------------------- */

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

static void w_raw(struct wbuf *w, const void *src, size_t n)
{
	if (w->oom)
		return;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		uint8_t *p;

		while (cap < w->len + n)
			cap *= 2;
		p = realloc(w->p, cap);
		if (!p) {
			w->oom = true;
			return;
		}
		w->p = p;
		w->cap = cap;
	}
	memcpy(w->p + w->len, src, n);
	w->len += n;
}

static void w_uint(struct wbuf *w, uint64_t v, size_t bytes)
{
	uint8_t b[8];

	for (size_t i = 0; i < bytes; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	w_raw(w, b, bytes);
}

#define w_u8(w, v)	w_uint(w, v, 1)
#define w_u16(w, v)	w_uint(w, v, 2)
#define w_u32(w, v)	w_uint(w, v, 4)
#define w_u64(w, v)	w_uint(w, v, 8)

static int w_addr(struct wbuf *w, const struct sockaddr_storage *ss)
{
	uint8_t addr[16] = { 0 };
	uint32_t scope = 0;
	uint16_t port;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;

		memcpy(addr, &s->sin_addr, 4);
		port = ntohs(s->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;

		memcpy(addr, &s->sin6_addr, 16);
		port = ntohs(s->sin6_port);
		scope = s->sin6_scope_id;
	} else {
		return -EINVAL;
	}
	w_u8(w, ss->ss_family == AF_INET ? 4 : 6);
	w_u16(w, port);
	w_raw(w, addr, sizeof(addr));
	w_u32(w, scope);
	return 0;
}

int ph_ho_encode(const struct ph_ho_state *s, uint8_t **out, size_t *len)
{
	struct wbuf w = { 0 };

	if (s->n_counters > PH_HO_MAX_COUNTERS)
		return -EINVAL;
	w_raw(&w, PH_HO_MAGIC, 4);
	w_u32(&w, s->version);
	w_u32(&w, s->n_fds);
	w_u32(&w, s->argc);
	for (size_t i = 0; i < s->argc; i++) {
		size_t n = strlen(s->argv[i]);

		w_u32(&w, n);
		w_raw(&w, s->argv[i], n);
	}
	w_u32(&w, s->n_counters);
	for (size_t i = 0; i < s->n_counters; i++)
		w_u64(&w, s->counters[i]);
	w_u32(&w, s->n_socks);
	for (size_t i = 0; i < s->n_socks; i++) {
		size_t n = strnlen(s->socks[i].name, PH_FDNAME_MAX);

		w_u32(&w, s->socks[i].fd);
		w_u16(&w, n);
		w_raw(&w, s->socks[i].name, n);
	}
	w_u32(&w, s->n_ports);
	for (size_t i = 0; i < s->n_ports; i++) {
		const struct ph_ho_port *p = &s->ports[i];

		w_u16(&w, p->port);
		w_u8(&w, p->proto);
		w_u8(&w, p->state);
		w_u64(&w, (uint64_t)p->since_ms);
		w_u64(&w, p->cap_hits);
	}
	w_u32(&w, s->n_relays);
	for (size_t i = 0; i < s->n_relays; i++) {
		const struct ph_ho_relay *r = &s->relays[i];

		w_u32(&w, r->fd[0]);
		w_u32(&w, r->fd[1]);
		if (w_addr(&w, &r->target)) {
			free(w.p);
			return -EINVAL;
		}
		w_u8(&w, r->flags);
		w_u32(&w, r->idle_ms);
		for (int d = 0; d < 2; d++) {
			const struct ph_ho_dir *x = &r->dir[d];

			w_u32(&w, x->pipe[0]);
			w_u32(&w, x->pipe[1]);
			w_u32(&w, x->pipe_len);
			w_u32(&w, x->pipe_cap);
			w_u8(&w, x->flags);
			w_u32(&w, x->buf_len);
			if (x->buf_len)
				w_raw(&w, x->buf, x->buf_len);
		}
	}
	if (w.oom) {
		free(w.p);
		return -ENOMEM;
	}
	*out = w.p;
	*len = w.len;
	return 0;
}

/* ---- reader ---------------------------------------------------------------- */

struct rbuf {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static const uint8_t *r_raw(struct rbuf *r, size_t n)
{
	const uint8_t *p = r->p;

	if (r->bad || n > r->left) {
		r->bad = true;
		return NULL;
	}
	r->p += n;
	r->left -= n;
	return p;
}

static uint64_t r_uint(struct rbuf *r, size_t bytes)
{
	const uint8_t *b = r_raw(r, bytes);
	uint64_t v = 0;

	for (size_t i = 0; b && i < bytes; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

#define r_u8(r)		((uint8_t)r_uint(r, 1))
#define r_u16(r)	((uint16_t)r_uint(r, 2))
#define r_u32(r)	((uint32_t)r_uint(r, 4))
#define r_u64(r)	r_uint(r, 8)

/* A count of items of at least @min bytes each: never more than the bytes left allow */
static size_t r_count(struct rbuf *r, size_t min, size_t max)
{
	uint32_t n = r_u32(r);

	if (n > max || (min && n > r->left / min))
		r->bad = true;
	return r->bad ? 0 : n;
}

static void r_addr(struct rbuf *r, struct sockaddr_storage *ss, socklen_t *len)
{
	uint8_t fam = r_u8(r);
	uint16_t port = r_u16(r);
	const uint8_t *addr = r_raw(r, 16);
	uint32_t scope = r_u32(r);

	memset(ss, 0, sizeof(*ss));
	if (r->bad)
		return;
	if (fam == 4) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;

		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		memcpy(&s->sin_addr, addr, 4);
		*len = sizeof(*s);
	} else if (fam == 6) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;

		s->sin6_family = AF_INET6;
		s->sin6_port = htons(port);
		memcpy(&s->sin6_addr, addr, 16);
		s->sin6_scope_id = scope;
		*len = sizeof(*s);
	} else {
		r->bad = true;
	}
}

/* Mark descriptor index @i used; an index out of range or used twice is bad */
static void use_fd(struct rbuf *r, uint8_t *used, uint32_t n_fds, uint32_t i, bool optional)
{
	if (optional && i == PH_HO_NONE)
		return;
	if (i >= n_fds || (used[i / 8] & (1u << (i % 8)))) {
		r->bad = true;
		return;
	}
	used[i / 8] |= (uint8_t)(1u << (i % 8));
}

uint32_t ph_ho_version(const uint8_t *data, size_t len)
{
	struct rbuf r = { .p = data, .left = len };
	const uint8_t *m = r_raw(&r, 4);
	uint32_t v = r_u32(&r);

	return !r.bad && !memcmp(m, PH_HO_MAGIC, 4) ? v : 0;
}

static void parse_dir(struct rbuf *r, struct ph_ho_dir *x, uint8_t *used, uint32_t n_fds)
{
	x->pipe[0] = r_u32(r);
	x->pipe[1] = r_u32(r);
	x->pipe_len = r_u32(r);
	x->pipe_cap = r_u32(r);
	x->flags = r_u8(r);
	x->buf_len = r_u32(r);
	if (r->bad)
		return;
	if ((x->pipe[0] == PH_HO_NONE) != (x->pipe[1] == PH_HO_NONE) ||
	    (x->flags & ~PH_HO_DIR_FLAGS) || x->buf_len > PH_HO_MAX_BUF ||
	    x->pipe_len > x->pipe_cap || (x->pipe[0] == PH_HO_NONE && x->pipe_len) ||
	    (x->pipe[0] != PH_HO_NONE && x->buf_len)) {
		r->bad = true;
		return;
	}
	use_fd(r, used, n_fds, x->pipe[0], true);
	use_fd(r, used, n_fds, x->pipe[1], true);
	x->buf = x->buf_len ? r_raw(r, x->buf_len) : NULL;
}

static void parse_body(struct rbuf *r, struct ph_ho_state *s, uint8_t *used)
{
	s->argc = r_count(r, 4, PH_HO_MAX_ARGS);
	s->argv = calloc(s->argc + 1, sizeof(*s->argv));
	if (!s->argv) {
		r->bad = true;
		return;
	}
	for (size_t i = 0; i < s->argc && !r->bad; i++) {
		uint32_t n = r_u32(r);
		const uint8_t *b = n <= PH_HO_MAX_ARG ? r_raw(r, n) : NULL;

		if (!b || memchr(b, '\0', n) || !(s->argv[i] = strndup((const char *)b, n)))
			r->bad = true;
	}
	s->n_counters = r_count(r, 8, PH_HO_MAX_COUNTERS);
	for (size_t i = 0; i < s->n_counters; i++)
		s->counters[i] = r_u64(r);

	s->n_socks = r_count(r, 6, PH_HO_MAX_FDS);
	s->socks = calloc(s->n_socks ? s->n_socks : 1, sizeof(*s->socks));
	if (!s->socks)
		r->bad = true;
	for (size_t i = 0; i < s->n_socks && !r->bad; i++) {
		struct ph_ho_sock *k = &s->socks[i];
		uint16_t n;
		const uint8_t *b;

		k->fd = r_u32(r);
		n = r_u16(r);
		b = n <= PH_FDNAME_MAX ? r_raw(r, n) : NULL;
		if (!b) {
			r->bad = true;
			break;
		}
		memcpy(k->name, b, n);
		k->name[n] = '\0';
		if (!ph_fdname_valid(k->name))
			r->bad = true;
		use_fd(r, used, s->n_fds, k->fd, false);
	}

	s->n_ports = r_count(r, 20, 2 * 65536);
	s->ports = calloc(s->n_ports ? s->n_ports : 1, sizeof(*s->ports));
	if (!s->ports)
		r->bad = true;
	for (size_t i = 0; i < s->n_ports && !r->bad; i++) {
		struct ph_ho_port *p = &s->ports[i];

		p->port = r_u16(r);
		p->proto = r_u8(r);
		p->state = r_u8(r);
		p->since_ms = (int64_t)r_u64(r);
		p->cap_hits = r_u64(r);
		if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
			r->bad = true;
	}

	s->n_relays = r_count(r, 8 + 23 + 5 + 2 * 21, PH_HO_MAX_FDS);
	s->relays = calloc(s->n_relays ? s->n_relays : 1, sizeof(*s->relays));
	if (!s->relays)
		r->bad = true;
	for (size_t i = 0; i < s->n_relays && !r->bad; i++) {
		struct ph_ho_relay *x = &s->relays[i];

		x->fd[0] = r_u32(r);
		x->fd[1] = r_u32(r);
		use_fd(r, used, s->n_fds, x->fd[0], false);
		use_fd(r, used, s->n_fds, x->fd[1], false);
		r_addr(r, &x->target, &x->tlen);
		x->flags = r_u8(r);
		x->idle_ms = r_u32(r);
		if (x->flags & ~PH_HO_RELAY_FLAGS)
			r->bad = true;
		for (int d = 0; d < 2 && !r->bad; d++)
			parse_dir(r, &x->dir[d], used, s->n_fds);
	}
	if (r->left)
		r->bad = true;	/* nothing may follow */
}

int ph_ho_parse(const uint8_t *data, size_t len, struct ph_ho_state *s)
{
	struct rbuf r = { .p = data, .left = len };
	uint8_t *used;

	memset(s, 0, sizeof(*s));
	s->version = ph_ho_version(data, len);
	if (!s->version)
		return -EINVAL;
	if (s->version != PH_HO_VERSION)
		return -EPROTO;
	r_raw(&r, 8);
	s->n_fds = r_u32(&r);
	if (s->n_fds > PH_HO_MAX_FDS)
		return -EINVAL;
	used = calloc(s->n_fds / 8 + 1, 1);
	if (!used)
		return -ENOMEM;
	parse_body(&r, s, used);
	free(used);
	return r.bad ? -EINVAL : 0;
}

void ph_ho_state_free(struct ph_ho_state *s)
{
	if (s->argv)
		for (size_t i = 0; i < s->argc; i++)
			free(s->argv[i]);
	free(s->argv);
	free(s->socks);
	free(s->ports);
	free(s->relays);
	memset(s, 0, sizeof(*s));
}
