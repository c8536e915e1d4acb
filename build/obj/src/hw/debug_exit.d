build/obj/src/hw/debug_exit.o: src/hw/debug_exit.c src/util/log.h \
 src/vm/machine.h src/hw/bus.h src/util/parse.h
src/util/log.h:
src/vm/machine.h:
src/hw/bus.h:
src/util/parse.h:
