/* The one control path into a running machine: pause, resume, reset, power button, quit, and
 * what its state is. QMP, HMP, signals and the console all come through here, and the machine's
 * events (STOP, RESUME, POWERDOWN, RESET, SHUTDOWN) go out from here to m->event_fn. Every
 * function runs on the machine's I/O thread (the event loop), never on a vCPU. */
#ifndef QKVM_VM_CONTROL_H
#define QKVM_VM_CONTROL_H
#include <stdbool.h>

#include "vm/cpu_state.h"
#include "vm/machine.h"

/* Stops every vCPU between two instructions (tcg) or two KVM_RUNs and returns once all are
 * parked; emits STOP. Already paused: 0, nothing emitted. 0 or -errno. */
int machine_pause(struct machine *m);
/* Lets the vCPUs go on; emits RESUME. Not paused: 0, nothing emitted. */
int machine_resume(struct machine *m);
bool machine_is_paused(const struct machine *m);
/* "running", "paused", "prelaunch" (-S, never resumed) or "shutdown": QMP's RunState. */
const char *machine_run_state(const struct machine *m);
/* Resets the machine as the host's reset button: the run ends with MACHINE_RESET (the tool
 * builds the machine again; with -no-reboot it exits). reason: QMP's ShutdownCause. */
int machine_reset(struct machine *m, const char *reason);
/* Presses the ACPI power button; emits POWERDOWN. The guest decides what to do: a Linux guest
 * with a button handler powers off (SHUTDOWN, guest-shutdown). -ENODEV: no ACPI. */
int machine_powerdown(struct machine *m);
/* Ends the run (status 0) as QMP's quit. */
int machine_quit(struct machine *m, const char *reason);
/* Reads vCPU cpu's registers consistently: the vCPUs are parked for the moment of the read
 * (no STOP/RESUME events; a paused machine stays paused). 0, -EINVAL (no such CPU),
 * -ENOTSUP (the accelerator cannot), -ESHUTDOWN (the machine is stopping) or -errno. */
int machine_get_cpu_state(struct machine *m, int cpu, struct cpu_state *s);
/* Parks every vCPU between two runs of guest code for a moment, without STOP/RESUME events
 * (migration's dirty-page syncs, a consistent register read, a hostmem dirty sync): false when
 * they were parked already (paused), else the caller calls machine_unpark_vcpus. The caller
 * checks m->stop after it: a stopping machine's vCPUs leave instead of parking. I/O thread
 * only: a vCPU waiting here would wait for itself. */
bool machine_park_vcpus(struct machine *m);
void machine_unpark_vcpus(struct machine *m);
/* Tells a device when the guest stops and starts running (QEMU's vm state change handlers):
 * fn(opaque, false) once a pause has parked every vCPU (stop, savevm, the end of a migration),
 * fn(opaque, true) when a resume is about to let them go. A device whose back-end brings input
 * by itself (a tap) stops taking it while stopped, so nothing reaches guest RAM behind a saved
 * state and the input waits outside (QEMU leaves packets in the tap). Brief parks without
 * STOP/RESUME (machine_park_vcpus) call nothing. The device starts in the state
 * machine_is_paused says (-S, -incoming). On the I/O thread. 0 or -ENOSPC. */
int machine_add_run_hook(struct machine *m, void (*fn)(void *opaque, bool running), void *opaque);
/* Hands an event to the listener: data_json is the "data" object's text, or NULL for none. */
void machine_emit_event(struct machine *m, const char *name, const char *data_json);
/* After the run: SHUTDOWN or RESET for why the machine stopped, with the guest/host reason. */
void machine_emit_stop_event(struct machine *m, enum machine_stop why);

#endif
