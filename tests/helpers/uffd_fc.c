// SPDX-License-Identifier: MIT
/* uffd_fc.c - plays Firecracker for porthole-uffd tests and benchmarks
 *
 * Theory of Operation
 * ===================
 * "vm" does what Firecracker does on a restore with the Uffd backend:
 * creates a userfaultfd with UFFD_FEATURE_EVENT_REMOVE, maps each guest
 * region private and anonymous (hugetlb for --region SIZE:huge), registers
 * the regions MISSING, connects to the page server and sends the region table
 * as JSON with the uffd as SCM_RIGHTS. Region file offsets are cumulative,
 * as in Firecracker's memory file. Then it runs a workload:
 *   verify    several threads touch every page, each page by one of: a user
 *             read, a user write, a kernel-mode read (write(2) of the page
 *             into a pipe), a kernel-mode write (read(2) from a pipe into the
 *             page); every byte is checked against the memory file. Then
 *             MADV_DONTNEED on some ranges (REMOVE events): they must read as
 *             zeros. With --remove-early a range is removed before anything
 *             touches it, while the other threads fault.
 *   populated wait until every page is resident (mincore), then exit
 *   latency   time N single-page faults in random order; print p50/p99
 *   pct       touch --percent of the pages in a fixed pseudo-random order;
 *             print the time from the handshake to the end
 *   hold      keep everything open until killed (signal tests)
 *   stray     register a range the table does not announce and touch it:
 *             nothing can serve that fault (the --on-fatal tests)
 * Then it exits, which is porthole-uffd's cue to exit too.
 *
 * --release vX.Y (or "main") makes "vm" behave exactly as that Firecracker
 * release does on a Uffd restore; the citations are tag:path:line of
 * firecracker-microvm/firecracker (persist.rs = src/vmm/src/persist.rs):
 *   socket    v1.1-v1.11 send with a UnixStream local that is dropped when
 *             send_uffd_handshake returns: the socket closes right after the
 *             message (v1.1.0:persist.rs:595-597, v1.11.0:persist.rs:601-602).
 *             v1.12+ keep it open with forget(socket) (v1.12.0:persist.rs:580,
 *             v1.16.1:persist.rs:641, main:persist.rs:648).
 *   JSON      v1.1-v1.6 {base_host_virt_addr, size, offset}
 *             (v1.1.0:persist.rs:81-90, v1.6.0:persist.rs:120); v1.7-v1.11 add
 *             page_size_kib (v1.7.0:persist.rs:106), filled from
 *             HugePageConfig::page_size_kib(), which returns bytes
 *             (v1.7.0:src/vmm/src/vmm_config/machine_config.rs:89-93);
 *             v1.12+ send page_size and page_size_kib, both bytes
 *             (v1.12.0:persist.rs:107,112,523-524; v1.16.1:persist.rs:119,124,584-585).
 *   features  only EVENT_REMOVE; v1.1-v1.11 only with a balloon device
 *             (v1.1.0:persist.rs:565-568, v1.11.0:persist.rs:547-550), v1.12+
 *             always (v1.12.0:persist.rs:490, v1.16.1:persist.rs:551,
 *             main:persist.rs:558). Registration is MISSING mode, the crate's
 *             default (v1.11.0:persist.rs:561, v1.16.1:persist.rs:561).
 *   uffd      the syscall; v1.5+ (userfaultfd crate 0.7, CHANGELOG 1.5.0)
 *             open /dev/userfaultfd when the kernel has it (6.1+),
 *             falling back to the syscall (main:CHANGELOG.md:954-956).
 *   memory    private anonymous, MAP_NORESERVE, 4 KiB or hugetlb 2 MiB
 *             (v1.7+; v1.16.1:src/vmm/src/vstate/memory.rs:570); file
 *             offsets cumulative (v1.11.0:persist.rs:577-587).
 *   hot-plug  v1.14+ virtio-mem: the whole hot-plug area is one region,
 *             registered whole; unplugged slots are mprotect(PROT_NONE)
 *             (v1.14.0:src/vmm/src/vstate/memory.rs:167-181) and holes in the
 *             memory file (v1.16.1:docs/memory-hotplug.md:315-326).
 * Options a release does not have (--uffd-dev before v1.5, :huge before
 * v1.7, --unplug before v1.14) are refused, so a test cannot claim more.
 *
 * "bad" sends one kind of malformed handshake and waits for the server to
 * hang up. "baseline" is the reference page-by-page server (one pread and one
 * 4 KiB UFFDIO_COPY per page) against a forked vm; "floor" times
 * mmap(MAP_POPULATE) of anonymous memory.
 *
 * Exit status: 0 pass, 1 a check failed, 2 usage or environment error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif

#define MAX_REG 8
#define MAX_UNPLUG 8
#define HUGE (2ul << 20)

struct reg {
	uint64_t size, offset, ps;
	bool huge;
	uint8_t *base;
};

static struct {
	const char *socket, *mem_file, *workload, *kind, *json_style;
	struct reg r[MAX_REG];
	int nreg, threads, pin, percent, pages;
	bool remove_early, no_remove, fork_holder, balloon, drop_socket;
	const char *release, *uffd_dev;
	int rel;			/* minor version: 1.x -> x; main -> 99; none -> 99 */
	uint64_t unplug[MAX_UNPLUG][2];	/* file ranges [start, start + len) */
	int nunplug;
	uint64_t warm;
	const uint8_t *file;
	uint64_t file_size;
	int uffd;
	uint64_t t_handshake;
} g = { .threads = 4, .pin = -1, .percent = 10, .pages = 20000, .json_style = "new",
	.workload = "verify", .uffd = -1, .rel = 99 };

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) __attribute__((noreturn));
static void die(const char *what)
{
	fprintf(stderr, "uffd_fc: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "uffd_fc: FAIL: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* recycle recently used memory: fault in and free @bytes so the timed run
 * gets warm pages (cold free memory swings timings 2-4x on these VMs) */
static void warm(uint64_t bytes)
{
	void *p;

	if (!bytes)
		return;
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		 -1, 0);
	if (p == MAP_FAILED)
		die("warm mmap");
	munmap(p, bytes);
}

static void pin_to(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		die("sched_setaffinity");
}

/* does this run request UFFD_FEATURE_EVENT_REMOVE? (see the header) */
static bool wants_remove(void)
{
	return g.rel >= 12 || g.balloon;
}

static int make_uffd(void)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = wants_remove() ? UFFD_FEATURE_EVENT_REMOVE : 0 };
	int fd;

	if (g.uffd_dev) {
		int dev = open(g.uffd_dev, O_RDWR | O_CLOEXEC);

		if (dev < 0)
			die("open /dev/userfaultfd");
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
	} else {
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	}
	if (fd < 0)
		die("userfaultfd");
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		die("UFFDIO_API");
	return fd;
}

/* is file offset @off in an unplugged virtio-mem slot? */
static bool unplugged(uint64_t off)
{
	for (int i = 0; i < g.nunplug; i++)
		if (off >= g.unplug[i][0] && off - g.unplug[i][0] < g.unplug[i][1])
			return true;
	return false;
}

/* unplugged slots: PROT_NONE, as Firecracker's virtio-mem leaves them */
static void protect_unplugged(void)
{
	for (int i = 0; i < g.nunplug; i++) {
		for (int ri = 0; ri < g.nreg; ri++) {
			const struct reg *r = &g.r[ri];
			uint64_t a = g.unplug[i][0], e = a + g.unplug[i][1];

			if (a < r->offset || e > r->offset + r->size)
				continue;
			if (mprotect(r->base + (a - r->offset), e - a, PROT_NONE) < 0)
				die("mprotect unplugged slot");
		}
	}
}

/* nothing may have been installed in an unplugged slot (prefetch skips holes) */
static void check_unplugged_empty(void)
{
	for (int i = 0; i < g.nunplug; i++) {
		for (int ri = 0; ri < g.nreg; ri++) {
			const struct reg *r = &g.r[ri];
			uint64_t a = g.unplug[i][0], len = g.unplug[i][1];
			unsigned char *v;

			if (a < r->offset || a + len > r->offset + r->size)
				continue;
			v = malloc(len / 4096);
			if (!v || mincore(r->base + (a - r->offset), len, v) < 0)
				die("mincore");
			for (uint64_t k = 0; k < len / 4096; k++)
				if (v[k] & 1)
					fail("unplugged slot at file offset %llu has resident pages",
					     (unsigned long long)a);
			free(v);
		}
	}
	if (g.nunplug)
		printf("unplugged slots untouched\n");
}

