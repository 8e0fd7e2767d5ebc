// SPDX-License-Identifier: MIT
/* trace.c - the working-set trace file: which pages a restore faulted, in order
 *
 * A trace names pages by their offset in the memory file, not by address:
 * Firecracker maps guest memory at a different address on every restore, but
 * the file layout of one snapshot never changes. The format is text, one
 * page per line, so traces can be inspected, diffed and cut with standard
 * tools:
 *
 *   # porthole-uffd trace v1
 *   0x1a2000
 *   0x1a3000
 *
 * Lines starting with '#' and blank lines are ignored. Offsets are hexadecimal
 * (the 0x prefix is optional) and 4 KiB aligned; for huge-page regions the
 * offset of the huge page is recorded.
 */
#include "uffd.h"
#include "array.h"
#include "parse.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TRACE_MAX_BYTES	(256u << 20)

/**
 * ph_uffd_trace_parse() - parse trace text
 * @buf:	text (not NUL terminated)
 * @len:	bytes
 * @offs:	receives a malloc'ed array of file offsets (NULL when empty)
 * @n:		receives the number of entries
 * @err:	receives the reason on failure (may be NULL)
 * @errlen:	size of @err
 *
 * Return: 0, -EINVAL (bad line, @err says which) or -ENOMEM
 */
int ph_uffd_trace_parse(const char *buf, size_t len, uint64_t **offs, size_t *n,
			char *err, size_t errlen)
{
	uint64_t *v = NULL;
	size_t cnt = 0, cap = 0, line = 0, i = 0;

	*offs = NULL;
	*n = 0;
	while (i < len) {
		size_t e = i, p;
		uint64_t val = 0;
		int digits = 0;

		while (e < len && buf[e] != '\n')
			e++;
		line++;
		p = i;
		i = e + 1;
		while (p < e && (buf[p] == ' ' || buf[p] == '\t' || buf[p] == '\r'))
			p++;
		if (p == e || buf[p] == '#')
			continue;
		if (e - p > 2 && buf[p] == '0' && (buf[p + 1] == 'x' || buf[p + 1] == 'X'))
			p += 2;
		for (; p < e && ph_hexval(buf[p]) >= 0; p++, digits++) {
			if (val >> 60) {
				digits = -1;
				break;
			}
			val = val << 4 | (uint64_t)ph_hexval(buf[p]);
		}
		while (digits > 0 && p < e && (buf[p] == ' ' || buf[p] == '\t' || buf[p] == '\r'))
			p++;
		if (digits <= 0 || p != e || (val & 4095)) {
			if (err && errlen)
				snprintf(err, errlen, "line %zu: expected a 4 KiB aligned hex offset",
					 line);
			free(v);
			return -EINVAL;
		}
		if (ph_array_grow(&v, &cap, cnt + 1, sizeof(*v), 1024)) {
			free(v);
			return -ENOMEM;
		}
		v[cnt++] = val;
	}
	*offs = v;
	*n = cnt;
	return 0;
}

/**
 * ph_uffd_trace_load() - read and parse a trace file
 * @path:	file name
 * @offs:	receives the offsets (caller frees)
 * @n:		receives the count
 * @err:	receives the reason on a parse failure
 * @errlen:	size of @err
 *
 * Return: 0 or -errno
 */
int ph_uffd_trace_load(const char *path, uint64_t **offs, size_t *n, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int fd, ret;

	*offs = NULL;
	*n = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	if (st.st_size > TRACE_MAX_BYTES) {
		ret = -EFBIG;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	while (len < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + len, (size_t)st.st_size - len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	ret = ph_uffd_trace_parse(buf, len, offs, n, err, errlen);
out:
	free(buf);
	close(fd);
	return ret;
}

/**
 * ph_uffd_trace_save() - write a trace atomically (temporary file + rename)
 * @path:	file name
 * @offs:	file offsets in fault order
 * @n:		count
 *
 * Return: 0 or -errno
 */
int ph_uffd_trace_save(const char *path, const uint64_t *offs, size_t n)
{
	size_t plen = strlen(path) + 8;
	char *tmp = malloc(plen);
	FILE *f = NULL;
	int ret = 0;

	if (!tmp)
		return -ENOMEM;
	snprintf(tmp, plen, "%s.tmp", path);
	f = fopen(tmp, "we");
	if (!f) {
		ret = -errno;
		goto out;
	}
	fprintf(f, "# porthole-uffd trace v1\n");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "0x%llx\n", (unsigned long long)offs[i]);
	if (fflush(f) || ferror(f))
		ret = -EIO;
	if (fclose(f) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path) < 0)
		ret = -errno;
	if (ret)
		unlink(tmp);
out:
	free(tmp);
	return ret;
}
