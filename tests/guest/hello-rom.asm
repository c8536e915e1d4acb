%include "hello-rom.inc"
