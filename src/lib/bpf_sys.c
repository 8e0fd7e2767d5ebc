// SPDX-License-Identifier: MIT
/* bpf_sys.c - the bpf() system call, without libbpf: create a map, load a program, link it
 *
 * The few BPF objects porthole uses are made with four calls; libbpf would
 * bring ELF parsing and BTF into a daemon that must stay small and static.
 */
#include "bpf_sys.h"

#ifdef PH_HAVE_BPF

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int ph_bpf(int cmd, union bpf_attr *attr)
{
	long ret = syscall(SYS_bpf, cmd, attr, sizeof(*attr));

	return ret < 0 ? -errno : (int)ret;
}

int ph_bpf_map_create(enum bpf_map_type type, unsigned key_size, unsigned value_size,
		      unsigned max_entries, unsigned flags)
{
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.map_type = type;
	a.key_size = key_size;
	a.value_size = value_size;
	a.max_entries = max_entries;
	a.map_flags = flags;
	return ph_bpf(BPF_MAP_CREATE, &a);
}

int ph_bpf_prog_load(enum bpf_prog_type type, enum bpf_attach_type attach_type,
		     const struct bpf_insn *insns, unsigned n, char *why, size_t len)
{
	static char log[8192];
	union bpf_attr a;
	int ret;

	memset(&a, 0, sizeof(a));
	a.prog_type = type;
	a.expected_attach_type = attach_type;
	a.insns = (uintptr_t)insns;
	a.insn_cnt = n;
	a.license = (uintptr_t)"Dual MIT/GPL";	/* bpf_probe_read_kernel is GPL-only */
	ret = ph_bpf(BPF_PROG_LOAD, &a);
	if (ret != -EACCES && ret != -EINVAL)
		return ret;
	/* load again with the verifier's log, only to say why */
	log[0] = 0;
	a.log_buf = (uintptr_t)log;
	a.log_size = sizeof(log);
	a.log_level = 1;
	ret = ph_bpf(BPF_PROG_LOAD, &a);
	if (ret < 0) {
		size_t k = strlen(log);

		while (k && (log[k - 1] == '\n' || log[k - 1] == ' '))
			log[--k] = 0;
		snprintf(why, len, "the verifier refused the program: %s",
			 strrchr(log, '\n') ? strrchr(log, '\n') + 1 : log);
	}
	return ret;
}

int ph_bpf_link_create(int prog_fd, int target_fd, enum bpf_attach_type attach_type)
{
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.link_create.prog_fd = (unsigned)prog_fd;
	a.link_create.target_fd = (unsigned)target_fd;
	a.link_create.attach_type = attach_type;
	return ph_bpf(BPF_LINK_CREATE, &a);
}

#endif /* PH_HAVE_BPF */
