build/obj/src/hw/rtc.o: src/hw/rtc.c src/vm/machine.h src/hw/bus.h \
 src/util/parse.h
src/vm/machine.h:
src/hw/bus.h:
src/util/parse.h:
