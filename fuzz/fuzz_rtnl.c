// SPDX-License-Identifier: MIT
/* fuzz_rtnl.c - libFuzzer harness: rtnetlink datagrams into ph_rtnl_parse(), then ph_rtnl_select() */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rtnl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ph_rtnl_model m;	/* kept across inputs, as the watcher keeps it */
	static const struct ph_ext_spec specs[2] = { { .ifname = "eth0" } };
	struct ph_addr_set s;
	unsigned what = 0;

	if (m.n_addrs > 4096)
		ph_rtnl_model_clear(&m);
	ph_rtnl_parse(data, size, 0, &m, &what);	/* as notifications */
	ph_rtnl_parse(data, size, 42, &m, &what);	/* as a dump (the seeds use 42) */
	ph_rtnl_select(&m, NULL, 0, &s);
	if (s.n > PH_MAX_EXT_ADDRS)
		__builtin_trap();
	ph_rtnl_select(&m, specs, 2, &s);
	if (s.n > PH_MAX_EXT_ADDRS)
		__builtin_trap();
	return 0;
}
