build/obj/src/vm/boot.o: src/vm/boot.c src/vm/boot.h src/accel/accel.h \
 src/util/log.h src/vm/acpi.h src/vm/cpu_state.h src/vm/machine.h \
 src/hw/bus.h src/util/parse.h src/vm/memory.h src/vm/vcpu.h
src/vm/boot.h:
src/accel/accel.h:
src/util/log.h:
src/vm/acpi.h:
src/vm/cpu_state.h:
src/vm/machine.h:
src/hw/bus.h:
src/util/parse.h:
src/vm/memory.h:
src/vm/vcpu.h:
