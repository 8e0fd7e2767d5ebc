/* SPDX-License-Identifier: MIT */
/* handover_state.h - the versioned state an upgrading portholed hands its successor: encode, parse
 *
 * Pure data: no descriptors are touched here. Descriptors travel beside the
 * state (SCM_RIGHTS, handover.c) and the state names them by their index in
 * the order they were sent. The byte layout is documented in docs/design.md
 * ("Upgrades"); every integer is little-endian.
 */
#ifndef PH_HANDOVER_STATE_H
#define PH_HANDOVER_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sdnotify.h"

#define PH_HO_MAGIC		"PHHO"
#define PH_HO_VERSION		1	/* the one this build writes and reads */
#define PH_HO_NONE		UINT32_MAX	/* "no descriptor" */
#define PH_HO_MAX_ARGS		1024
#define PH_HO_MAX_ARG		65536
#define PH_HO_MAX_COUNTERS	256
#define PH_HO_MAX_FDS		(1u << 22)
#define PH_HO_MAX_BUF		(16u << 20)	/* user-space bytes of one direction */

/* struct ph_ho_dir.flags */
#define PH_HO_EOF		0x01	/* the source sent FIN */
#define PH_HO_SHUT		0x02	/* shutdown(SHUT_WR) done on the destination */
#define PH_HO_GROWN		0x04	/* the pipe was enlarged */
#define PH_HO_WANT_SPLICE	0x08	/* bulk: move to splice once the buffer is empty */
#define PH_HO_COPY_ONLY		0x10	/* never splice */
#define PH_HO_FILL_BLOCKED	0x20	/* the source is not read until the destination takes more */
#define PH_HO_DRAIN_BLOCKED	0x40	/* the destination took less than was held */
#define PH_HO_DIR_FLAGS		0x7f

/* struct ph_ho_relay.flags */
#define PH_HO_CONNECTING	0x01	/* the service leg's connect() may still be under way */
#define PH_HO_HALF_CLOSE	0x02	/* the half-close timer is armed */
#define PH_HO_RELAY_FLAGS	0x03

/**
 * struct ph_ho_dir - one direction of a relayed connection
 * @pipe:	the splice pipe's read and write ends (descriptor indexes), or
 *		PH_HO_NONE both in copy mode
 * @pipe_len:	bytes in the pipe
 * @pipe_cap:	bytes the pipe holds
 * @flags:	PH_HO_EOF ...
 * @buf:	copy mode: bytes read and not yet sent (points into the
 *		parsed input, or the encoder's caller's memory)
 * @buf_len:	how many
 */
struct ph_ho_dir {
	uint32_t pipe[2];
	uint32_t pipe_len, pipe_cap;
	uint8_t flags;
	const uint8_t *buf;
	uint32_t buf_len;
};

/**
 * struct ph_ho_relay - one relayed TCP connection
 * @fd:		client and service legs (descriptor indexes)
 * @target:	the service's address (AF_INET or AF_INET6)
 * @tlen:	its length
 * @flags:	PH_HO_CONNECTING, PH_HO_HALF_CLOSE
 * @idle_ms:	since a byte last moved (for the half-close timeout)
 * @dir:	[0] client -> service, [1] service -> client
 */
struct ph_ho_relay {
	uint32_t fd[2];
	struct sockaddr_storage target;
	socklen_t tlen;
	uint8_t flags;
	uint32_t idle_ms;
	struct ph_ho_dir dir[2];
};

/**
 * struct ph_ho_sock - a listening (or UDP) socket, by its fd store name
 * @fd:		descriptor index
 * @name:	"api", "tcp/ADDR/PORT", "udp/ADDR/PORT" (sdnotify.h)
 */
struct ph_ho_sock {
	uint32_t fd;
	char name[PH_FDNAME_MAX + 1];
};

/**
 * struct ph_ho_port - a row of the port table (what a scan cannot recover)
 * @port, @proto: its key
 * @state:	enum ph_port_state
 * @since_ms:	wall clock when it entered @state
 * @cap_hits:	times it reached its connection cap
 */
struct ph_ho_port {
	uint16_t port;
	uint8_t proto;
	uint8_t state;
	int64_t since_ms;
	uint64_t cap_hits;
};

/**
 * struct ph_ho_state - everything handed over
 * @version:	PH_HO_VERSION
 * @n_fds:	descriptors sent beside the state
 * @argv:	the daemon's command line (its configuration), @argc strings
 * @counters:	struct ph_stats in the order of handover_ports.c
 * @socks:	listeners: the API's, every external TCP listener and UDP socket
 * @ports:	the port table
 * @relays:	relayed TCP connections
 */
struct ph_ho_state {
	uint32_t version;
	uint32_t n_fds;
	size_t argc;
	char **argv;
	size_t n_counters;
	uint64_t counters[PH_HO_MAX_COUNTERS];
	size_t n_socks;
	struct ph_ho_sock *socks;
	size_t n_ports;
	struct ph_ho_port *ports;
	size_t n_relays;
	struct ph_ho_relay *relays;
};

/**
 * ph_ho_encode() - serialise @s
 * @s:		state (version and n_fds as given)
 * @out:	malloc()ed bytes; the caller frees
 * @len:	their length
 * Return: 0 or -ENOMEM, -EINVAL (a field out of range)
 */
int ph_ho_encode(const struct ph_ho_state *s, uint8_t **out, size_t *len);

/**
 * ph_ho_version() - the version in the first bytes of an encoded state
 * Return: the version, or 0 when @data does not start with the magic
 */
uint32_t ph_ho_version(const uint8_t *data, size_t len);

/**
 * ph_ho_parse() - parse and check an encoded state
 * @data, @len:	the bytes (must outlive @out: buffers point into them)
 * @out:	filled; free with ph_ho_state_free() (also after a failure)
 *
 * Checks every promise the importer relies on: the version is
 * PH_HO_VERSION, every descriptor index is below n_fds and used once,
 * every name is valid, a pipe holds no more than it can, addresses are
 * AF_INET/AF_INET6, and nothing follows the last field.
 * Return: 0, -EPROTO (another version), or -EINVAL
 */
int ph_ho_parse(const uint8_t *data, size_t len, struct ph_ho_state *out);

void ph_ho_state_free(struct ph_ho_state *s);

#endif /* PH_HANDOVER_STATE_H */
