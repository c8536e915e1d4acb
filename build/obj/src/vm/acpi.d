build/obj/src/vm/acpi.o: src/vm/acpi.c src/vm/acpi.h src/hw/irqchip.h \
 src/vm/machine.h src/hw/bus.h src/util/parse.h
src/vm/acpi.h:
src/hw/irqchip.h:
src/vm/machine.h:
src/hw/bus.h:
src/util/parse.h:
