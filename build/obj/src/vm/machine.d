build/obj/src/vm/machine.o: src/vm/machine.c src/vm/machine.h \
 src/hw/bus.h src/util/parse.h src/accel/accel.h src/util/evloop.h \
 src/util/log.h src/vm/memory.h src/vm/vcpu.h
src/vm/machine.h:
src/hw/bus.h:
src/util/parse.h:
src/accel/accel.h:
src/util/evloop.h:
src/util/log.h:
src/vm/memory.h:
src/vm/vcpu.h:
