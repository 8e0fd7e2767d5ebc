// SPDX-License-Identifier: MIT
/* fuzz_steer_diag.c - libFuzzer harness: one sock_diag dump datagram into ph_steer_diag_parse() */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <linux/inet_diag.h>

#include "steer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_msg(const struct inet_diag_msg *m, void *arg)
{
	size_t *n = arg;

	if (m->idiag_family == 2 || m->idiag_family == 10)	/* read every field once */
		(*n)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n = 0;
	int ret = ph_steer_diag_parse(data, size, on_msg, &n);

	if (ret > 1 || (ret < 0 && ret < -4095))	/* 1, 0 or -errno only */
		__builtin_trap();
	return 0;
}
