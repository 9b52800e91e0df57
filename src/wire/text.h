/*
 * Text that may hold any bytes. A command, its arguments, a shell string or
 * a reason are bytes: the wire carries them as protobuf strings, which
 * protobuf-c never checks as UTF-8. Every view must show them anyway:
 *
 *  - JSON (noded/json.h): valid UTF-8 stays a plain string; anything else
 *    gets a readable copy and an exact base64 sibling (nd_json_set_text()).
 *  - People (the CLI's tables and records): nd_text_fput() writes the bytes
 *    that are not valid UTF-8, and control characters, as \xNN (\n, \t, \r
 *    as such), so nothing raw reaches a terminal.
 *  - Prometheus label values: nd_text_fput_prom() escapes \ " and newline
 *    and never writes invalid UTF-8.
 *
 * Names are stricter: a node name, a label key or value must be valid UTF-8
 * without control characters, checked where a worker registers
 * (nd_text_name_problem()).
 */
#ifndef ND_WIRE_TEXT_H
#define ND_WIRE_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/*
 * Length (1 to 4) of the well-formed UTF-8 sequence that starts s[0..len),
 * or 0 when s does not start one (a stray continuation byte, an overlong
 * form, a surrogate, a code point over U+10FFFF, a truncated sequence).
 * The same rules as jansson's, so what passes here json_string() takes.
 */
size_t nd_utf8_seq(const unsigned char *s, size_t len);

/* True when s[0..len) is all well-formed UTF-8 (NUL bytes included). */
bool nd_utf8_valid(const char *s, size_t len);

/*
 * Writes the NUL-terminated s to f for a person: valid UTF-8 as it is,
 * control characters as \n, \t, \r or \xNN (C0 and DEL; a C1 control
 * U+0080..U+009F as the \xNN of its two bytes), and each byte that is not
 * part of valid UTF-8 as \xNN. s NULL writes nothing. Returns 0 or -EIO.
 */
int nd_text_fput(FILE *f, const char *s);

/* The same into a malloc'd string (NULL when out of memory). */
char *nd_text_escaped(const char *s);

/*
 * Writes s as the inside of a Prometheus label value (text format 0.0.4):
 * \ as \\, " as \", newline as \n, and each byte that is not valid UTF-8
 * as U+FFFD. Returns 0 or -EIO.
 */
int nd_text_fput_prom(FILE *f, const char *s);

/*
 * NULL when s may be a node name or a label key or value (valid UTF-8, no
 * control character); otherwise buf, holding why not as a phrase to follow
 * the field's name: "is not valid UTF-8 (byte 0xff at offset 3)" or "holds
 * a control character (0x0a at offset 3)".
 */
const char *nd_text_name_problem(const char *s, char *buf, size_t size);

/*
 * The same as a whole message: NULL when s is fine, else buf holding
 * "WHAT 'S' is not valid UTF-8 (byte 0xff at offset 3)", S (its first 64
 * bytes, then "...") escaped as nd_text_fput() does, cut to fit size.
 */
const char *nd_text_name_error(const char *what, const char *s, char *buf,
			       size_t size);

#endif
