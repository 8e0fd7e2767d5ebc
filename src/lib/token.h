/* SPDX-License-Identifier: MIT */
/* token.h - read a bearer token file (portholed --token-file, portholectl --token-file) */
#ifndef PH_TOKEN_H
#define PH_TOKEN_H

#include <stddef.h>

#define PH_TOKEN_MAX 512

/**
 * ph_token_read() - read and validate a bearer token file
 * @path:	file name
 * @buf, @size:	result, NUL-terminated
 * @len:	its length
 *
 * Trailing newlines, CRs and spaces are dropped; what remains must be a
 * non-empty RFC 6750 token68, so it can be put in a header line verbatim.
 *
 * Return: 0, -EINVAL (empty or not a token68), -EFBIG (too long), or -errno
 */
int ph_token_read(const char *path, char *buf, size_t size, size_t *len);

#endif /* PH_TOKEN_H */
