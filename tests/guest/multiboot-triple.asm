; A multiboot (a.out kludge) kernel that triple-faults at once: an empty IDT, then int3. QEMU
; resets the machine on that, or with -no-reboot exits with status 0.
bits 32
    org 0x200000
header:
    dd 0x1badb002, 0x00010000, -(0x1badb002 + 0x00010000)
    dd header, 0x200000, image_end, image_end, entry
entry:
    lidt [idt0]
    int3
    hlt
    align 4
idt0: dw 0
      dd 0
image_end:
