build/obj/tests/unit/test_util.o: tests/unit/test_util.c src/util/json.h \
 src/util/log.h src/util/parse.h
src/util/json.h:
src/util/log.h:
src/util/parse.h:
