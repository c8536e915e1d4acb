build/obj/src/hw/bus.o: src/hw/bus.c src/hw/bus.h
src/hw/bus.h:
