// SPDX-License-Identifier: MIT
/* test_uffd_server.c - memory file map, fill primitive and fault thread on a real uffd
 *
 * The test process plays both sides: it owns a userfaultfd-registered region
 * and runs the server threads against it. Needs root or
 * vm.unprivileged_userfaultfd=1; skipped otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "uffd.h"

#define MiB (1ul << 20)
#define SIZE (4 * MiB)

static char path[] = "/tmp/test_uffd_server.XXXXXX";
static struct ph_uffd_memfile mf;

/* 4 MiB: data [0, 1M), hole [1M, 2M), data [2M, 4M) */
static int setup(void **state)
{
	uint8_t *buf = malloc(MiB);
	int fd = mkstemp(path);

	(void)state;
	if (fd < 0 || !buf || ftruncate(fd, SIZE) < 0)
		return -1;
	for (size_t i = 0; i < MiB; i++)
		buf[i] = (uint8_t)(i * 7 + i / 4096 + 1);
	if (pwrite(fd, buf, MiB, 0) != (ssize_t)MiB ||
	    pwrite(fd, buf, MiB, 2 * MiB) != (ssize_t)MiB ||
	    pwrite(fd, buf, MiB, 3 * MiB) != (ssize_t)MiB)
		return -1;
	close(fd);
	free(buf);
	return ph_uffd_memfile_open(&mf, path);
}

static int teardown(void **state)
{
	(void)state;
	ph_uffd_memfile_close(&mf);
	unlink(path);
	return 0;
}

static int make_uffd(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -1;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static uint8_t *map_registered(int uffd)
{
	uint8_t *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffdio_register rg = { .range = { (uint64_t)(uintptr_t)p, SIZE },
				      .mode = UFFDIO_REGISTER_MODE_MISSING };

	assert_true(p != MAP_FAILED);
	assert_int_equal(ioctl(uffd, UFFDIO_REGISTER, &rg), 0);
	return p;
}

static struct ph_uffd_region region_at(const uint8_t *p)
{
	return (struct ph_uffd_region){ .base = (uint64_t)(uintptr_t)p, .size = SIZE,
					.offset = 0, .page_size = 4096 };
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static uint64_t ld(atomic_uint_fast64_t *c)
{
	return atomic_load(c);
}

static void test_memfile_map(void **state)
{
	uint64_t end;

	(void)state;
	assert_int_equal(mf.size, SIZE);
	assert_int_equal(mf.next, 2);
	assert_int_equal(ph_uffd_memfile_data_bytes(&mf), 3 * MiB);
	assert_true(ph_uffd_memfile_run(&mf, 0, SIZE, &end));
	assert_int_equal(end, MiB);
	assert_true(ph_uffd_memfile_run(&mf, 4096, 8192, &end));
	assert_int_equal(end, 8192);
	assert_false(ph_uffd_memfile_run(&mf, MiB, SIZE, &end));
	assert_int_equal(end, 2 * MiB);
	assert_false(ph_uffd_memfile_run(&mf, MiB + 4096, MiB + 8192, &end));
	assert_int_equal(end, MiB + 8192);
	assert_true(ph_uffd_memfile_run(&mf, 2 * MiB, SIZE, &end));
	assert_int_equal(end, SIZE);
}

/* faults from this thread, served by the fault thread: every byte, holes, REMOVE */
static void test_fault_thread(void **state)
{
	struct ph_uffd_server s;
	struct ph_uffd_region r;
	int uffd = make_uffd();
	uint8_t *p;

	(void)state;
	if (uffd < 0)
		skip();
	p = map_registered(uffd);
	r = region_at(p);
	assert_int_equal(ph_uffd_server_init(&s, uffd, &mf, &r, 1), 0);
	s.record = true;
	assert_int_equal(ph_uffd_server_start(&s), 0);
	assert_memory_equal(p, mf.map, SIZE);	/* one fault a page */
	/* the faulting thread is woken before the server books the page: wait */
	for (int i = 0; i < 500 && !atomic_load(&s.populated_ns); i++)
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	assert_true(atomic_load(&s.populated_ns) > 0);
	assert_int_equal(ld(&s.c.zero_pages), MiB / 4096);
	/* balloon: the range reads as zeros afterwards, never file data again */
	assert_int_equal(madvise(p + 64 * 1024, 64 * 1024, MADV_DONTNEED), 0);
	assert_true(all_zero(p + 64 * 1024, 64 * 1024));
	assert_memory_equal(p, mf.map, 64 * 1024);
	ph_uffd_server_stop(&s);
	assert_int_equal(ld(&s.c.faults), SIZE / 4096 + 16);
	assert_int_equal(ld(&s.c.removed_ranges), 1);
	assert_int_equal(ld(&s.c.removed_bytes), 64 * 1024);
	assert_int_equal(s.nrec, SIZE / 4096);	/* refaults of removed pages are not the working set */
	assert_int_equal(s.rec[0], 0);
	assert_int_equal(s.rec[5], 5 * 4096);
	assert_true(s.lat.n == SIZE / 4096 + 16);
	ph_uffd_server_destroy(&s);
	munmap(p, SIZE);
	close(uffd);
}

/* prefetch all: everything present without a single fault */
static void test_prefetch_all(void **state)
{
	struct ph_uffd_server s;
	struct ph_uffd_region r;
	int uffd = make_uffd();
	uint8_t *p;

	(void)state;
	if (uffd < 0)
		skip();
	p = map_registered(uffd);
	r = region_at(p);
	assert_int_equal(ph_uffd_server_init(&s, uffd, &mf, &r, 1), 0);
	s.prefetch = PH_PREFETCH_ALL;
	s.pf_threads = 2;
	assert_int_equal(ph_uffd_server_start(&s), 0);
	for (int i = 0; i < 500 && !atomic_load(&s.prefetch_done_ns); i++)
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	assert_true(atomic_load(&s.prefetch_done_ns) > 0);
	/* holes count as populated, but prefetch installed none of them */
	assert_true(atomic_load(&s.populated_ns) > 0);
	assert_int_equal(ld(&s.c.zero_pages), 0);
	assert_int_equal(s.reg[0].state[MiB / 4096], PH_PG_HOLE);
	/* reading faults the hole pages in, as zeros */
	assert_memory_equal(p, mf.map, SIZE);
	ph_uffd_server_stop(&s);
	assert_int_equal(ld(&s.c.faults), MiB / 4096);
	assert_int_equal(ld(&s.c.bytes_prefetched), SIZE - MiB);
	assert_int_equal(ld(&s.c.zero_pages), MiB / 4096);
	ph_uffd_server_destroy(&s);
	munmap(p, SIZE);
	close(uffd);
}

/* the fill primitive on its own: EEXIST, partial copies, skipping */
static void test_fill_races(void **state)
{
	struct ph_uffd_server s;
	struct ph_uffd_region r;
	int uffd = make_uffd();
	uint64_t done, ioctls;
	uint8_t *p;

	(void)state;
	if (uffd < 0)
		skip();
	p = map_registered(uffd);
	r = region_at(p);
	assert_int_equal(ph_uffd_server_init(&s, uffd, &mf, &r, 1), 0);
	/* page 5 present; a 16-page copy stops there (EAGAIN, partial), skips it, goes on */
	assert_int_equal(ph_uffd_fill(&s, &s.reg[0], r.base + 5 * 4096, 4096, 0, &done), 0);
	assert_int_equal(done, 4096);
	assert_int_equal(ph_uffd_fill(&s, &s.reg[0], r.base, 16 * 4096, 0, &done), 0);
	assert_int_equal(done, 16 * 4096);
	assert_int_equal(ld(&s.c.eexist), 1);
	/* present pages are skipped by prefetch without any ioctl */
	ioctls = ld(&s.c.ioctls);
	assert_int_equal(ph_uffd_fill(&s, &s.reg[0], r.base, 16 * 4096, PH_FILL_SKIP_PRESENT,
				      &done), 0);
	assert_int_equal(ld(&s.c.ioctls), ioctls);
	/* prefetch leaves holes alone: no ioctl, the pages are marked holes */
	ioctls = ld(&s.c.ioctls);
	assert_int_equal(ph_uffd_fill(&s, &s.reg[0], r.base + MiB, 2 * 4096, PH_FILL_SKIP_PRESENT,
				      &done), 0);
	assert_int_equal(done, 2 * 4096);
	assert_int_equal(ld(&s.c.ioctls), ioctls);
	assert_int_equal(s.reg[0].state[MiB / 4096 + 1], PH_PG_HOLE);
	/* a run crossing into the hole: copy then zeropage */
	assert_int_equal(ph_uffd_fill(&s, &s.reg[0], r.base + MiB - 8192, 4 * 4096, 0, &done), 0);
	assert_int_equal(ld(&s.c.zero_pages), 2);
	/* all of it is there now: reading cannot fault (no fault thread runs) */
	assert_memory_equal(p, mf.map, 16 * 4096);
	assert_memory_equal(p + MiB - 8192, mf.map + MiB - 8192, 4 * 4096);
	assert_true(all_zero(p + MiB, 8192));
	ph_uffd_server_destroy(&s);
	munmap(p, SIZE);
	close(uffd);
}

struct remover {
	uint8_t *p;
	size_t len;
};

static void *do_madvise(void *arg)
{
	struct remover *rm = arg;

	madvise(rm->p, rm->len, MADV_DONTNEED);	/* blocks until the REMOVE is read */
	return NULL;
}

/* an unread REMOVE makes every ioctl EAGAIN; after it is read, the range is zero */
static void test_eagain_on_remove(void **state)
{
	struct ph_uffd_server s;
	struct ph_uffd_region r;
	struct remover rm;
	struct uffd_msg m;
	pthread_t t;
	int uffd = make_uffd();
	uint64_t done;
	uint8_t *p;

	(void)state;
	if (uffd < 0)
		skip();
	p = map_registered(uffd);
	r = region_at(p);
	assert_int_equal(ph_uffd_server_init(&s, uffd, &mf, &r, 1), 0);
	assert_int_equal(ph_uffd_fill(&s, &s.reg[0], r.base, 8 * 4096, 0, &done), 0);
	rm = (struct remover){ p, 4 * 4096 };
	assert_int_equal(pthread_create(&t, NULL, do_madvise, &rm), 0);
	assert_int_equal(poll(&(struct pollfd){ .fd = uffd, .events = POLLIN }, 1, 5000), 1);
	assert_int_equal(ph_uffd_fill(&s, &s.reg[0], r.base + 16 * 4096, 4096, 0, &done), -EAGAIN);
	assert_int_equal(done, 0);
	assert_int_equal(ld(&s.c.eagain), 1);
	assert_int_equal(read(uffd, &m, sizeof(m)), sizeof(m));
	assert_int_equal(m.event, UFFD_EVENT_REMOVE);
	ph_uffd_server_remove(&s, m.arg.remove.start, m.arg.remove.end);
	pthread_join(t, NULL);
	/* removed pages come back as zeros, the others from the file */
	assert_int_equal(ph_uffd_fill(&s, &s.reg[0], r.base, 32 * 4096, 0, &done), 0);
	assert_true(all_zero(p, 4 * 4096));
	assert_memory_equal(p + 4 * 4096, mf.map + 4 * 4096, 28 * 4096);
	ph_uffd_server_destroy(&s);
	munmap(p, SIZE);
	close(uffd);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* the features Firecracker enabled are read back from the uffd */
static void test_event_remove_feature(void **state)
{
	struct uffdio_api api = { .api = UFFD_API };
	int with = make_uffd(), without;

	(void)state;
	if (with < 0)
		skip();
	without = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	assert_true(without >= 0);
	assert_int_equal(ioctl(without, UFFDIO_API, &api), 0);
	assert_true(ph_uffd_has_event_remove(with));
	assert_false(ph_uffd_has_event_remove(without));
	close(with);
	close(without);
}

/*
 * A prefetch step decided after a REMOVE was read but before it was applied
 * would copy file data behind the zap. The fault thread is held (test hook)
 * between reading the REMOVE and applying it; a prefetch step started then
 * waits at the gate, sees the pages removed and skips them: they read zeros.
 */
static void test_gate_remove_vs_prefetch(void **state)
{
	struct ph_uffd_server s;
	struct ph_uffd_region r;
	struct remover rm;
	pthread_t t;
	int uffd = make_uffd();
	uint64_t done, t0;
	uint8_t *p;

	(void)state;
	if (uffd < 0)
		skip();
	p = map_registered(uffd);
	r = region_at(p);
	assert_int_equal(ph_uffd_server_init(&s, uffd, &mf, &r, 1), 0);
	assert_true(s.gate.on);
	s.test_remove_delay_ms = 300;
	assert_int_equal(ph_uffd_server_start(&s), 0);
	rm = (struct remover){ p, 4 * 4096 };
	assert_int_equal(pthread_create(&t, NULL, do_madvise, &rm), 0);
	pthread_join(t, NULL);	/* the REMOVE is read and the range zapped */
	t0 = mono_ms();
	ph_uffd_gate_copy_begin(&s);
	assert_true(mono_ms() - t0 >= 100);	/* held until the REMOVE was applied */
	assert_int_equal(ph_uffd_fill(&s, &s.reg[0], r.base, 8 * 4096, PH_FILL_SKIP_PRESENT,
				      &done), 0);
	ph_uffd_gate_copy_end(&s);
	assert_int_equal(ld(&s.c.gate_waits), 1);
	assert_int_equal(ld(&s.c.pages_prefetched), 4);
	assert_true(all_zero(p, 4 * 4096));	/* faulted in: zeros */
	assert_memory_equal(p + 4 * 4096, mf.map + 4 * 4096, 4 * 4096);
	ph_uffd_server_stop(&s);
	ph_uffd_server_destroy(&s);
	munmap(p, SIZE);
	close(uffd);
}

/* the owner's mm is gone: ESRCH */
static void test_esrch(void **state)
{
	struct ph_uffd_server s;
	struct ph_uffd_region r;
	int sv[2], uffd, st;
	uint64_t base, done;
	pid_t pid;
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr a;
	} ctl;
	struct iovec iov = { &base, sizeof(base) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
			      .msg_controllen = sizeof(ctl.b) };

	(void)state;
	uffd = make_uffd();
	if (uffd < 0)
		skip();
	close(uffd);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = make_uffd();
		uint8_t *p = map_registered(fd);
		struct cmsghdr *c;

		base = (uint64_t)(uintptr_t)p;
		msg.msg_controllen = CMSG_SPACE(sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
		_exit(sendmsg(sv[1], &msg, 0) == sizeof(base) ? 0 : 1);
	}
	assert_int_equal(recvmsg(sv[0], &msg, 0), sizeof(base));
	memcpy(&uffd, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(int));
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(WEXITSTATUS(st), 0);
	r = (struct ph_uffd_region){ .base = base, .size = SIZE, .offset = 0, .page_size = 4096 };
	assert_int_equal(ph_uffd_server_init(&s, uffd, &mf, &r, 1), 0);
	assert_int_equal(ph_uffd_fill(&s, &s.reg[0], base, 4096, 0, &done), -ESRCH);
	ph_uffd_server_destroy(&s);
	close(uffd);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memfile_map),
		cmocka_unit_test(test_fault_thread),
		cmocka_unit_test(test_prefetch_all),
		cmocka_unit_test(test_fill_races),
		cmocka_unit_test(test_eagain_on_remove),
		cmocka_unit_test(test_esrch),
		cmocka_unit_test(test_event_remove_feature),
		cmocka_unit_test(test_gate_remove_vs_prefetch),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
