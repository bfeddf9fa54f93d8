/* json.c: reading the daemon's replies and writing strings into requests (for ctl.c). */
#ifndef PRISONJAIL_JSON_H
#define PRISONJAIL_JSON_H

#include <stddef.h>

struct json_value {
	const char *start, *end; /* the value's text */
};

/* The value at a dotted key path of nested objects ("result.pid"); -1 if absent or malformed. */
int json_find(const char *text, size_t len, const char *path, struct json_value *out);
int json_string(const struct json_value *v, char *out, size_t cap); /* unescaped; -1: not a string */
int json_int(const struct json_value *v, long *out);
int json_true(const struct json_value *v);
/* Writes "in" as a JSON string (quotes included); the length, -1 no room, -2 not UTF-8. */
long json_put_string(char *out, size_t cap, const char *in);

#endif
