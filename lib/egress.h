/* egress: where the pipeline may send requests on a client's behalf (webhooks).
 *
 * Owns the rules, as pure logic: a strict parser of webhook URLs (http/https, host, port; no
 * userinfo, fragment, space, control character, backslash or non-ASCII host — what curl and this
 * parser could read differently is refused, not guessed); per-client host allow-lists (exact hosts
 * and "*.suffix" wildcards, which do not match the bare suffix) checked at the door; and the
 * classification of IP addresses as internal (loopback, private, link-local and the metadata
 * address, CGNAT, unique-local, multicast, reserved, and IPv4 addresses inside IPv6 forms) with
 * configured CIDRs that may be reached anyway, checked at delivery on the resolved addresses.
 *
 * Messages (the `why` strings) never echo the input except a host that passed the parser, so a
 * caller may put them in a JSON reply or a log line as they are.
 */
#ifndef ORDERPIPE_EGRESS_H
#define ORDERPIPE_EGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "status.h"

#define EGRESS_HOST_MAX 253
#define EGRESS_URL_MAX 2048

typedef struct egress_url {
    bool https;
    char host[EGRESS_HOST_MAX + 1]; /* lower-case name, or an IP literal (IPv6 without brackets) */
    bool host_is_ip;
    unsigned port;                  /* explicit, else 443 / 80 */
} egress_url;

/* Parses url strictly into *out. OP_OK, or OP_ERR_PERMANENT with *why (a static string). */
op_status egress_parse_url(const char *url, egress_url *out, const char **why);

/* An IPv4 or IPv6 address; an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is stored as IPv4. */
typedef struct egress_addr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char b[16];
} egress_addr;

/* 0 on success, -1 if text is not an address (strict dotted quad, or IPv6 without zone). */
int egress_addr_parse(const char *text, egress_addr *out);
/* 0 on success, -1 for a family other than AF_INET / AF_INET6. */
int egress_addr_from_sockaddr(const struct sockaddr *sa, egress_addr *out);
/* The address as text (INET6_ADDRSTRLEN bytes are enough). */
void egress_addr_format(const egress_addr *a, char *out, size_t outlen);
/* NULL when a is a public address, else the name of the internal range it is in
 * ("loopback", "private", "link-local", "metadata", ...). */
const char *egress_addr_internal(const egress_addr *a);

typedef struct egress_cidr {
    egress_addr net;
    int prefix;
} egress_cidr;

/* A list of CIDRs; parsed from "a/n,b/n" (a bare address is a /32 or /128). Freed with
 * egress_cidrs_free. */
typedef struct egress_cidrs {
    egress_cidr *v;
    size_t n;
} egress_cidrs;

/* Appends the comma-separated CIDRs of text (NULL or "" adds none). OP_OK, or
 * OP_ERR_PERMANENT with the bad entry named in err (this is configuration, not client input). */
op_status egress_cidrs_parse(egress_cidrs *list, const char *text, char *err, size_t errlen);
bool egress_cidrs_contain(const egress_cidrs *list, const egress_addr *a);
void egress_cidrs_free(egress_cidrs *list);

/* True if host (lower-case, as egress_parse_url leaves it) matches pattern: the same host, or
 * for "*.suffix" a host ending in ".suffix" with at least one label before it. */
bool egress_host_match(const char *pattern, const char *host);

/* Which webhook hosts each client may use, and whether http (not only https) is allowed.
 * Zero-initialise, fill with egress_policy_parse / _load_file, free with egress_policy_free. */
typedef struct egress_client_hosts {
    char *client;
    char **hosts; /* patterns, lower-case */
    size_t n;
} egress_client_hosts;

typedef struct egress_policy {
    egress_client_hosts *clients;
    size_t n;
    bool allow_http;
} egress_policy;

/* Adds the entries of spec: "client=host,*.suffix;client2=host" (';' or a new line between
 * entries, '#' starts a comment line, spaces around items ignored; a client named twice gets
 * both lists). OP_OK, or OP_ERR_PERMANENT with err naming the bad entry. */
op_status egress_policy_parse(egress_policy *p, const char *spec, char *err, size_t errlen);
/* The same from a file (one entry a line). */
op_status egress_policy_load_file(egress_policy *p, const char *path, char *err, size_t errlen);
void egress_policy_free(egress_policy *p);
/* The client's entry, or NULL when it has none. */
const egress_client_hosts *egress_policy_client(const egress_policy *p, const char *client);

/* The door's check of a webhook URL given by `client`: OP_OK when the URL parses, its scheme is
 * allowed and its host is in the client's list; else OP_ERR_PERMANENT with why (a message
 * fit for the client) in msg. */
op_status egress_policy_check(const egress_policy *p, const char *client, const char *url,
                              char *msg, size_t msglen);

#endif