static void map_regions(int uffd)
{
	for (int i = 0; i < g.nreg; i++) {
		struct reg *r = &g.r[i];
		int fl = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
		struct uffdio_register rg = { .mode = UFFDIO_REGISTER_MODE_MISSING };

		if (r->huge)
			fl |= MAP_HUGETLB | MAP_HUGE_2MB;
		r->base = mmap(NULL, r->size, PROT_READ | PROT_WRITE, fl, -1, 0);
		if (r->base == MAP_FAILED)
			die("mmap region");
		rg.range.start = (uint64_t)(uintptr_t)r->base;
		rg.range.len = r->size;
		if (ioctl(uffd, UFFDIO_REGISTER, &rg) < 0)
			die("UFFDIO_REGISTER");
	}
	protect_unplugged();
}

static size_t region_json(char *buf, size_t cap)
{
	size_t n = (size_t)snprintf(buf, cap, "[");

	for (int i = 0; i < g.nreg; i++) {
		const struct reg *r = &g.r[i];
		char ps[96] = "";

		if (!strcmp(g.json_style, "new"))
			snprintf(ps, sizeof(ps), ",\"page_size\":%llu", (unsigned long long)r->ps);
		else if (!strcmp(g.json_style, "kib"))
			snprintf(ps, sizeof(ps), ",\"page_size_kib\":%llu", (unsigned long long)r->ps);
		else if (!strcmp(g.json_style, "both"))
			snprintf(ps, sizeof(ps), ",\"page_size\":%llu,\"page_size_kib\":%llu",
				 (unsigned long long)r->ps, (unsigned long long)r->ps);
		n += (size_t)snprintf(buf + n, cap - n,
				      "%s{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":%llu%s}",
				      i ? "," : "", (unsigned long long)(uintptr_t)r->base,
				      (unsigned long long)r->size, (unsigned long long)r->offset, ps);
	}
	n += (size_t)snprintf(buf + n, cap - n, "]");
	return n;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		fail("socket path too long");
	strcpy(sa.sun_path, path);
	for (int i = 0; i < 500; i++) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			die("socket");
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		usleep(10000);
	}
	die("connect");
}

static void send_msg(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 32)];
		struct cmsghdr a;
	} ctl;
	struct iovec iov = { (void *)buf, len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds) {
		struct cmsghdr *c;

		m.msg_control = ctl.b;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	if (sendmsg(sock, &m, MSG_NOSIGNAL) != (ssize_t)len)
		die("sendmsg");
}

/*
 * The expected bytes: a private copy read with pread(), not a shared mapping
 * of the file. Firecracker never reads the memory file itself when a UFFD
 * handler serves it, and on tmpfs a read fault through a shared mapping
 * would allocate the file's holes, which tests/uffd/run checks never happens.
 */
