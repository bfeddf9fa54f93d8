/* The JSON that `prisonctl exec` (ctl.c) needs: find a value by its key path in a reply
 * ("ok", "result.pid", "error.message"), read it as a string, an integer or a boolean, and
 * write strings into a request.  A real parser of the grammar (RFC 8259), small because it
 * builds nothing: it walks the text, skipping what is not asked for.  Anything malformed is
 * "not found", which ctl.c reports as a broken reply.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static const char *ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static const char *skip_string(const char *p, const char *end)
{
	if (p >= end || *p != '"')
		return NULL;
	for (p++; p < end; p++) {
		if (*p == '\\') {
			if (++p >= end)
				return NULL;
		} else if (*p == '"')
			return p + 1;
		else if ((unsigned char)*p < 0x20)
			return NULL;
	}
	return NULL;
}

static const char *skip_value(const char *p, const char *end, int depth);

static const char *skip_container(const char *p, const char *end, int depth, char close, int keys)
{
	p = ws(p + 1, end);
	if (p < end && *p == close)
		return p + 1;
	for (;;) {
		if (keys) {
			p = skip_string(p, end);
			if (!p || (p = ws(p, end)) >= end || *p != ':')
				return NULL;
			p = ws(p + 1, end);
		}
		p = skip_value(p, end, depth + 1);
		if (!p || (p = ws(p, end)) >= end)
			return NULL;
		if (*p == close)
			return p + 1;
		if (*p != ',')
			return NULL;
		p = ws(p + 1, end);
	}
}

static const char *skip_value(const char *p, const char *end, int depth)
{
	if (depth > 32 || p >= end)
		return NULL;
	switch (*p) {
	case '"':
		return skip_string(p, end);
	case '{':
		return skip_container(p, end, depth, '}', 1);
	case '[':
		return skip_container(p, end, depth, ']', 0);
	case 't':
		return end - p >= 4 && !memcmp(p, "true", 4) ? p + 4 : NULL;
	case 'f':
		return end - p >= 5 && !memcmp(p, "false", 5) ? p + 5 : NULL;
	case 'n':
		return end - p >= 4 && !memcmp(p, "null", 4) ? p + 4 : NULL;
	default:
		if (*p != '-' && (*p < '0' || *p > '9'))
			return NULL;
		p++;
		while (p < end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' ||
				   *p == '-'))
			p++;
		return p;
	}
}

/* Does the JSON string at p (with its quotes) equal key[0..klen)?  Keys asked for are plain. */
static int key_is(const char *p, const char *q, const char *key, size_t klen)
{
	return (size_t)(q - p) == klen + 2 && !memcmp(p + 1, key, klen);
}

int json_find(const char *text, size_t len, const char *path, struct json_value *out)
{
	const char *p = ws(text, text + len), *end = text + len;
	while (*path) {
		const char *dot = strchr(path, '.');
		size_t klen = dot ? (size_t)(dot - path) : strlen(path);
		if (p >= end || *p != '{')
			return -1;
		p = ws(p + 1, end);
		for (;;) {
			const char *q = skip_string(p, end);
			if (!q)
				return -1;
			int match = key_is(p, q, path, klen);
			p = ws(q, end);
			if (p >= end || *p != ':')
				return -1;
			p = ws(p + 1, end);
			if (match)
				break;
			p = skip_value(p, end, 0);
			if (!p || (p = ws(p, end)) >= end || *p != ',')
				return -1; /* the end of the object: not there */
			p = ws(p + 1, end);
		}
		path += klen + (dot ? 1 : 0);
	}
	const char *v = skip_value(p, end, 0);
	if (!v)
		return -1;
	out->start = p;
	out->end = v;
	return 0;
}

static int hex4(const char *p, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		*v <<= 4;
		if (c >= '0' && c <= '9')
			*v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			*v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	return 0;
}

static size_t utf8(char *out, unsigned cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

int json_string(const struct json_value *v, char *out, size_t cap)
{
	const char *p = v->start, *end = v->end;
	size_t n = 0;
	if (end - p < 2 || *p != '"' || end[-1] != '"')
		return -1;
	for (p++, end--; p < end;) {
		char buf[4];
		size_t k = 1;
		if (*p != '\\') {
			buf[0] = *p++;
		} else {
			char c = p[1];
			p += 2;
			switch (c) {
			case '"': case '\\': case '/': buf[0] = c; break;
			case 'b': buf[0] = '\b'; break;
			case 'f': buf[0] = '\f'; break;
			case 'n': buf[0] = '\n'; break;
			case 'r': buf[0] = '\r'; break;
			case 't': buf[0] = '\t'; break;
			case 'u': {
				unsigned cp, lo;
				if (end - p < 4 || hex4(p, &cp) < 0)
					return -1;
				p += 4;
				if (cp >= 0xD800 && cp < 0xDC00) { /* a surrogate pair */
					if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) < 0 || lo < 0xDC00 ||
					    lo > 0xDFFF)
						return -1;
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					p += 6;
				} else if (cp >= 0xDC00 && cp < 0xE000)
					return -1;
				if (cp == 0)
					return -1; /* no NUL in a C string */
				k = utf8(buf, cp);
				break;
			}
			default:
				return -1;
			}
		}
		if (n + k >= cap)
			return -1;
		memcpy(out + n, buf, k);
		n += k;
	}
	out[n] = 0;
	return 0;
}

int json_int(const struct json_value *v, long *out)
{
	char buf[32];
	size_t len = (size_t)(v->end - v->start);
	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, v->start, len);
	buf[len] = 0;
	char *e;
	*out = strtol(buf, &e, 10);
	return *e ? -1 : 0;
}

int json_true(const struct json_value *v)
{
	return v->end - v->start == 4 && !memcmp(v->start, "true", 4);
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if it is not one. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len;
	uint32_t cp;
	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xE0) == 0xC0)
		len = 2, cp = p[0] & 0x1F;
	else if ((p[0] & 0xF0) == 0xE0)
		len = 3, cp = p[0] & 0x0F;
	else if ((p[0] & 0xF8) == 0xF0)
		len = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
	if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000))
		return 0;
	return len;
}

long json_put_string(char *out, size_t cap, const char *in)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0, left = strlen(in);
	const unsigned char *p = (const unsigned char *)in;
	if (cap < 3)
		return -1;
	out[n++] = '"';
	while (left) {
		size_t k = utf8_len(p, left);
		if (!k)
			return -2; /* not UTF-8: JSON cannot carry it */
		if (n + 8 >= cap)
			return -1;
		if (k == 1 && (*p < 0x20 || *p == '"' || *p == '\\' || *p == 0x7f)) {
			if (*p == '"' || *p == '\\') {
				out[n++] = '\\';
				out[n++] = (char)*p;
			} else {
				memcpy(out + n, "\\u00", 4);
				out[n + 4] = hex[*p >> 4];
				out[n + 5] = hex[*p & 0xF];
				n += 6;
			}
		} else {
			memcpy(out + n, p, k);
			n += k;
		}
		p += k;
		left -= k;
	}
	if (n + 2 > cap)
		return -1;
	out[n++] = '"';
	out[n] = 0;
	return (long)n;
}
