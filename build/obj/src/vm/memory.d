build/obj/src/vm/memory.o: src/vm/memory.c src/vm/machine.h src/hw/bus.h \
 src/util/parse.h src/vm/memory.h
src/vm/machine.h:
src/hw/bus.h:
src/util/parse.h:
src/vm/memory.h:
