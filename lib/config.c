/* config: environment and flag parsing helpers (see config.h). */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *config_env_str(const char *name, const char *def)
{
    const char *v = getenv(name);
    return (v && *v) ? v : def;
}

op_status config_parse_long(const char *text, long min, long max, long *out)
{
    assert(min <= max); /* the bounds are the program's own */
    if (!text || !*text)
        return OP_ERR_PERMANENT;
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || *end || v < min || v > max)
        return OP_ERR_PERMANENT;
    *out = v;
    return OP_OK;
}

op_status config_parse_duration_ms(const char *text, long *out_ms)
{
    if (!text || !*text)
        return OP_ERR_PERMANENT;
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || v < 0 || end == text)
        return OP_ERR_PERMANENT;
    long mult;
    if (*end == '\0' || strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else if (strcmp(end, "d") == 0)
        mult = 86400000;
    else
        return OP_ERR_PERMANENT;
    if (v > __LONG_MAX__ / mult)
        return OP_ERR_PERMANENT;
    *out_ms = v * mult;
    return OP_OK;
}

op_status config_env_long(const char *name, long def, long min, long max, long *out)
{
    const char *v = config_env_str(name, NULL);
    if (!v) {
        *out = def;
        return OP_OK;
    }
    if (config_parse_long(v, min, max, out) != OP_OK) {
        fprintf(stderr, "%s: must be an integer in [%ld, %ld], got '%s'\n", name, min, max, v);
        return OP_ERR_PERMANENT;
    }
    return OP_OK;
}

op_status config_env_bool(const char *name, bool def, bool *out)
{
    const char *v = config_env_str(name, NULL);
    if (!v) {
        *out = def;
        return OP_OK;
    }
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) { *out = true; return OP_OK; }
        if (strcasecmp(v, no[i]) == 0) { *out = false; return OP_OK; }
    }
    fprintf(stderr, "%s: must be true or false, got '%s'\n", name, v);
    return OP_ERR_PERMANENT;
}

char *config_trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}