static void map_file(void)
{
	struct stat st;
	uint8_t *copy;
	int fd = open(g.mem_file, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0)
		die("open mem file");
	g.file_size = (uint64_t)st.st_size;
	copy = mmap(NULL, g.file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (copy == MAP_FAILED)
		die("mmap mem file copy");
	for (uint64_t got = 0; got < g.file_size;) {
		ssize_t n = pread(fd, copy + got, g.file_size - got, (off_t)got);

		if (n <= 0)
			die("read mem file");
		got += (uint64_t)n;
	}
	g.file = copy;
	close(fd);
}

/* a size that may end in K/M/G; *end is left after it */
static uint64_t parse_size(const char *s, char **end)
{
	uint64_t v = strtoull(s, end, 0);

	if (**end == 'K' || **end == 'k')
		v <<= 10, (*end)++;
	else if (**end == 'M' || **end == 'm')
		v <<= 20, (*end)++;
	else if (**end == 'G' || **end == 'g')
		v <<= 30, (*end)++;
	return v;
}

/* --unplug START:LEN (file offsets): an unplugged virtio-mem slot */
static void add_unplug(const char *s)
{
	char *end;

	if (g.nunplug == MAX_UNPLUG)
		fail("too many --unplug");
	g.unplug[g.nunplug][0] = parse_size(s, &end);
	if (*end != ':')
		fail("bad --unplug %s", s);
	g.unplug[g.nunplug][1] = parse_size(end + 1, &end);
	if (*end || !g.unplug[g.nunplug][1])
		fail("bad --unplug %s", s);
	g.nunplug++;
}

/* --region SIZE[:huge]; offsets are cumulative; SIZE may end in K/M/G */
static void add_region(const char *s)
{
	struct reg *r = &g.r[g.nreg];
	char *end;
	uint64_t v;

	if (g.nreg == MAX_REG)
		fail("too many regions");
	v = parse_size(s, &end);
	r->huge = !strcmp(end, ":huge");
	if (*end && !r->huge)
		fail("bad --region %s", s);
	r->size = v;
	r->ps = r->huge ? HUGE : 4096;
	r->offset = g.nreg ? g.r[g.nreg - 1].offset + g.r[g.nreg - 1].size : 0;
	g.nreg++;
}

/* ---- verify workload ---------------------------------------------------- */

static bool removed_early(int ri, uint64_t pg)
{
	/* the last 16 pages of region 0 (or its last huge page) */
	const struct reg *r = &g.r[ri];
	uint64_t n = r->size / r->ps, k = r->huge ? 1 : 16;

	return g.remove_early && wants_remove() && ri == 0 && pg >= n - k;
}

static void check_range(const uint8_t *p, const uint8_t *want, uint64_t len, const char *what,
			int ri, uint64_t pg)
{
	if (want ? memcmp(p, want, len) : (p[0] || memcmp(p, p + 1, len - 1))) {
		for (uint64_t i = 0; i < len; i++) {
			if (p[i] != (want ? want[i] : 0))
				fail("%s: region %d page %llu byte %llu: got 0x%02x want 0x%02x", what,
				     ri, (unsigned long long)pg, (unsigned long long)i, p[i],
				     want ? want[i] : 0);
		}
	}
}

struct worker {
	pthread_t t;
	int id;
};

static void *verify_worker(void *arg)
{
	struct worker *w = arg;
	uint8_t *tmp = malloc(HUGE);
	int pfd[2];
	uint64_t k = 0;

	if (!tmp || pipe2(pfd, O_CLOEXEC) < 0)
		die("worker setup");
	/* pipes hold 64 KiB by default; kernel-read pages move one 4 KiB piece at a time */
	for (int ri = 0; ri < g.nreg; ri++) {
		const struct reg *r = &g.r[ri];
		uint64_t n = r->size / r->ps;

		for (uint64_t pg = 0; pg < n; pg++, k++) {
			uint8_t *p = r->base + pg * r->ps;
			const uint8_t *want = g.file + r->offset + pg * r->ps;
			bool zero = removed_early(ri, pg);
			uint64_t at = (pg * 1237) % (r->ps - 64);	/* touch somewhere inside */
			static const uint8_t mark[16] = { 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab,
							  0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab };

			if (k % (uint64_t)g.threads != (uint64_t)w->id ||
			    unplugged(r->offset + pg * r->ps))
				continue;
			switch ((pg + (uint64_t)ri) % 4) {
			case 0:	/* user read */
				if (*(volatile uint8_t *)(p + at) != (zero ? 0 : want[at]))
					fail("user read: region %d page %llu", ri, (unsigned long long)pg);
				check_range(p, zero ? NULL : want, r->ps, "user read", ri, pg);
				break;
			case 1:	/* user write first */
				p[at] = (uint8_t)(zero ? 0 : want[at]) ^ 0x5a;
				if (p[at] != ((zero ? 0 : want[at]) ^ 0x5a))
					fail("user write lost");
				p[at] ^= 0x5a;
				check_range(p, zero ? NULL : want, r->ps, "user write", ri, pg);
				break;
			case 2:	/* kernel-mode read: write(2) from the page into a pipe */
				if (write(pfd[1], p + (at & ~4095ul), 4096) != 4096 ||
				    read(pfd[0], tmp, 4096) != 4096)
					die("pipe");
				check_range(tmp, zero ? NULL : want + (at & ~4095ul), 4096, "kernel read",
					    ri, pg);
				check_range(p, zero ? NULL : want, r->ps, "kernel read page", ri, pg);
				break;
			default:	/* kernel-mode write: read(2) from a pipe into the page */
				if (write(pfd[1], mark, sizeof(mark)) != sizeof(mark) ||
				    read(pfd[0], p + at, sizeof(mark)) != sizeof(mark))
					die("pipe");
				check_range(p + at, mark, sizeof(mark), "kernel write", ri, pg);
				check_range(p, zero ? NULL : want, at, "kernel write head", ri, pg);
				check_range(p + at + 16, zero ? NULL : want + at + 16, r->ps - at - 16,
					    "kernel write tail", ri, pg);
				break;
			}
		}
	}
	close(pfd[0]);
	close(pfd[1]);
	free(tmp);
	return NULL;
}

static void do_remove(uint8_t *p, uint64_t len)
{
	if (madvise(p, len, MADV_DONTNEED) < 0)
		die("madvise");
}

static void workload_verify(void)
{
	struct worker w[64];
	uint64_t t0 = now_ns();

	if (g.threads < 1 || g.threads > 64)
		fail("bad --threads");
	if (g.remove_early && wants_remove()) {
		const struct reg *r = &g.r[0];
		uint64_t k = r->huge ? HUGE : 16 * 4096;

		do_remove(r->base + r->size - k, k);
	}
	for (int i = 0; i < g.threads; i++) {
		w[i].id = i;
		if (pthread_create(&w[i].t, NULL, verify_worker, &w[i]))
			die("pthread_create");
	}
	for (int i = 0; i < g.threads; i++)
		pthread_join(w[i].t, NULL);
	printf("verified %d regions with %d threads in %.1f ms\n", g.nreg, g.threads,
	       (double)(now_ns() - t0) / 1e6);
	check_unplugged_empty();
	/* without EVENT_REMOVE there is no balloon: Firecracker never madvises */
	if (g.no_remove || !wants_remove())
		return;
	/* balloon: drop a data range in every region; it must come back as zeros */
	for (int ri = 0; ri < g.nreg; ri++) {
		const struct reg *r = &g.r[ri];
		uint64_t len = r->huge ? HUGE : 8 * 4096, off = r->huge ? 0 : 16 * 4096;
		uint8_t *p = r->base + off;

		if (off + len > r->size || unplugged(r->offset + off) ||
		    unplugged(r->offset + off + len - 1))
			continue;
		do_remove(p, len);
		check_range(p, NULL, len, "after remove", ri, off / r->ps);
		/* and it is ordinary memory again */
		memset(p, 0x77, len);
		if (p[len - 1] != 0x77)
			fail("write after remove lost");
	}
	printf("remove ok\n");
}

/* ---- bench workloads ---------------------------------------------------- */

static void workload_populated(void)
{
	for (;;) {
		bool all = true;

		for (int ri = 0; ri < g.nreg && all; ri++) {
			const struct reg *r = &g.r[ri];
			size_t n = r->size / 4096;
			unsigned char *v = malloc(n);

			if (!v || mincore(r->base, r->size, v) < 0)
				die("mincore");
			for (size_t i = 0; i < n && all; i++)
				all = v[i] & 1;
			free(v);
		}
		if (all)
			break;
		usleep(20000);
	}
	printf("populated after %.1f ms\n", (double)(now_ns() - g.t_handshake) / 1e6);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* distinct page indexes of region 0 in a fixed pseudo-random order */
static uint64_t *pick_pages(uint64_t n, uint64_t want)
{
	uint64_t *perm = malloc(n * sizeof(*perm));

	if (!perm)
		die("malloc");
	for (uint64_t i = 0; i < n; i++)
		perm[i] = i;
	for (uint64_t i = 0; i < want && i < n; i++) {
		uint64_t j = i + rng() % (n - i), t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	return perm;
}

static void workload_latency(void)
{
	const struct reg *r = &g.r[0];
	uint64_t n = r->size / r->ps, want = (uint64_t)g.pages < n ? (uint64_t)g.pages : n;
	uint64_t *perm = pick_pages(n, want), *lat = malloc(want * sizeof(*lat));
	unsigned sum = 0;

	if (!lat)
		die("malloc");
	for (uint64_t i = 0; i < want; i++) {
		uint64_t t = now_ns();

		sum += *(volatile uint8_t *)(r->base + perm[i] * r->ps);
		lat[i] = now_ns() - t;
	}
	qsort(lat, want, sizeof(*lat), cmp_u64);
	printf("latency faults=%llu p50_us=%.2f p99_us=%.2f sum=%u\n", (unsigned long long)want,
	       (double)lat[want / 2] / 1e3, (double)lat[want * 99 / 100] / 1e3, sum & 1);
	free(perm);
	free(lat);
}

static void workload_pct(void)
{
	const struct reg *r = &g.r[0];
	uint64_t n = r->size / r->ps, want = n * (uint64_t)g.percent / 100;
	uint64_t *perm = pick_pages(n, want);
	unsigned sum = 0;

	for (uint64_t i = 0; i < want; i++)
		sum += *(volatile uint8_t *)(r->base + perm[i] * r->ps + 8);
	printf("pct pages=%llu ms=%.1f sum=%u\n", (unsigned long long)want,
	       (double)(now_ns() - g.t_handshake) / 1e6, sum & 1);
	free(perm);
}

/* ---- commands ----------------------------------------------------------- */

/* register a range the table does not announce and touch it: the fault can
 * never be served (porthole-uffd must end it by --on-fatal, not hang) */
static void workload_stray(void)
{
	struct uffdio_register rg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	uint8_t *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap stray");
	rg.range.start = (uint64_t)(uintptr_t)p;
	rg.range.len = 65536;
	if (ioctl(g.uffd, UFFDIO_REGISTER, &rg) < 0)
		die("UFFDIO_REGISTER stray");
	printf("touching stray\n");
	fflush(stdout);
	if (*(volatile uint8_t *)p)
		printf("stray nonzero\n");
	printf("stray served\n");
}

/* --release vX.Y | main: the release's behaviour (see the header) */
static void set_release(const char *s)
{
	unsigned maj, min;

	g.release = s;
	if (!strcmp(s, "main")) {
		g.rel = 99;
	} else if (sscanf(s, "v%u.%u", &maj, &min) == 2 && maj == 1 && min >= 1) {
		g.rel = (int)min;
	} else {
		fail("bad --release %s (v1.1 ... v1.16, main)", s);
	}
	g.drop_socket = g.rel <= 11;
	g.json_style = g.rel <= 6 ? "none" : g.rel <= 11 ? "kib" : "both";
}

/* refuse combinations the release cannot produce */
static void check_release(void)
{
	if (g.uffd_dev && g.rel < 5)
		fail("%s creates its uffd with the syscall only (/dev/userfaultfd: v1.5+)", g.release);
	for (int i = 0; i < g.nreg; i++)
		if (g.r[i].huge && g.rel < 7)
			fail("%s has no hugetlbfs guest memory (v1.7+)", g.release);
	if (g.nunplug && g.rel < 14)
		fail("%s has no virtio-mem hot-plug (v1.14+)", g.release);
}

static int cmd_vm(void)
{
	char *json = malloc(65536);
	int sock;

	if (!json || !g.socket || !g.nreg)
		fail("vm needs --socket and --region");
	check_release();
	if (g.mem_file)
		map_file();
	warm(g.warm);
	pin_to(g.pin);
	g.uffd = make_uffd();
	map_regions(g.uffd);
	sock = connect_to(g.socket);
	g.t_handshake = now_ns();
	send_msg(sock, json, region_json(json, 65536), &g.uffd, 1);
	free(json);
	if (g.drop_socket) {
		close(sock);	/* v1.1-v1.11: the UnixStream goes out of scope */
		sock = -1;
	}
	if (g.fork_holder) {
		/* a child keeps the socket open past our exit: the server must notice
		 * the owner is gone by other means (pidfd, ESRCH) */
		pid_t pid = fork();

		if (pid < 0)
			die("fork");
		if (pid == 0) {
			for (int fd = 3; fd < 1024; fd++)
				if (fd != sock)
					close(fd);
			sleep(20);
			_exit(0);
		}
		printf("holder %d\n", (int)pid);
		fflush(stdout);
	}
	if (!strcmp(g.workload, "verify")) {
		if (!g.file)
			fail("verify needs --mem-file");
		workload_verify();
	} else if (!strcmp(g.workload, "populated")) {
		workload_populated();
	} else if (!strcmp(g.workload, "latency")) {
		workload_latency();
	} else if (!strcmp(g.workload, "pct")) {
		workload_pct();
	} else if (!strcmp(g.workload, "stray")) {
		workload_stray();
	} else if (!strcmp(g.workload, "hold")) {
		printf("holding\n");
		fflush(stdout);
		pause();
	} else {
		fail("unknown workload %s", g.workload);
	}
	fflush(stdout);
	return 0;	/* exit: Firecracker goes away */
}

static int cmd_bad(void)
{
	char big[70000];
	const char *body = NULL;
	char json[512];
	int sock, uffd, fds[20], nfds = 1, pipefd[2];
	char c;

	if (!g.socket || !g.kind)
		fail("bad needs --socket and --kind");
	uffd = make_uffd();
	fds[0] = uffd;
	snprintf(json, sizeof(json),
		 "[{\"base_host_virt_addr\":1048576,\"size\":65536,\"offset\":0,\"page_size\":4096}]");
	body = json;
	if (!strcmp(g.kind, "json")) {
		body = "[{\"base_host_virt_addr\": 1048576, \"size\": ";
	} else if (!strcmp(g.kind, "not-array")) {
		body = "{\"base_host_virt_addr\":1048576}";
	} else if (!strcmp(g.kind, "empty")) {
		body = "[]";
	} else if (!strcmp(g.kind, "no-fd")) {
		nfds = 0;
	} else if (!strcmp(g.kind, "two-fds")) {
		fds[1] = make_uffd();
		nfds = 2;
	} else if (!strcmp(g.kind, "memfd-first")) {
		/* a fork's handshake: a memfd before and after the uffd */
		fds[0] = memfd_create("guest-mem", MFD_CLOEXEC);
		fds[1] = uffd;
		fds[2] = memfd_create("guest-mem", MFD_CLOEXEC);
		if (fds[0] < 0 || fds[2] < 0)
			die("memfd_create");
		nfds = 3;
	} else if (!strcmp(g.kind, "many-fds")) {
		for (int i = 1; i < 20; i++)
			fds[i] = uffd;
		nfds = 20;
	} else if (!strcmp(g.kind, "not-uffd")) {
		if (pipe(pipefd) < 0)
			die("pipe");
		fds[0] = pipefd[0];
	} else if (!strcmp(g.kind, "outside")) {
		body = "[{\"base_host_virt_addr\":1048576,\"size\":1099511627776,\"offset\":0}]";
	} else if (!strcmp(g.kind, "overlap")) {
		body = "[{\"base_host_virt_addr\":1048576,\"size\":65536,\"offset\":0},"
		       "{\"base_host_virt_addr\":1081344,\"size\":65536,\"offset\":65536}]";
	} else if (!strcmp(g.kind, "file-overlap")) {
		body = "[{\"base_host_virt_addr\":1048576,\"size\":65536,\"offset\":0},"
		       "{\"base_host_virt_addr\":4194304,\"size\":65536,\"offset\":4096}]";
	} else if (!strcmp(g.kind, "unaligned")) {
		body = "[{\"base_host_virt_addr\":1048577,\"size\":65536,\"offset\":0}]";
	} else if (!strcmp(g.kind, "huge-unaligned")) {
		body = "[{\"base_host_virt_addr\":1048576,\"size\":2097152,\"offset\":0,"
		       "\"page_size\":2097152}]";
	} else if (!strcmp(g.kind, "page-size")) {
		body = "[{\"base_host_virt_addr\":1048576,\"size\":65536,\"offset\":0,"
		       "\"page_size\":12345}]";
	} else if (!strcmp(g.kind, "negative")) {
		body = "[{\"base_host_virt_addr\":-4096,\"size\":65536,\"offset\":0}]";
	} else if (!strcmp(g.kind, "too-big")) {
		memset(big, ' ', sizeof(big) - 1);
		big[0] = '[';
		big[sizeof(big) - 1] = 0;
		body = big;
	} else if (!strcmp(g.kind, "eof")) {
		body = NULL;
	} else {
		fail("unknown --kind %s", g.kind);
	}
	sock = connect_to(g.socket);
	if (body)
		send_msg(sock, body, strlen(body), fds, nfds);
	else
		shutdown(sock, SHUT_WR);
	/* the server must hang up on us, not crash and not hang */
	{
		struct pollfd p = { .fd = sock, .events = POLLIN };

		if (poll(&p, 1, 15000) != 1)
			fail("server did not hang up");
		while (read(sock, &c, 1) > 0)
			;
	}
	printf("server hung up\n");
	return 0;
}

/* the reference design: one pread and one 4 KiB UFFDIO_COPY per page */
static int cmd_baseline(void)
{
	int sv[2], uffd;
	uint64_t base = 0, t0, t1;
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr a;
	} ctl;
	struct iovec iov = { &base, sizeof(base) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
			    .msg_controllen = sizeof(ctl.b) };
	pid_t pid;
	int fd, st;

	if (!g.mem_file || !g.nreg)
		fail("baseline needs --mem-file and --region");
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		char x;

		close(sv[0]);
		warm(g.warm);
		g.uffd = make_uffd();
		map_regions(g.uffd);
		base = (uint64_t)(uintptr_t)g.r[0].base;
		send_msg(sv[1], &base, sizeof(base), &g.uffd, 1);
		if (read(sv[1], &x, 1) != 1)
			_exit(1);
		/* spot-check: the first byte of every 4097th page */
		map_file();
		for (uint64_t off = 0; off < g.r[0].size; off += 4097 * 4096)
			if (g.r[0].base[off] != g.file[off])
				_exit(1);
		_exit(0);
	}
	close(sv[1]);
	fd = open(g.mem_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open");
	if (recvmsg(sv[0], &m, 0) != sizeof(base))
		die("recvmsg");
	memcpy(&uffd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int));
	t0 = now_ns();
	for (uint64_t off = 0; off < g.r[0].size; off += 4096) {
		uint8_t *buf = malloc(4096);	/* one allocation a page, as the reference does */
		struct uffdio_copy c = { .dst = base + off, .src = (uint64_t)(uintptr_t)buf,
					 .len = 4096 };

		if (!buf || pread(fd, buf, 4096, (off_t)(g.r[0].offset + off)) != 4096)
			die("pread");
		if (ioctl(uffd, UFFDIO_COPY, &c) < 0 && errno != EEXIST)
			die("UFFDIO_COPY");
		free(buf);
	}
	t1 = now_ns();
	if (write(sv[0], "x", 1) != 1)
		die("write");
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		fail("baseline vm check failed");
	printf("baseline ms=%.1f\n", (double)(t1 - t0) / 1e6);
	return 0;
}

static int cmd_floor(void)
{
	uint64_t size = g.nreg ? g.r[0].size : (1ull << 30), t0;
	void *p;

	warm(g.warm);
	t0 = now_ns();
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		 -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	printf("floor ms=%.1f\n", (double)(now_ns() - t0) / 1e6);
	munmap(p, size);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: uffd_fc vm --socket P --region SIZE[:huge]... [--mem-file F]\n"
		"               [--workload verify|populated|latency|pct|hold|stray] [--threads N]\n"
		"               [--remove-early] [--no-remove] [--fork-holder] [--pin CPU]\n"
		"               [--pages N] [--percent P] [--warm BYTES] [--json-style new|kib|both|none]\n"
		"               [--release vX.Y|main] [--balloon] [--uffd-dev PATH] [--unplug START:LEN]\n"
		"       uffd_fc bad --socket P --kind KIND\n"
		"       uffd_fc baseline --mem-file F --region SIZE [--warm BYTES]\n"
		"       uffd_fc floor --region SIZE [--warm BYTES]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "mem-file", required_argument, NULL, 'm' },
		{ "region", required_argument, NULL, 'r' },
		{ "workload", required_argument, NULL, 'w' },
		{ "threads", required_argument, NULL, 't' },
		{ "remove-early", no_argument, NULL, 'e' },
		{ "no-remove", no_argument, NULL, 'n' },
		{ "fork-holder", no_argument, NULL, 'f' },
		{ "pin", required_argument, NULL, 'p' },
		{ "pages", required_argument, NULL, 'P' },
		{ "percent", required_argument, NULL, 'c' },
		{ "warm", required_argument, NULL, 'W' },
		{ "json-style", required_argument, NULL, 'j' },
		{ "kind", required_argument, NULL, 'k' },
		{ "release", required_argument, NULL, 'R' },
		{ "balloon", no_argument, NULL, 'B' },
		{ "uffd-dev", required_argument, NULL, 'U' },
		{ "unplug", required_argument, NULL, 'u' },
		{ 0 }
	};
	const char *cmd;
	int c;

	if (argc < 2)
		usage();
	cmd = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 's': g.socket = optarg; break;
		case 'm': g.mem_file = optarg; break;
		case 'r': add_region(optarg); break;
		case 'w': g.workload = optarg; break;
		case 't': g.threads = atoi(optarg); break;
		case 'e': g.remove_early = true; break;
		case 'n': g.no_remove = true; break;
		case 'f': g.fork_holder = true; break;
		case 'p': g.pin = atoi(optarg); break;
		case 'P': g.pages = atoi(optarg); break;
		case 'c': g.percent = atoi(optarg); break;
		case 'W': g.warm = strtoull(optarg, NULL, 0); break;
		case 'j': g.json_style = optarg; break;
		case 'k': g.kind = optarg; break;
		case 'R': set_release(optarg); break;
		case 'B': g.balloon = true; break;
		case 'U': g.uffd_dev = optarg; break;
		case 'u': add_unplug(optarg); break;
		default: usage();
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(cmd, "vm"))
		return cmd_vm();
	if (!strcmp(cmd, "bad"))
		return cmd_bad();
	if (!strcmp(cmd, "baseline"))
		return cmd_baseline();
	if (!strcmp(cmd, "floor"))
		return cmd_floor();
	usage();
}
