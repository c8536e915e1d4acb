build/obj/src/accel/accel.o: src/accel/accel.c src/accel/accel.h
src/accel/accel.h:
