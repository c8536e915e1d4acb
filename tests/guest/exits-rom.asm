; A 64 KiB firmware image that makes 100,000 port writes (port 0x80, where nothing answers) and
; then exits through isa-debug-exit (port 0xf4, value 0x10: status 33) or ACPI poweroff. Each
; write is a VM exit, so the run time measures what one exit costs the VMM (bench/kvm-exits).
%ifndef COUNT
%define COUNT 100000
%endif
bits 16
org 0
start:
    cli
    mov ecx, COUNT
    xor al, al
.loop:
    out 0x80, al
    dec ecx
    jnz .loop
    mov al, 0x10
    out 0xf4, al
    mov dx, 0x604
    mov ax, 0x3400
    out dx, ax
.halt:
    hlt
    jmp .halt
    times 0xfff0 - ($ - $$) db 0xff
    jmp 0xf000:start
    times 0x10000 - ($ - $$) db 0xff
