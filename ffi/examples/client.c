/* Keyway from C, online: put, get, usage and delete against a namebump
 * server (a Keyway one, or the reference).
 *
 *   ./client 127.0.0.1:5300 <server public key, 66 hex digits>
 */
#include <stdio.h>
#include <string.h>

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

static int unhex(const char *text, uint8_t *out, size_t len) {
    if (strlen(text) != 2 * len) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned byte;
        if (sscanf(text + 2 * i, "%2x", &byte) != 1) return 0;
        out[i] = (uint8_t)byte;
    }
    return 1;
}

int main(int argc, char **argv) {
    uint8_t server_pk[KEYWAY_PUBLIC_KEY_LEN];
    if (argc != 3 || !unhex(argv[2], server_pk, sizeof server_pk)) {
        fprintf(stderr, "usage: %s HOST:PORT SERVER_PUBLIC_KEY_HEX\n", argv[0]);
        return 2;
    }
    int ok = 0;
    KeywayKeypair *owner = NULL, *stranger = NULL;
    KeywayNamebumpClient *client = NULL;
    CHECK(keyway_keypair_generate(&owner));
    CHECK(keyway_keypair_generate(&stranger));
    CHECK(keyway_namebump_client_new(argv[1], server_pk, sizeof server_pk, &client));

    const uint8_t name[] = "c-example", value[] = "hello from C";
    CHECK(keyway_namebump_put(client, name, sizeof name - 1, value, sizeof value - 1, owner,
                              KEYWAY_NAMEBUMP_DO_BUMP));

    uint8_t got[KEYWAY_NAMEBUMP_MAX_VALUE], got_owner[KEYWAY_PUBLIC_KEY_LEN],
        owner_pk[KEYWAY_PUBLIC_KEY_LEN];
    size_t got_len = 0;
    bool found = false;
    CHECK(keyway_namebump_get(client, name, sizeof name - 1, got, sizeof got, &got_len, got_owner,
                              &found));
    CHECK(keyway_keypair_public(owner, owner_pk, sizeof owner_pk));
    if (!found || got_len != sizeof value - 1 || memcmp(got, value, got_len) != 0 ||
        memcmp(got_owner, owner_pk, sizeof owner_pk) != 0) {
        fprintf(stderr, "get returned something else\n");
        goto fail;
    }
    printf("get=%.*s\n", (int)got_len, (const char *)got);

    /* Another key cannot take the name. */
    int status = keyway_namebump_put(client, name, sizeof name - 1, value, 1, stranger,
                                     KEYWAY_NAMEBUMP_DO_BUMP);
    printf("stranger=%s\n", keyway_error_message(status));
    if (status != KEYWAY_ERR_NOT_OWNER) goto fail;

    uint32_t used = 0, limit = 0;
    uint8_t af = 0;
    CHECK(keyway_namebump_usage(client, owner, &used, &limit, &af));
    printf("usage=%u/%u af=%u\n", used, limit, af);

    CHECK(keyway_namebump_delete(client, name, sizeof name - 1, owner));
    CHECK(keyway_namebump_get(client, name, sizeof name - 1, got, sizeof got, &got_len, NULL,
                              &found));
    if (found) {
        fprintf(stderr, "the name survived its deletion\n");
        goto fail;
    }
    printf("deleted\n");
    ok = 1;
fail:
    keyway_namebump_client_free(client);
    keyway_keypair_free(owner);
    keyway_keypair_free(stranger);
    return ok ? 0 : 1;
}
