build/obj/src/tools/qkvm.o: src/tools/qkvm.c src/accel/accel.h \
 src/hw/chardev.h src/util/log.h src/util/parse.h src/vm/boot.h \
 src/vm/machine.h src/hw/bus.h
src/accel/accel.h:
src/hw/chardev.h:
src/util/log.h:
src/util/parse.h:
src/vm/boot.h:
src/vm/machine.h:
src/hw/bus.h:
