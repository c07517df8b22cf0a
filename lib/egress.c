/* egress: webhook URL parsing, host allow-lists and internal address ranges (egress.h). */
#include "egress.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* --- URLs ---------------------------------------------------------------------------------- */

static bool egress_label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* A host name: dot-separated labels of [a-z0-9-], 1..63 each, not starting or ending with '-'.
 * A name whose last label is numeric (or hex, 0x..) is an IPv4 address to resolvers and curl
 * ("2130706433", "127.1", "0x7f.1"): it is refused unless it is a strict dotted quad, which the
 * caller then treats as an IP literal. */
static bool egress_name_valid(const char *h, bool *is_ipv4)
{
    size_t len = strlen(h);
    *is_ipv4 = false;
    if (len == 0 || len > EGRESS_HOST_MAX)
        return false;
    const char *label = h;
    const char *last = h;
    for (const char *p = h;; p++) {
        if (*p == '.' || *p == '\0') {
            size_t l = (size_t)(p - label);
            if (l == 0 || l > 63 || label[0] == '-' || label[l - 1] == '-')
                return false;
            last = label;
            if (*p == '\0')
                break;
            label = p + 1;
        } else if (!egress_label_char(*p)) {
            return false;
        }
    }
    bool numeric = strncmp(last, "0x", 2) == 0;
    if (!numeric) {
        numeric = true;
        for (const char *p = last; *p && numeric; p++)
            numeric = isdigit((unsigned char)*p) != 0;
    }
    if (numeric) {
        struct in_addr a;
        if (inet_pton(AF_INET, h, &a) != 1)
            return false;
        *is_ipv4 = true;
    }
    return true;
}

op_status egress_parse_url(const char *url, egress_url *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (!url || !*url) {
        *why = "the webhook URL is empty";
        return OP_ERR_PERMANENT;
    }
    size_t len = strlen(url);
    if (len > EGRESS_URL_MAX) {
        *why = "the webhook URL is too long";
        return OP_ERR_PERMANENT;
    }
    for (const unsigned char *p = (const unsigned char *)url; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            *why = "the webhook URL has a space, control or non-ASCII character";
            return OP_ERR_PERMANENT;
        }
        if (*p == '\\') {
            *why = "the webhook URL has a backslash";
            return OP_ERR_PERMANENT;
        }
        if (*p == '#') {
            *why = "the webhook URL has a fragment";
            return OP_ERR_PERMANENT;
        }
    }
    const char *rest;
    if (strncasecmp(url, "https://", 8) == 0) {
        out->https = true;
        rest = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        rest = url + 7;
    } else {
        *why = "the webhook URL must start with https:// or http://";
        return OP_ERR_PERMANENT;
    }
    size_t alen = strcspn(rest, "/?");
    char auth[EGRESS_HOST_MAX + 16];
    if (alen == 0) {
        *why = "the webhook URL has no host";
        return OP_ERR_PERMANENT;
    }
    if (alen >= sizeof auth) {
        *why = "the webhook URL's host is too long";
        return OP_ERR_PERMANENT;
    }
    memcpy(auth, rest, alen);
    auth[alen] = '\0';
    if (strchr(auth, '@')) {
        *why = "the webhook URL may not carry a user name or password";
        return OP_ERR_PERMANENT;
    }
    for (char *p = auth; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    char *port = NULL;
    if (auth[0] == '[') {
        char *close = strchr(auth, ']');
        if (!close || (close[1] != '\0' && close[1] != ':')) {
            *why = "the webhook URL's IPv6 address is malformed";
            return OP_ERR_PERMANENT;
        }
        *close = '\0';
        port = close[1] == ':' ? close + 2 : NULL;
        struct in6_addr a6;
        if (inet_pton(AF_INET6, auth + 1, &a6) != 1) {
            *why = "the webhook URL's IPv6 address is malformed";
            return OP_ERR_PERMANENT;
        }
        /* The canonical form, so "[0:0::1]" and "[::1]" compare equal with a listed host. */
        inet_ntop(AF_INET6, &a6, out->host, sizeof out->host);
        out->host_is_ip = true;
    } else {
        char *colon = strchr(auth, ':');
        if (colon) {
            *colon = '\0';
            port = colon + 1;
        }
        bool v4;
        if (auth[0] == '\0') {
            *why = "the webhook URL has no host";
            return OP_ERR_PERMANENT;
        }
        if (!egress_name_valid(auth, &v4)) {
            *why = "the webhook URL's host is not a valid host name";
            return OP_ERR_PERMANENT;
        }
        memcpy(out->host, auth, strlen(auth) + 1); /* at most EGRESS_HOST_MAX: checked above */
        out->host_is_ip = v4;
    }
    out->port = out->https ? 443 : 80;
    if (port) {
        long v = 0;
        size_t n = strlen(port);
        if (n == 0 || n > 5 || strspn(port, "0123456789") != n || (v = strtol(port, NULL, 10)) < 1 ||
            v > 65535) {
            *why = "the webhook URL's port is not a number in 1..65535";
            return OP_ERR_PERMANENT;
        }
        out->port = (unsigned)v;
    }
    return OP_OK;
}

/* --- addresses ----------------------------------------------------------------------------- */

static const unsigned char egress_v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void egress_addr_set6(egress_addr *out, const unsigned char b[16])
{
    memset(out, 0, sizeof *out);
    if (memcmp(b, egress_v4mapped, 12) == 0) {
        out->family = AF_INET;
        memcpy(out->b, b + 12, 4);
    } else {
        out->family = AF_INET6;
        memcpy(out->b, b, 16);
    }
}

int egress_addr_parse(const char *text, egress_addr *out)
{
    memset(out, 0, sizeof *out);
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, text, &a4) == 1) {
        out->family = AF_INET;
        memcpy(out->b, &a4, 4);
        return 0;
    }
    if (inet_pton(AF_INET6, text, &a6) == 1) {
        egress_addr_set6(out, a6.s6_addr);
        return 0;
    }
    return -1;
}

int egress_addr_from_sockaddr(const struct sockaddr *sa, egress_addr *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET) {
        out->family = AF_INET;
        memcpy(out->b, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        egress_addr_set6(out, ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr);
        return 0;
    }
    return -1;
}

void egress_addr_format(const egress_addr *a, char *out, size_t outlen)
{
    if (!inet_ntop(a->family, a->b, out, (socklen_t)outlen) && outlen)
        out[0] = '\0';
}

/* True if the first `prefix` bits of a and net are equal. */
static bool egress_prefix_eq(const unsigned char *a, const unsigned char *net, int prefix)
{
    int whole = prefix / 8, bits = prefix % 8;
    if (memcmp(a, net, (size_t)whole) != 0)
        return false;
    if (bits == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - bits));
    return (a[whole] & mask) == (net[whole] & mask);
}

typedef struct egress_range {
    unsigned char net[16];
    int prefix;
    const char *name;
} egress_range;

static const egress_range egress_v4_ranges[] = {
    {{169, 254, 169, 254}, 32, "metadata"},
    {{0}, 8, "this network (0.0.0.0/8)"},
    {{10}, 8, "private"},
    {{100, 64}, 10, "shared address space (CGNAT)"},
    {{127}, 8, "loopback"},
    {{169, 254}, 16, "link-local"},
    {{172, 16}, 12, "private"},
    {{192, 0, 0}, 24, "IETF protocol assignments"},
    {{192, 0, 2}, 24, "documentation"},
    {{192, 168}, 16, "private"},
    {{198, 18}, 15, "benchmarking"},
    {{198, 51, 100}, 24, "documentation"},
    {{203, 0, 113}, 24, "documentation"},
    {{224}, 4, "multicast"},
    {{255, 255, 255, 255}, 32, "broadcast"},
    {{240}, 4, "reserved"},
};

static const egress_range egress_v6_ranges[] = {
    {{0}, 128, "unspecified"},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "loopback"},
    {{0xfc}, 7, "unique local"},
    {{0xfe, 0x80}, 10, "link-local"},
    {{0xfe, 0xc0}, 10, "site-local"},
    {{0xff}, 8, "multicast"},
    {{0x01, 0x00}, 64, "discard"},
    {{0x20, 0x01, 0x0d, 0xb8}, 32, "documentation"},
};

static const char *egress_v4_internal(const unsigned char b[4])
{
    for (size_t i = 0; i < sizeof egress_v4_ranges / sizeof *egress_v4_ranges; i++)
        if (egress_prefix_eq(b, egress_v4_ranges[i].net, egress_v4_ranges[i].prefix))
            return egress_v4_ranges[i].name;
    return NULL;
}

const char *egress_addr_internal(const egress_addr *a)
{
    if (a->family == AF_INET)
        return egress_v4_internal(a->b);
    for (size_t i = 0; i < sizeof egress_v6_ranges / sizeof *egress_v6_ranges; i++)
        if (egress_prefix_eq(a->b, egress_v6_ranges[i].net, egress_v6_ranges[i].prefix))
            return egress_v6_ranges[i].name;
    /* Forms that carry an IPv4 address a host may route to: IPv4-compatible (::a.b.c.d),
     * NAT64 (64:ff9b::/96) and 6to4 (2002:a.b.c.d::/48) are as internal as that address. */
    static const unsigned char zero12[12] = {0};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};
    if (memcmp(a->b, zero12, 12) == 0 || memcmp(a->b, nat64, 12) == 0)
        return egress_v4_internal(a->b + 12);
    if (a->b[0] == 0x20 && a->b[1] == 0x02)
        return egress_v4_internal(a->b + 2);
    return NULL;
}

/* --- CIDRs --------------------------------------------------------------------------------- */

static op_status egress_cidr_parse(const char *text, egress_cidr *out)
{
    char buf[64];
    size_t n = strlen(text);
    if (n == 0 || n >= sizeof buf)
        return OP_ERR_PERMANENT;
    memcpy(buf, text, n + 1);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    if (egress_addr_parse(buf, &out->net) != 0)
        return OP_ERR_PERMANENT;
    int max = out->net.family == AF_INET ? 32 : 128;
    out->prefix = max;
    if (slash) {
        const char *p = slash + 1;
        size_t pl = strlen(p);
        if (pl == 0 || pl > 3 || strspn(p, "0123456789") != pl)
            return OP_ERR_PERMANENT;
        int v = atoi(p);
        /* A mapped IPv6 CIDR (::ffff:10.0.0.0/104) is stored as IPv4: its prefix shrinks. */
        if (strchr(buf, ':') && out->net.family == AF_INET)
            v -= 96;
        if (v < 0 || v > max)
            return OP_ERR_PERMANENT;
        out->prefix = v;
    }
    return OP_OK;
}

op_status egress_cidrs_parse(egress_cidrs *list, const char *text, char *err, size_t errlen)
{
    if (!text || !*text)
        return OP_OK;
    char *copy = strdup(text), *save = NULL;
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return OP_ERR_PERMANENT;
    }
    op_status st = OP_OK;
    for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        egress_cidr c;
        if (egress_cidr_parse(t, &c) != OP_OK) {
            snprintf(err, errlen, "'%.64s' is not an address or CIDR", t);
            st = OP_ERR_PERMANENT;
            break;
        }
        egress_cidr *v = realloc(list->v, (list->n + 1) * sizeof *v);
        if (!v) {
            snprintf(err, errlen, "out of memory");
            st = OP_ERR_PERMANENT;
            break;
        }
        list->v = v;
        list->v[list->n++] = c;
    }
    free(copy);
    return st;
}

bool egress_cidrs_contain(const egress_cidrs *list, const egress_addr *a)
{
    for (size_t i = 0; list && i < list->n; i++)
        if (list->v[i].net.family == a->family &&
            egress_prefix_eq(a->b, list->v[i].net.b, list->v[i].prefix))
            return true;
    return false;
}

void egress_cidrs_free(egress_cidrs *list)
{
    free(list->v);
    list->v = NULL;
    list->n = 0;
}

/* --- host allow-lists ---------------------------------------------------------------------- */

bool egress_host_match(const char *pattern, const char *host)
{
    if (strncmp(pattern, "*.", 2) != 0)
        return strcmp(pattern, host) == 0;
    const char *suffix = pattern + 1; /* ".example.com" */
    size_t sl = strlen(suffix), hl = strlen(host);
    return hl > sl && strcmp(host + hl - sl, suffix) == 0 && host[hl - sl - 1] != '.';
}

/* Checks and lower-cases one pattern: a host as the URL parser accepts it (an IPv6 literal with
 * or without brackets), or "*." and a host name. Returns a new string, or NULL. */
static char *egress_pattern_new(const char *text)
{
    char buf[EGRESS_HOST_MAX + 3];
    size_t n = strlen(text);
    if (n == 0 || n >= sizeof buf)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        buf[i] = (char)tolower((unsigned char)text[i]);
    const char *h = buf;
    bool wildcard = strncmp(buf, "*.", 2) == 0;
    if (wildcard)
        h = buf + 2;
    if (!wildcard && buf[0] == '[' && buf[n - 1] == ']') {
        buf[n - 1] = '\0';
        h = buf + 1;
    }
    struct in6_addr a6;
    bool v4;
    char canon[INET6_ADDRSTRLEN];
    if (!wildcard && inet_pton(AF_INET6, h, &a6) == 1)
        return strdup(inet_ntop(AF_INET6, &a6, canon, sizeof canon));
    if (!egress_name_valid(h, &v4) || (wildcard && v4))
        return NULL;
    return strdup(buf);
}

static egress_client_hosts *egress_policy_entry(egress_policy *p, const char *client, size_t len)
{
    for (size_t i = 0; i < p->n; i++)
        if (strlen(p->clients[i].client) == len && strncmp(p->clients[i].client, client, len) == 0)
            return &p->clients[i];
    egress_client_hosts *v = realloc(p->clients, (p->n + 1) * sizeof *v);
    if (!v)
        return NULL;
    p->clients = v;
    egress_client_hosts *e = &p->clients[p->n];
    memset(e, 0, sizeof *e);
    if (!(e->client = strndup(client, len)))
        return NULL;
    p->n++;
    return e;
}

/* One "client=host,host" entry (trimmed, not a comment). */
static op_status egress_policy_entry_parse(egress_policy *p, char *entry, char *err, size_t errlen)
{
    char *eq = strchr(entry, '=');
    if (!eq) {
        snprintf(err, errlen, "webhook hosts entry '%.64s' is not 'client=host,...'", entry);
        return OP_ERR_PERMANENT;
    }
    *eq = '\0';
    char *client = config_trim(entry);
    if (!*client) {
        snprintf(err, errlen, "webhook hosts entry without a client name");
        return OP_ERR_PERMANENT;
    }
    egress_client_hosts *e = egress_policy_entry(p, client, strlen(client));
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return OP_ERR_PERMANENT;
    }
    char *save = NULL;
    for (char *t = strtok_r(eq + 1, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        t = config_trim(t);
        if (!*t)
            continue;
        char *pat = egress_pattern_new(t);
        char **v = pat ? realloc(e->hosts, (e->n + 1) * sizeof *v) : NULL;
        if (!v) {
            free(pat);
            snprintf(err, errlen, "webhook host '%.64s' of client '%.64s' is not a host name, "
                                  "IP address or '*.suffix'", t, client);
            return OP_ERR_PERMANENT;
        }
        e->hosts = v;
        e->hosts[e->n++] = pat;
    }
    return OP_OK;
}

op_status egress_policy_parse(egress_policy *p, const char *spec, char *err, size_t errlen)
{
    if (!spec)
        return OP_OK;
    char *copy = strdup(spec), *save = NULL;
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return OP_ERR_PERMANENT;
    }
    op_status st = OP_OK;
    for (char *t = strtok_r(copy, ";\n", &save); t && st == OP_OK; t = strtok_r(NULL, ";\n", &save)) {
        t = config_trim(t);
        if (*t && *t != '#')
            st = egress_policy_entry_parse(p, t, err, errlen);
    }
    free(copy);
    return st;
}

op_status egress_policy_load_file(egress_policy *p, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s", path);
        return OP_ERR_PERMANENT;
    }
    char *text = NULL;
    size_t cap = 0;
    ssize_t n;
    op_status st = OP_OK;
    while (st == OP_OK && (n = getline(&text, &cap, f)) > 0)
        st = egress_policy_parse(p, text, err, errlen);
    free(text);
    fclose(f);
    return st;
}

void egress_policy_free(egress_policy *p)
{
    for (size_t i = 0; i < p->n; i++) {
        for (size_t j = 0; j < p->clients[i].n; j++)
            free(p->clients[i].hosts[j]);
        free(p->clients[i].hosts);
        free(p->clients[i].client);
    }
    free(p->clients);
    p->clients = NULL;
    p->n = 0;
}

const egress_client_hosts *egress_policy_client(const egress_policy *p, const char *client)
{
    for (size_t i = 0; client && i < p->n; i++)
        if (strcmp(p->clients[i].client, client) == 0)
            return &p->clients[i];
    return NULL;
}

op_status egress_policy_check(const egress_policy *p, const char *client, const char *url,
                              char *msg, size_t msglen)
{
    const egress_client_hosts *e = egress_policy_client(p, client);
    if (!e || e->n == 0) {
        snprintf(msg, msglen, "this client may not use webhooks (no webhook hosts are configured "
                              "for it)");
        return OP_ERR_PERMANENT;
    }
    egress_url u;
    const char *why;
    if (egress_parse_url(url, &u, &why) != OP_OK) {
        snprintf(msg, msglen, "%s", why);
        return OP_ERR_PERMANENT;
    }
    if (!u.https && !p->allow_http) {
        snprintf(msg, msglen, "webhook URLs must use https");
        return OP_ERR_PERMANENT;
    }
    for (size_t i = 0; i < e->n; i++)
        if (egress_host_match(e->hosts[i], u.host))
            return OP_OK;
    snprintf(msg, msglen, "webhook host '%s' is not in this client's allowed webhook hosts", u.host);
    return OP_ERR_PERMANENT;
}
