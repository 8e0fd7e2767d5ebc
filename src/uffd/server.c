// SPDX-License-Identifier: MIT
/* server.c - page state, the fill primitive and the fault-serving thread
 *
 * Theory of Operation
 * ===================
 * Every region page has one state byte: MISSING (never installed; its
 * contents come from the memory file), PRESENT (installed by us, or found
 * installed), REMOVED (Firecracker's balloon or virtio-mem unplug dropped
 * it; from now on it is served as zeros, never again from the file), HOLE
 * (a file hole the prefetcher skipped; a fault still serves it, as zeros).
 * State leaves MISSING (or HOLE) only by compare-and-swap, so the fault
 * thread and the prefetch thread can race on a page without double
 * counting; the kernel arbitrates the page itself (the loser's UFFDIO_COPY
 * answers EEXIST). "Fully populated" means every page is present, removed or
 * a hole: everything the memory file has data for is in place.
 *
 * Prefetch (PH_FILL_SKIP_PRESENT) installs file data only: it skips pages
 * that are present, removed or holes. Zero pages are left to faults: they
 * cost the guest nothing to fault in, and installing them ahead of time
 * would commit memory for pages the guest may never touch (the unplugged
 * slots of a virtio-mem area are file holes and PROT_NONE; on hugetlbfs
 * regions each would take a 2 MiB page from the pool).
 *
 * ph_uffd_fill() installs a range: it splits it into runs of one kind (copy
 * from the file mapping, zero, or skip) of at most PH_UFFD_CHUNK bytes and
 * issues one ioctl a run. File data is copied with UFFDIO_COPY: fault and
 * prefetch copies alike (unless --prefetch-source map) first pread() the run
 * into a per-thread bounce buffer and copy from there. The bounce costs one
 * extra copy through a cache-hot buffer, but the file mapping's first touch
 * per page can cost far more: on a host whose hypervisor shadows page tables
 * (PVM, measured here) the first kernel read of each source page through a
 * user mapping took 2.7 us (720 ms a GiB, after MADV_POPULATE_READ), while
 * pread reads the page cache through the kernel's own mapping (190 ms a
 * GiB). On a later host kernel the same first touch cost 12-14 us a random
 * page even after the page had been read from user space (the kernel's
 * accesses are shadowed apart), and a random 4 KiB UFFDIO_COPY from the
 * populated mapping 17-19 us against 5.5-8 us for pread plus a copy from
 * the bounce: the fault path, which copied from the mapping, paid it on
 * every fault. File holes and
 * removed pages get
 * UFFDIO_ZEROPAGE on 4 KiB regions, and a copy from a zero mapping on
 * huge-page regions (hugetlbfs has no ZEROPAGE). The kernel's answers:
 *  - success: the whole run is installed and the faulting threads woken;
 *  - EAGAIN with copy > 0: partial; the page after the count was present.
 *    Advance by the count and go on (the next call reports that page);
 *  - EEXIST: the first page is present (a race with the other thread or a
 *    page Firecracker touched itself): skip it. On the fault path the
 *    faulting thread is woken explicitly, in case the winner used DONTWAKE;
 *  - EAGAIN with nothing done: a non-cooperative event (REMOVE) is queued
 *    and unread. Nothing can be installed until the fault thread has read
 *    it, so the caller gets -EAGAIN and retries later;
 *  - ESRCH: Firecracker's mm is gone: the restore is over.
 * Any other error on the fault path (ENOMEM: the hugetlb pool is empty;
 * EFAULT: the memory file could not be read) leaves a vCPU waiting for a
 * page that will never come, so it ends the restore as fatal (main.c then
 * applies --on-fatal), as does a fault outside every announced region.
 *
 * The fault thread waits (epoll) on the uffd and a stop eventfd. Each wake-up drains
 * every queued message first (REMOVE events are applied to the page state
 * at once, page faults are queued), then serves the queued faults in order.
 * A fault deferred by EAGAIN stays queued and is retried after the next
 * drain, with a 1 ms poll timeout: the kernel never redelivers a fault, so
 * a dropped one would hang a vCPU forever.
 *
 * REMOVE and prefetch: the gate
 * -----------------------------
 * Firecracker's madvise(MADV_DONTNEED) (balloon inflate, virtio-mem unplug)
 * queues UFFD_EVENT_REMOVE and sleeps until the page server has read(2) it;
 * only then does it zap the range (fs/userfaultfd.c userfaultfd_remove() and
 * userfaultfd_event_wait_completion(), then mm/madvise.c zaps). "All other
 * events are delivered asynchronously and the non-cooperative process resumes
 * execution as soon as manager executes read(2). The userfaultfd manager
 * should carefully synchronize calls to UFFDIO_COPY with the events
 * processing" (userfaultfd(2)). While the event is queued and unread,
 * mmap_changing makes new copies fail with EAGAIN; but a copy that was
 * decided from page state read before the REMOVE was applied and lands after
 * the read is not stopped: it runs beside the zap and a page installed behind
 * it stays, with file data, in memory the guest released and expects to read
 * as zeros. On kernels before 6.8 a copy already in flight when the event is
 * queued even goes on copying meanwhile (6.8 added map_changing_lock, which
 * makes the event wait for in-flight copies, but not for copies decided
 * earlier). Nothing can undo such a page afterwards: a second REMOVE is not
 * ours to make (process_madvise() refuses MADV_DONTNEED for another process),
 * and UFFDIO_ZEROPAGE/COPY only fill missing pages.
 *
 * So the decision and the copy must not straddle the read. The prefetch
 * threads pass the gate (ph_uffd_gate_copy_begin/end) around each step of
 * at most PH_UFFD_GATE_STEP bytes: classify, copy, return. The fault thread
 * closes the gate around draining the uffd: it waits for the steps in flight
 * to return, reads every queued message, applies the REMOVEs to the page
 * state, and reopens it. A step that starts after that sees the pages
 * removed and skips them; every page copied before the read is zapped by the
 * madvise that follows it. A waiting reader holds new steps back, so a fault
 * waits for at most one step per prefetch thread (one 256 KiB copy, or one
 * huge page). The fault thread's own copies need no gate: it makes them
 * between its reads. Without UFFD_FEATURE_EVENT_REMOVE (read from the uffd's
 * fdinfo: v1.1-v1.11 without a balloon) no event can race a copy and the gate
 * stays open.
 */
#include "uffd.h"
#include "log.h"
#include "loop.h"
#include "array.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MSG_BATCH	64

enum run_kind { RUN_SKIP, RUN_COPY, RUN_ZERO };

static const char *const prefetch_names[] = {
	[PH_PREFETCH_NONE] = "none",
	[PH_PREFETCH_ALL] = "all",
	[PH_PREFETCH_TRACE] = "trace",
	[PH_PREFETCH_TRACE_ALL] = "trace+all",
};

/**
 * ph_uffd_prefetch_parse() - parse a --prefetch value
 * @s:		"none", "all", "trace" or "trace+all"
 * @out:	receives the mode
 *
 * Return: 0 or -EINVAL
 */
int ph_uffd_prefetch_parse(const char *s, enum ph_uffd_prefetch *out)
{
	for (unsigned i = 0; i < sizeof(prefetch_names) / sizeof(prefetch_names[0]); i++) {
		if (!strcmp(s, prefetch_names[i])) {
			*out = (enum ph_uffd_prefetch)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *ph_uffd_prefetch_name(enum ph_uffd_prefetch m)
{
	return (unsigned)m < sizeof(prefetch_names) / sizeof(prefetch_names[0]) ?
	       prefetch_names[m] : "?";
}

static void add(atomic_uint_fast64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

/* pages became present or removed: account, and note when all are */
static void resolve(struct ph_uffd_server *s, uint64_t bytes)
{
	uint64_t now = atomic_fetch_add(&s->resolved_bytes, bytes) + bytes;
	uint_fast64_t zero = 0;

	if (now == s->total_bytes &&
	    atomic_compare_exchange_strong(&s->populated_ns, &zero, ph_now_ns() - s->t0_ns + 1))
		ph_info("guest memory fully populated",
			PH_FU("ms", (ph_now_ns() - s->t0_ns) / 1000000));
}

/* mark [addr, addr + len) present (pages that were missing, or holes: those
 * were accounted as resolved when prefetch skipped them) */
static void mark_present(struct ph_uffd_server *s, struct ph_uffd_sregion *sr, uint64_t addr,
			 uint64_t len)
{
	uint64_t ps = sr->r.page_size, first = (addr - sr->r.base) / ps;
	uint64_t last = (addr + len - sr->r.base + ps - 1) / ps, n = 0;

	for (uint64_t p = first; p < last; p++) {
		uint8_t exp = atomic_load_explicit(&sr->state[p], memory_order_relaxed);

		if (exp == PH_PG_MISSING &&
		    atomic_compare_exchange_strong(&sr->state[p], &exp, PH_PG_PRESENT))
			n++;
		else if (exp == PH_PG_HOLE)
			atomic_compare_exchange_strong(&sr->state[p], &exp, PH_PG_PRESENT);
	}
	if (n)
		resolve(s, n * ps);
}

/* prefetch found [addr, addr + len) to be file holes: leave them to faults */
static void mark_hole(struct ph_uffd_server *s, struct ph_uffd_sregion *sr, uint64_t addr,
		      uint64_t len)
{
	uint64_t ps = sr->r.page_size, n = 0;

	for (uint64_t p = (addr - sr->r.base) / ps; p < (addr + len - sr->r.base) / ps; p++) {
		uint8_t exp = PH_PG_MISSING;

		if (atomic_compare_exchange_strong(&sr->state[p], &exp, PH_PG_HOLE))
			n++;
	}
	if (n)
		resolve(s, n * ps);
}

/**
 * ph_uffd_server_remove() - apply a UFFD_EVENT_REMOVE for [start, end)
 * @s:		server
 * @start:	first byte
 * @end:	end (exclusive)
 *
 * Pages touching the range are served as zeros from now on.
 */
void ph_uffd_server_remove(struct ph_uffd_server *s, uint64_t start, uint64_t end)
{
	add(&s->c.removed_ranges, 1);
	add(&s->c.removed_bytes, end - start);
	for (size_t i = 0; i < s->nreg; i++) {
		struct ph_uffd_sregion *sr = &s->reg[i];
		uint64_t lo = start > sr->r.base ? start : sr->r.base;
		uint64_t hi = end < sr->r.base + sr->r.size ? end : sr->r.base + sr->r.size;
		uint64_t ps = sr->r.page_size, n = 0;

		if (lo >= hi)
			continue;
		for (uint64_t p = (lo - sr->r.base) / ps; p < (hi - sr->r.base + ps - 1) / ps; p++)
			if (atomic_exchange(&sr->state[p], PH_PG_REMOVED) == PH_PG_MISSING)
				n++;
		if (n)
			resolve(s, n * ps);
	}
}

/**
 * ph_uffd_gate_copy_begin() - a prefetch thread is about to decide and copy
 * @s:		server
 *
 * Waits while the fault thread reads events. Pair with
 * ph_uffd_gate_copy_end() once the copy has returned.
 */
void ph_uffd_gate_copy_begin(struct ph_uffd_server *s)
{
	struct ph_uffd_gate *g = &s->gate;

	if (!g->on)
		return;
	pthread_mutex_lock(&g->m);
	if (g->reading)
		add(&s->c.gate_waits, 1);
	while (g->reading)
		pthread_cond_wait(&g->cv, &g->m);
	g->copiers++;
	pthread_mutex_unlock(&g->m);
}

/**
 * ph_uffd_gate_copy_end() - the prefetch step's copy has returned
 * @s:		server
 */
void ph_uffd_gate_copy_end(struct ph_uffd_server *s)
{
	struct ph_uffd_gate *g = &s->gate;

	if (!g->on)
		return;
	pthread_mutex_lock(&g->m);
	if (--g->copiers == 0 && g->reading)
		pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->m);
}

/* the fault thread closes the gate: no new step starts, the running ones return */
static void gate_read_begin(struct ph_uffd_server *s)
{
	struct ph_uffd_gate *g = &s->gate;

	if (!g->on)
		return;
	pthread_mutex_lock(&g->m);
	g->reading = true;
	while (g->copiers)
		pthread_cond_wait(&g->cv, &g->m);
	pthread_mutex_unlock(&g->m);
}

static void gate_read_end(struct ph_uffd_server *s)
{
	struct ph_uffd_gate *g = &s->gate;

	if (!g->on)
		return;
	pthread_mutex_lock(&g->m);
	g->reading = false;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->m);
}

/**
 * ph_uffd_has_event_remove() - may this uffd deliver UFFD_EVENT_REMOVE?
 * @uffd:	the userfaultfd
 *
 * Reads the features Firecracker enabled from /proc/self/fdinfo ("API:
 * api:features:ioctls", hexadecimal).
 *
 * Return: false only if the features are known and lack EVENT_REMOVE
 */
bool ph_uffd_has_event_remove(int uffd)
{
	char path[64], buf[512];
	unsigned long long api, feat;
	const char *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", uffd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return true;
	buf[n] = 0;
	p = strstr(buf, "\nAPI:");
	if (!p || sscanf(p + 5, "%llx:%llx", &api, &feat) != 2)
		return true;
	return feat & UFFD_FEATURE_EVENT_REMOVE;
}

/**
 * ph_uffd_server_end() - a worker found the restore over (or broken)
 * @s:		server
 * @err:	-ESRCH when Firecracker's mm is gone, else a fatal -errno
 *
 * The first reason wins; the main thread is woken through done_efd.
 */
void ph_uffd_server_end(struct ph_uffd_server *s, int err)
{
	int zero = 0;
	uint64_t one = 1;

	atomic_compare_exchange_strong(&s->end_err, &zero, err);
	if (write(s->done_efd, &one, sizeof(one)) < 0) {
		/* eventfd overflow cannot happen with one write a worker */
	}
}

/* one UFFDIO_COPY or UFFDIO_ZEROPAGE; *done = bytes installed even on error */
static int install(struct ph_uffd_server *s, bool zeropage, uint64_t dst, const void *src,
		   uint64_t len, uint64_t *done)
{
	int r;

	add(&s->c.ioctls, 1);
	if (zeropage) {
		struct uffdio_zeropage z = { .range = { .start = dst, .len = len } };

		r = ioctl(s->uffd, UFFDIO_ZEROPAGE, &z);
		*done = z.zeropage > 0 ? (uint64_t)z.zeropage : 0;
	} else {
		struct uffdio_copy c = { .dst = dst, .src = (uint64_t)(uintptr_t)src, .len = len };

		r = ioctl(s->uffd, UFFDIO_COPY, &c);
		*done = c.copy > 0 ? (uint64_t)c.copy : 0;
	}
	if (r == 0) {
		*done = len;
		return 0;
	}
	return -errno;
}

/* the calling thread's bounce buffer (PH_UFFD_CHUNK bytes), NULL if none */
static _Thread_local uint8_t *bounce;

/**
 * ph_uffd_bounce_free() - free the calling thread's bounce buffer
 *
 * Called by every thread that ran prefetch fills, before it exits.
 */
void ph_uffd_bounce_free(void)
{
	if (bounce)
		munmap(bounce, PH_UFFD_CHUNK);
	bounce = NULL;
}

/* read [off, off + len) of the memory file into the bounce buffer; NULL if
 * there is none (then copy from the mapping), or *err = -EFAULT on an I/O
 * error or a short file, as a copy from the mapping would have answered */
static const uint8_t *bounce_read(const struct ph_uffd_server *s, uint64_t off, uint64_t len,
				  int *err)
{
	uint64_t got = 0;

	if (len > PH_UFFD_CHUNK)
		return NULL;
	if (!bounce) {
		void *p = mmap(NULL, PH_UFFD_CHUNK, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

		if (p == MAP_FAILED)
			return NULL;
		bounce = p;
	}
	while (got < len) {
		ssize_t n = pread(s->mf->fd, bounce + got, len - got, (off_t)(off + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*err = -EFAULT;
			return NULL;
		}
		got += (uint64_t)n;
	}
	return bounce;
}

/* install one run of one kind; *done advances over installed and present pages */
static int apply(struct ph_uffd_server *s, struct ph_uffd_sregion *sr, enum run_kind kind,
		 uint64_t dst, uint64_t len, unsigned flags, uint64_t *done)
{
	uint64_t ps = sr->r.page_size;
	bool zeropage = kind == RUN_ZERO && ps == 4096;
	const uint8_t *src = kind == RUN_ZERO ? s->zero :
			     s->mf->map + sr->r.offset + (dst - sr->r.base);

	if (kind == RUN_COPY && s->copy_read) {
		int err = 0;
		const uint8_t *b = bounce_read(s, sr->r.offset + (dst - sr->r.base), len, &err);

		if (err)
			return err;
		if (b)
			src = b;
	}

	while (len) {
		uint64_t k = 0;
		int ret = install(s, zeropage, dst, src, len, &k);

		if (k) {
			if (kind == RUN_ZERO)
				add(&s->c.zero_pages, k / ps);
			if (flags & PH_FILL_FAULT) {
				add(&s->c.fault_bytes, k);
			} else {
				add(&s->c.bytes_prefetched, k);
				add(&s->c.pages_prefetched, k / ps);
			}
			mark_present(s, sr, dst, k);	/* last: it may announce "populated" */
			dst += k;
			if (kind == RUN_COPY)
				src += k;
			len -= k;
			*done += k;
		}
		if (!ret)
			return 0;
		if ((ret == -EAGAIN && k) || ret == -EINTR)
			continue;	/* partial: the next call says why */
		if (ret == -EAGAIN) {
			add(&s->c.eagain, 1);
			return -EAGAIN;
		}
		if (ret != -EEXIST)
			return ret;
		/* the page at dst is already there */
		add(&s->c.eexist, 1);
		mark_present(s, sr, dst, ps);
		if (flags & PH_FILL_FAULT) {
			struct uffdio_range w = { .start = dst, .len = ps };

			ioctl(s->uffd, UFFDIO_WAKE, &w);
		}
		dst += ps;
		if (kind == RUN_COPY)
			src += ps;
		len -= ps;
		*done += ps;
	}
	return 0;
}

/* classify the run starting at pos (< end); returns its kind and *run_end */
static enum run_kind classify(const struct ph_uffd_server *s, const struct ph_uffd_sregion *sr,
			      uint64_t pos, uint64_t end, unsigned flags, uint64_t *run_end)
{
	uint64_t ps = sr->r.page_size, pg = (pos - sr->r.base) / ps;
	uint64_t lim = end - pos > PH_UFFD_CHUNK ? pos + PH_UFFD_CHUNK : end;
	uint8_t st = atomic_load_explicit(&sr->state[pg], memory_order_relaxed);
	enum run_kind kind;
	uint64_t e, fo, fend;

	if (lim < pos + ps)
		lim = pos + ps;
	if ((flags & PH_FILL_SKIP_PRESENT) ? st != PH_PG_MISSING : st == PH_PG_REMOVED) {
		kind = (flags & PH_FILL_SKIP_PRESENT) ? RUN_SKIP : RUN_ZERO;
		/* huge zero runs copy from a zero buffer of one page */
		if (kind == RUN_ZERO && ps > 4096)
			lim = pos + ps;
		for (e = pos + ps; e < lim; e += ps)
			if (atomic_load_explicit(&sr->state[++pg], memory_order_relaxed) != st)
				break;
		*run_end = e;
		return kind;
	}
	fo = sr->r.offset + (pos - sr->r.base);
	if (ps > 4096) {
		/* a huge page is zero only if it is all hole */
		kind = !ph_uffd_memfile_run(s->mf, fo, fo + ps, &fend) && fend == fo + ps ?
		       RUN_ZERO : RUN_COPY;
		*run_end = pos + ps;
		return kind;
	}
	kind = ph_uffd_memfile_run(s->mf, fo, fo + (lim - pos), &fend) ? RUN_COPY : RUN_ZERO;
	e = pos + (fend - fo);
	/* extents need not be page aligned: a page with any data is data */
	if (kind == RUN_COPY)
		e = (e + ps - 1) & ~(ps - 1);
	else
		e &= ~(ps - 1);
	if (e <= pos) {
		kind = RUN_COPY;
		e = pos + ps;
	}
	if (e > lim)
		e = lim;
	/* the run ends where page state changes */
	for (uint64_t p = pos + ps; p < e; p += ps) {
		uint8_t q = atomic_load_explicit(&sr->state[++pg], memory_order_relaxed);

		if (q == PH_PG_REMOVED || (q != PH_PG_MISSING && (flags & PH_FILL_SKIP_PRESENT))) {
			e = p;
			break;
		}
	}
	*run_end = e;
	return kind;
}

/**
 * ph_uffd_fill() - install the contents of [addr, addr + len) of a region
 * @s:		server
 * @sr:		the region holding the range
 * @addr:	page-aligned start
 * @len:	page-multiple length
 * @flags:	PH_FILL_SKIP_PRESENT (prefetch), PH_FILL_FAULT (a fault waits)
 * @done:	receives how many bytes from @addr on are handled (installed,
 *		found present or skipped), also on error: resume from there
 *
 * Return: 0, -EAGAIN (an event is pending: drain, then retry from *done),
 *	   -ESRCH (Firecracker is gone) or another -errno from the kernel
 */
int ph_uffd_fill(struct ph_uffd_server *s, struct ph_uffd_sregion *sr, uint64_t addr,
		 uint64_t len, unsigned flags, uint64_t *done)
{
	uint64_t pos = addr, end = addr + len;

	*done = 0;
	while (pos < end) {
		uint64_t run_end, d = 0;
		enum run_kind kind = classify(s, sr, pos, end, flags, &run_end);
		int ret = 0;

		if (kind == RUN_ZERO && (flags & PH_FILL_SKIP_PRESENT)) {
			/* prefetch never installs zeros: a hole costs a fault nothing
			 * a prefetch would save, while installing it costs memory
			 * (all of an unplugged virtio-mem slot, from the hugetlb
			 * pool on 2 MiB regions) */
			mark_hole(s, sr, pos, run_end - pos);
			d = run_end - pos;
		} else if (kind != RUN_SKIP) {
			ret = apply(s, sr, kind, pos, run_end - pos, flags, &d);
		} else {
			d = run_end - pos;
		}
		pos += d;
		*done += d;
		if (ret)
			return ret;
	}
	return 0;
}

struct pending {
	uint64_t addr;
	uint64_t t_ns;
};

static struct ph_uffd_sregion *find_sregion(struct ph_uffd_server *s, uint64_t addr)
{
	size_t lo = 0, hi = s->nreg;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (addr < s->reg[mid].r.base)
			hi = mid;
		else if (addr - s->reg[mid].r.base >= s->reg[mid].r.size)
			lo = mid + 1;
		else
			return &s->reg[mid];
	}
	return NULL;
}

static void record(struct ph_uffd_server *s, uint64_t off)
{
	if (ph_array_grow(&s->rec, &s->caprec, s->nrec + 1, sizeof(*s->rec), 4096))
		return;	/* a shorter trace is still a valid trace */
	s->rec[s->nrec++] = off;
}

/* serve one page fault; any error but -EAGAIN leaves a vCPU stuck for good;
 * @idle: no other fault is queued behind this one */
static int serve(struct ph_uffd_server *s, const struct pending *f, bool idle)
{
	struct ph_uffd_sregion *sr = find_sregion(s, f->addr);
	uint64_t page, done;
	bool was_missing;
	int ret;

	if (!sr) {
		/* registered by Firecracker but not in its table: nothing can serve it */
		ph_error("fault outside every region", PH_FU("addr", f->addr));
		return -ERANGE;
	}
	page = f->addr & ~(sr->r.page_size - 1);
	was_missing = atomic_load(&sr->state[(page - sr->r.base) / sr->r.page_size]) ==
		      PH_PG_MISSING;
	ret = ph_uffd_fill(s, sr, page, sr->r.page_size, PH_FILL_FAULT, &done);
	if (ret)
		return ret;
	add(&s->c.faults, 1);
	ph_uffd_hist_add(&s->lat, ph_now_ns() - f->t_ns);
	if (s->record && was_missing)
		record(s, sr->r.offset + (page - sr->r.base));
	if (idle && s->tkey)
		ph_uffd_trace_follow(s, sr->r.offset + (page - sr->r.base));
	return 0;
}

/* the queue of faults read but not yet served */
struct fault_queue {
	struct pending *q;
	size_t n, cap;
};

/* read every queued uffd message: REMOVEs are applied to the page state at
 * once, faults appended to @fq; 0 or -errno. Runs with the gate closed. */
static int drain(struct ph_uffd_server *s, struct fault_queue *fq)
{
	static struct ph_ratelimit rl_ev;
	struct uffd_msg msgs[MSG_BATCH];

	for (;;) {
		ssize_t n = read(s->uffd, msgs, sizeof(msgs));
		uint64_t now;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0)
			return -errno;
		now = ph_now_ns();
		for (size_t k = 0; k < (size_t)n / sizeof(msgs[0]); k++) {
			const struct uffd_msg *m = &msgs[k];

			if (m->event == UFFD_EVENT_PAGEFAULT) {
				if (ph_array_grow(&fq->q, &fq->cap, fq->n + 1, sizeof(*fq->q), 256))
					return -ENOMEM;
				fq->q[fq->n++] = (struct pending){ m->arg.pagefault.address, now };
			} else if (m->event == UFFD_EVENT_REMOVE) {
				ph_debug("remove", PH_FU("start", m->arg.remove.start),
					 PH_FU("end", m->arg.remove.end));
				if (s->test_remove_delay_ms)
					nanosleep(&(struct timespec){
						  .tv_sec = s->test_remove_delay_ms / 1000,
						  .tv_nsec = (long)(s->test_remove_delay_ms % 1000) *
							     1000000 }, NULL);
				ph_uffd_server_remove(s, m->arg.remove.start, m->arg.remove.end);
			} else if (ph_ratelimit_ok(&rl_ev, ph_now_ms(), 5, 1000)) {
				ph_warn("ignoring uffd event", PH_FU("event", m->event));
			}
		}
		if ((size_t)n < sizeof(msgs))
			return 0;
	}
}

/* the fault thread: wait on the uffd and the stop eventfd; on each wake-up
 * drain every message (gate closed, see "REMOVE and prefetch"), then serve
 * the queued faults in order */
static void *fault_main(void *arg)
{
	struct ph_uffd_server *s = arg;
	struct epoll_event ev[2];
	struct fault_queue fq = { 0 };
	int err = 0, ep;

	if (s->copy_read) {
		int e = 0;

		/* map the bounce buffer now, not on the first fault (len 0 reads nothing) */
		bounce_read(s, 0, 0, &e);
	}

	/* epoll, not poll: the wait queue is set up once instead of on every
	 * fault, a measurable share of a 10 us round trip */
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0 ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, s->uffd, &(struct epoll_event){ .events = EPOLLIN,
									 .data.u32 = 0 }) < 0 ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, s->stop_efd, &(struct epoll_event){ .events = EPOLLIN,
									     .data.u32 = 1 }) < 0) {
		err = -errno;
		goto out;
	}
	while (!atomic_load(&s->stop)) {
		size_t i;
		int r = epoll_wait(ep, ev, 2, fq.n ? 1 : -1);
		bool stop = false, uerr = false;

		if (r < 0 && errno != EINTR) {
			err = -errno;
			break;
		}
		for (int k = 0; k < r; k++) {
			if (ev[k].data.u32 == 1)
				stop = true;
			else if (ev[k].events & EPOLLERR)
				uerr = true;
		}
		if (stop)
			break;
		if (uerr) {
			err = -EBADFD;	/* uffd without UFFDIO_API: not usable */
			break;
		}
		gate_read_begin(s);
		err = drain(s, &fq);
		gate_read_end(s);
		if (err)
			break;
		for (i = 0; i < fq.n; i++) {
			int ret = serve(s, &fq.q[i], i + 1 == fq.n);

			if (ret == -EAGAIN)
				break;	/* drain events, then retry from here */
			if (ret == -ESRCH) {
				err = ret;
				goto out;
			}
			if (ret) {
				/* the kernel never redelivers a fault: this one would
				 * hang its vCPU forever, so it ends the restore */
				if (ret != -ERANGE)
					ph_error("cannot serve fault", PH_FU("addr", fq.q[i].addr),
						 PH_FERR(ret));
				err = ret;
				goto out;
			}
		}
		if (i && i < fq.n)
			memmove(fq.q, fq.q + i, (fq.n - i) * sizeof(*fq.q));
		fq.n -= i;
	}
