// SPDX-License-Identifier: MIT
/* log.c - structured logging
 *
 * Theory of Operation
 * ===================
 * Every event is formatted into one stack buffer and written with a single
 * write(2) to stderr, so lines from concurrent threads never interleave (lines
 * are kept under PIPE_BUF where it matters, and truncated at 4 KiB). JSON is
 * the default: {"ts":"RFC3339.mmmZ","level":"info","msg":"...",<fields>}.
 * Logging never fails the caller: a short write is dropped.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_format = PH_LOG_JSON;
static _Atomic int log_level = PH_LOG_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void ph_log_setup(enum ph_log_format format, enum ph_log_level level)
{
	atomic_store(&log_format, format);
	atomic_store(&log_level, level);
}

bool ph_log_enabled(enum ph_log_level level)
{
	return (int)level >= atomic_load(&log_level);
}

int ph_log_parse_level(const char *s, enum ph_log_level *out)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (!strcmp(s, level_names[i])) {
			*out = (enum ph_log_level)i;
			return 0;
		}
	}
	if (!strcmp(s, "warning")) {
		*out = PH_LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

int ph_log_parse_format(const char *s, enum ph_log_format *out)
{
	if (!strcmp(s, "json"))
		*out = PH_LOG_JSON;
	else if (!strcmp(s, "text"))
		*out = PH_LOG_TEXT;
	else
		return -EINVAL;
	return 0;
}

const char *ph_strerror(int err)
{
	static _Thread_local char buf[128];

	if (err < 0)
		err = -err;
#ifdef __GLIBC__
	return strerror_r(err, buf, sizeof(buf));	/* GNU: may return a static string */
#else
	/* musl (the static build) has only the XSI strerror_r: int, text in buf */
	if (strerror_r(err, buf, sizeof(buf)))
		snprintf(buf, sizeof(buf), "error %d", err);
	return buf;
#endif
}

struct out {
	char *p;
	size_t len, cap;
};

static void out_raw(struct out *o, const char *s, size_t n)
{
	if (o->len + n > o->cap)
		n = o->cap - o->len;
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void out_fmt(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_fmt(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	o->len += (size_t)n < o->cap - o->len ? (size_t)n : o->cap - o->len - 1;
}

/* JSON string body escaping (quotes not included) */
static void out_json_str(struct out *o, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	for (; *s && o->len + 6 < o->cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			out_raw(o, "\\", 1);
			out_raw(o, s, 1);
		} else if (c < 0x20) {
			char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

			out_raw(o, e, 6);
		} else {
			out_raw(o, s, 1);
		}
	}
}

void ph_log_fields(enum ph_log_level level, const char *msg, const struct ph_field *f)
{
	char buf[4096];
	struct out o = { buf, 0, sizeof(buf) - 1 };
	struct timespec ts;
	struct tm tm;
	int saved_errno = errno;
	bool json = atomic_load(&log_format) == PH_LOG_JSON;

	if (!ph_log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);

	if (json) {
		out_fmt(&o, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"msg\":\"",
			tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
		out_json_str(&o, msg);
		out_raw(&o, "\"", 1);
	} else {
		out_fmt(&o, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s", tm.tm_year + 1900,
			tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			ts.tv_nsec / 1000000, level_names[level], msg);
	}
	for (; f && f->type != PH_FIELD_END; f++) {
		if (json) {
			out_raw(&o, ",\"", 2);
			out_json_str(&o, f->key);
			out_raw(&o, "\":", 2);
		} else {
			out_fmt(&o, " %s=", f->key);
		}
		switch (f->type) {
		case PH_FIELD_INT:
			out_fmt(&o, "%lld", f->i);
			break;
		case PH_FIELD_UINT:
			out_fmt(&o, "%llu", f->u);
			break;
		case PH_FIELD_STR:
			if (json) {
				out_raw(&o, "\"", 1);
				out_json_str(&o, f->s ? f->s : "");
				out_raw(&o, "\"", 1);
			} else {
				out_fmt(&o, strchr(f->s ? f->s : "", ' ') ? "\"%s\"" : "%s",
					f->s ? f->s : "");
			}
			break;
		case PH_FIELD_END:
			break;
		}
	}
	if (json)
		out_raw(&o, "}", 1);
	o.cap++; /* the byte kept back for the newline */
	out_raw(&o, "\n", 1);
	if (write(STDERR_FILENO, buf, o.len) < 0) {
		/* nowhere left to report it */
	}
	errno = saved_errno;
}

bool ph_ratelimit_ok(struct ph_ratelimit *rl, uint64_t now_ms, unsigned burst, unsigned interval_ms)
{
	if (!rl->window_ms || now_ms - rl->window_ms >= interval_ms) {
		rl->window_ms = now_ms ? now_ms : 1;
		rl->count = 0;
	}
	if (rl->count < burst) {
		rl->count++;
		return true;
	}
	rl->suppressed++;
	return false;
}
