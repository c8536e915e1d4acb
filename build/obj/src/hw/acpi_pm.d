build/obj/src/hw/acpi_pm.o: src/hw/acpi_pm.c src/util/clock.h \
 src/vm/acpi.h src/vm/machine.h src/hw/bus.h src/util/parse.h
src/util/clock.h:
src/vm/acpi.h:
src/vm/machine.h:
src/hw/bus.h:
src/util/parse.h:
