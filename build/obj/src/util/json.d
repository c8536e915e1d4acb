build/obj/src/util/json.o: src/util/json.c src/util/json.h
src/util/json.h:
