; A 64 KiB firmware image that answers on COM1: prints "ready", then echoes every byte it
; receives (polling the line status register, no interrupts) until a 'q', then prints "bye" and
; powers off through qkvm's PM1 control port. tests/integration/migrate-serial.sh restores it
; from a migration stream while input waits: what it echoes is what reached the guest.
%define COM1 0x3f8
bits 16
org 0                       ; CS base 0xf0000 (the alias below 1 MiB)

start:
    cli
    mov ax, cs
    mov ds, ax
    mov si, s_ready
    call puts
.next:
    mov dx, COM1 + 5
    in al, dx
    test al, 0x01           ; data ready
    jz .next
    mov dx, COM1
    in al, dx
    cmp al, 'q'
    je .done
    call uart_putc
    jmp .next
.done:
    mov si, s_bye
    call puts
    mov dx, 0x604           ; PM1a_CNT: SLP_TYP=5 (S5), SLP_EN
    mov ax, 0x3400
    out dx, ax
.halt:
    hlt
    jmp .halt

puts:                       ; ds:si, NUL-terminated
    lodsb
    test al, al
    jz .end
    call uart_putc
    jmp puts
.end:
    ret

uart_putc:                  ; al, once the transmitter is empty
    push ax
.wait:
    mov dx, COM1 + 5
    in al, dx
    test al, 0x20
    jz .wait
    pop ax
    mov dx, COM1
    out dx, al
    ret


s_ready: db "ready", 10, 0
s_bye: db 10, "bye", 10, 0

    times 0xfff0 - ($ - $$) db 0xff
reset:                      ; F000:FFF0
    jmp 0xf000:start
    times 0x10000 - ($ - $$) db 0xff
