/* What devices ask of the accelerator, asked through the machine: devices know nothing of KVM or
 * the emulator (DEVELOPERS.md), and one place sees every MSI and ioeventfd. Device writes to RAM
 * go through machine_note_dirty (vm/memory.c), where migration's dirty tracking of DMA hooks in. */
#include "vm/machine.h"

#include "accel/accel.h"
#include "hw/irqchip.h"

#include <errno.h>

int machine_send_msi(struct machine *m, uint64_t addr, uint32_t data)
{
    if (m->accel && m->accel->send_msi)
        return m->accel->send_msi(m, addr, data);
    if (m->irqchip) {
        irqchip_send_msi(m->irqchip, addr, data);
        return 0;
    }
    return -ENODEV;
}

int machine_add_ioeventfd(struct machine *m, uint64_t addr, unsigned len, bool pio, int fd, bool assign)
{
    if (!m->accel || !m->accel->ioeventfd)
        return -EOPNOTSUPP;
    return m->accel->ioeventfd(m, addr, len, pio, fd, assign);
}

int machine_add_ioeventfd_data(struct machine *m, uint64_t addr, unsigned len, int fd, uint64_t data, bool assign)
{
    if (!m->accel || !m->accel->ioeventfd_data)
        return -EOPNOTSUPP;
    return m->accel->ioeventfd_data(m, addr, len, fd, data, assign);
}

bool machine_has_irqfd(struct machine *m)
{
    return m->accel && m->accel->msi_route && m->accel->irqfd;
}

int machine_msi_route(struct machine *m, int route, uint64_t addr, uint32_t data)
{
    if (!machine_has_irqfd(m))
        return -EOPNOTSUPP;
    return m->accel->msi_route(m, route, addr, data);
}

void machine_msi_route_free(struct machine *m, int route)
{
    if (m->accel && m->accel->msi_route_free)
        m->accel->msi_route_free(m, route);
}

int machine_irqfd(struct machine *m, int fd, int route, bool assign)
{
    if (!machine_has_irqfd(m))
        return -EOPNOTSUPP;
    return m->accel->irqfd(m, fd, route, assign);
}
