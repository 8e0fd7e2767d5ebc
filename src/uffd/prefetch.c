// SPDX-License-Identifier: MIT
/* prefetch.c - the background thread that fills guest memory ahead of faults
 *
 * Modes (--prefetch):
 *   all        every region, front to back, PH_UFFD_CHUNK bytes a UFFDIO_COPY,
 *              on --prefetch-threads threads taking chunks from a shared
 *              cursor (populating memory is bound by page allocation and
 *              copying in the kernel, which scales with CPUs);
 *   trace      the pages of a recorded working set, in recorded order, with
 *              runs of adjacent pages merged into one ioctl of up to a chunk;
 *   trace+all  the trace first (what the guest needs soon), then the rest.
 * Only file data is copied: pages that are already present (a fault got
 * there first), removed (balloon or virtio-mem REMOVE) or file holes are
 * skipped by ph_uffd_fill(), so prefetching never undoes a fault or a REMOVE
 * and never commits memory for zeros (unplugged virtio-mem slots are holes).
 * The fault thread runs concurrently; it waits for this one only while it
 * reads the uffd, and then for at most one step (PH_UFFD_GATE_STEP bytes or
 * one huge page) per prefetch thread: a step decides what to copy and copies
 * it without a REMOVE being read in between (the gate, see server.c). An
 * EAGAIN (an unread REMOVE event) is retried after a short sleep, by which
 * time the fault thread has drained the event.
 */
#include "uffd.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#define EAGAIN_SLEEP_NS	100000	/* 100 us */

/* fill a range, riding out EAGAIN; 0, -ESRCH, -ECANCELED (stopping) or -errno.
 * Each step (its page states read, then copied) passes the gate, so it never
 * straddles the fault thread's reading of a REMOVE (server.c, "REMOVE and
 * prefetch") */
static int fill_retry(struct ph_uffd_server *s, struct ph_uffd_sregion *sr, uint64_t addr,
		      uint64_t len)
{
	uint64_t step = sr->r.page_size > PH_UFFD_GATE_STEP ? sr->r.page_size : PH_UFFD_GATE_STEP;

	while (len) {
		uint64_t done = 0;
		int ret;

		if (atomic_load_explicit(&s->stop, memory_order_relaxed))
			return -ECANCELED;
		ph_uffd_gate_copy_begin(s);
		ret = ph_uffd_fill(s, sr, addr, len < step ? len : step, PH_FILL_SKIP_PRESENT,
				   &done);
		ph_uffd_gate_copy_end(s);
		addr += done;
		len -= done;
		if (ret == -EAGAIN)
			nanosleep(&(struct timespec){ .tv_nsec = EAGAIN_SLEEP_NS }, NULL);
		else if (ret)
			return ret;
	}
	return 0;
}

/* true: keep going; false: stop the prefetcher (restore over or stopping) */
static bool check(struct ph_uffd_server *s, int ret, uint64_t addr)
{
	if (!ret || ret == -EEXIST)
		return true;
	if (ret == -ECANCELED)
		return false;
	if (ret == -ESRCH) {
		ph_uffd_server_end(s, ret);
		return false;
	}
	if (ret == -EFAULT) {
		/* the copy source could not be read: an I/O error on the memory file */
		ph_error("cannot read the memory file", PH_FU("addr", addr), PH_FERR(ret));
		ph_uffd_server_end(s, ret);
		return false;
	}
	/* e.g. ENOENT: Firecracker unmapped the range; the rest may still be there */
	ph_warn("prefetch failed for a range", PH_FU("addr", addr), PH_FERR(ret));
	return true;
}

/* map a file offset to its region (last hit cached: traces are mostly local) */
static struct ph_uffd_sregion *by_offset(struct ph_uffd_server *s, uint64_t off, size_t *hint)
{
	for (size_t k = 0; k < s->nreg; k++) {
		size_t i = (*hint + k) % s->nreg;
		struct ph_uffd_sregion *sr = &s->reg[i];

		if (off >= sr->r.offset && off - sr->r.offset < sr->r.size) {
			*hint = i;
			return sr;
		}
	}
	return NULL;
}

