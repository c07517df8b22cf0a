/* config: settings from the environment and from flags, with range checks.
 *
 * Each program keeps one config struct of its own; these helpers fill its fields and say clearly
 * which setting was wrong. Returned strings are borrowed from the environment or the default. */
#ifndef ORDERPIPE_CONFIG_H
#define ORDERPIPE_CONFIG_H

#include <stdbool.h>

#include "status.h"

/* The value of environment variable `name`, or `def` when unset or empty. */
const char *config_env_str(const char *name, const char *def);

/* Parses `text` as a base-10 integer in [min, max]. OP_OK, or OP_ERR_PERMANENT (out untouched). */
op_status config_parse_long(const char *text, long min, long max, long *out);

/* Parses a duration with unit suffix (ms, s, m, h, d) into ms: "250", "250ms", "3s", "2m", "2h",
 * "7d". A bare number is milliseconds. OP_OK, or OP_ERR_PERMANENT when malformed, negative or
 * past a long. */
op_status config_parse_duration_ms(const char *text, long *out_ms);

/* Reads integer variable `name` into *out (default `def` when unset). On a bad value prints
 * "NAME: must be an integer in [min, max]" to stderr and returns OP_ERR_PERMANENT. */
op_status config_env_long(const char *name, long def, long min, long max, long *out);

/* Cuts the spaces, tabs and carriage returns around s, in place (a line of a settings file or an
 * entry of a list); returns the first kept character, inside s. */
char *config_trim(char *s);

/* Reads boolean variable `name` (1/0, true/false, yes/no, on/off). OP_OK or OP_ERR_PERMANENT as above. */
op_status config_env_bool(const char *name, bool def, bool *out);

#endif
