// SPDX-License-Identifier: MIT
/* test_sdnotify.c - fd store protocol text (sdnotify.c) and the daemon's side of the store (fdstore.c) */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "fdstore.h"
#include "log.h"
#include "sdnotify.h"

static socklen_t v4(struct sockaddr_storage *ss, const char *a, unsigned port)
{
	struct sockaddr_in *s = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	s->sin_family = AF_INET;
	s->sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, a, &s->sin_addr);
	return sizeof(*s);
}

static socklen_t v6(struct sockaddr_storage *ss, const char *a, unsigned port, unsigned scope)
{
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	s->sin6_family = AF_INET6;
	s->sin6_port = htons((uint16_t)port);
	s->sin6_scope_id = scope;
	inet_pton(AF_INET6, a, &s->sin6_addr);
	return sizeof(*s);
}

/* format -> parse gives back the same kind and address; names are valid */
static void test_names_roundtrip(void **state)
{
	struct sockaddr_storage ss;
	struct ph_fdname n;
	char name[PH_FDNAME_MAX + 1];

	(void)state;
	v4(&ss, "169.254.0.21", 8000);
	assert_int_equal(ph_fdname_format(name, sizeof(name), PH_FDKIND_TCP, (void *)&ss), 0);
	assert_string_equal(name, "tcp/169.254.0.21/8000");
	assert_true(ph_fdname_valid(name));
	assert_int_equal(ph_fdname_parse(name, &n), 0);
	assert_int_equal(n.kind, PH_FDKIND_TCP);
	assert_true(ph_sockaddr_same((void *)&n.sa, (void *)&ss));

	v6(&ss, "fe80::1", 65535, 7);
	assert_int_equal(ph_fdname_format(name, sizeof(name), PH_FDKIND_UDP, (void *)&ss), 0);
	assert_string_equal(name, "udp/fe80--1%7/65535");
	assert_true(ph_fdname_valid(name));
	assert_int_equal(ph_fdname_parse(name, &n), 0);
	assert_int_equal(n.kind, PH_FDKIND_UDP);
	assert_true(ph_sockaddr_same((void *)&n.sa, (void *)&ss));

	v6(&ss, "fd00::21", 1, 0);
	assert_int_equal(ph_fdname_format(name, sizeof(name), PH_FDKIND_TCP, (void *)&ss), 0);
	assert_string_equal(name, "tcp/fd00--21/1");
	assert_int_equal(ph_fdname_parse(name, &n), 0);
	assert_true(ph_sockaddr_same((void *)&n.sa, (void *)&ss));

	assert_int_equal(ph_fdname_format(name, sizeof(name), PH_FDKIND_API, NULL), 0);
	assert_string_equal(name, "api");
	assert_int_equal(ph_fdname_parse("api", &n), 0);
	assert_int_equal(n.kind, PH_FDKIND_API);

	/* no room, no kind, no family */
	assert_int_equal(ph_fdname_format(name, 8, PH_FDKIND_TCP, (void *)&ss), -ENOSPC);
	assert_int_equal(ph_fdname_format(name, sizeof(name), PH_FDKIND_OTHER, (void *)&ss), -EINVAL);
	ss.ss_family = AF_UNIX;
	assert_int_equal(ph_fdname_format(name, sizeof(name), PH_FDKIND_TCP, (void *)&ss), -EINVAL);
}

static void test_names_rejected(void **state)
{
	static const char *const bad[] = {
		"tcp/", "tcp/1.2.3.4", "tcp/1.2.3.4/", "tcp/1.2.3.4/0", "tcp/1.2.3.4/65536",
		"tcp/1.2.3.4/080", "tcp/1.2.3.4/+80", "tcp/1.2.3.4/8o", "tcp//80", "tcp/1.2.3/80",
		"tcp/1.2.3.4%2/80", "tcp/fe80::1/80", "tcp/fe80--1%/80", "tcp/fe80--1%0/80",
		"tcp/fe80--1%x/80", "tcp/fe80--1%4294967296/80", "tcp/fe80---1/80",
		"udp/example.com/80", "tcp/1.2.3.4/80/90",
	};
	static const char *const other[] = { "", "unknown", "stored", "API", "tcp", "tcp4/1.2.3.4/80",
					     "sctp/1.2.3.4/80" };
	struct ph_fdname n;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (ph_fdname_parse(bad[i], &n) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
		assert_int_equal(n.kind, PH_FDKIND_OTHER);
	}
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		assert_int_equal(ph_fdname_parse(other[i], &n), 0);
		assert_int_equal(n.kind, PH_FDKIND_OTHER);
	}
	/* systemd's rule for names */
	assert_true(ph_fdname_valid(""));
	assert_false(ph_fdname_valid("a:b"));
	assert_false(ph_fdname_valid("a\nb"));
	assert_false(ph_fdname_valid("\x7f"));
	assert_false(ph_fdname_valid(NULL));
	char longname[PH_FDNAME_MAX + 2];

	memset(longname, 'a', sizeof(longname) - 1);
	longname[PH_FDNAME_MAX + 1] = '\0';
	assert_false(ph_fdname_valid(longname));
	longname[PH_FDNAME_MAX] = '\0';
	assert_true(ph_fdname_valid(longname));
}

static void test_fdnames_split(void **state)
{
	char names[4][PH_FDNAME_MAX + 1];

	(void)state;
	assert_int_equal(ph_fdnames_split("api:tcp/1.2.3.4/80:x", 3, names), 0);
	assert_string_equal(names[0], "api");
	assert_string_equal(names[1], "tcp/1.2.3.4/80");
	assert_string_equal(names[2], "x");
	assert_int_equal(ph_fdnames_split("a::b", 3, names), 0);	/* empty names are valid */
	assert_string_equal(names[1], "");
	assert_int_equal(ph_fdnames_split(NULL, 2, names), 0);
	assert_string_equal(names[0], "unknown");
	assert_string_equal(names[1], "unknown");
	assert_int_equal(ph_fdnames_split("a:b", 3, names), -EINVAL);	/* too few */
	assert_int_equal(ph_fdnames_split("a:b:c:d", 3, names), -EINVAL);	/* too many */
	assert_int_equal(ph_fdnames_split("a:b\x01:c", 3, names), -EINVAL);
	assert_int_equal(ph_fdnames_split("", 0, names), 0);
	assert_int_equal(ph_fdnames_split("a", 0, names), -EINVAL);
	assert_int_equal(ph_fdnames_split("", 1, names), 0);
	assert_string_equal(names[0], "");
}

static int parse(const char *s, struct ph_notify *m)
{
	return ph_notify_parse(s, strlen(s), m);
}

static void test_notify_parse(void **state)
{
	struct ph_notify m;

	(void)state;
	assert_int_equal(parse("FDSTORE=1\nFDNAME=tcp/1.2.3.4/80\n", &m), 0);
	assert_true(m.fdstore);
	assert_false(m.fdstore_remove);
	assert_true(m.has_fdname);
	assert_string_equal(m.fdname, "tcp/1.2.3.4/80");

	assert_int_equal(parse("FDSTOREREMOVE=1\nFDNAME=api", &m), 0);	/* no final newline */
	assert_true(m.fdstore_remove);
	assert_string_equal(m.fdname, "api");

	assert_int_equal(parse("READY=1\nSTATUS=x=y\nMAINPID=42\nnoise\n\nX-FOO=1", &m), 0);
	assert_true(m.ready);
	assert_int_equal(m.mainpid, 42);
	assert_false(m.has_fdname);

	assert_int_equal(parse("FDSTORE=0\nREADY=yes\nSTOPPING=1", &m), 0);
	assert_false(m.fdstore);
	assert_false(m.ready);
	assert_true(m.stopping);

	assert_int_equal(parse("FDSTORE=1\nFDNAME=a:b", &m), -EINVAL);
	assert_false(m.fdstore);	/* nothing half-parsed */
	assert_int_equal(parse("MAINPID=0", &m), -EINVAL);
	assert_int_equal(parse("MAINPID=-1", &m), -EINVAL);
	assert_int_equal(parse("MAINPID=99999999999", &m), -EINVAL);
	assert_int_equal(ph_notify_parse("READY=1\0FDSTORE=1", 17, &m), -EINVAL);
	assert_int_equal(ph_notify_parse("", 0, &m), 0);
}

