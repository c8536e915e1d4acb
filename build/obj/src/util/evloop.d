build/obj/src/util/evloop.o: src/util/evloop.c src/util/evloop.h
src/util/evloop.h:
