/* CRC-32 (IEEE 802.3, the polynomial and conventions of zlib's crc32): the checksum of qkvm's
 * migration streams and snapshots, which carry whole guest RAM through it, so it must run near
 * memory speed. */
#ifndef QKVM_UTIL_CRC32_H
#define QKVM_UTIL_CRC32_H
#include <stddef.h>
#include <stdint.h>

/* The CRC of the n bytes at p continued from crc (0 to start), as zlib's crc32(crc, p, n).
 * Carry-less multiplication (PCLMULQDQ) where the CPU has it, ~10x the tables' speed. */
uint32_t crc32_update(uint32_t crc, const void *p, size_t n);

/* The same by tables only (slicing-by-8): the fallback, and the tests' check of the fast path. */
uint32_t crc32_update_tables(uint32_t crc, const void *p, size_t n);

#endif
