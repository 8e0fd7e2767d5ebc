/* SPDX-License-Identifier: MIT */
/* log.h - structured logging: one JSON object (or text line) per event on stderr */
#ifndef PH_LOG_H
#define PH_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum ph_log_level { PH_LOG_DEBUG, PH_LOG_INFO, PH_LOG_WARN, PH_LOG_ERROR };
enum ph_log_format { PH_LOG_JSON, PH_LOG_TEXT };

enum ph_field_type { PH_FIELD_END, PH_FIELD_INT, PH_FIELD_UINT, PH_FIELD_STR };

/**
 * struct ph_field - one typed key/value pair of a log event
 * @key:	field name (a JSON key; plain identifier)
 * @type:	which member of the union is valid; PH_FIELD_END terminates a list
 */
struct ph_field {
	const char *key;
	enum ph_field_type type;
	union {
		long long i;
		unsigned long long u;
		const char *s;
	};
};

#define PH_FI(k, v) ((struct ph_field){ .key = (k), .type = PH_FIELD_INT, .i = (long long)(v) })
#define PH_FU(k, v) ((struct ph_field){ .key = (k), .type = PH_FIELD_UINT, .u = (unsigned long long)(v) })
#define PH_FS(k, v) ((struct ph_field){ .key = (k), .type = PH_FIELD_STR, .s = (v) })
#define PH_FERR(e)  PH_FS("error", ph_strerror(e))

/* ph_log(level, "message", PH_FI("port", 80), PH_FS("addr", a)) */
#define ph_log(lvl, msg, ...) \
	ph_log_fields((lvl), (msg), (const struct ph_field[]){ __VA_ARGS__ __VA_OPT__(,) { 0 } })
#define ph_debug(...) ph_log(PH_LOG_DEBUG, __VA_ARGS__)
#define ph_info(...)  ph_log(PH_LOG_INFO, __VA_ARGS__)
#define ph_warn(...)  ph_log(PH_LOG_WARN, __VA_ARGS__)
#define ph_error(...) ph_log(PH_LOG_ERROR, __VA_ARGS__)

void ph_log_setup(enum ph_log_format format, enum ph_log_level level);
bool ph_log_enabled(enum ph_log_level level);
void ph_log_fields(enum ph_log_level level, const char *msg, const struct ph_field *fields);
int ph_log_parse_level(const char *s, enum ph_log_level *out);
int ph_log_parse_format(const char *s, enum ph_log_format *out);

/* strerror() that takes a positive or negative errno and is thread-safe */
const char *ph_strerror(int err);

/**
 * struct ph_ratelimit - token bucket for noisy log lines (zero-initialised: ready)
 * @window_ms:	start of the current window (monotonic ms)
 * @count:	events logged in this window
 * @suppressed:	events dropped since the last one logged
 */
struct ph_ratelimit {
	uint64_t window_ms;
	unsigned count;
	unsigned suppressed;
};

/**
 * ph_ratelimit_ok() - may this event be logged now?
 * @rl:		state
 * @now_ms:	monotonic time
 * @burst:	events allowed per window
 * @interval_ms: window length
 *
 * Return: true to log; false when suppressed (counted in @rl->suppressed)
 */
bool ph_ratelimit_ok(struct ph_ratelimit *rl, uint64_t now_ms, unsigned burst, unsigned interval_ms);

#endif /* PH_LOG_H */
