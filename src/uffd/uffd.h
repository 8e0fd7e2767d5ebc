/* SPDX-License-Identifier: MIT */
/* uffd.h - porthole-uffd: Firecracker userfaultfd page server (library API)
 *
 * The library is split by concern:
 *   regions.c   handshake JSON -> validated region table (pure, fuzzed)
 *   socket.c    the listening socket: create (one server per path), hand-over
 *   handshake.c receive Firecracker's JSON + uffd on an accepted connection
 *   memfile.c   the snapshot memory file: read-only mmap + data/hole map
 *   server.c    page state, the fill primitive, the fault-serving thread
 *   prefetch.c  the background prefetch thread (all / trace / trace+all)
 *   trace.c     working-set trace format (parse is pure, fuzzed)
 *   stats.c     latency histogram and the stats JSON
 */
#ifndef PH_UFFD_H
#define PH_UFFD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PH_UFFD_MAX_REGIONS	256
#define PH_UFFD_HANDSHAKE_MAX	(64 * 1024)	/* JSON bytes; ~100 bytes a region */
#define PH_UFFD_CHUNK		(2u << 20)	/* prefetch bytes per UFFDIO_COPY */
#define PH_UFFD_GATE_STEP	(256u << 10)	/* prefetch bytes per pass through the
						 * gate (or one page, if larger): the
						 * longest a fault waits for prefetch */
#define PH_UFFD_MAX_PAGE	(1ull << 30)	/* largest page size accepted (1 GiB) */
#define PH_UFFD_MAX_PF_THREADS	16
#define PH_UFFD_MAX_FDS		8	/* descriptors accepted in the handshake message */

/* ---- regions.c ---------------------------------------------------------- */

/**
 * struct ph_uffd_region - one guest memory region as Firecracker announced it
 * @base:	host virtual address of the region in Firecracker's address space
 * @size:	bytes, a multiple of @page_size
 * @offset:	where the region's contents start in the memory file
 * @page_size:	bytes: 4096, or the huge page size of a hugetlbfs-backed region
 */
struct ph_uffd_region {
	uint64_t base;
	uint64_t size;
	uint64_t offset;
	uint64_t page_size;
};

int ph_uffd_regions_parse(const char *buf, size_t len, uint64_t file_size,
			  struct ph_uffd_region *out, size_t max, size_t *n,
			  char *err, size_t errlen);
ssize_t ph_uffd_regions_find(const struct ph_uffd_region *r, size_t n, uint64_t addr);

/* ---- memfile.c ---------------------------------------------------------- */

/**
 * struct ph_uffd_memfile - the snapshot memory file, mapped read-only
 * @fd:		open descriptor, -1 when closed
 * @size:	file size in bytes
 * @map:	PROT_READ mapping of the whole file (the UFFDIO_COPY source)
 * @ext:	data extents as [start, end) pairs, sorted, non-overlapping;
 *		everything else is a hole and reads as zeros
 * @next:	number of extents
 */
struct ph_uffd_memfile {
	int fd;
	uint64_t size;
	const uint8_t *map;
	uint64_t (*ext)[2];
	size_t next;
};

int ph_uffd_memfile_open(struct ph_uffd_memfile *mf, const char *path);
void ph_uffd_memfile_close(struct ph_uffd_memfile *mf);
int ph_uffd_memfile_scan(int fd, uint64_t size, uint64_t (**ext)[2], size_t *next);
bool ph_uffd_memfile_run(const struct ph_uffd_memfile *mf, uint64_t off, uint64_t end,
			 uint64_t *run_end);
uint64_t ph_uffd_memfile_data_bytes(const struct ph_uffd_memfile *mf);

/**
 * struct ph_uffd_memfile_warmer - background pre-mapping of the copy source
 * @mf:		the file
 * @stop:	set to make the thread return early
 */
struct ph_uffd_memfile_warmer {
	const struct ph_uffd_memfile *mf;
	atomic_bool stop;
};

void *ph_uffd_memfile_warm(void *arg);

/* ---- socket.c ----------------------------------------------------------- */

/**
 * struct ph_uffd_sockopts - owner and mode for the socket we create
 * @uid:	owner (with @owner_set)
 * @gid:	group (with @gid_set)
 * @mode:	permission bits (with @mode_set)
 */
struct ph_uffd_sockopts {
	uid_t uid;
	gid_t gid;
	mode_t mode;
	bool owner_set, gid_set, mode_set;
};

/**
 * struct ph_uffd_lsock - the socket file we bound, to unlink only our own
 * @dev:	device of the socket inode
 * @ino:	inode number
 * @bound:	a file was bound (and not yet unlinked)
 */
struct ph_uffd_lsock {
	dev_t dev;
	ino_t ino;
	bool bound;
};

int ph_uffd_sock_probe(const char *path, pid_t *pid);
int ph_uffd_listen(const char *path, const struct ph_uffd_sockopts *o, struct ph_uffd_lsock *ls,
		   pid_t *live_pid);
void ph_uffd_unlink_ours(const char *path, struct ph_uffd_lsock *ls);
int ph_uffd_check_listener(int fd);
int ph_uffd_listen_fds(int *fd);

/* ---- handshake.c -------------------------------------------------------- */

int ph_uffd_handshake(int conn, uint64_t file_size, int timeout_ms,
		      struct ph_uffd_region *out, size_t max, size_t *n, int *uffd,
		      unsigned *ignored, char *err, size_t errlen);

/* ---- trace.c ------------------------------------------------------------ */

int ph_uffd_trace_parse(const char *buf, size_t len, uint64_t **offs, size_t *n,
			char *err, size_t errlen);
int ph_uffd_trace_load(const char *path, uint64_t **offs, size_t *n, char *err, size_t errlen);
int ph_uffd_trace_save(const char *path, const uint64_t *offs, size_t n);

/* ---- stats.c ------------------------------------------------------------ */

#define PH_UFFD_HIST_SUB	64	/* sub-buckets per power of two: <= 1.6% error */
#define PH_UFFD_HIST_BUCKETS	(64 * PH_UFFD_HIST_SUB)

/**
 * struct ph_uffd_hist - log-linear latency histogram (zero-initialised: empty)
 * @b:		bucket counts
 * @n:		samples
 * @max:	largest sample
 */
struct ph_uffd_hist {
	uint64_t b[PH_UFFD_HIST_BUCKETS];
	uint64_t n;
	uint64_t max;
};

void ph_uffd_hist_add(struct ph_uffd_hist *h, uint64_t v);
uint64_t ph_uffd_hist_quantile(const struct ph_uffd_hist *h, double q);

/* ---- server.c ----------------------------------------------------------- */

enum ph_uffd_prefetch {
	PH_PREFETCH_NONE,
	PH_PREFETCH_ALL,
	PH_PREFETCH_TRACE,
	PH_PREFETCH_TRACE_ALL,
};

int ph_uffd_prefetch_parse(const char *s, enum ph_uffd_prefetch *out);
const char *ph_uffd_prefetch_name(enum ph_uffd_prefetch m);

/* page states (one byte per region page); HOLE: a file hole prefetch left
 * alone (it reads as zeros, so a fault serves it as cheaply as a prefetch) */
enum { PH_PG_MISSING = 0, PH_PG_PRESENT = 1, PH_PG_REMOVED = 2, PH_PG_HOLE = 3 };

/**
 * struct ph_uffd_sregion - a region plus the server's per-page state
 * @r:		the region
 * @npages:	@r.size / @r.page_size
 * @state:	PH_PG_* per page; PH_PG_REMOVED pages are served as zeros forever
 */
struct ph_uffd_sregion {
	struct ph_uffd_region r;
	uint64_t npages;
	_Atomic uint8_t *state;
};

/**
 * struct ph_uffd_counters - statistics shared by the worker threads
 * All counters are relaxed atomics: they are read only for reporting.
 */
struct ph_uffd_counters {
	atomic_uint_fast64_t faults;		/* page-fault messages served */
	atomic_uint_fast64_t fault_bytes;	/* bytes installed by the fault path */
	atomic_uint_fast64_t pages_prefetched;	/* region pages installed by prefetch */
	atomic_uint_fast64_t bytes_prefetched;
	atomic_uint_fast64_t zero_pages;	/* region pages filled with zeros */
	atomic_uint_fast64_t eexist;		/* page already present (a lost race) */
	atomic_uint_fast64_t eagain;		/* ioctl deferred by a pending event */
	atomic_uint_fast64_t removed_ranges;	/* UFFD_EVENT_REMOVE messages */
	atomic_uint_fast64_t removed_bytes;
	atomic_uint_fast64_t trace_replayed;	/* bytes the trace replay installed */
	atomic_uint_fast64_t ioctls;		/* UFFDIO_COPY/ZEROPAGE calls */
	atomic_uint_fast64_t gate_waits;	/* prefetch steps that waited for the
						 * fault thread to read and apply events */
};

/**
 * struct ph_uffd_gate - keeps prefetch copies apart from the reading of events
 * @m:		protects the fields below
 * @cv:		signalled when @copiers drops to 0 or @reading is cleared
 * @copiers:	prefetch threads between deciding what to copy and the
 *		copy's return
 * @reading:	the fault thread reads (or waits to read) the uffd
 * @on:		the uffd has UFFD_FEATURE_EVENT_REMOVE; without it no event
 *		can race a copy and the gate is never taken
 *
 * Reading a UFFD_EVENT_REMOVE lets Firecracker's madvise() go on and zap the
 * range, so a copy decided before the event was applied must have returned
 * before the event is read (see server.c).
 */
struct ph_uffd_gate {
	pthread_mutex_t m;
	pthread_cond_t cv;
	unsigned copiers;
	bool reading;
	bool on;
};

/**
 * struct ph_uffd_server - one served Firecracker restore
 *
 * Filled by ph_uffd_server_init(); the caller may then set the prefetch and
 * trace fields before ph_uffd_server_start(). After ph_uffd_server_stop()
 * every field may be read without synchronisation.
 */
struct ph_uffd_server {
	int uffd;
	const struct ph_uffd_memfile *mf;
	struct ph_uffd_sregion *reg;	/* sorted by base */
	size_t nreg;
	uint64_t total_bytes;
	uint8_t *zero;			/* zero source for huge pages */
	size_t zero_len;

	enum ph_uffd_prefetch prefetch;
	const uint64_t *trace;		/* file offsets to replay, in order */
	size_t ntrace;
	bool record;			/* keep the order of first-touch faults */
	unsigned pf_threads;		/* threads for the "all" pass (>= 1) */
	atomic_uint_fast64_t pf_cursor;	/* next chunk of the "all" pass */
	atomic_bool pf_abort;		/* a prefetch worker hit the end */
	atomic_size_t trace_next;	/* replay cursor (index into trace) */
	uint64_t *tkey;			/* trace index: file offset + 1 -> position */
	size_t *tval;
	size_t tmask;

	int stop_efd;			/* main -> fault thread: stop */
	int done_efd;			/* workers -> main: owner gone or fatal */
	atomic_bool stop;
	atomic_int end_err;		/* 0, -ESRCH (owner gone) or a fatal -errno */

	uint64_t t0_ns;			/* handshake completed */
	atomic_uint_fast64_t resolved_bytes;	/* pages present or removed */
	atomic_uint_fast64_t populated_ns;	/* when resolved_bytes hit total */
	atomic_uint_fast64_t prefetch_done_ns;

	struct ph_uffd_counters c;
	struct ph_uffd_gate gate;	/* prefetch copies vs. reading events */
	bool gate_init;
	struct ph_uffd_hist lat;	/* fault service ns; fault thread only */
	uint64_t *rec;			/* recorded trace; fault thread only */
	size_t nrec, caprec;

	pthread_t fault_thr, pf_thr;
	bool fault_started, pf_started;

	bool copy_read;			/* fault and prefetch copies from a pread() bounce
					 * buffer (else from the file mapping) */
	unsigned test_remove_delay_ms;	/* tests only: stall between reading a REMOVE
					 * and applying it (PORTHOLE_UFFD_TEST_REMOVE_DELAY_MS) */
};

#define PH_FILL_SKIP_PRESENT	1u	/* prefetch: install file data into missing pages
					 * only: skip present, removed and hole pages */
#define PH_FILL_FAULT		2u	/* a fault waits on this range: wake it on EEXIST */

int ph_uffd_server_init(struct ph_uffd_server *s, int uffd, const struct ph_uffd_memfile *mf,
			const struct ph_uffd_region *r, size_t n);
int ph_uffd_server_start(struct ph_uffd_server *s);
void ph_uffd_server_stop(struct ph_uffd_server *s);
void ph_uffd_server_destroy(struct ph_uffd_server *s);
int ph_uffd_fill(struct ph_uffd_server *s, struct ph_uffd_sregion *sr, uint64_t addr,
		 uint64_t len, unsigned flags, uint64_t *done);
void ph_uffd_server_remove(struct ph_uffd_server *s, uint64_t start, uint64_t end);
void ph_uffd_server_end(struct ph_uffd_server *s, int err);
void ph_uffd_gate_copy_begin(struct ph_uffd_server *s);
void ph_uffd_bounce_free(void);
void ph_uffd_gate_copy_end(struct ph_uffd_server *s);
bool ph_uffd_has_event_remove(int uffd);

/* ---- prefetch.c --------------------------------------------------------- */

void *ph_uffd_prefetch_main(void *arg);
int ph_uffd_trace_index(struct ph_uffd_server *s);
void ph_uffd_trace_follow(struct ph_uffd_server *s, uint64_t off);

/* ---- stats.c (report) --------------------------------------------------- */

int ph_uffd_stats_write(const struct ph_uffd_server *s, const char *path, const char *reason);

#endif /* PH_UFFD_H */
