/* What qkvm-img and qkvm-io share: --object secret,..., --image-opts, QEMU's size strings. */
#ifndef QKVM_BLOCK_CLI_H
#define QKVM_BLOCK_CLI_H
#include <stddef.h>
#include <stdint.h>

#include "block/block.h"

/* Registers "secret,id=ID,data=...|file=..." (--object). 0 or -errno with a message in err. */
int cli_add_object(const char *spec, char *err);
/* The secret's bytes (NULL if no such id); len set. */
const char *cli_secret(const char *id, size_t *len);
/* The only secret, when exactly one was given (convenience for plain file names). */
const char *cli_default_secret(size_t *len);

/* --image-opts "driver=qcow2,file.filename=x,encrypt.key-secret=s0,...": fills path and opts. */
int cli_parse_image_opts(const char *spec, char **path, struct block_open_opts *o, char *err);

/* QEMU's human sizes: "64 KiB", "1.062 MiB", "20 bytes" (qemu-io's cvtstr). */
void cli_cvtstr(double v, char *buf, size_t n);
/* qemu-img's size_to_str: "1 GiB", "324 KiB", "1.5 GiB". */
void cli_size_str(uint64_t v, char *buf, size_t n);

#endif
