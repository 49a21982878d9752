/* Keyway from C, offline: a key, a signed PUT sealed to a server's key,
 * opened and verified as the server would; a tampered copy refused; a
 * sidewire message and a Drayer record signed and checked.
 *
 *   cc -Wall -Werror -Iffi/include ffi/examples/packets.c \
 *      target/debug/libkeyway_ffi.a -lpthread -ldl -lm -o packets && ./packets
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "keyway.h"

#define CHECK(call)                                                          \
    do {                                                                     \
        int status_ = (call);                                                \
        if (status_ != KEYWAY_OK) {                                          \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,    \
                    keyway_error_message(status_));                          \
            goto fail;                                                       \
        }                                                                    \
    } while (0)

static void hex(const char *label, const uint8_t *bytes, size_t len) {
    printf("%s=", label);
    for (size_t i = 0; i < len; i++) printf("%02x", bytes[i]);
    printf("\n");
}

int main(void) {
    int ok = 0;
    KeywayKeypair *owner = NULL, *server = NULL;
    uint8_t owner_pk[KEYWAY_PUBLIC_KEY_LEN], server_pk[KEYWAY_PUBLIC_KEY_LEN];

    CHECK(keyway_keypair_generate(&owner));
    CHECK(keyway_keypair_generate(&server));
    CHECK(keyway_keypair_public(owner, owner_pk, sizeof owner_pk));
    CHECK(keyway_keypair_public(server, server_pk, sizeof server_pk));
    hex("owner", owner_pk, sizeof owner_pk);

    /* A signed PUT of "alice" → "hello". */
    const char *name = "alice", *value = "hello";
    KeywayNamebumpRequest put = {
        .op = KEYWAY_NAMEBUMP_OP_PUT,
        .pkid = 0, /* random */
        .updated = (double)time(NULL),
        .ttl = 10.0,
        .behavior = KEYWAY_NAMEBUMP_DO_BUMP,
        .name = (const uint8_t *)name,
        .name_len = strlen(name),
        .value = (const uint8_t *)value,
        .value_len = strlen(value),
        .reply_pk = owner_pk,
    };
    uint8_t plain[KEYWAY_NAMEBUMP_MAX_PACKET];
    size_t plain_len = 0;
    CHECK(keyway_namebump_request(owner, &put, plain, sizeof plain, &plain_len));

    /* Too small a buffer says how much is needed and writes nothing else. */
    size_t needed = 0;
    if (keyway_namebump_request(owner, &put, plain, 10, &needed) != KEYWAY_ERR_BUFFER_TOO_SMALL ||
        needed != plain_len) {
        fprintf(stderr, "a short buffer was not reported\n");
        goto fail;
    }

    /* Sealed to the server's key, as it goes on the wire. */
    uint8_t sealed[KEYWAY_NAMEBUMP_MAX_PACKET + KEYWAY_NAMEBUMP_SEAL_OVERHEAD];
    size_t sealed_len = 0;
    CHECK(keyway_namebump_seal(server_pk, sizeof server_pk, plain, plain_len, sealed,
                               sizeof sealed, &sealed_len));
    printf("plaintext=%zu sealed=%zu\n", plain_len, sealed_len);

    /* The server's side: open, parse, verify. */
    uint8_t opened[sizeof sealed];
    size_t opened_len = 0;
    CHECK(keyway_namebump_open(server, sealed, sealed_len, opened, sizeof opened, &opened_len));
    KeywayNamebumpPacket packet;
    CHECK(keyway_namebump_packet_parse(opened, opened_len, &packet));
    CHECK(keyway_namebump_packet_verify(opened, opened_len));
    printf("op=%u name=%.*s value=%.*s signed=%d\n", packet.op, (int)packet.name_len,
           (const char *)packet.name, (int)packet.value_len, (const char *)packet.value,
           packet.has_sig);
    if (opened_len != plain_len || memcmp(opened, plain, plain_len) != 0 ||
        memcmp(packet.vkc, owner_pk, sizeof owner_pk) != 0) {
        fprintf(stderr, "the opened packet differs\n");
        goto fail;
    }

    /* The owner cannot open what was sealed to the server; a changed value
     * no longer verifies. */
    if (keyway_namebump_open(owner, sealed, sealed_len, opened, sizeof opened, &opened_len) !=
        KEYWAY_ERR_DECRYPT) {
        fprintf(stderr, "opened with the wrong key\n");
        goto fail;
    }
    plain[59 + put.name_len] ^= 1; /* first byte of the value */
    if (keyway_namebump_packet_verify(plain, plain_len) != KEYWAY_ERR_BAD_SIGNATURE) {
        fprintf(stderr, "a tampered packet verified\n");
        goto fail;
    }
    printf("tampered=refused\n");

    /* sidewire: a signed message and the brokers it would go to. */
    uint8_t queue[32] = {7};
    const char *msg = "ping";
    uint8_t wire[KEYWAY_SIDEWIRE_HEADER_LEN + 4];
    size_t wire_len = 0, src_len = sizeof owner_pk;
    uint8_t src[KEYWAY_PUBLIC_KEY_LEN];
    CHECK(keyway_sidewire_packet_sign(owner, queue, sizeof queue, 1, (uint64_t)time(NULL),
                                      KEYWAY_SIDEWIRE_MSG, (const uint8_t *)msg, strlen(msg), wire,
                                      sizeof wire, &wire_len));
    CHECK(keyway_sidewire_packet_verify(wire, wire_len, src, src_len));
    const char *hosts[] = {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"};
    size_t order[4];
    CHECK(keyway_sidewire_rank(KEYWAY_AF_INET, server_pk, sizeof server_pk, hosts, 4, order, 4));
    printf("sidewire=verified brokers=%zu first=%s\n", keyway_sidewire_set_size(4), hosts[order[0]]);

    /* Drayer: a record signed with a stream's seed, checked with its key. */
    uint8_t seed[KEYWAY_DRAYER_SEED_LEN] = {42}, stream_pk[KEYWAY_DRAYER_PUBLIC_KEY_LEN];
    uint8_t sig[KEYWAY_DRAYER_SIGNATURE_LEN];
    KeywayDrayerRecord record = {
        .id = 1, .timestamp = 1, .modified = 1, .prev = 0, .prevchange = 0,
        .key = (const uint8_t *)"greeting", .key_len = 8,
        .type_ = (const uint8_t *)"obj", .type_len = 3,
        .value = (const uint8_t *)"hi", .value_len = 2,
    };
    CHECK(keyway_drayer_public_key(seed, sizeof seed, stream_pk, sizeof stream_pk));
    CHECK(keyway_drayer_record_sign(seed, sizeof seed, &record, sig, sizeof sig));
    CHECK(keyway_drayer_record_verify(stream_pk, sizeof stream_pk, &record, sig, sizeof sig));
    record.modified = 2;
    if (keyway_drayer_record_verify(stream_pk, sizeof stream_pk, &record, sig, sizeof sig) !=
        KEYWAY_ERR_BAD_SIGNATURE) {
        fprintf(stderr, "a changed record verified\n");
        goto fail;
    }
    printf("drayer=verified\n");
    ok = 1;
fail:
    keyway_keypair_free(owner);
    keyway_keypair_free(server);
    return ok ? 0 : 1;
}
