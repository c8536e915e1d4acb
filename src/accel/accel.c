#include "accel/accel.h"

#include <string.h>

/* tcg is weak so the library links while the emulator is absent from a build. */
extern const struct accel_ops accel_tcg __attribute__((weak));

const struct accel_ops *accel_find(const char *name)
{
    if (!strcmp(name, "kvm"))
        return &accel_kvm;
    if (!strcmp(name, "tcg") && &accel_tcg)
        return &accel_tcg;
    return NULL;
}
