%define EXIT_VALUE 1
%include "hello-rom.inc"