static void test_notify_addr(void **state)
{
	struct sockaddr_un sa;
	socklen_t len;

	(void)state;
	assert_int_equal(ph_notify_addr("/run/systemd/notify", &sa, &len), 0);
	assert_string_equal(sa.sun_path, "/run/systemd/notify");
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 20);
	assert_int_equal(ph_notify_addr("@x/1", &sa, &len), 0);
	assert_int_equal(sa.sun_path[0], '\0');
	assert_memory_equal(sa.sun_path + 1, "x/1", 3);
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 4);
	assert_int_equal(ph_notify_addr("", &sa, &len), -EINVAL);
	assert_int_equal(ph_notify_addr("@", &sa, &len), -EINVAL);
	assert_int_equal(ph_notify_addr("run/x", &sa, &len), -EINVAL);
	assert_int_equal(ph_notify_addr("vsock:2:1", &sa, &len), -EINVAL);
	assert_int_equal(ph_notify_addr(NULL, &sa, &len), -EINVAL);
}

/* ---- fdstore.c with real sockets ----------------------------------------- */

/* A receiving "service manager": an abstract datagram socket */
static int manager(char *env, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	socklen_t sl;

	assert_true(fd >= 0);
	snprintf(env, len, "@ph-test-sdnotify/%d", (int)getpid());
	assert_int_equal(ph_notify_addr(env, &sa, &sl), 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sl), 0);
	return fd;
}

/* Read one message: its text into @buf, its descriptor (or -1) */
static int receive(int mfd, char *buf, size_t len)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = len - 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
			     .msg_controllen = sizeof(ctl.b) };
	ssize_t n = recvmsg(mfd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	struct cmsghdr *c;
	int fd = -1;

	assert_true(n >= 0);
	buf[n] = '\0';
	c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(c), sizeof(fd));
	return fd;
}

static int tcp_listener(struct sockaddr_storage *ss)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	socklen_t sl = sizeof(*ss);

	v4(ss, "127.0.0.1", 0);
	assert_int_equal(bind(fd, (struct sockaddr *)ss, sizeof(struct sockaddr_in)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)ss, &sl), 0);
	return fd;
}

static bool listening(int fd)
{
	int v = 0;
	socklen_t l = sizeof(v);

	return !getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) && v == 1;
}

static bool same_socket(int a, int b)
{
	struct stat x, y;

	return !fstat(a, &x) && !fstat(b, &y) && x.st_ino == y.st_ino && x.st_dev == y.st_dev;
}

/* keep sends the socket with its name; release removes it by name and the
 * store's copy stops listening at once */
static void test_keep_release(void **state)
{
	struct ph_fdstore fs;
	struct sockaddr_storage ss;
	char env[64], msg[512], name[PH_FDNAME_MAX + 1], want[600];
	int mfd = manager(env, sizeof(env)), fd = tcp_listener(&ss), copy;

	(void)state;
	assert_int_equal(ph_fdstore_init_from(&fs, env, NULL, NULL, NULL, 3), 0);
	assert_true(ph_fdstore_active(&fs));
	assert_int_equal(ph_fdstore_keep(&fs, PH_FDKIND_TCP, (struct sockaddr *)&ss, fd), 0);
	copy = receive(mfd, msg, sizeof(msg));
	ph_fdname_format(name, sizeof(name), PH_FDKIND_TCP, (struct sockaddr *)&ss);
	snprintf(want, sizeof(want), "FDSTORE=1\nFDNAME=%s\n", name);
	assert_string_equal(msg, want);
	assert_true(copy >= 0);
	assert_true(same_socket(copy, fd));
	assert_true(listening(copy));

	ph_fdstore_release(&fs, PH_FDKIND_TCP, (struct sockaddr *)&ss, fd);
	assert_int_equal(receive(mfd, msg, sizeof(msg)), -1);
	snprintf(want, sizeof(want), "FDSTOREREMOVE=1\nFDNAME=%s\n", name);
	assert_string_equal(msg, want);
	assert_false(listening(copy));	/* shut down in every copy */
	close(copy);

	assert_int_equal(ph_fdstore_notify(&fs, "READY=1\n"), 0);
	assert_int_equal(receive(mfd, msg, sizeof(msg)), -1);
	assert_string_equal(msg, "READY=1\n");
	ph_fdstore_fini(&fs);
	close(mfd);

	/* no manager: keep does nothing, release still closes */
	assert_int_equal(ph_fdstore_init_from(&fs, NULL, NULL, NULL, NULL, 3), 0);
	assert_false(ph_fdstore_active(&fs));
	fd = tcp_listener(&ss);
	assert_int_equal(ph_fdstore_keep(&fs, PH_FDKIND_TCP, (struct sockaddr *)&ss, fd), 0);
	ph_fdstore_release(NULL, PH_FDKIND_TCP, (struct sockaddr *)&ss, fd);
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	ph_fdstore_fini(&fs);
}

/* Passed descriptors at @first: only those that are what their names say
 * are pooled; take hands them out by address; settle releases the rest */
static void test_adopt(void **state)
{
	struct sockaddr_storage a, b, api, other;
	char pid[16], names[600], na[PH_FDNAME_MAX + 1], nb[PH_FDNAME_MAX + 1];
	struct ph_fdstore fs;
	int base, fds[6], copy_b;
	uint64_t inodes[8];

	(void)state;
	/* a block of free numbers high up, as 3.. would be at exec */
	base = 900;
	fds[0] = tcp_listener(&a);
	fds[1] = tcp_listener(&b);
	fds[2] = tcp_listener(&api);
	fds[3] = tcp_listener(&other);			/* named for another address */
	fds[4] = socket(AF_INET, SOCK_DGRAM, 0);	/* "tcp/" but not a listener */
	fds[5] = open("/dev/null", O_RDONLY);		/* not a socket */
	copy_b = dup(fds[1]);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(dup2(fds[i], base + i), base + i);
		close(fds[i]);
	}
	ph_fdname_format(na, sizeof(na), PH_FDKIND_TCP, (struct sockaddr *)&a);
	ph_fdname_format(nb, sizeof(nb), PH_FDKIND_TCP, (struct sockaddr *)&b);
	snprintf(names, sizeof(names), "%s:%s:api:tcp/127.0.0.1/1:tcp/127.0.0.1/2:api", na, nb);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());

	/* for another process: nothing touched */
	assert_int_equal(ph_fdstore_init_from(&fs, NULL, "1", "6", names, base), 0);
	assert_int_equal(fs.adopted, 0);
	assert_true(fcntl(base, F_GETFD) >= 0);
	ph_fdstore_fini(&fs);

	assert_int_equal(ph_fdstore_init_from(&fs, NULL, pid, "6", names, base), 0);
	assert_int_equal(fs.adopted, 3);		/* a, b, api */
	for (int i = 3; i < 6; i++)
		assert_int_equal(fcntl(base + i, F_GETFD), -1);	/* the others closed */
	assert_int_equal(fcntl(base, F_GETFD), FD_CLOEXEC);
	assert_true(fcntl(base, F_GETFL) & O_NONBLOCK);
	assert_int_equal(ph_fdstore_pool_inodes(&fs, inodes, 8), 3);

	assert_int_equal(ph_fdstore_take(&fs, PH_FDKIND_TCP, (struct sockaddr *)&api), -ENOENT);
	assert_int_equal(ph_fdstore_take(&fs, PH_FDKIND_API, (struct sockaddr *)&api), base + 2);
	assert_int_equal(ph_fdstore_take(&fs, PH_FDKIND_TCP, (struct sockaddr *)&a), base);
	assert_int_equal(ph_fdstore_take(&fs, PH_FDKIND_TCP, (struct sockaddr *)&a), -ENOENT);
	assert_int_equal(ph_fdstore_pool_inodes(&fs, inodes, 8), 1);
	/* b is not taken: released, and stops listening */
	assert_int_equal(ph_fdstore_settle(&fs, 1u << PH_FDKIND_TCP), 1);
	assert_false(listening(copy_b));
	assert_int_equal(ph_fdstore_pool_inodes(&fs, inodes, 8), 0);
	assert_int_equal(ph_fdstore_settle(&fs, 1u << PH_FDKIND_TCP), 0);
	ph_fdstore_fini(&fs);
	close(copy_b);
	close(base);
	close(base + 2);

	/* names that do not match the count: everything passed is closed */
	fds[0] = tcp_listener(&a);
	assert_int_equal(dup2(fds[0], base), base);
	close(fds[0]);
	assert_int_equal(ph_fdstore_init_from(&fs, NULL, pid, "1", "a:b", base), 0);
	assert_int_equal(fs.adopted, 0);
	assert_int_equal(fcntl(base, F_GETFD), -1);
	ph_fdstore_fini(&fs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_roundtrip),
		cmocka_unit_test(test_names_rejected),
		cmocka_unit_test(test_fdnames_split),
		cmocka_unit_test(test_notify_parse),
		cmocka_unit_test(test_notify_addr),
		cmocka_unit_test(test_keep_release),
		cmocka_unit_test(test_adopt),
	};

	ph_log_setup(PH_LOG_TEXT, PH_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