/*
 * The replay cursor (trace_next) is shared: the replay thread claims runs
 * from it, and the fault thread, when the guest faults on a trace page at or
 * past the cursor (the guest caught up with the replay), claims the next
 * FOLLOW_AHEAD pages past the fault itself and copies them while it is idle.
 * The replay thread then continues beyond those: two threads copy ahead of
 * the guest instead of one, and trace pages the guest has already passed are
 * not copied again (for trace+all the "all" pass catches anything skipped).
 */
#define FOLLOW_AHEAD 16

/* claim trace entries [lo, hi) minus what is already claimed; *start = first claimed */
static bool claim(struct ph_uffd_server *s, size_t lo, size_t hi, size_t *start)
{
	size_t cur = atomic_load(&s->trace_next);

	do {
		if (cur >= hi)
			return false;
		*start = cur > lo ? cur : lo;
	} while (!atomic_compare_exchange_weak(&s->trace_next, &cur, hi));
	return true;
}

static uint64_t hash_off(uint64_t off)
{
	return (off >> 12) * 0x9e3779b97f4a7c15ull;
}

/**
 * ph_uffd_trace_index() - build the file offset -> trace position index
 * @s:		server with trace/ntrace set
 *
 * Return: 0 or -ENOMEM
 */
int ph_uffd_trace_index(struct ph_uffd_server *s)
{
	size_t cap = 16;

	while (cap < s->ntrace * 2)
		cap *= 2;
	s->tkey = calloc(cap, sizeof(*s->tkey));
	s->tval = calloc(cap, sizeof(*s->tval));
	if (!s->tkey || !s->tval)
		return -ENOMEM;
	s->tmask = cap - 1;
	for (size_t i = 0; i < s->ntrace; i++) {
		size_t h = hash_off(s->trace[i]) & s->tmask;

		while (s->tkey[h] && s->tkey[h] != s->trace[i] + 1)
			h = (h + 1) & s->tmask;
		if (!s->tkey[h]) {	/* first occurrence wins */
			s->tkey[h] = s->trace[i] + 1;
			s->tval[h] = i;
		}
	}
	return 0;
}

/**
 * ph_uffd_trace_follow() - the guest faulted on file offset @off: copy ahead
 * @s:		server (fault thread)
 * @off:	file offset of the faulted page
 *
 * Does nothing unless @off is in the trace at or past the replay cursor.
 */
void ph_uffd_trace_follow(struct ph_uffd_server *s, uint64_t off)
{
	size_t h, k, st, hint = 0;

	if (!s->tkey || atomic_load_explicit(&s->trace_next, memory_order_relaxed) >= s->ntrace)
		return;
	for (h = hash_off(off) & s->tmask; s->tkey[h] != off + 1; h = (h + 1) & s->tmask)
		if (!s->tkey[h])
			return;
	k = s->tval[h];
	if (!claim(s, k + 1, k + 1 + FOLLOW_AHEAD, &st))
		return;
	for (size_t i = st; i < k + 1 + FOLLOW_AHEAD && i < s->ntrace; i++) {
		struct ph_uffd_sregion *sr = by_offset(s, s->trace[i], &hint);
		uint64_t done;

		if (!sr)
			continue;
		/* errors (EAGAIN included) leave the page to its own fault */
		if (ph_uffd_fill(s, sr, sr->r.base + ((s->trace[i] - sr->r.offset) &
						     ~(sr->r.page_size - 1)),
				 sr->r.page_size, PH_FILL_SKIP_PRESENT, &done) == -ESRCH)
			return;
	}
}

static bool replay(struct ph_uffd_server *s)
{
	uint64_t before = atomic_load(&s->c.bytes_prefetched), skipped = 0;
	size_t hint = 0;

	for (;;) {
		size_t i = atomic_load(&s->trace_next), j, st;
		struct ph_uffd_sregion *sr, *nx;
		uint64_t ps, addr, len;
		int ret;

		if (i >= s->ntrace)
			break;
		sr = by_offset(s, s->trace[i], &hint);
		if (!sr) {
			if (claim(s, i, i + 1, &st))
				skipped++;
			continue;
		}
		ps = sr->r.page_size;
		addr = sr->r.base + ((s->trace[i] - sr->r.offset) & ~(ps - 1));
		len = ps;
		/* merge a run of adjacent pages into one ioctl */
		for (j = i + 1; j < s->ntrace && len < PH_UFFD_CHUNK; j++) {
			uint64_t o = s->trace[j];

			nx = by_offset(s, o, &hint);
			if (nx != sr || sr->r.base + ((o - sr->r.offset) & ~(ps - 1)) != addr + len)
				break;
			len += ps;
		}
		if (!claim(s, i, j, &st))
			continue;
		/* the fault thread may have claimed the head of the run */
		addr += (st - i) * ps;
		len -= (st - i) * ps;
		ret = fill_retry(s, sr, addr, len);
		if (!check(s, ret, addr))
			return false;
	}
	atomic_store(&s->c.trace_replayed, atomic_load(&s->c.bytes_prefetched) - before);
	ph_info("trace replayed", PH_FU("pages", s->ntrace),
		PH_FU("bytes_installed", atomic_load(&s->c.bytes_prefetched) - before),
		PH_FU("outside_regions", skipped),
		PH_FU("ms", (ph_now_ns() - s->t0_ns) / 1000000));
	return true;
}

/* the next chunk of the "all" pass, shared by all prefetch workers */
static bool next_chunk(struct ph_uffd_server *s, struct ph_uffd_sregion **sr, uint64_t *addr,
		       uint64_t *len)
{
	uint64_t idx = atomic_fetch_add(&s->pf_cursor, 1);

	for (size_t i = 0; i < s->nreg; i++) {
		const struct ph_uffd_region *r = &s->reg[i].r;
		uint64_t step = r->page_size > PH_UFFD_CHUNK ? r->page_size : PH_UFFD_CHUNK;
		uint64_t n = (r->size + step - 1) / step;

		if (idx < n) {
			*sr = &s->reg[i];
			*addr = r->base + idx * step;
			*len = r->size - idx * step < step ? r->size - idx * step : step;
			return true;
		}
		idx -= n;
	}
	return false;
}

static void *all_worker(void *arg)
{
	struct ph_uffd_server *s = arg;
	struct ph_uffd_sregion *sr;
	uint64_t addr, len;

	while (!atomic_load_explicit(&s->pf_abort, memory_order_relaxed) &&
	       next_chunk(s, &sr, &addr, &len)) {
		if (!check(s, fill_retry(s, sr, addr, len), addr)) {
			atomic_store(&s->pf_abort, true);
			break;
		}
	}
	ph_uffd_bounce_free();
	return NULL;
}

/* every region front to back, chunk by chunk, on pf_threads threads */
static bool fill_all(struct ph_uffd_server *s)
{
	pthread_t helper[PH_UFFD_MAX_PF_THREADS];
	unsigned n = 0;

	for (unsigned i = 1; i < s->pf_threads && i < PH_UFFD_MAX_PF_THREADS; i++)
		if (!pthread_create(&helper[n], NULL, all_worker, s))
			n++;
	all_worker(s);
	for (unsigned i = 0; i < n; i++)
		pthread_join(helper[i], NULL);
	return !atomic_load(&s->pf_abort);
}

/**
 * ph_uffd_prefetch_main() - prefetch thread body
 * @arg:	struct ph_uffd_server *
 *
 * Return: NULL
 */
void *ph_uffd_prefetch_main(void *arg)
{
	struct ph_uffd_server *s = arg;
	bool ok = true;

	if (s->prefetch == PH_PREFETCH_TRACE || s->prefetch == PH_PREFETCH_TRACE_ALL)
		ok = replay(s);
	if (ok && (s->prefetch == PH_PREFETCH_ALL || s->prefetch == PH_PREFETCH_TRACE_ALL))
		ok = fill_all(s);
	if (ok) {
		atomic_store(&s->prefetch_done_ns, ph_now_ns() - s->t0_ns + 1);
		ph_info("prefetch finished", PH_FS("mode", ph_uffd_prefetch_name(s->prefetch)),
			PH_FU("bytes", atomic_load(&s->c.bytes_prefetched)),
			PH_FU("ms", (ph_now_ns() - s->t0_ns) / 1000000));
	}
	ph_uffd_bounce_free();
	return NULL;
}
