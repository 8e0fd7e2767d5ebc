/* SPDX-License-Identifier: MIT */
/* handover.h - upgrades: the old process hands its state and descriptors to a new one
 *
 * Transport (handover.c): a SOCK_SEQPACKET socketpair, one end inherited by
 * the new process (its number in PORTHOLE_HANDOVER_FD). Messages, the
 * first byte saying which:
 *
 *   old -> new  'H' u32 version        the state version it will send
 *   new -> old  'A'                    accepted: send it
 *               'R' reason             refused (another version)
 *   old -> new  'F' u32 n  + n fds     descriptors (SCM_RIGHTS, at most 252)
 *               'S' bytes              a chunk of the encoded state
 *               'E'                    end of the state
 *   new -> old  'T' u32 pid            taken: the old closes its copies, exits
 *               'X' reason             failed (the new exits; the old goes on)
 *
 * The port subsystem's part (handover_ports.c) freezes the worker and the
 * relay threads, exports and imports the state.
 */
#ifndef PH_HANDOVER_H
#define PH_HANDOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "handover_state.h"

#define PH_HO_ENV		"PORTHOLE_HANDOVER_FD"
/* The kernel takes 253 a message (SCM_MAX_FD), but musl's sendmsg() refuses
 * (ENOMEM) control data over 1,024 bytes: CMSG_SPACE(252 * 4) is exactly that */
#define PH_HO_FDS_PER_MSG	252
#define PH_HO_CHUNK		32768	/* state bytes per message */
#define PH_HO_REASON_MAX	256

struct ph_ports;

/**
 * struct ph_ho_fds - descriptors to send, in order (a state names them by index)
 */
struct ph_ho_fds {
	int *v;
	size_t n, cap;
};

/* Append @fd; *@index its position. Return: 0 or -ENOMEM */
int ph_ho_fds_add(struct ph_ho_fds *f, int fd, uint32_t *index);
void ph_ho_fds_free(struct ph_ho_fds *f);

/* ---- the port subsystem (handover_ports.c) ---------------------------------- */

/**
 * ph_ports_freeze() - stop the port worker and every relay thread where they are
 * Until ph_ports_thaw() nothing is accepted, scanned or relayed, and the
 * caller may export. Return: 0, or -ESRCH when not running
 */
int ph_ports_freeze(struct ph_ports *p);
void ph_ports_thaw(struct ph_ports *p);

/**
 * ph_ports_export() - the frozen subsystem's state into @s, its descriptors into @fds
 * @p:		frozen subsystem
 * @s:		zeroed state: counters, socks, ports and relays are filled
 *		(relay buffers point into the live relays: encode before thawing)
 * @fds:	descriptors are appended (not duplicated)
 * Return: 0 or -errno
 */
int ph_ports_export(struct ph_ports *p, struct ph_ho_state *s, struct ph_ho_fds *fds);

/**
 * ph_ports_import() - take over the relays of @s (after ph_ports_start(),
 * whose first scan took the handed-over listeners from the fd store pool)
 * @p:		running subsystem
 * @s:		parsed state
 * @fds:	the received descriptors, indexed as @s names them; the relays'
 *		are consumed
 * Return: relays imported, or -errno
 */
int ph_ports_import(struct ph_ports *p, const struct ph_ho_state *s, const int *fds);

/* ---- transport (handover.c) ---------------------------------------------------- */

/**
 * ph_ho_send() - send one message, waiting for room until @deadline_ms
 * @sock:	the socketpair end
 * @type:	'H', 'A', ...
 * @body, @len:	what follows the type byte
 * @fds, @n_fds: descriptors to pass (at most PH_HO_FDS_PER_MSG)
 * @deadline_ms: ph_now_ms() value
 * Return: 0, -ETIMEDOUT, -EPIPE (the peer is gone) or -errno
 */
int ph_ho_send(int sock, char type, const void *body, size_t len, const int *fds, size_t n_fds,
	       uint64_t deadline_ms);

/**
 * ph_ho_recv() - receive one message until @deadline_ms
 * @sock:	the socketpair end
 * @buf, @cap:	room for the message (type byte included)
 * @len:	its length
 * @fds:	room for PH_HO_FDS_PER_MSG received descriptors (close-on-exec)
 * @n_fds:	how many came
 * Return: 0, -ETIMEDOUT, -EPIPE (the peer closed: it exited), -EMSGSIZE or -errno
 */
int ph_ho_recv(int sock, uint8_t *buf, size_t cap, size_t *len, int *fds, size_t *n_fds,
	       uint64_t deadline_ms);

/**
 * ph_ho_spawn() - start @binary with the inherited end of a new socketpair
 * @binary:	path of the new program
 * @argv:	its arguments (NULL-terminated)
 * @sibling:	start it as our parent's child (clone CLONE_PARENT), not ours:
 *		for a service manager, whose child it then is from the start
 * @sock:	our end (close-on-exec)
 * @pid:	the new process
 * @pidfd:	with @sibling, its pidfd (close-on-exec), the only way to wait
 *		for or signal a process that is not our child; -1 when it is
 *		our child after all (the kernel refuses CLONE_PARENT to a PID
 *		namespace's init: then it is forked)
 * The new process gets PH_HO_ENV and an empty signal mask; nothing else of
 * ours (every other descriptor is close-on-exec).
 * Return: 0 or -errno (nothing started)
 */
int ph_ho_spawn(const char *binary, char *const argv[], bool sibling, int *sock, pid_t *pid,
		int *pidfd);

#endif /* PH_HANDOVER_H */
