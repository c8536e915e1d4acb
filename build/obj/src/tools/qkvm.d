build/obj/src/tools/qkvm.o: src/tools/qkvm.c src/util/log.h
src/util/log.h:
