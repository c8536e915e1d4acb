build/obj/src/vm/vcpu.o: src/vm/vcpu.c src/vm/vcpu.h src/accel/accel.h \
 src/util/log.h src/vm/machine.h src/hw/bus.h src/util/parse.h
src/vm/vcpu.h:
src/accel/accel.h:
src/util/log.h:
src/vm/machine.h:
src/hw/bus.h:
src/util/parse.h:
