build/obj/src/hw/i8042.o: src/hw/i8042.c src/vm/machine.h src/hw/bus.h \
 src/util/parse.h
src/vm/machine.h:
src/hw/bus.h:
src/util/parse.h:
