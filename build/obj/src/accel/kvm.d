build/obj/src/accel/kvm.o: src/accel/kvm.c src/accel/accel.h \
 src/util/log.h src/vm/cpu_state.h src/vm/machine.h src/hw/bus.h \
 src/util/parse.h src/vm/vcpu.h
src/accel/accel.h:
src/util/log.h:
src/vm/cpu_state.h:
src/vm/machine.h:
src/hw/bus.h:
src/util/parse.h:
src/vm/vcpu.h:
