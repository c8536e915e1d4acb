build/obj/src/hw/serial.o: src/hw/serial.c src/hw/chardev.h \
 src/util/clock.h src/util/log.h src/vm/machine.h src/hw/bus.h \
 src/util/parse.h
src/hw/chardev.h:
src/util/clock.h:
src/util/log.h:
src/vm/machine.h:
src/hw/bus.h:
src/util/parse.h:
