/* SPDX-License-Identifier: MIT */
/* ctl_json.h - portholectl's small JSON reader (a parsed tree of the daemon's answers) */
#ifndef PH_CTL_JSON_H
#define PH_CTL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/*
 * portholectl reads the few JSON bodies and events the daemon sends; a tree
 * of these nodes is all it needs, and it keeps the client free of any
 * library but libc, so the static (musl) build needs nothing from outside.
 */
enum ph_jtype { PH_J_NULL, PH_J_BOOL, PH_J_INT, PH_J_REAL, PH_J_STR, PH_J_ARR, PH_J_OBJ };

/**
 * struct ph_jv - one JSON value
 * @type:	which of the members below holds it
 * @b:		PH_J_BOOL
 * @i:		PH_J_INT (a number without fraction or exponent that fits)
 * @d:		PH_J_REAL (every other number)
 * @s, @len:	PH_J_STR: decoded, NUL-terminated (may hold a NUL; @len counts bytes)
 * @kids, @n:	PH_J_ARR elements, PH_J_OBJ members in document order
 * @key:	the member name when this value is an object member, else NULL
 */
struct ph_jv {
	enum ph_jtype type;
	bool b;
	long long i;
	double d;
	char *s;
	size_t len;
	struct ph_jv *kids;
	size_t n;
	char *key;
};

/**
 * ph_json_parse() - parse JSON text into a tree
 * @text:	NUL-terminated text
 * @prefix:	true: one value at the start is enough, anything may follow it
 *
 * Any value may be at the top. Nesting deeper than 32 levels is refused.
 * Return: the tree (free with ph_json_free()), or NULL if @text is not JSON
 * or memory ran out
 */
struct ph_jv *ph_json_parse(const char *text, bool prefix);
void ph_json_free(struct ph_jv *v);

/* The member @key of object @obj; NULL when @obj is NULL, not an object, or lacks it */
struct ph_jv *ph_json_get(const struct ph_jv *obj, const char *key);

static inline bool ph_json_is(const struct ph_jv *v, enum ph_jtype t)
{
	return v && v->type == t;
}

/* Write @s as a JSON string literal, quotes included */
void ph_json_put_string(FILE *out, const char *s);

#endif /* PH_CTL_JSON_H */
