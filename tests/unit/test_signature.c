/* Unit tests for signature: HMAC-SHA256 against the RFC 4231 vectors, the Orderpipe-Signature
 * header's parsing (malformed forms, t's bounds), and verification (rotation, another secret,
 * stale and future t, a body changed by one byte). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "signature.h"

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void expect_hmac(const unsigned char *key, size_t keylen, const void *data, size_t len,
                        const char *want)
{
    unsigned char mac[SIGNATURE_MAC_LEN];
    char got[2 * SIGNATURE_MAC_LEN + 1];
    signature_part part = {data, len};
    assert_int_equal(signature_hmac_sha256(key, keylen, &part, 1, mac), OP_OK);
    hex(mac, sizeof mac, got);
    assert_string_equal(got, want);
}

/* RFC 4231 §4.2-4.8 (test case 5 is a truncated MAC: not a form we use). */
static void test_rfc4231_vectors(void **state)
{
    (void)state;
    unsigned char k[131], d[50];
    memset(k, 0x0b, 20);
    expect_hmac(k, 20, "Hi There", 8,
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    expect_hmac((const unsigned char *)"Jefe", 4, "what do ya want for nothing?", 28,
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(k, 0xaa, 20);
    memset(d, 0xdd, 50);
    expect_hmac(k, 20, d, 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    for (int i = 0; i < 25; i++)
        k[i] = (unsigned char)(i + 1);
    memset(d, 0xcd, 50);
    expect_hmac(k, 25, d, 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    memset(k, 0xaa, 131);
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    expect_hmac(k, 131, m6, strlen(m6),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    const char *m7 = "This is a test using a larger than block-size key and a larger than "
                     "block-size data. The key needs to be hashed before being used by the HMAC "
                     "algorithm.";
    expect_hmac(k, 131, m7, strlen(m7),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
    /* Pieces are MACed as if concatenated. */
    signature_part parts[] = {{"what do ya ", 11}, {"", 0}, {"want for nothing?", 17}};
    unsigned char mac[SIGNATURE_MAC_LEN];
    char got[65];
    assert_int_equal(signature_hmac_sha256("Jefe", 4, parts, 3, mac), OP_OK);
    hex(mac, sizeof mac, got);
    assert_string_equal(got, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

#define H64 "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"

static void test_parse(void **state)
{
    (void)state;
    signature_header h;
    assert_int_equal(signature_parse("t=1700000000,v1=" H64, &h), OP_OK);
    assert_true(h.t == 1700000000);
    assert_string_equal(h.t_text, "1700000000");
    assert_int_equal(h.nv1, 1);
    assert_int_equal(h.v1[0][0], 0x5b);
    assert_int_equal(h.v1[0][31], 0x43);
    /* Spaces around entries, several v1, unknown schemes ignored, any order. */
    assert_int_equal(signature_parse(" v1=" H64 " , v0=zz ,t=5,\tv1=" H64 ",v2=x", &h), OP_OK);
    assert_int_equal(h.nv1, 2);
    assert_true(h.t == 5);
    assert_int_equal(signature_parse("t=999999999999,v1=" H64, &h), OP_OK); /* 12 digits */

    const char *bad[] = {
        "", "t=1", "v1=" H64, "t=,v1=" H64, "t=1,v1=", "t=1,t=2,v1=" H64,
        "t=1,,v1=" H64, "t=1,v1=" H64 ",", ",t=1,v1=" H64, "t=1 v1=" H64, "t=1,v1" H64,
        "=1,v1=" H64, "t=-1,v1=" H64, "t=+1,v1=" H64, "t=1.5,v1=" H64, "t=0x10,v1=" H64,
        "t=1e9,v1=" H64, "t= 1,v1=" H64,
        "t=1000000000000,v1=" H64,                 /* 13 digits */
        "t=99999999999999999999999999,v1=" H64,    /* past int64 */
        "t=1,v1=" H64 "0",                         /* 65 hex */
        "t=1,v1=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec384", /* 63 */
        "t=1,v1=5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843", /* upper */
        "t=1,v1=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec384g",
        "t=1,v1=" H64 ",v1=" H64 ",v1=" H64 ",v1=" H64 ",v1=" H64 ",v1=" H64 ",v1=" H64
        ",v1=" H64 ",v1=" H64, /* 9 entries */
        "t=1;v1=" H64, "T=1,v1=" H64, "t=1,V1=" H64 ",v1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (signature_parse(bad[i], &h) != OP_ERR_PERMANENT)
            fail_msg("accepted: '%s'", bad[i]);
    }
    assert_int_equal(signature_parse(NULL, &h), OP_ERR_PERMANENT);
}

static const char BODY[] = "{\"event_id\":\"ev-1\",\"amount\":1999}";

/* "t=<t>,v1=<hex HMAC(secret)>" */
static void header_for(const char *secret, long long t, char *out, size_t n)
{
    char ts[24], v1[SIGNATURE_HEX_LEN + 1];
    snprintf(ts, sizeof ts, "%lld", t);
    assert_int_equal(signature_sign(secret, strlen(secret), ts, BODY, strlen(BODY), v1), OP_OK);
    snprintf(out, n, "t=%s,v1=%s", ts, v1);
}

static signature_verdict verdict(const char *header, const char *const *secrets, size_t n,
                                 int64_t now)
{
    signature_verdict v;
    assert_int_equal(signature_verify(header, BODY, strlen(BODY), secrets, n, now, 300, &v), OP_OK);
    return v;
}

static void test_verify(void **state)
{
    (void)state;
    const int64_t now = 1700000000;
    const char *one[] = {"whsec_one"}, *both[] = {"whsec_old", "whsec_new"},
               *other[] = {"whsec_other"};
    char h[256];
    header_for("whsec_one", now, h, sizeof h);
    assert_int_equal(verdict(h, one, 1, now), SIGNATURE_VALID);
    assert_int_equal(verdict(h, other, 1, now), SIGNATURE_MISMATCH); /* another channel's */
    assert_int_equal(verdict(h, one, 0, now), SIGNATURE_MISMATCH);   /* no secret: nothing verifies */
    /* Rotation: either secret of the channel verifies. */
    header_for("whsec_old", now, h, sizeof h);
    assert_int_equal(verdict(h, both, 2, now), SIGNATURE_VALID);
    header_for("whsec_new", now, h, sizeof h);
    assert_int_equal(verdict(h, both, 2, now), SIGNATURE_VALID);
    /* ... and a provider signing with both during its switch: one match is enough. */
    char old[256], fresh[256], two[600];
    header_for("whsec_old", now, old, sizeof old);
    header_for("whsec_other", now, fresh, sizeof fresh);
    snprintf(two, sizeof two, "%s,v1=%s", fresh, strstr(old, "v1=") + 3);
    assert_int_equal(verdict(two, both, 2, now), SIGNATURE_VALID);
    assert_int_equal(verdict(fresh, both, 2, now), SIGNATURE_MISMATCH);
    /* The window: 300 s either way, inclusive. */
    header_for("whsec_one", now - 300, h, sizeof h);
    assert_int_equal(verdict(h, one, 1, now), SIGNATURE_VALID);
    header_for("whsec_one", now - 301, h, sizeof h);
    assert_int_equal(verdict(h, one, 1, now), SIGNATURE_STALE);
    header_for("whsec_one", now + 300, h, sizeof h);
    assert_int_equal(verdict(h, one, 1, now), SIGNATURE_VALID);
    header_for("whsec_one", now + 301, h, sizeof h);
    assert_int_equal(verdict(h, one, 1, now), SIGNATURE_STALE);
    header_for("whsec_one", 0, h, sizeof h);
    assert_int_equal(verdict(h, one, 1, now), SIGNATURE_STALE);
    header_for("whsec_one", 999999999999LL, h, sizeof h); /* the largest t: no overflow */
    assert_int_equal(verdict(h, one, 1, now), SIGNATURE_STALE);
    /* A stale t with a wrong MAC is a bad signature, not a stale one. */
    header_for("whsec_other", now - 1000, h, sizeof h);
    assert_int_equal(verdict(h, one, 1, now), SIGNATURE_MISMATCH);
    /* The MAC covers t: the same v1 under another t fails. */
    header_for("whsec_one", now, h, sizeof h);
    char moved[256];
    snprintf(moved, sizeof moved, "t=%lld%s", (long long)now - 1, strchr(h, ','));
    assert_int_equal(verdict(moved, one, 1, now), SIGNATURE_MISMATCH);
    /* ... and every byte of the body. */
    signature_verdict v;
    char body2[sizeof BODY];
    memcpy(body2, BODY, sizeof BODY);
    body2[5] ^= 1;
    assert_int_equal(signature_verify(h, body2, strlen(body2), one, 1, now, 300, &v), OP_OK);
    assert_int_equal(v, SIGNATURE_MISMATCH);
    assert_int_equal(signature_verify(h, BODY, strlen(BODY) - 1, one, 1, now, 300, &v), OP_OK);
    assert_int_equal(v, SIGNATURE_MISMATCH);
    /* Malformed or missing. */
    assert_int_equal(verdict(NULL, one, 1, now), SIGNATURE_MALFORMED);
    assert_int_equal(verdict("garbage", one, 1, now), SIGNATURE_MALFORMED);
    assert_string_equal(signature_verdict_name(SIGNATURE_STALE), "stale");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4231_vectors),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_verify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
