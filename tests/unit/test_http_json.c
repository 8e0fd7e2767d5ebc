// SPDX-License-Identifier: MIT
/* test_http_json.c - JSON writer and escaping, port documents, SSE framing, metrics format */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "json.h"
#include "metrics.h"
#include "sse.h"

static void test_escaping(void **state)
{
	struct ph_buf b = { 0 };
	struct ph_json j;
	const char raw[] = "q\"b\\n\n\r\t\x01\x7f\xc3\xa9\xff\xe2\x82";
	json_t *v;

	(void)state;
	ph_json_init(&j, &b);
	ph_json_str(&j, raw);
	assert_int_equal(ph_json_finish(&j), 0);
	assert_string_equal(b.data,
			    "\"q\\\"b\\\\n\\n\\r\\t\\u0001\\u007f\xc3\xa9\\ufffd\\ufffd\\ufffd\"");
	/* whatever went in, a strict parser accepts what comes out */
	v = json_loads(b.data, JSON_DECODE_ANY, NULL);
	assert_non_null(v);
	json_decref(v);
	ph_buf_free(&b);
}

static void test_escaping_embedded_nul(void **state)
{
	struct ph_buf b = { 0 };

	(void)state;
	ph_json_escape(&b, "a\0b", 3);
	assert_int_equal(b.len, 8);
	assert_memory_equal(b.data, "a\\u0000b", 8);
	ph_buf_free(&b);
}

static void test_structure_and_commas(void **state)
{
	struct ph_buf b = { 0 };
	struct ph_json j;

	(void)state;
	ph_json_init(&j, &b);
	ph_json_obj_begin(&j);
	ph_json_key(&j, "a");
	ph_json_arr_begin(&j);
	ph_json_int(&j, -1);
	ph_json_uint(&j, 18446744073709551615ull);
	ph_json_bool(&j, true);
	ph_json_null(&j);
	ph_json_obj_begin(&j);
	ph_json_obj_end(&j);
	ph_json_arr_end(&j);
	ph_json_key(&j, "k\"");
	ph_json_str(&j, "");
	ph_json_obj_end(&j);
	assert_int_equal(ph_json_finish(&j), 0);
	assert_string_equal(b.data, "{\"a\":[-1,18446744073709551615,true,null,{}],\"k\\\"\":\"\"}");
	ph_buf_free(&b);
}

static void test_misuse_detected(void **state)
{
	struct ph_buf b = { 0 };
	struct ph_json j;

	(void)state;
	ph_json_init(&j, &b);
	ph_json_obj_begin(&j);
	ph_json_int(&j, 1);		/* value without a key */
	ph_json_obj_end(&j);
	assert_int_equal(ph_json_finish(&j), -EINVAL);
	ph_buf_reset(&b);
	ph_json_init(&j, &b);
	ph_json_arr_begin(&j);		/* never closed */
	assert_int_equal(ph_json_finish(&j), -EINVAL);
	ph_buf_reset(&b);
	ph_json_init(&j, &b);
	ph_json_arr_begin(&j);
	ph_json_obj_end(&j);		/* wrong closer */
	assert_int_equal(ph_json_finish(&j), -EINVAL);
	ph_buf_free(&b);
}

static void test_rfc3339(void **state)
{
	char buf[40];

	(void)state;
	ph_rfc3339_ms(buf, sizeof(buf), 0);
	assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
	ph_rfc3339_ms(buf, sizeof(buf), 1714564800123);
	assert_string_equal(buf, "2024-05-01T12:00:00.123Z");
}

static void test_port_list_document(void **state)
{
	struct ph_port_info ports[2] = {
		{ .port = 8000, .family = AF_INET, .address = "127.0.0.1",
		  .state = PH_PORT_FORWARDED, .connections = 2, .since_ms = 1714564800123 },
		{ .port = 5432, .family = AF_INET6, .address = "::1", .state = PH_PORT_CONFLICT,
		  .error = "Address already in use", .since_ms = 1714564800000 },
	};
	struct ph_port_list l = { .external = "169.254.0.21", .ports = ports, .n = 2 };
	struct ph_buf b = { 0 };
	struct ph_json j;

	(void)state;
	ph_json_init(&j, &b);
	ph_json_port_list(&j, &l);
	assert_int_equal(ph_json_finish(&j), 0);
	assert_string_equal(b.data,
		"{\"external_address\":\"169.254.0.21\",\"ports\":["
		"{\"port\":8000,\"proto\":\"tcp\",\"family\":\"ipv4\",\"address\":\"127.0.0.1\",\"state\":\"forwarded\","
		"\"connections\":2,\"cap_hits\":0,\"since\":\"2024-05-01T12:00:00.123Z\"},"
		"{\"port\":5432,\"proto\":\"tcp\",\"family\":\"ipv6\",\"address\":\"::1\",\"state\":\"conflict\","
		"\"error\":\"Address already in use\",\"since\":\"2024-05-01T12:00:00.000Z\"}]}");
	ph_buf_free(&b);
}

static void test_sse_format(void **state)
{
	struct ph_buf b = { 0 };

	(void)state;
	ph_sse_format(&b, "open", "{\"port\":1}", 10);
	assert_string_equal(b.data, "event: open\ndata: {\"port\":1}\n\n");
	ph_buf_reset(&b);
	ph_sse_format(&b, NULL, "a\nb", 3);
	assert_string_equal(b.data, "data: a\ndata: b\n\n");
	ph_buf_reset(&b);
	ph_sse_format(&b, "lost", "", 0);
	assert_string_equal(b.data, "event: lost\ndata: \n\n");
	ph_buf_free(&b);
}

/* Every sample line belongs to a family announced with HELP and TYPE before it */
static void check_exposition(const char *text)
{
	char fam[128] = "", typ[32] = "";
	const char *line = text;

	while (*line) {
		const char *nl = strchr(line, '\n');
		char name[128];

		assert_non_null(nl);	/* every line ends in \n */
		if (!strncmp(line, "# HELP ", 7)) {
			assert_int_equal(sscanf(line, "# HELP %127s", fam), 1);
		} else if (!strncmp(line, "# TYPE ", 7)) {
			assert_int_equal(sscanf(line, "# TYPE %127s %31s", name, typ), 2);
			assert_string_equal(name, fam);
		} else {
			size_t n = strcspn(line, "{ ");

			assert_true(n < sizeof(name));
			memcpy(name, line, n);
			name[n] = '\0';
			if (!strcmp(typ, "histogram"))
				assert_int_equal(strncmp(name, fam, strlen(fam)), 0);
			else
				assert_string_equal(name, fam);
		}
		line = nl + 1;
	}
}

static void test_metrics_format(void **state)
{
	struct ph_http_stats hs = { .conns_total = 7, .conns_active = 1 };
	struct ph_metrics_input in = {
		.core = { .scans = 10, .scan_ns_sum = 1500000000ull, .bytes_to_service = 5,
			  .bytes_to_client = 6 },
		.ports_by_state = { 2, 1, 0, 3 },
		.http = &hs,
		.resumes = 1,
	};
	struct ph_buf b = { 0 };
	char want[128];

	(void)state;
	in.core.scan_hist[0] = 4;	/* per-bucket counts ... */
	in.core.scan_hist[3] = 5;
	in.core.scan_hist[11] = 1;
	hs.responses[200] = 3;
	hs.responses[404] = 1;
	assert_int_equal(ph_metrics_render(&b, &in), 0);
	check_exposition(b.data);
	/* ... become cumulative buckets */
	snprintf(want, sizeof(want), "porthole_scan_duration_seconds_bucket{le=\"0.%06u\"} 4\n",
		 ph_scan_hist_bounds_us[0]);
	assert_non_null(strstr(b.data, want));
	snprintf(want, sizeof(want), "porthole_scan_duration_seconds_bucket{le=\"0.%06u\"} 9\n",
		 ph_scan_hist_bounds_us[3]);
	assert_non_null(strstr(b.data, want));
	assert_non_null(strstr(b.data, "porthole_scan_duration_seconds_bucket{le=\"+Inf\"} 10\n"));
	assert_non_null(strstr(b.data, "porthole_scan_duration_seconds_sum 1.500000000\n"));
	assert_non_null(strstr(b.data, "porthole_scan_duration_seconds_count 10\n"));
	assert_non_null(strstr(b.data, "# TYPE porthole_scan_duration_seconds histogram\n"));
	assert_non_null(strstr(b.data, "porthole_ports{state=\"public\"} 3\n"));
	assert_non_null(strstr(b.data, "porthole_relayed_bytes_total{direction=\"to_client\"} 6\n"));
	assert_non_null(strstr(b.data, "porthole_api_requests_total{code=\"404\"} 1\n"));
	assert_non_null(strstr(b.data, "porthole_snapshot_resumes_total 1\n"));
	assert_null(strstr(b.data, "code=\"500\""));
	ph_buf_free(&b);
}

/* Buckets read while scans go on can exceed the count read earlier: never decrease */
static void test_metrics_histogram_monotonic(void **state)
{
	struct ph_metrics_input in = { .core = { .scans = 3 } };
	struct ph_buf b = { 0 };

	(void)state;
	in.core.scan_hist[0] = 5;
	assert_int_equal(ph_metrics_render(&b, &in), 0);
	assert_non_null(strstr(b.data, "porthole_scan_duration_seconds_bucket{le=\"+Inf\"} 5\n"));
	assert_non_null(strstr(b.data, "porthole_scan_duration_seconds_count 5\n"));
	ph_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_escaping_embedded_nul),
		cmocka_unit_test(test_structure_and_commas),
		cmocka_unit_test(test_misuse_detected),
		cmocka_unit_test(test_rfc3339),
		cmocka_unit_test(test_port_list_document),
		cmocka_unit_test(test_sse_format),
		cmocka_unit_test(test_metrics_format),
		cmocka_unit_test(test_metrics_histogram_monotonic),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
