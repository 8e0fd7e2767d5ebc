/* SPDX-License-Identifier: MIT */
/* parse.h - strict parsers for command-line values (numbers, durations, addresses) */
#ifndef PH_PARSE_H
#define PH_PARSE_H

#include <stdint.h>
#include <sys/socket.h>

/**
 * ph_parse_uint() - decimal integer within [min, max], nothing else
 * Return: 0 or -EINVAL (empty, sign, garbage, out of range)
 */
int ph_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/**
 * ph_parse_duration_ms() - "250ms", "5s", "1.5s", "2m", "1h"; a bare number is seconds
 * Return: 0 or -EINVAL
 */
int ph_parse_duration_ms(const char *s, uint64_t *out_ms);

/**
 * ph_parse_hostport() - "ADDR:PORT", "[V6]:PORT" or "HOST:PORT" with numeric host
 * @s:		text
 * @ss, @len:	resulting socket address (AF_INET or AF_INET6)
 * @allow_port0: accept port 0
 *
 * Name resolution is deliberately not done (static binaries, no NSS),
 * except that "localhost" means 127.0.0.1. Return: 0 or -EINVAL
 */
int ph_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len, int allow_port0);

/**
 * ph_hexval() - value of one hexadecimal digit (either case)
 * Return: 0..15, or -1 if @c is not a hex digit
 */
int ph_hexval(char c);

#endif /* PH_PARSE_H */
