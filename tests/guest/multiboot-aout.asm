%include "multiboot.inc"
