/* Base64 (RFC 4648, with padding) as the guest agent carries file and process data. */
#ifndef QKVM_UTIL_BASE64_H
#define QKVM_UTIL_BASE64_H
#include <stddef.h>

/* A NUL-terminated encoding of data[0..len), malloc'd; NULL on -ENOMEM. */
char *base64_encode(const void *data, size_t len);
/* Decodes text (whitespace ignored, padding optional); 0 and *out (malloc'd, *out_len bytes) or
 * -EINVAL for a byte outside the alphabet or a stray padding, -ENOMEM. */
int base64_decode(const char *text, void **out, size_t *out_len);
#endif
