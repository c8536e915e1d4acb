build/obj/src/hw/chardev.o: src/hw/chardev.c src/hw/chardev.h \
 src/util/evloop.h src/util/log.h src/vm/machine.h src/hw/bus.h \
 src/util/parse.h
src/hw/chardev.h:
src/util/evloop.h:
src/util/log.h:
src/vm/machine.h:
src/hw/bus.h:
src/util/parse.h:
