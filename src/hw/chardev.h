/* Character backends for devices that talk to the user: stdio, a file, or nothing, as QEMU's
 * -serial takes them. On a terminal, stdio is raw and Ctrl-A x quits (QEMU's escape). */
#ifndef QKVM_HW_CHARDEV_H
#define QKVM_HW_CHARDEV_H
#include <stddef.h>
#include <stdint.h>

struct chardev;
struct machine;

/* The device's receive side: called on the I/O thread with bytes typed by the user; returns how
 * many it took. When it takes fewer, input pauses until chardev_resume. */
typedef size_t (*chardev_receive_fn)(void *opaque, const uint8_t *buf, size_t len);

/* spec: "stdio", "file:PATH", "none". 0, -EINVAL (*why says why) or -errno. */
int chardev_open(struct machine *m, const char *spec, struct chardev **out, const char **why);
void chardev_close(struct chardev *c);
void chardev_set_receiver(struct chardev *c, chardev_receive_fn fn, void *opaque);
/* Output from the guest; never blocks the vCPU for long, never fails the guest. */
void chardev_write(struct chardev *c, const uint8_t *buf, size_t len);
/* The device has room again (any thread). */
void chardev_resume(struct chardev *c);
/* Puts the terminal back as it was (also done at exit). */
void chardev_restore_terminal(void);

#endif
