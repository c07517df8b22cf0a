/* redact: secrets out of text that is about to be logged or shown.
 *
 * Owns hiding the passwords that connection strings carry: the userinfo password of every URL in
 * a text ("amqp://u:secret@h/v,amqps://u:secret@h2" -> "amqp://u:***@h/v,amqps://u:***@h2") and
 * password= parameters of URL queries and libpq keyword strings ("...?password=x" ->
 * "...?password=***"). Used wherever a URL or an error built from one reaches a log or stderr.
 */
#ifndef ORDERPIPE_REDACT_H
#define ORDERPIPE_REDACT_H

#include <stddef.h>

#define REDACT_MASK "***"

/* Copies `in` into `out` (size bytes, >= 1, always NUL-terminated, cut on a character boundary
 * when it does not fit) with every password replaced by REDACT_MASK. `in` may be NULL (an empty
 * string is written). Returns out, so it can be passed straight to a printf. */
char *redact_secrets(const char *in, char *out, size_t size);

#endif