out:
	if (err)
		ph_uffd_server_end(s, err);
	if (ep >= 0)
		close(ep);
	free(fq.q);
	ph_uffd_bounce_free();	/* fault and trace-follow copies */
	return NULL;
}

/**
 * ph_uffd_server_init() - prepare to serve a restore
 * @s:		server to initialise
 * @uffd:	Firecracker's userfaultfd (still owned by the caller)
 * @mf:		the memory file
 * @r:		validated regions, sorted by base
 * @n:		number of regions
 *
 * Return: 0 or -errno
 */
int ph_uffd_server_init(struct ph_uffd_server *s, int uffd, const struct ph_uffd_memfile *mf,
			const struct ph_uffd_region *r, size_t n)
{
	uint64_t maxps = 4096;
	int fl, ret = -ENOMEM;

	*s = (struct ph_uffd_server){ .uffd = uffd, .mf = mf, .stop_efd = -1, .done_efd = -1,
				      .pf_threads = 1 };
	s->reg = calloc(n ? n : 1, sizeof(*s->reg));
	if (!s->reg)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		s->reg[i].r = r[i];
		s->reg[i].npages = r[i].size / r[i].page_size;
		s->reg[i].state = calloc(s->reg[i].npages, 1);
		s->nreg = i + 1;
		if (!s->reg[i].state)
			goto fail;
		s->total_bytes += r[i].size;
		if (r[i].page_size > maxps)
			maxps = r[i].page_size;
	}
	/* a read-only private anonymous mapping reads as zeros and costs no memory */
	s->zero = mmap(NULL, maxps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->zero == MAP_FAILED) {
		s->zero = NULL;
		ret = -errno;
		goto fail;
	}
	s->zero_len = maxps;
	s->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->done_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_efd < 0 || s->done_efd < 0) {
		ret = -errno;
		goto fail;
	}
	if (pthread_mutex_init(&s->gate.m, NULL)) {
		ret = -ENOMEM;
		goto fail;
	}
	if (pthread_cond_init(&s->gate.cv, NULL)) {
		pthread_mutex_destroy(&s->gate.m);
		ret = -ENOMEM;
		goto fail;
	}
	s->gate_init = true;
	s->gate.on = ph_uffd_has_event_remove(uffd);
	/* Firecracker creates it non-blocking; make sure, the drain loop needs it */
	fl = fcntl(uffd, F_GETFL);
	if (fl < 0 || fcntl(uffd, F_SETFL, fl | O_NONBLOCK) < 0) {
		ret = -errno;
		goto fail;
	}
	s->t0_ns = ph_now_ns();
	return 0;
fail:
	ph_uffd_server_destroy(s);
	return ret;
}

/**
 * ph_uffd_server_start() - start the fault thread and, if asked, the prefetcher
 * @s:		initialised server (prefetch/trace/record fields set)
 *
 * Return: 0 or -errno (nothing left running)
 */
int ph_uffd_server_start(struct ph_uffd_server *s)
{
	int ret;

	if ((s->prefetch == PH_PREFETCH_TRACE || s->prefetch == PH_PREFETCH_TRACE_ALL) &&
	    s->ntrace && (ret = ph_uffd_trace_index(s)))
		return ret;
	ret = -pthread_create(&s->fault_thr, NULL, fault_main, s);
	if (ret)
		return ret;
	s->fault_started = true;
	if (s->prefetch != PH_PREFETCH_NONE) {
		ret = -pthread_create(&s->pf_thr, NULL, ph_uffd_prefetch_main, s);
		if (ret) {
			ph_uffd_server_stop(s);
			return ret;
		}
		s->pf_started = true;
	}
	return 0;
}

/**
 * ph_uffd_server_stop() - stop and join the worker threads
 * @s:		server; idempotent
 */
void ph_uffd_server_stop(struct ph_uffd_server *s)
{
	uint64_t one = 1;

	atomic_store(&s->stop, true);
	if (s->stop_efd >= 0 && write(s->stop_efd, &one, sizeof(one)) < 0) {
		/* the flag alone stops the thread at its next wake-up */
	}
	if (s->fault_started)
		pthread_join(s->fault_thr, NULL);
	if (s->pf_started)
		pthread_join(s->pf_thr, NULL);
	s->fault_started = s->pf_started = false;
}

/**
 * ph_uffd_server_destroy() - free everything (threads must be stopped)
 * @s:		server; safe on a failed init
 */
void ph_uffd_server_destroy(struct ph_uffd_server *s)
{
	for (size_t i = 0; i < s->nreg; i++)
		free(s->reg[i].state);
	free(s->reg);
	s->reg = NULL;
	s->nreg = 0;
	if (s->zero)
		munmap(s->zero, s->zero_len);
	s->zero = NULL;
	if (s->stop_efd >= 0)
		close(s->stop_efd);
	if (s->done_efd >= 0)
		close(s->done_efd);
	s->stop_efd = s->done_efd = -1;
	if (s->gate_init) {
		pthread_cond_destroy(&s->gate.cv);
		pthread_mutex_destroy(&s->gate.m);
		s->gate_init = false;
	}
	free(s->rec);
	s->rec = NULL;
	free(s->tkey);
	free(s->tval);
	s->tkey = NULL;
	s->tval = NULL;
	s->nrec = s->caprec = 0;
}
