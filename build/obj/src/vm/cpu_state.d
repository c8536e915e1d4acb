build/obj/src/vm/cpu_state.o: src/vm/cpu_state.c src/vm/cpu_state.h
src/vm/cpu_state.h:
