/* SPDX-License-Identifier: MIT */
/* json.h - growable text buffer and a small escaping JSON writer on top of it */
#ifndef PH_JSON_H
#define PH_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * struct ph_buf - growable byte buffer (zero-initialised: empty and valid)
 * @data:	bytes, NUL-terminated when non-NULL (the NUL is not counted)
 * @len:	bytes used
 * @cap:	bytes allocated
 * @oom:	an append failed; the content is truncated and must not be sent
 *
 * Appends never fail loudly: a failed allocation sets @oom and every later
 * append is ignored, so a writer checks once at the end.
 */
struct ph_buf {
	char *data;
	size_t len;
	size_t cap;
	bool oom;
};

void ph_buf_free(struct ph_buf *b);
void ph_buf_reset(struct ph_buf *b);
/* Make room for @n more bytes. Return: 0 or -ENOMEM (and sets @oom) */
int ph_buf_reserve(struct ph_buf *b, size_t n);
void ph_buf_add(struct ph_buf *b, const void *p, size_t n);
void ph_buf_puts(struct ph_buf *b, const char *s);
void ph_buf_printf(struct ph_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first @n bytes (consumed output) */
void ph_buf_consume(struct ph_buf *b, size_t n);

#define PH_JSON_MAX_DEPTH 16

/**
 * struct ph_json - JSON writer appending to a ph_buf
 * @b:		destination
 * @depth:	open objects/arrays
 * @count:	members/elements written so far at each depth (decides the commas)
 * @is_obj:	whether each open level is an object
 * @after_key:	a key was written; the next value belongs to it
 * @done:	the top-level value has been written
 * @bad:	misuse (depth overflow, value without key in an object...)
 */
struct ph_json {
	struct ph_buf *b;
	int depth;
	unsigned count[PH_JSON_MAX_DEPTH];
	bool is_obj[PH_JSON_MAX_DEPTH];
	bool after_key;
	bool done;
	bool bad;
};

void ph_json_init(struct ph_json *j, struct ph_buf *b);
void ph_json_obj_begin(struct ph_json *j);
void ph_json_obj_end(struct ph_json *j);
void ph_json_arr_begin(struct ph_json *j);
void ph_json_arr_end(struct ph_json *j);
void ph_json_key(struct ph_json *j, const char *key);
void ph_json_str(struct ph_json *j, const char *s);
void ph_json_strn(struct ph_json *j, const char *s, size_t n);
void ph_json_int(struct ph_json *j, int64_t v);
void ph_json_uint(struct ph_json *j, uint64_t v);
void ph_json_bool(struct ph_json *j, bool v);
void ph_json_null(struct ph_json *j);
/* Return: 0 when the document is complete and nothing failed, else -EINVAL/-ENOMEM */
int ph_json_finish(const struct ph_json *j);

/* RFC 3339 UTC text of a Unix time in ms ("2024-05-01T12:00:00.123Z"); @buf >= 32 bytes */
void ph_rfc3339_ms(char *buf, size_t size, int64_t unix_ms);

struct ph_port_info;
struct ph_port_list;
struct ph_addr_set;
struct ph_event;
/* One port object of the API ({"port":..,"family":..,...}), see docs/api.md */
void ph_json_port(struct ph_json *j, const struct ph_port_info *pi);
/* The /ports document: {"external_address":..,"ports":[...]} */
void ph_json_port_list(struct ph_json *j, const struct ph_port_list *l);

/* An array of address strings ("fe80::1%eth0" for a link-local one) */
void ph_json_addr_set(struct ph_json *j, const struct ph_addr_set *s);

/* The data of an "address" event: {"old":[...],"new":[...]} */
void ph_json_address_event(struct ph_json *j, const struct ph_event *ev);

/* Append @s (length @n) escaped as JSON string content, without quotes */
void ph_json_escape(struct ph_buf *b, const char *s, size_t n);

#endif /* PH_JSON_H */
