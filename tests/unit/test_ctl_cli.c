// SPDX-License-Identifier: MIT
/* test_ctl_cli.c - portholectl's command line, exit-status mapping, token file and output */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_cmd.h"
#include "ctl_output.h"
#include "token.h"

/* Parse a NULL-terminated argument list; @err_text gets what was printed to stderr */
static int parse(struct ph_ctl_opts *o, char *err_text, size_t size, ...)
{
	char *argv[16] = { "portholectl" };
	int argc = 1, ret;
	FILE *out = fopen("/dev/null", "w"), *err = fmemopen(err_text, size, "w");
	va_list ap;

	memset(err_text, 0, size);
	va_start(ap, size);
	while ((argv[argc] = va_arg(ap, char *)))
		argc++;
	va_end(ap);
	ret = ph_ctl_parse_args(o, argc, argv, out, err);
	fclose(out);
	fclose(err);
	return ret;
}

static int setup(void **state)
{
	(void)state;
	unsetenv("PORTHOLE_ADDR");
	unsetenv("PORTHOLE_TOKEN_FILE");
	return 0;
}

static uint16_t port_of(const struct ph_ctl_opts *o)
{
	return ntohs(((const struct sockaddr_in *)&o->addr)->sin_port);
}

static void test_defaults(void **state)
{
	struct ph_ctl_opts o;
	char e[256];

	(void)state;
	assert_int_equal(parse(&o, e, sizeof(e), "health", NULL), PH_CTL_RUN);
	assert_int_equal(o.cmd, PH_CTL_HEALTH);
	assert_string_equal(o.host, "127.0.0.1:49982");
	assert_int_equal(o.addr.ss_family, AF_INET);
	assert_int_equal(port_of(&o), 49982);
	assert_int_equal(o.timeout_ms, 5000);
	assert_int_equal(o.ready_timeout_ms, 5000);
	assert_int_equal(o.resume_timeout_ms, 5000);
	assert_int_equal(o.poll_ms, 20);
	assert_string_equal(o.token, "");
	assert_false(o.json);
}

static void test_env_and_override(void **state)
{
	struct ph_ctl_opts o;
	char e[256];

	(void)state;
	setenv("PORTHOLE_ADDR", "169.254.0.21:49982", 1);
	assert_int_equal(parse(&o, e, sizeof(e), "ports", NULL), PH_CTL_RUN);
	assert_string_equal(o.host, "169.254.0.21:49982");
	/* --addr wins over the environment, also after the command */
	assert_int_equal(parse(&o, e, sizeof(e), "ports", "--addr", "[::1]:7", "--json", NULL),
			 PH_CTL_RUN);
	assert_int_equal(o.addr.ss_family, AF_INET6);
	assert_true(o.json);
	setenv("PORTHOLE_ADDR", "not-an-address", 1);
	assert_int_equal(parse(&o, e, sizeof(e), "health", NULL), PH_CTL_EXIT_USAGE);
	assert_non_null(strstr(e, "PORTHOLE_ADDR"));
	/* a valid --addr means the bad environment is never looked at */
	assert_int_equal(parse(&o, e, sizeof(e), "--addr", "10.0.0.1:1", "health", NULL), PH_CTL_RUN);
	unsetenv("PORTHOLE_ADDR");
}

static void test_timeouts(void **state)
{
	struct ph_ctl_opts o;
	char e[256];

	(void)state;
	assert_int_equal(parse(&o, e, sizeof(e), "--timeout", "2s", "wait-ready", "--timeout", "1500ms",
			       NULL), PH_CTL_RUN);
	assert_int_equal(o.cmd, PH_CTL_WAIT_READY);
	assert_int_equal(o.timeout_ms, 1500);

	/* restore: each deadline defaults to --timeout, separately overridable */
	assert_int_equal(parse(&o, e, sizeof(e), "--timeout", "7s", "restore", NULL), PH_CTL_RUN);
	assert_int_equal(o.ready_timeout_ms, 7000);
	assert_int_equal(o.resume_timeout_ms, 7000);
	assert_int_equal(parse(&o, e, sizeof(e), "restore", "--ready-timeout", "10s",
			       "--resume-timeout=0.5s", NULL), PH_CTL_RUN);
	assert_int_equal(o.ready_timeout_ms, 10000);
	assert_int_equal(o.resume_timeout_ms, 500);
	assert_int_equal(parse(&o, e, sizeof(e), "--timeout", "3s", "restore", "--resume-timeout", "1s",
			       NULL), PH_CTL_RUN);
	assert_int_equal(o.ready_timeout_ms, 3000);
	assert_int_equal(o.resume_timeout_ms, 1000);
}

static void test_usage_errors(void **state)
{
	static const char *const bad[][4] = {
		{ NULL },				/* no command */
		{ "frobnicate" },
		{ "health", "extra" },
		{ "--timeout", "0", "health" },		/* a zero deadline can never succeed */
		{ "--timeout", "5x", "health" },
		{ "--timeout", "-1s", "health" },
		{ "--addr", "localhost", "health" },	/* no port */
		{ "--addr", "example.com:80", "health" },	/* names are not resolved */
		{ "--addr", "1.2.3.4:0", "health" },
		{ "--bogus", "health" },
		{ "health", "--timeout" },		/* missing value */
		{ "prepare", "--json" },
		{ "ports", "--ready-timeout", "1s" },
		{ "wait-ready", "--resume-timeout", "1s" },
		{ "--token-file", "/nonexistent/token", "ports" },
	};
	struct ph_ctl_opts o;
	char e[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("case %zu: %s %s\n", i, bad[i][0] ? bad[i][0] : "", bad[i][1] ? bad[i][1] : "");
		assert_int_equal(parse(&o, e, sizeof(e), bad[i][0], bad[i][1], bad[i][2], bad[i][3], NULL),
				 PH_CTL_EXIT_USAGE);
		assert_true(!strncmp(e, "portholectl: ", 13));	/* one explained line */
		assert_non_null(strchr(e, '\n'));
	}
}

static void test_help_version(void **state)
{
	struct ph_ctl_opts o;
	char e[256];

	(void)state;
	assert_int_equal(parse(&o, e, sizeof(e), "--help", NULL), PH_CTL_EXIT_OK);
	assert_int_equal(parse(&o, e, sizeof(e), "--version", NULL), PH_CTL_EXIT_OK);
}

static void test_exit_codes(void **state)
{
	(void)state;
	assert_int_equal(ph_ctl_exit_code(0, 200), PH_CTL_EXIT_OK);
	assert_int_equal(ph_ctl_exit_code(0, 204), PH_CTL_EXIT_OK);
	assert_int_equal(ph_ctl_exit_code(0, 401), PH_CTL_EXIT_ERROR);
	assert_int_equal(ph_ctl_exit_code(0, 503), PH_CTL_EXIT_ERROR);
	assert_int_equal(ph_ctl_exit_code(0, 302), PH_CTL_EXIT_ERROR);
	assert_int_equal(ph_ctl_exit_code(-ETIMEDOUT, 0), PH_CTL_EXIT_TIMEOUT);
	assert_int_equal(ph_ctl_exit_code(-ECONNREFUSED, 0), PH_CTL_EXIT_CONNECT);
	assert_int_equal(ph_ctl_exit_code(-EHOSTUNREACH, 0), PH_CTL_EXIT_CONNECT);
	assert_int_equal(ph_ctl_exit_code(-ENETUNREACH, 0), PH_CTL_EXIT_CONNECT);
	assert_int_equal(ph_ctl_exit_code(-ECONNRESET, 0), PH_CTL_EXIT_CONNECT);
	assert_int_equal(ph_ctl_exit_code(-ECONNABORTED, 0), PH_CTL_EXIT_CONNECT);
	assert_int_equal(ph_ctl_exit_code(-EPROTO, 0), PH_CTL_EXIT_ERROR);
	assert_int_equal(ph_ctl_exit_code(-EMSGSIZE, 0), PH_CTL_EXIT_ERROR);
	assert_int_equal(ph_ctl_exit_code(-EINTR, 0), PH_CTL_EXIT_OK);
}

static void test_fmt_ms(void **state)
{
	char b[32];

	(void)state;
	assert_string_equal(ph_ctl_fmt_ms(b, sizeof(b), 5000), "5s");
	assert_string_equal(ph_ctl_fmt_ms(b, sizeof(b), 1500), "1500ms");
	assert_string_equal(ph_ctl_fmt_ms(b, sizeof(b), 0), "0ms");
}

/* Write @content to a temporary file; return its name (static buffer) */
static const char *temp_file(const char *content, size_t len)
{
	static char name[64];
	int fd;

	strcpy(name, "/tmp/test_ctl_cli.XXXXXX");
	fd = mkstemp(name);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	close(fd);
	return name;
}

static void test_token_file(void **state)
{
	char buf[PH_TOKEN_MAX], big[PH_TOKEN_MAX + 10], e[256];
	struct ph_ctl_opts o;
	const char *f;
	size_t len;

	(void)state;
	f = temp_file("s3cr3t.Token_-~+/=\r\n \n", 22);
	assert_int_equal(ph_token_read(f, buf, sizeof(buf), &len), 0);
	assert_string_equal(buf, "s3cr3t.Token_-~+/=");
	assert_int_equal(len, 18);
	setenv("PORTHOLE_TOKEN_FILE", f, 1);
	assert_int_equal(parse(&o, e, sizeof(e), "ports", NULL), PH_CTL_RUN);
	assert_string_equal(o.token, "s3cr3t.Token_-~+/=");
	unsetenv("PORTHOLE_TOKEN_FILE");
	unlink(f);

	f = temp_file("two words\n", 10);	/* would break the header */
	assert_int_equal(ph_token_read(f, buf, sizeof(buf), &len), -EINVAL);
	unlink(f);
	f = temp_file("a\0b", 3);		/* NUL is not a token character */
	assert_int_equal(ph_token_read(f, buf, sizeof(buf), &len), -EINVAL);
	unlink(f);
	f = temp_file("\n\n", 2);
	assert_int_equal(ph_token_read(f, buf, sizeof(buf), &len), -EINVAL);
	unlink(f);
	memset(big, 'x', sizeof(big));
	f = temp_file(big, sizeof(big));
	assert_int_equal(ph_token_read(f, buf, sizeof(buf), &len), -EFBIG);
	unlink(f);
	assert_int_equal(ph_token_read("/nonexistent", buf, sizeof(buf), &len), -ENOENT);
}

/* Run @fn's output into a string */
static char *capture_ports(const char *body, int *ret)
{
	char *text = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);

	*ret = ph_ctl_print_ports(f, body);
	fclose(f);
	return text;
}

static void test_ports_table(void **state)
{
	const char *body =
		"{\"external_address\":\"169.254.0.21\",\"ports\":["
		"{\"port\":8000,\"family\":\"ipv4\",\"address\":\"127.0.0.1\",\"state\":\"forwarded\","
		"\"connections\":2,\"addresses\":[\"169.254.0.21\",\"fe80::1%eth0\"],"
		"\"since\":\"2024-05-01T12:00:00Z\"},"
		"{\"port\":5432,\"family\":\"ipv6\",\"address\":\"::1\",\"state\":\"conflict\","
		"\"error\":\"Address already in use\"},"
		"{\"port\":22,\"family\":\"ipv4\",\"address\":\"127.0.0.1\",\"state\":\"excluded\","
		"\"error\":\"bad\\u001b[31m\"},"
		"{\"port\":8000,\"proto\":\"udp\",\"family\":\"ipv4\",\"address\":\"127.0.0.1\","
		"\"state\":\"forwarded\",\"flows\":17,\"addresses\":[\"169.254.0.21\"]}]}";
	const char *want =
		"PORT      FAMILY  ADDRESS    EXTERNAL                   STATE      CONNS  FLOWS  SINCE                 ERROR\n"
		"22        ipv4    127.0.0.1  -                          excluded   -      -      -                     bad?[31m\n"
		"5432      ipv6    ::1        -                          conflict   -      -      -                     Address already in use\n"
		"8000      ipv4    127.0.0.1  169.254.0.21,fe80::1%eth0  forwarded  2      -      2024-05-01T12:00:00Z  -\n"
		"8000/udp  ipv4    127.0.0.1  169.254.0.21               forwarded  -      17     -                     -\n";
	char *t;
	int ret;

	(void)state;
	t = capture_ports(body, &ret);
	assert_int_equal(ret, 0);
	assert_string_equal(t, want);	/* sorted, aligned, escape neutralised */
	free(t);

	t = capture_ports("{\"ports\":[]}", &ret);
	assert_int_equal(ret, 0);
	assert_string_equal(t, "PORT  FAMILY  ADDRESS  EXTERNAL  STATE  CONNS  FLOWS  SINCE  ERROR\n");
	free(t);

	/* eight long addresses do not fit a cell: the rest are counted */
	t = capture_ports("{\"ports\":[{\"port\":1,\"addresses\":["
			  "\"fe80::1111:2222:3333:4441%eth0\",\"fe80::1111:2222:3333:4442%eth0\","
			  "\"fe80::1111:2222:3333:4443%eth0\",\"fe80::1111:2222:3333:4444%eth0\","
			  "\"fe80::1111:2222:3333:4445%eth0\",\"2001:db8::1\",\"10.0.0.1\",\"10.0.0.2\"]}]}",
			  &ret);
	assert_int_equal(ret, 0);
	assert_non_null(strstr(t, "\n1     -       -        fe80::1111:2222:3333:4441%eth0,"
				  "fe80::1111:2222:3333:4442%eth0,fe80::1111:2222:3333:4443%eth0,"
				  "fe80::1111:2222:3333:4444%eth0,+4  -      -      -      -      -\n"));
	free(t);

	t = capture_ports("not json", &ret);
	assert_int_equal(ret, -EPROTO);
	free(t);
	t = capture_ports("{\"ports\":[{\"family\":\"ipv4\"}]}", &ret);
	assert_int_equal(ret, -EPROTO);
	free(t);
}

static void test_error_text(void **state)
{
	char b[64];

	(void)state;
	ph_ctl_error_text("{\"error\":\"Address already in use\"}", b, sizeof(b));
	assert_string_equal(b, "Address already in use");
	ph_ctl_error_text("<html>\r\nbad gateway", b, sizeof(b));
	assert_string_equal(b, "<html>");
	ph_ctl_error_text(NULL, b, sizeof(b));
	assert_string_equal(b, "");
	ph_ctl_error_text("{\"error\":\"a\\nb\"}", b, sizeof(b));
	assert_string_equal(b, "a?b");
	ph_ctl_error_text("{\"error\":\"0123456789012345678901234567890123456789"
			  "0123456789012345678901234567890123456789\"}", b, 8);
	assert_string_equal(b, "0123456");
}

static char *capture_event(const char *event, const char *data)
{
	char *text = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);

	assert_int_equal(ph_ctl_print_event(f, event, data), 0);
	fclose(f);
	return text;
}

static void test_event_lines(void **state)
{
	static const struct { const char *event, *data, *want; } cases[] = {
		{ "open", "{\"port\":8000,\"family\":\"ipv4\",\"address\":\"127.0.0.1\",\"state\":\"forwarded\","
			  "\"connections\":0}",
		  "open 8000 ipv4 127.0.0.1 forwarded conns=0\n" },
		{ "open", "{\"port\":53,\"proto\":\"udp\",\"family\":\"ipv4\",\"address\":\"127.0.0.1\","
			  "\"state\":\"forwarded\",\"flows\":0}",
		  "open 53/udp ipv4 127.0.0.1 forwarded flows=0\n" },
		{ "conflict", "{\"port\":5432,\"family\":\"ipv6\",\"address\":\"::1\",\"state\":\"conflict\","
			      "\"error\":\"Address already in use\"}",
		  "conflict 5432 ipv6 ::1 conflict error=\"Address already in use\"\n" },
		{ "snapshot", "{\"external_address\":\"169.254.0.21\",\"ports\":[]}", "snapshot 0 ports\n" },
		{ "snapshot", "{\"ports\":[{\"port\":1,\"family\":\"ipv4\",\"address\":\"127.0.0.1\","
			      "\"state\":\"public\"}]}",
		  "snapshot 1 ports: 1 ipv4 127.0.0.1 public\n" },
		{ "lost", "12", "warning: 12 events lost (watch too slow); the state shown may be stale\n" },
		{ "lost", "{\"count\":3}", "warning: 3 events lost (watch too slow); the state shown may be stale\n" },
		{ "lost", "many", "warning: events lost: many\n" },
		{ "whatever", "a\nb", "whatever a?b\n" },
		{ "message", "", "message\n" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *t = capture_event(cases[i].event, cases[i].data);

		assert_string_equal(t, cases[i].want);
		free(t);
	}
}

static void test_health_line(void **state)
{
	char *text = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);

	(void)state;
	assert_int_equal(ph_ctl_print_health(f, "{\"version\":\"0.1.0\",\"state\":\"quiesced\"}"), 0);
	assert_int_equal(ph_ctl_print_health(f, "{\"version\":\"0.1.0\"}"), -EPROTO);
	fclose(f);
	assert_string_equal(text, "quiesced (portholed 0.1.0)\n");
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_defaults, setup),
		cmocka_unit_test_setup(test_env_and_override, setup),
		cmocka_unit_test_setup(test_timeouts, setup),
		cmocka_unit_test_setup(test_usage_errors, setup),
		cmocka_unit_test_setup(test_help_version, setup),
		cmocka_unit_test(test_exit_codes),
		cmocka_unit_test(test_fmt_ms),
		cmocka_unit_test_setup(test_token_file, setup),
		cmocka_unit_test(test_ports_table),
		cmocka_unit_test(test_error_text),
		cmocka_unit_test(test_event_lines),
		cmocka_unit_test(test_health_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
