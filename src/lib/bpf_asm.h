/* SPDX-License-Identifier: MIT */
/* bpf_asm.h - BPF instructions written as C initialisers, for the programs porthole assembles itself
 *
 * porthole's BPF programs are a few dozen instructions each. Writing them as
 * struct bpf_insn initialisers keeps the static build free of clang, libbpf
 * and BTF: the daemon loads them with the bpf() system call (bpf_sys.h).
 * Jump offsets count instructions after the jump; LD_MAP takes two slots.
 * Include only where <linux/bpf.h> exists (see bpf_sys.h: PH_HAVE_BPF).
 */
#ifndef PH_BPF_ASM_H
#define PH_BPF_ASM_H

#include <linux/bpf.h>

#define INSN(c, d, s, o, i) \
	((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })
#define MOV_REG(d, s)		INSN(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOV_IMM(d, i)		INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define ADD_IMM(d, i)		INSN(BPF_ALU64 | BPF_ADD | BPF_K, d, 0, 0, i)
#define LDX(sz, d, s, o)	INSN(BPF_LDX | BPF_MEM | (sz), d, s, o, 0)
#define STX(sz, d, s, o)	INSN(BPF_STX | BPF_MEM | (sz), d, s, o, 0)
#define ST_IMM(sz, d, o, i)	INSN(BPF_ST | BPF_MEM | (sz), d, 0, o, i)
#define JA(o)			INSN(BPF_JMP | BPF_JA, 0, 0, o, 0)
#define JEQ_IMM(d, i, o)	INSN(BPF_JMP | BPF_JEQ | BPF_K, d, 0, o, i)
#define JNE_IMM(d, i, o)	INSN(BPF_JMP | BPF_JNE | BPF_K, d, 0, o, i)
#define JEQ_REG(d, s, o)	INSN(BPF_JMP | BPF_JEQ | BPF_X, d, s, o, 0)
#define JNE_REG(d, s, o)	INSN(BPF_JMP | BPF_JNE | BPF_X, d, s, o, 0)
#define CALL(f)			INSN(BPF_JMP | BPF_CALL, 0, 0, 0, f)
#define EXIT()			INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
#define LD_MAP(d, fd)		INSN(BPF_LD | BPF_DW | BPF_IMM, d, BPF_PSEUDO_MAP_FD, 0, fd), \
				INSN(0, 0, 0, 0, 0)
#define XADD64(d, s, o)		INSN(BPF_STX | BPF_ATOMIC | BPF_DW, d, s, o, BPF_ADD)

enum { R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, FP };

#endif /* PH_BPF_ASM_H */
