// SPDX-License-Identifier: MIT
/* memfile.c - the snapshot memory file: read-only mapping and data/hole map
 *
 * The file is mapped once, PROT_READ and shared, and that mapping is the
 * UFFDIO_COPY source: the kernel copies straight from the page cache into
 * Firecracker's memory, no intermediate buffer. Firecracker writes snapshot
 * memory files sparse (never-touched guest memory is a hole), so the file's
 * data extents are collected once with SEEK_DATA/SEEK_HOLE; holes are then
 * served with UFFDIO_ZEROPAGE, which needs no source and, for reads, no
 * memory at all. On file systems without SEEK_DATA support the whole file
 * counts as data, which is correct, only slower.
 *
 * Every UFFDIO_COPY reads its source through this mapping, and a source page
 * not yet in our page tables costs a minor fault inside the ioctl (with
 * fault-around, per 16 pages): that doubles the cost of a random single-page
 * copy. ph_uffd_memfile_warm() maps the file's data extents up front with
 * MADV_POPULATE_READ (which also reads a cold file into the page cache). It
 * runs on its own thread from startup, so it uses the time before Firecracker
 * connects and never delays serving: a page it has not reached yet is simply
 * faulted in by the copy, as without it.
 */
#include "uffd.h"
#include "log.h"
#include "loop.h"
#include "array.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/**
 * ph_uffd_memfile_scan() - list the data extents of a file
 * @fd:		open file
 * @size:	its size
 * @ext:	receives a malloc'ed array of [start, end) pairs (NULL if none)
 * @next:	receives the number of extents
 *
 * Return: 0 or -errno
 */
int ph_uffd_memfile_scan(int fd, uint64_t size, uint64_t (**ext)[2], size_t *next)
{
	uint64_t (*v)[2] = NULL;
	size_t n = 0, cap = 0;
	off_t pos = 0;

	*ext = NULL;
	*next = 0;
	while ((uint64_t)pos < size) {
		off_t d = lseek(fd, pos, SEEK_DATA), h;

		if (d < 0) {
			if (errno == ENXIO)	/* only a hole remains */
				break;
			if (errno == EINVAL && pos == 0) {	/* no SEEK_DATA here: all data */
				d = 0;
				h = (off_t)size;
				goto add;
			}
			free(v);
			return -errno;
		}
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0) {
			free(v);
			return -errno;
		}
add:
		if ((uint64_t)h > size)
			h = (off_t)size;
		if (ph_array_grow(&v, &cap, n + 1, sizeof(*v), 16)) {
			free(v);
			return -ENOMEM;
		}
		v[n][0] = (uint64_t)d;
		v[n][1] = (uint64_t)h;
		n++;
		pos = h;
	}
	*ext = v;
	*next = n;
	return 0;
}

/**
 * ph_uffd_memfile_open() - open, map and scan the memory file
 * @mf:		receives the file; closed state on failure
 * @path:	file name
 *
 * Return: 0 or -errno (-EINVAL: not a regular non-empty file)
 */
int ph_uffd_memfile_open(struct ph_uffd_memfile *mf, const char *path)
{
	struct stat st;
	void *map;
	int ret;

	*mf = (struct ph_uffd_memfile){ .fd = -1 };
	mf->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (mf->fd < 0)
		return -errno;
	if (fstat(mf->fd, &st) < 0) {
		ret = -errno;
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || st.st_size <= 0) {
		ret = -EINVAL;
		goto fail;
	}
	mf->size = (uint64_t)st.st_size;
	map = mmap(NULL, mf->size, PROT_READ, MAP_SHARED, mf->fd, 0);
	if (map == MAP_FAILED) {
		ret = -errno;
		goto fail;
	}
	mf->map = map;
	ret = ph_uffd_memfile_scan(mf->fd, mf->size, &mf->ext, &mf->next);
	if (ret)
		goto fail;
	return 0;
fail:
	ph_uffd_memfile_close(mf);
	return ret;
}

/**
 * ph_uffd_memfile_close() - unmap and close; safe on a closed file (fd -1)
 * @mf:		the file
 */
void ph_uffd_memfile_close(struct ph_uffd_memfile *mf)
{
	if (mf->map)
		munmap((void *)mf->map, mf->size);
	if (mf->fd >= 0)
		close(mf->fd);
	free(mf->ext);
	*mf = (struct ph_uffd_memfile){ .fd = -1 };
}

/**
 * ph_uffd_memfile_run() - is @off data or hole, and how far does that go
 * @mf:		the file (its extent list)
 * @off:	file offset
 * @end:	stop looking here
 * @run_end:	receives the end of the same-kind run starting at @off, <= @end
 *
 * Return: true if @off holds data, false if it is in a hole
 */
bool ph_uffd_memfile_run(const struct ph_uffd_memfile *mf, uint64_t off, uint64_t end,
			 uint64_t *run_end)
{
	size_t lo = 0, hi = mf->next;

	/* first extent ending after off */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (mf->ext[mid][1] <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < mf->next && mf->ext[lo][0] <= off) {
		*run_end = mf->ext[lo][1] < end ? mf->ext[lo][1] : end;
		return true;
	}
	*run_end = lo < mf->next && mf->ext[lo][0] < end ? mf->ext[lo][0] : end;
	return false;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#define WARM_STEP (64u << 20)

/**
 * ph_uffd_memfile_warm() - thread body: map the file's data into our page tables
 * @arg:	struct ph_uffd_memfile_warmer *
 *
 * Only the data extents: the holes are served with UFFDIO_ZEROPAGE and never
 * read here. That matters on tmpfs (where snapshot files often live): a read
 * fault on a hole of a shared shmem mapping allocates a page and makes the
 * hole data, so warming a whole 4 GiB file with 0.5 GiB of data would take
 * 4 GiB of RAM and, as the file keeps those pages, turn every hole into data
 * for the next restore too (prefetch would then fill unplugged virtio-mem
 * slots). Stops early when @stop is set or the kernel lacks
 * MADV_POPULATE_READ (5.14).
 *
 * Return: NULL
 */
void *ph_uffd_memfile_warm(void *arg)
{
	struct ph_uffd_memfile_warmer *w = arg;
	const struct ph_uffd_memfile *mf = w->mf;
	uint64_t t0 = ph_now_ns();
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	for (size_t i = 0; i < mf->next; i++) {
		/* extents are block-aligned; madvise() wants page-aligned */
		for (uint64_t off = mf->ext[i][0] & ~(page - 1); off < mf->ext[i][1];
		     off += WARM_STEP) {
			uint64_t left = mf->ext[i][1] - off;
			uint64_t len = left < WARM_STEP ? left : WARM_STEP;

			if (atomic_load_explicit(&w->stop, memory_order_relaxed))
				return NULL;
			if (madvise((void *)(mf->map + off), len, MADV_POPULATE_READ) < 0) {
				ph_debug("memory file warm-up stopped", PH_FERR(errno));
				return NULL;
			}
		}
	}
	ph_debug("memory file mapped", PH_FU("ms", (ph_now_ns() - t0) / 1000000));
	return NULL;
}

/**
 * ph_uffd_memfile_data_bytes() - total bytes in data extents
 * @mf:		the file
 *
 * Return: bytes
 */
uint64_t ph_uffd_memfile_data_bytes(const struct ph_uffd_memfile *mf)
{
	uint64_t t = 0;

	for (size_t i = 0; i < mf->next; i++)
		t += mf->ext[i][1] - mf->ext[i][0];
	return t;
}
