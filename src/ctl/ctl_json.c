// SPDX-License-Identifier: MIT
/* ctl_json.c - portholectl's small JSON reader: text to a tree of ph_jv (RFC 8259)
 *
 * A recursive-descent parser over a NUL-terminated string. Strings are
 * decoded (escapes, \u surrogate pairs to UTF-8); raw control characters in
 * strings, leading zeros, trailing commas and lone surrogates are refused,
 * as RFC 8259 says. Depth is bounded, so hostile input cannot exhaust the stack.
 */
#include "ctl_json.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PH_JSON_DEPTH 32

struct parser {
	const char *p;
	int depth;
};

static void skip_ws(struct parser *ps)
{
	while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')
		ps->p++;
}

static void free_kids(struct ph_jv *v)
{
	for (size_t i = 0; i < v->n; i++) {
		free_kids(&v->kids[i]);
		free(v->kids[i].s);
		free(v->kids[i].key);
	}
	free(v->kids);
	v->kids = NULL;
	v->n = 0;
}

void ph_json_free(struct ph_jv *v)
{
	if (!v)
		return;
	free_kids(v);
	free(v->s);
	free(v->key);
	free(v);
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		int c = p[i], d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -EINVAL;
		v = v << 4 | (unsigned)d;
	}
	*out = v;
	return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* A string literal at ps->p (the opening quote); decoded copy in *out */
static int parse_string(struct parser *ps, char **out, size_t *len)
{
	const char *p = ps->p + 1, *end;
	char *o, *buf;

	/* the decoded text is never longer than the literal */
	for (end = p; *end && *end != '"'; end++)
		if (*end == '\\' && end[1])
			end++;
	if (*end != '"')
		return -EINVAL;
	buf = o = malloc((size_t)(end - p) + 1);
	if (!buf)
		return -ENOMEM;
	while (p < end) {
		unsigned char c = (unsigned char)*p++;
		unsigned cp, lo;

		if (c < 0x20)
			goto bad;
		if (c != '\\') {
			*o++ = (char)c;
			continue;
		}
		switch (*p++) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '/': *o++ = '/'; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u':
			if (end - p < 4 || hex4(p, &cp))
				goto bad;
			p += 4;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				goto bad;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) ||
				    lo < 0xdc00 || lo > 0xdfff)
					goto bad;
				p += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			o += put_utf8(o, cp);	/* at most 6 literal bytes in, 4 out */
			break;
		default:
			goto bad;
		}
	}
	*o = '\0';
	*out = buf;
	*len = (size_t)(o - buf);
	ps->p = end + 1;
	return 0;
bad:
	free(buf);
	return -EINVAL;
}

static int parse_number(struct parser *ps, struct ph_jv *v)
{
	const char *p = ps->p, *start = p;
	bool integral = true;
	char *end;

	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return -EINVAL;
	if (*p == '.') {
		integral = false;
		if (*++p < '0' || *p > '9')
			return -EINVAL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		integral = false;
		if (*++p == '+' || *p == '-')
			p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	errno = 0;
	if (integral) {
		long long i = strtoll(start, &end, 10);

		if (errno != ERANGE) {
			v->type = PH_J_INT;
			v->i = i;
			ps->p = p;
			return 0;
		}
	}
	v->type = PH_J_REAL;
	v->d = strtod(start, &end);
	ps->p = p;
	return 0;
}

static int parse_value(struct parser *ps, struct ph_jv *v);

static int add_kid(struct ph_jv *v, size_t *cap, struct ph_jv **kid)
{
	if (v->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		struct ph_jv *k = realloc(v->kids, ncap * sizeof(*k));

		if (!k)
			return -ENOMEM;
		v->kids = k;
		*cap = ncap;
	}
	*kid = &v->kids[v->n++];
	memset(*kid, 0, sizeof(**kid));
	return 0;
}

/* An array or object at ps->p ('[' or '{') */
static int parse_container(struct parser *ps, struct ph_jv *v)
{
	bool obj = *ps->p == '{';
	char close = obj ? '}' : ']';
	size_t cap = 0;
	int ret;

	if (++ps->depth > PH_JSON_DEPTH)
		return -EINVAL;
	v->type = obj ? PH_J_OBJ : PH_J_ARR;
	ps->p++;
	skip_ws(ps);
	if (*ps->p == close) {
		ps->p++;
		ps->depth--;
		return 0;
	}
	for (;;) {
		struct ph_jv *kid;
		char *key = NULL;
		size_t klen;

		skip_ws(ps);
		if (obj) {
			if (*ps->p != '"')
				return -EINVAL;
			ret = parse_string(ps, &key, &klen);
			if (ret)
				return ret;
			skip_ws(ps);
			if (*ps->p != ':') {
				free(key);
				return -EINVAL;
			}
			ps->p++;
		}
		ret = add_kid(v, &cap, &kid);
		if (ret) {
			free(key);
			return ret;
		}
		kid->key = key;
		ret = parse_value(ps, kid);
		if (ret)
			return ret;
		skip_ws(ps);
		if (*ps->p == ',') {
			ps->p++;
			continue;
		}
		if (*ps->p != close)
			return -EINVAL;
		ps->p++;
		ps->depth--;
		return 0;
	}
}

static int parse_value(struct parser *ps, struct ph_jv *v)
{
	skip_ws(ps);
	switch (*ps->p) {
	case '{':
	case '[':
		return parse_container(ps, v);
	case '"':
		v->type = PH_J_STR;
		return parse_string(ps, &v->s, &v->len);
	case 't':
	case 'f':
	case 'n': {
		static const struct { const char *word; enum ph_jtype t; bool b; } lit[] = {
			{ "true", PH_J_BOOL, true }, { "false", PH_J_BOOL, false }, { "null", PH_J_NULL, false },
		};
		for (size_t i = 0; i < sizeof(lit) / sizeof(lit[0]); i++) {
			size_t n = strlen(lit[i].word);

			if (!strncmp(ps->p, lit[i].word, n)) {
				v->type = lit[i].t;
				v->b = lit[i].b;
				ps->p += n;
				return 0;
			}
		}
		return -EINVAL;
	}
	default:
		return parse_number(ps, v);
	}
}

struct ph_jv *ph_json_parse(const char *text, bool prefix)
{
	struct parser ps = { .p = text };
	struct ph_jv *v;

	if (!text)
		return NULL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	if (parse_value(&ps, v))
		goto bad;
	skip_ws(&ps);
	if (!prefix && *ps.p)
		goto bad;
	return v;
bad:
	ph_json_free(v);
	return NULL;
}

struct ph_jv *ph_json_get(const struct ph_jv *obj, const char *key)
{
	if (!ph_json_is(obj, PH_J_OBJ))
		return NULL;
	for (size_t i = 0; i < obj->n; i++)
		if (!strcmp(obj->kids[i].key, key))
			return &obj->kids[i];
	return NULL;
}

void ph_json_put_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", out);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}
