%include "bzimage.inc"
