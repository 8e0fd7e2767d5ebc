// SPDX-License-Identifier: MIT
/* steer.c - steering (--steer): an sk_lookup program hands connections for EXTERNAL:port to
 * the service's own loopback listener; sock_diag counts and destroys those connections
 *
 * Theory of Operation
 * ===================
 * A BPF_PROG_TYPE_SK_LOOKUP program, attached to the daemon's network
 * namespace with a BPF link, runs for every new TCP connection (and UDP
 * datagram; it passes those) before the kernel looks for a listener:
 *
 *   1. key = (family, 0, local address): not in the address map (the
 *      external addresses, kept by exposure.c)? pass;
 *   2. key = (family, local port, zero address): the SOCKHASH holds the
 *      service's listener for steered ports; none? pass;
 *   3. bpf_sk_assign() that listener and release the reference. A listener
 *      of the other family (an IPv4 one for an IPv6 connection) is refused
 *      by the kernel: pass.
 *
 * "pass" means the normal lookup: a relay listener if porthole has one
 * there, else the port answers closed. The connection is then the
 * service's own: it accepts it from its listener, sees the client's real
 * address, and porthole moves no byte.
 *
 * The listener belongs to another process. sock_diag gives its inode; the
 * process holding "socket:[inode]" is found in /proc/PID/fd and
 * pidfd_getfd() copies its descriptor into ours for the map update, after
 * which our copy is closed: the map holds the socket. A restarted service
 * (new inode) is taken again and replaces the entry in place; a closed one
 * is deleted from the map (and the kernel drops closed sockets from
 * SOCKHASHes by itself).
 *
 * Snapshot prepare destroys the steered connections: a sock_diag dump of
 * the TCP sockets not listening, those whose local end is an external
 * address and a steered port, each destroyed with SOCK_DESTROY
 * (CONFIG_INET_DIAG_DESTROY, CAP_NET_ADMIN). ph_steer_open() checks that
 * with a loopback connection of its own before steering anything.
 *
 * The program is assembled here (bpf_asm.h) and loaded without libbpf
 * (bpf_sys.h). Every object belongs to fds of struct ph_steer:
 * ph_steer_close() detaches and frees all of it.
 */
#include "steer.h"
#include "bpf_sys.h"
#include "discovery_listeners.h"
#include "log.h"
#include "netutil.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#define TCPF_NOT_LISTEN	((1u << 1) | (1u << 2) | (1u << 3) | (1u << 4) | (1u << 5) | \
			 (1u << 8) | (1u << 9) | (1u << 11) | (1u << 12))

int ph_steer_diag_parse(const uint8_t *buf, size_t len,
			void (*fn)(const struct inet_diag_msg *m, void *arg), void *arg)
{
	while (len >= sizeof(struct nlmsghdr)) {
		struct nlmsghdr h;
		size_t step;

		memcpy(&h, buf, sizeof(h));
		if (h.nlmsg_len < sizeof(h) || h.nlmsg_len > len)
			return -EPROTO;
		if (h.nlmsg_type == NLMSG_DONE)
			return 1;
		if (h.nlmsg_type == NLMSG_ERROR) {
			struct nlmsgerr e;

			if (h.nlmsg_len < NLMSG_LENGTH(sizeof(e)))
				return -EPROTO;
			memcpy(&e, buf + NLMSG_HDRLEN, sizeof(e));
			/* an errno, or not an answer we understand (an ack is 0) */
			return e.error < 0 && e.error >= -4095 ? e.error : -EPROTO;
		}
		if (h.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
			struct inet_diag_msg m;

			if (h.nlmsg_len < NLMSG_LENGTH(sizeof(m)))
				return -EPROTO;
			memcpy(&m, buf + NLMSG_HDRLEN, sizeof(m));
			fn(&m, arg);
		}
		step = NLMSG_ALIGN(h.nlmsg_len);
		if (step >= len)
			return 0;
		buf += step;
		len -= step;
	}
	return len ? -EPROTO : 0;
}

long ph_steer_sel_find(const struct ph_steer_sel *sel, int family, const void *addr,
		       uint16_t port)
{
	struct ph_ext_addr a;
	unsigned fam = family == AF_INET ? PH_FAM_V4 : PH_FAM_V6;
	bool in = false;

	memset(&a, 0, sizeof(a));
	if (family == AF_INET) {
		struct in_addr v4;

		memcpy(&v4, addr, sizeof(v4));
		ph_addr_from_v4(&a.addr, v4);
	} else {
		memcpy(&a.addr, addr, sizeof(a.addr));
	}
	/* the scope of a link-local address is not in the socket's id */
	for (uint32_t i = 0; i < sel->ext->n && !in; i++)
		in = !memcmp(&sel->ext->a[i].addr, &a.addr, sizeof(a.addr));
	if (!in)
		return -1;
	for (size_t i = 0; i < sel->n; i++)
		if (sel->ports[i] == port && (sel->fams[i] & fam))
			return (long)i;
	return -1;
}

#ifdef PH_HAVE_BPF

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bpf_asm.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open	434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd	438
#endif

const bool ph_steer_built = true;

_Static_assert(sizeof(struct ph_steer_key) == 20, "the program builds 20-byte keys");

#define SOCK_MAX	4096	/* (family, port) pairs steered at once */
#define ADDR_MAX	(2 * PH_MAX_EXT_ADDRS)

/* stack: the key at fp-24 (family at -24, port at -22, address at -20..-5);
 * 4-byte stores only (the verifier wants stack accesses aligned) */
#define FP_KEY		(-24)
#define CTX(f)		((short)offsetof(struct bpf_sk_lookup, f))

/*
 * The program. Jump offsets count instructions after the jump; "pass" is
 * the last two instructions (return SK_PASS).
 */
#define PROG_LEN 48
static void build_prog(struct bpf_insn *p, int addr_fd, int sock_fd)
{
	const struct bpf_insn prog[PROG_LEN] = {
		/* 0 */ MOV_REG(R6, R1),
		LDX(BPF_W, R2, R6, CTX(protocol)),
		JNE_IMM(R2, IPPROTO_TCP, 43),			/* -> pass (46) */
		LDX(BPF_W, R2, R6, CTX(family)),
		STX(BPF_H, FP, R2, FP_KEY),
		ST_IMM(BPF_H, FP, FP_KEY + 2, 0),
		/* 6 */ JNE_IMM(R2, AF_INET, 6),		/* IPv6: -> 13 */
		LDX(BPF_W, R3, R6, CTX(local_ip4)), STX(BPF_W, FP, R3, FP_KEY + 4),
		ST_IMM(BPF_W, FP, FP_KEY + 8, 0), ST_IMM(BPF_W, FP, FP_KEY + 12, 0),
		ST_IMM(BPF_W, FP, FP_KEY + 16, 0),
		/* 12 */ JA(8),					/* -> 21 */
		/* 13 */ LDX(BPF_W, R3, R6, CTX(local_ip6[0])), STX(BPF_W, FP, R3, FP_KEY + 4),
		LDX(BPF_W, R3, R6, CTX(local_ip6[1])), STX(BPF_W, FP, R3, FP_KEY + 8),
		LDX(BPF_W, R3, R6, CTX(local_ip6[2])), STX(BPF_W, FP, R3, FP_KEY + 12),
		LDX(BPF_W, R3, R6, CTX(local_ip6[3])), STX(BPF_W, FP, R3, FP_KEY + 16),
		/* 21: an external address? */
		LD_MAP(R1, addr_fd),
		MOV_REG(R2, FP), ADD_IMM(R2, FP_KEY),
		CALL(BPF_FUNC_map_lookup_elem),
		/* 26 */ JEQ_IMM(R0, 0, 19),			/* -> pass */
		/* 27: key = (family, port, 0) */
		LDX(BPF_W, R3, R6, CTX(local_port)), STX(BPF_H, FP, R3, FP_KEY + 2),
		ST_IMM(BPF_W, FP, FP_KEY + 4, 0), ST_IMM(BPF_W, FP, FP_KEY + 8, 0),
		ST_IMM(BPF_W, FP, FP_KEY + 12, 0), ST_IMM(BPF_W, FP, FP_KEY + 16, 0),
		/* 33 */ LD_MAP(R1, sock_fd),
		MOV_REG(R2, FP), ADD_IMM(R2, FP_KEY),
		CALL(BPF_FUNC_map_lookup_elem),
		/* 38 */ JEQ_IMM(R0, 0, 7),			/* -> pass */
		/* 39: the service's listener (a reference: released after) */
		MOV_REG(R7, R0),
		MOV_REG(R1, R6), MOV_REG(R2, R7), MOV_IMM(R3, 0),
		CALL(BPF_FUNC_sk_assign),	/* fails for a listener of the other family */
		MOV_REG(R1, R7),
		CALL(BPF_FUNC_sk_release),
		/* 46: pass */
		MOV_IMM(R0, SK_PASS),
		EXIT(),
	};

	memcpy(p, prog, sizeof(prog));
}

void ph_steer_init(struct ph_steer *s)
{
	memset(s, 0, sizeof(*s));
	s->addr_fd = s->sock_fd = s->prog_fd = s->link_fd = -1;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void ph_steer_close(struct ph_steer *s)
{
	close_fd(&s->link_fd);
	close_fd(&s->prog_fd);
	close_fd(&s->sock_fd);
	close_fd(&s->addr_fd);
	s->addrs.n = 0;
}

static int diag_open(void)
{
	struct timeval tv = { .tv_sec = 1 };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

struct diag_req {
	struct nlmsghdr h;
	struct inet_diag_req_v2 r;
};

/* A request about @family's TCP sockets in @states */
static void diag_req_init(struct diag_req *q, uint16_t type, uint16_t flags, int family,
			  uint32_t states)
{
	memset(q, 0, sizeof(*q));
	q->h.nlmsg_len = sizeof(*q);
	q->h.nlmsg_type = type;
	q->h.nlmsg_flags = flags;
	q->r.sdiag_family = (uint8_t)family;
	q->r.sdiag_protocol = IPPROTO_TCP;
	q->r.idiag_states = states;
}

/* SOCK_DESTROY the socket @id of @family. Return: 0 or -errno */
static int diag_destroy(int nl, int family, const struct inet_diag_sockid *id)
{
	struct diag_req q;
	uint8_t buf[256];
	ssize_t n;
	int ret;

	diag_req_init(&q, SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, family, ~0u);
	q.r.id = *id;
	if (send(nl, &q, sizeof(q), 0) < 0)
		return -errno;
	n = recv(nl, buf, sizeof(buf), 0);
	if (n < 0)
		return -errno;
	ret = ph_steer_diag_parse(buf, (size_t)n, NULL, NULL);
	/* an ack is an NLMSG_ERROR with error 0: parsed as -EPROTO */
	return ret == -EPROTO ? 0 : ret;
}

/* Does SOCK_DESTROY work here? Destroy one end of a loopback connection of our own. */
static int destroy_probe(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct inet_diag_sockid id;
	socklen_t sl = sizeof(sa);
	uint16_t port;
	int lfd, cfd = -1, nl = -1, ret;

	lfd = ph_loopback_listen(AF_INET, &port);
	if (lfd < 0)
		return lfd;
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons(port);
	if (cfd < 0 || connect(cfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(cfd, (struct sockaddr *)&sa, &sl)) {
		ret = -errno;
		goto out;
	}
	nl = diag_open();
	if (nl < 0) {
		ret = nl;
		goto out;
	}
	memset(&id, 0, sizeof(id));
	id.idiag_sport = sa.sin_port;
	id.idiag_dport = htons(port);
	memcpy(id.idiag_src, &sa.sin_addr, 4);
	memcpy(id.idiag_dst, &sa.sin_addr, 4);	/* both 127.0.0.1 */
	id.idiag_cookie[0] = id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	ret = diag_destroy(nl, AF_INET, &id);
out:
	if (nl >= 0)
		close(nl);
	if (cfd >= 0)
		close(cfd);
	close(lfd);
	return ret;
}

int ph_steer_open(struct ph_steer *s, char *why, size_t len)
{
	struct bpf_insn insns[PROG_LEN];
	int ns, ret;

	ph_steer_init(s);
	ret = destroy_probe();
	if (ret) {
		snprintf(why, len, "sock_diag cannot destroy sockets (%s; needs CAP_NET_ADMIN and "
			 "CONFIG_INET_DIAG_DESTROY): snapshot prepare could not end steered "
			 "connections", ph_strerror(ret));
		return ret;
	}
	s->addr_fd = ph_bpf_map_create(BPF_MAP_TYPE_HASH, sizeof(struct ph_steer_key), 1,
				       ADDR_MAX, 0);
	if (s->addr_fd < 0) {
		ret = s->addr_fd;
		snprintf(why, len, "BPF map: %s (needs CAP_BPF)", ph_strerror(ret));
		goto fail;
	}
	s->sock_fd = ph_bpf_map_create(BPF_MAP_TYPE_SOCKHASH, sizeof(struct ph_steer_key),
				       sizeof(uint64_t), SOCK_MAX, 0);
	if (s->sock_fd < 0) {
		ret = s->sock_fd;
		snprintf(why, len, "SOCKHASH map: %s (needs CAP_NET_ADMIN)", ph_strerror(ret));
		goto fail;
	}
	build_prog(insns, s->addr_fd, s->sock_fd);
	why[0] = 0;
	s->prog_fd = ph_bpf_prog_load(BPF_PROG_TYPE_SK_LOOKUP, BPF_SK_LOOKUP, insns,
				      PROG_LEN, why, len);
	if (s->prog_fd < 0) {
		ret = s->prog_fd;
		if (!why[0])
			snprintf(why, len, "sk_lookup program: %s (needs Linux 5.9, CAP_BPF and "
				 "CAP_NET_ADMIN)", ph_strerror(ret));
		goto fail;
	}
	ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (ns < 0) {
		ret = -errno;
		snprintf(why, len, "/proc/self/ns/net: %s", ph_strerror(ret));
		goto fail;
	}
	s->link_fd = ph_bpf_link_create(s->prog_fd, ns, BPF_SK_LOOKUP);
	close(ns);
	if (s->link_fd < 0) {
		ret = s->link_fd;
		snprintf(why, len, "attaching sk_lookup to the network namespace: %s",
			 ph_strerror(ret));
		goto fail;
	}
	return 0;
fail:
	ph_steer_close(s);
	return ret;
}

static void addr_key(struct ph_steer_key *k, const struct ph_ext_addr *a)
{
	memset(k, 0, sizeof(*k));
	if (ph_ext_addr_fam(a) == PH_FAM_V4) {
		k->family = AF_INET;
		memcpy(k->addr, &a->addr.s6_addr[12], 4);
	} else {
		k->family = AF_INET6;
		memcpy(k->addr, &a->addr, 16);
	}
}

int ph_steer_set_addrs(struct ph_steer *s, const struct ph_addr_set *ext)
{
	struct ph_steer_key k;
	uint8_t one = 1;
	int first = 0, ret;

	if (!ph_steer_on(s))
		return 0;
	for (uint32_t i = 0; i < s->addrs.n; i++)
		if (!ph_addr_set_has(ext, &s->addrs.a[i])) {
			addr_key(&k, &s->addrs.a[i]);
			ph_bpf_map_delete(s->addr_fd, &k);
		}
	for (uint32_t i = 0; i < ext->n; i++) {
		addr_key(&k, &ext->a[i]);
		ret = ph_bpf_map_update(s->addr_fd, &k, &one, BPF_ANY);
		if (ret && !first)
			first = ret;
	}
	s->addrs = *ext;
	return first;
}

int ph_steer_set(struct ph_steer *s, int family, uint16_t port, int fd)
{
	struct ph_steer_key k = { .family = (uint16_t)family, .port = port };
	uint64_t v = (uint64_t)fd;
	int ret;

	if (!ph_steer_on(s))
		return -EOPNOTSUPP;
	if (fd >= 0)
		return ph_bpf_map_update(s->sock_fd, &k, &v, BPF_ANY);
	ret = ph_bpf_map_delete(s->sock_fd, &k);
	return ret == -ENOENT ? 0 : ret;
}

/**
 * find_owner() - a process holding socket @inode, and its fd number
 * @inode:	socket inode
 * @fdnum:	its descriptor there
 * @denied:	incremented per process whose fds we may not read
 *
 * Return: the pid, or 0 when none was found
 */
static pid_t find_owner(uint64_t inode, int *fdnum, unsigned *denied)
{
	char want[40], link[64], path[64];
	DIR *proc = opendir("/proc");
	struct dirent *pe;
	pid_t found = 0;
	int wlen = snprintf(want, sizeof(want), "socket:[%llu]", (unsigned long long)inode);

	if (!proc)
		return 0;
	while (!found && (pe = readdir(proc))) {
		char *end;
		long pid = strtol(pe->d_name, &end, 10);
		struct dirent *fe;
		DIR *fds;
		int dfd;

		if (*end || pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
		dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0) {
			if (errno == EACCES || errno == EPERM)
				(*denied)++;
			continue;
		}
		fds = fdopendir(dfd);
		if (!fds) {
			close(dfd);
			continue;
		}
		while ((fe = readdir(fds))) {
			ssize_t n;

			if (fe->d_name[0] == '.')
				continue;
			n = readlinkat(dirfd(fds), fe->d_name, link, sizeof(link) - 1);
			if (n < 0 && (errno == EACCES || errno == EPERM)) {
				(*denied)++;	/* the directory opens, its links do not */
				break;
			}
			if (n == wlen && !memcmp(link, want, (size_t)n)) {
				*fdnum = atoi(fe->d_name);
				found = (pid_t)pid;
				break;
			}
		}
		closedir(fds);
	}
	closedir(proc);
	return found;
}

int ph_steer_take_listener(uint64_t inode, char *why, size_t len)
{
	unsigned denied = 0;
	int fdnum = -1, pidfd, fd, ret;
	pid_t pid = find_owner(inode, &fdnum, &denied);

	if (!pid) {
		snprintf(why, len, "listener's process not found in /proc/*/fd%s",
			 denied ? " (reading others' fds needs CAP_SYS_PTRACE)" : "");
		return -ESRCH;
	}
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		ret = -errno;
		snprintf(why, len, "pidfd_open(%d): %s", (int)pid, ph_strerror(ret));
		return ret;
	}
	fd = (int)syscall(SYS_pidfd_getfd, pidfd, fdnum, 0);
	ret = fd < 0 ? -errno : 0;
	close(pidfd);
	if (ret) {
		snprintf(why, len, "pidfd_getfd(pid %d): %s%s", (int)pid, ph_strerror(ret),
			 ret == -EPERM ? " (needs CAP_SYS_PTRACE)" : "");
		return ret;
	}
	if (ph_sock_inode(fd) != inode) {	/* the fd number was reused meanwhile */
		close(fd);
		snprintf(why, len, "the listener went away while it was taken");
		return -ESTALE;
	}
	return fd;
}

struct conns_walk {
	const struct ph_steer_sel *sel;
	uint32_t *per_port;
	size_t found;
	/* with destroy: the ids to destroy once the dump is over */
	struct inet_diag_sockid *ids;
	size_t n_ids, cap_ids;
	bool destroy, oom;
};

static void on_conn(const struct inet_diag_msg *m, void *arg)
{
	struct conns_walk *w = arg;
	long i = ph_steer_sel_find(w->sel, m->idiag_family, m->id.idiag_src,
				   ntohs(m->id.idiag_sport));

	if (i < 0)
		return;
	if (w->destroy) {
		if (w->n_ids == w->cap_ids) {
			size_t cap = w->cap_ids ? 2 * w->cap_ids : 64;
			struct inet_diag_sockid *n = realloc(w->ids, cap * sizeof(*n));

			if (!n) {
				w->oom = true;
				return;
			}
			w->ids = n;
			w->cap_ids = cap;
		}
		w->ids[w->n_ids++] = m->id;
	}
	if (w->per_port)
		w->per_port[i]++;
	w->found++;
}

#define DUMP_BUF 32768	/* netlink never builds a larger dump datagram */

/* One dump of @family's TCP sockets that do not listen, into @w */
static int dump_family(int nl, int family, struct conns_walk *w, uint8_t *buf)
{
	struct diag_req q;
	int ret = 0;

	diag_req_init(&q, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, family, TCPF_NOT_LISTEN);
	if (send(nl, &q, sizeof(q), 0) < 0)
		return -errno;
	while (!ret) {
		ssize_t n = recv(nl, buf, DUMP_BUF, 0);

		if (n < 0)
			return -errno;
		ret = ph_steer_diag_parse(buf, (size_t)n, on_conn, w);
	}
	return ret < 0 ? ret : 0;
}

int ph_steer_conns(const struct ph_steer_sel *sel, bool destroy, uint32_t *per_port,
		   size_t *total)
{
	struct conns_walk w = { .sel = sel, .per_port = per_port, .destroy = destroy };
	static const int fams[] = { AF_INET, AF_INET6 };
	uint8_t *buf;
	int nl, ret = 0;

	*total = 0;
	if (!sel->n || !sel->ext->n)
		return 0;
	buf = malloc(DUMP_BUF);
	if (!buf)
		return -ENOMEM;
	nl = diag_open();
	if (nl < 0) {
		free(buf);
		return nl;
	}
	for (size_t f = 0; f < 2 && !ret; f++) {
		size_t before = w.n_ids;

		ret = dump_family(nl, fams[f], &w, buf);
		for (size_t i = before; i < w.n_ids && !ret; i++) {
			int r = diag_destroy(nl, fams[f], &w.ids[i]);

			if (r && r != -ENOENT)	/* closed meanwhile: fine */
				ret = r;
		}
	}
	close(nl);
	free(buf);
	free(w.ids);
	if (!ret && w.oom)
		ret = -ENOMEM;
	*total = w.found;
	return ret;
}

#else /* !PH_HAVE_BPF */

const bool ph_steer_built = false;

void ph_steer_init(struct ph_steer *s)
{
	memset(s, 0, sizeof(*s));
	s->addr_fd = s->sock_fd = s->prog_fd = s->link_fd = -1;
}

int ph_steer_open(struct ph_steer *s, char *why, size_t len)
{
	ph_steer_init(s);
	snprintf(why, len, "built without BPF");
	return -EOPNOTSUPP;
}

void ph_steer_close(struct ph_steer *s)
{
	(void)s;
}

int ph_steer_set_addrs(struct ph_steer *s, const struct ph_addr_set *ext)
{
	(void)s;
	(void)ext;
	return 0;
}

int ph_steer_set(struct ph_steer *s, int family, uint16_t port, int fd)
{
	(void)s;
	(void)family;
	(void)port;
	(void)fd;
	return -EOPNOTSUPP;
}

int ph_steer_take_listener(uint64_t inode, char *why, size_t len)
{
	(void)inode;
	snprintf(why, len, "built without BPF");
	return -EOPNOTSUPP;
}

int ph_steer_conns(const struct ph_steer_sel *sel, bool destroy, uint32_t *per_port,
		   size_t *total)
{
	(void)sel;
	(void)destroy;
	(void)per_port;
	*total = 0;
	return 0;
}

#endif /* PH_HAVE_BPF */
