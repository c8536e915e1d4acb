%define EXIT_VALUE 127
%include "hello-rom.inc"
