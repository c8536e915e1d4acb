%define KERNEL64
%include "bzimage.inc"
