; A 64 KiB firmware image: starts in real mode at the reset vector, prints a line on COM1, then
; leaves through isa-debug-exit (port 0xf4, value 0 -> exit status 1) or, where that device is
; absent, through ACPI poweroff on qkvm's PM1 control port. Used by -bios tests and bench/startup.
%ifndef EXIT_VALUE
%define EXIT_VALUE 0
%endif
bits 16
org 0                       ; CS base is 0xf0000 for the alias below 1 MiB / 0xffff0000 at reset

start:
    cli
    mov ax, cs
    mov ds, ax
    mov si, msg
.next:
    lodsb                   ; ds:si, with ds = cs: the ROM reads itself
    test al, al
    jz .done
    call uart_putc
    jmp .next
.done:
    mov dx, 0xf4
    mov al, EXIT_VALUE
    out dx, al
    mov dx, 0x604           ; PM1a_CNT: SLP_TYP=5 (S5), SLP_EN
    mov ax, 0x3400
    out dx, ax
.halt:
    hlt
    jmp .halt

%include "uart.inc"

msg: db "Hello from real mode", 13, 10, 0

    times 0xfff0 - ($ - $$) db 0xff
reset:                      ; F000:FFF0
    jmp 0xf000:start
    times 0x10000 - ($ - $$) db 0xff
