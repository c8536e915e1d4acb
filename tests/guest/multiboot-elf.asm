%define MB_ELF
%include "multiboot.inc"
