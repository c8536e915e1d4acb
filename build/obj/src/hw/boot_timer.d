build/obj/src/hw/boot_timer.o: src/hw/boot_timer.c src/util/clock.h \
 src/util/log.h src/vm/machine.h src/hw/bus.h src/util/parse.h
src/util/clock.h:
src/util/log.h:
src/vm/machine.h:
src/hw/bus.h:
src/util/parse.h:
