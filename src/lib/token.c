// SPDX-License-Identifier: MIT
/* token.c - read a bearer token file */
#include "token.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int ph_token_read(const char *path, char *buf, size_t size, size_t *len)
{
	size_t l = 0;
	int fd, ret = 0;

	if (!size)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* read to EOF: a pipe or /proc file may deliver the token in pieces */
	for (;;) {
		ssize_t n = read(fd, buf + l, size - l);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		if (!n)
			break;
		l += (size_t)n;
		if (l >= size) {
			ret = -EFBIG;	/* no room for the NUL: too long */
			goto out;
		}
	}
	while (l && (buf[l - 1] == '\n' || buf[l - 1] == '\r' || buf[l - 1] == ' '))
		l--;
	buf[l] = '\0';
	/* token68 characters only, so it can never smuggle a header line */
	for (size_t i = 0; i < l; i++) {
		unsigned char c = (unsigned char)buf[i];

		/* c != 0: strchr() would find the terminator */
		if (!c || (!isalnum(c) && !strchr("-._~+/=", c))) {
			ret = -EINVAL;
			goto out;
		}
	}
	if (!l)
		ret = -EINVAL;
	*len = l;
out:
	if (ret)
		buf[0] = '\0';
	close(fd);
	return ret;
}
