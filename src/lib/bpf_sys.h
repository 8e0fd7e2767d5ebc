/* SPDX-License-Identifier: MIT */
/* bpf_sys.h - the bpf() system call, without libbpf: create a map, load a program, link it */
#ifndef PH_BPF_SYS_H
#define PH_BPF_SYS_H

#include <stddef.h>
#include <stdint.h>

/* PH_HAVE_BPF: <linux/bpf.h> exists, events are not built out (EVENTS=0),
 * and the kernel structures the programs read are 64-bit */
#if defined(__has_include) && __has_include(<linux/bpf.h>) && !defined(PH_NO_EVENTS) && \
	UINTPTR_MAX == UINT64_MAX
#define PH_HAVE_BPF 1
#include <linux/bpf.h>

/* bpf(@cmd, @attr). Return: the kernel's result, or -errno */
int ph_bpf(int cmd, union bpf_attr *attr);

/* BPF_MAP_CREATE. Return: the map's fd, or -errno */
int ph_bpf_map_create(enum bpf_map_type type, unsigned key_size, unsigned value_size,
		      unsigned max_entries, unsigned flags);

/**
 * ph_bpf_prog_load() - load a program; on a verifier refusal, say why
 * @type:		BPF_PROG_TYPE_*
 * @attach_type:	expected_attach_type (0 where the type needs none)
 * @insns:		the program
 * @n:			its length in instructions
 * @why:		on -EACCES/-EINVAL, "the verifier refused the program: <last log line>"
 * @len:		size of @why
 *
 * Not thread-safe (one shared log buffer): callers load from one thread at a time.
 * Return: the program's fd, or -errno
 */
int ph_bpf_prog_load(enum bpf_prog_type type, enum bpf_attach_type attach_type,
		     const struct bpf_insn *insns, unsigned n, char *why, size_t len);

/**
 * ph_bpf_link_create() - attach a program through a BPF link (BPF_LINK_CREATE)
 * @prog_fd:		the program
 * @target_fd:		what to attach to (a cgroup directory for the cgroup hooks)
 * @attach_type:	BPF_CGROUP_* and the like
 *
 * Unlike BPF_PROG_ATTACH, a link is owned by its fd: it detaches when the
 * last copy of the fd is closed, so a crashed process leaves nothing attached.
 * Return: the link's fd, or -errno
 */
int ph_bpf_link_create(int prog_fd, int target_fd, enum bpf_attach_type attach_type);
#endif

#endif /* PH_BPF_SYS_H */
