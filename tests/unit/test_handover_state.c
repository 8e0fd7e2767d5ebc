// SPDX-License-Identifier: MIT
/* test_handover_state.c - the upgrade state format (handover_state.c): round trip and rejections */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "handover_state.h"

static char *args[] = { "portholed", "--listen", "127.0.0.1:49982", "--log-format", "text" };
static const uint8_t held[] = "bytes the destination did not take";

/* A state with two relays (one splicing, one holding bytes) and listeners */
static void sample(struct ph_ho_state *s, struct ph_ho_sock *socks, struct ph_ho_port *ports,
		   struct ph_ho_relay *relays)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)&relays[0].target;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&relays[1].target;

	memset(s, 0, sizeof(*s));
	memset(relays, 0, 2 * sizeof(*relays));
	s->version = PH_HO_VERSION;
	s->n_fds = 9;
	s->argc = 5;
	s->argv = args;
	s->n_counters = 3;
	s->counters[0] = 1;
	s->counters[1] = UINT64_MAX;
	s->counters[2] = 42;
	socks[0] = (struct ph_ho_sock){ .fd = 0, .name = "api" };
	socks[1] = (struct ph_ho_sock){ .fd = 1, .name = "tcp/169.254.0.21/8000" };
	s->n_socks = 2;
	s->socks = socks;
	ports[0] = (struct ph_ho_port){ .port = 8000, .proto = 6, .state = 0,
					.since_ms = 1700000000000, .cap_hits = 7 };
	s->n_ports = 1;
	s->ports = ports;

	v4->sin_family = AF_INET;
	v4->sin_port = htons(8000);
	inet_pton(AF_INET, "127.0.0.1", &v4->sin_addr);
	relays[0].tlen = sizeof(*v4);
	relays[0].fd[0] = 2;
	relays[0].fd[1] = 3;
	relays[0].flags = PH_HO_HALF_CLOSE;
	relays[0].idle_ms = 1234;
	relays[0].dir[0] = (struct ph_ho_dir){ .pipe = { 4, 5 }, .pipe_len = 100, .pipe_cap = 65536,
					       .flags = PH_HO_GROWN | PH_HO_EOF };
	relays[0].dir[1] = (struct ph_ho_dir){ .pipe = { PH_HO_NONE, PH_HO_NONE },
					       .flags = PH_HO_FILL_BLOCKED | PH_HO_DRAIN_BLOCKED,
					       .buf = held, .buf_len = sizeof(held) };
	v6->sin6_family = AF_INET6;
	v6->sin6_port = htons(8000);
	v6->sin6_scope_id = 3;
	inet_pton(AF_INET6, "::1", &v6->sin6_addr);
	relays[1].tlen = sizeof(*v6);
	relays[1].fd[0] = 6;
	relays[1].fd[1] = 8;
	relays[1].flags = PH_HO_CONNECTING;
	relays[1].dir[0].pipe[0] = relays[1].dir[0].pipe[1] = PH_HO_NONE;
	relays[1].dir[1].pipe[0] = relays[1].dir[1].pipe[1] = PH_HO_NONE;
	s->n_relays = 2;
	s->relays = relays;
}

static void encode_sample(uint8_t **b, size_t *len, void (*tweak)(struct ph_ho_state *s))
{
	struct ph_ho_sock socks[2];
	struct ph_ho_port ports[1];
	struct ph_ho_relay relays[2];
	struct ph_ho_state s;

	sample(&s, socks, ports, relays);
	if (tweak)
		tweak(&s);
	assert_int_equal(ph_ho_encode(&s, b, len), 0);
}

static void test_roundtrip(void **state)
{
	struct ph_ho_state out;
	uint8_t *b;
	size_t len;

	(void)state;
	encode_sample(&b, &len, NULL);
	assert_int_equal(ph_ho_version(b, len), PH_HO_VERSION);
	assert_int_equal(ph_ho_parse(b, len, &out), 0);
	assert_int_equal(out.n_fds, 9);
	assert_int_equal(out.argc, 5);
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(out.argv[i], args[i]);
	assert_null(out.argv[5]);
	assert_int_equal(out.n_counters, 3);
	assert_true(out.counters[1] == UINT64_MAX);
	assert_int_equal(out.n_socks, 2);
	assert_string_equal(out.socks[1].name, "tcp/169.254.0.21/8000");
	assert_int_equal(out.socks[1].fd, 1);
	assert_int_equal(out.n_ports, 1);
	assert_int_equal(out.ports[0].port, 8000);
	assert_true(out.ports[0].since_ms == 1700000000000);
	assert_int_equal(out.ports[0].cap_hits, 7);
	assert_int_equal(out.n_relays, 2);
	assert_int_equal(out.relays[0].fd[1], 3);
	assert_int_equal(out.relays[0].flags, PH_HO_HALF_CLOSE);
	assert_int_equal(out.relays[0].idle_ms, 1234);
	assert_int_equal(out.relays[0].dir[0].pipe[1], 5);
	assert_int_equal(out.relays[0].dir[0].pipe_len, 100);
	assert_int_equal(out.relays[0].dir[0].flags, PH_HO_GROWN | PH_HO_EOF);
	assert_int_equal(out.relays[0].dir[1].buf_len, sizeof(held));
	assert_memory_equal(out.relays[0].dir[1].buf, held, sizeof(held));
	assert_int_equal(out.relays[0].target.ss_family, AF_INET);
	assert_int_equal(out.relays[1].target.ss_family, AF_INET6);
	assert_int_equal(((struct sockaddr_in6 *)&out.relays[1].target)->sin6_scope_id, 3);
	assert_int_equal(out.relays[1].tlen, sizeof(struct sockaddr_in6));
	assert_int_equal(out.relays[1].dir[1].pipe[0], PH_HO_NONE);
	ph_ho_state_free(&out);
	free(b);
}

/* Every cut of a valid state is refused, never read past */
static void test_truncated(void **state)
{
	struct ph_ho_state out;
	uint8_t *b;
	size_t len;

	(void)state;
	encode_sample(&b, &len, NULL);
	for (size_t n = 0; n < len; n++) {
		uint8_t *cut = malloc(n ? n : 1);

		memcpy(cut, b, n);
		assert_int_not_equal(ph_ho_parse(cut, n, &out), 0);
		ph_ho_state_free(&out);
		free(cut);
	}
	b = realloc(b, len + 1);
	b[len] = 0;
	assert_int_equal(ph_ho_parse(b, len + 1, &out), -EINVAL);	/* trailing byte */
	ph_ho_state_free(&out);
	free(b);
}

static void other_version(struct ph_ho_state *s) { s->version = PH_HO_VERSION + 1; }
static void fd_out_of_range(struct ph_ho_state *s) { s->n_fds = 8; }
static void fd_twice(struct ph_ho_state *s) { s->relays[1].fd[1] = 2; }
static void pipe_overfull(struct ph_ho_state *s) { s->relays[0].dir[0].pipe_len = 70000; }
static void half_pipe(struct ph_ho_state *s) { s->relays[1].dir[0].pipe[0] = 7; }
static void bad_name(struct ph_ho_state *s) { strcpy(s->socks[1].name, "tcp:x"); }
static void bad_proto(struct ph_ho_state *s) { s->ports[0].proto = 17 + 1; }
static void bad_flags(struct ph_ho_state *s) { s->relays[0].dir[1].flags = 0x80; }

static void test_rejected(void **state)
{
	static const struct { void (*tweak)(struct ph_ho_state *); int want; } cases[] = {
		{ other_version, -EPROTO }, { fd_out_of_range, -EINVAL }, { fd_twice, -EINVAL },
		{ pipe_overfull, -EINVAL }, { half_pipe, -EINVAL }, { bad_name, -EINVAL },
		{ bad_proto, -EINVAL }, { bad_flags, -EINVAL },
	};
	struct ph_ho_state out;
	uint8_t *b;
	size_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		encode_sample(&b, &len, cases[i].tweak);
		assert_int_equal(ph_ho_parse(b, len, &out), cases[i].want);
		ph_ho_state_free(&out);
		free(b);
	}
	assert_int_equal(ph_ho_version((const uint8_t *)"PHHX\1\0\0\0", 8), 0);
	assert_int_equal(ph_ho_parse((const uint8_t *)"nope", 4, &out), -EINVAL);
	ph_ho_state_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_rejected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
