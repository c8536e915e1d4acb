; A 64 KiB firmware image that keeps the CPU busy in the two modes firmware and 32-bit guests run
; in: LOOPS rounds of a 32-bit LCG in 16-bit real mode (ES-based byte stores, DI wrapping at
; 64 KiB), then the same in 32-bit protected mode (PUSH/CALL/RET on a 32-bit stack, stores into
; RAM at 1 MiB), printing "r16=X s16=Y" and "r32=X s32=Y" (hex) on COM1, then powering off.
; x(n+1) = x(n) * 1103515245 + 12345 from x(0) = 1; s sums bits 8-15 of each x (mod 2^32), so a
; test can compute both. tests/integration/tcg-modes.sh and bench/tcg-ips use it.
%ifndef LOOPS
%define LOOPS 4000000
%endif
bits 16
org 0                       ; CS base 0xf0000 (the alias below 1 MiB)

start:
    cli
    mov ax, cs
    mov ds, ax
    xor ax, ax
    mov ss, ax
    mov sp, 0x7000
    mov ax, 0x1000          ; ES base 0x10000
    mov es, ax
    mov ecx, LOOPS
    mov eax, 1
    xor ebx, ebx
    xor di, di
.l16:
    imul eax, eax, 1103515245
    add eax, 12345
    mov [es:di], ah
    movzx edx, byte [es:di]
    add ebx, edx
    inc di
    dec ecx
    jnz .l16
    push eax                ; lodsb in puts16 takes AL
    mov si, m16
    call puts16
    pop eax
    call puthex16
    mov si, ms16
    call puts16
    mov eax, ebx
    call puthex16
    mov al, 10
    call uart_putc

    o32 lgdt [gdtr]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp dword 0x08:(0xf0000 + pm32)

; puts16: the string at ds:si; puthex16: eax as 8 hex digits
puts16:
    lodsb
    test al, al
    jz .done
    call uart_putc
    jmp puts16
.done:
    ret
puthex16:
    mov cx, 8
.digit:
    rol eax, 4
    push eax
    and al, 15
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 'a' - '9' - 1
.out:
    call uart_putc
    pop eax
    loop .digit
    ret

%include "uart.inc"

bits 32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7000
    mov ecx, LOOPS
    mov eax, 1
    xor ebx, ebx
.l32:
    imul eax, eax, 1103515245
    add eax, 12345
    push eax
    call byte1
    pop eax
    add ebx, edx
    mov esi, ecx
    and esi, 0xffff
    mov [esi + 0x100000], dl
    dec ecx
    jnz .l32
    push eax
    mov esi, 0xf0000 + m32
    call puts32
    pop eax
    call puthex32
    mov esi, 0xf0000 + ms32
    call puts32
    mov eax, ebx
    call puthex32
    mov al, 10
    call putc32
    mov dx, 0x604           ; PM1a_CNT: SLP_TYP=5 (S5), SLP_EN
    mov ax, 0x3400
    out dx, ax
.halt:
    hlt
    jmp .halt

byte1:                      ; edx = bits 8-15 of the dword above the return address
    mov edx, [esp + 4]
    shr edx, 8
    movzx edx, dl
    ret
puts32:
    lodsb
    test al, al
    jz .done
    call putc32
    jmp puts32
.done:
    ret
puthex32:
    mov ecx, 8
.digit:
    rol eax, 4
    push eax
    and al, 15
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 'a' - '9' - 1
.out:
    call putc32
    pop eax
    dec ecx
    jnz .digit
    ret

putc32:                     ; al to COM1 (uart.inc's routine is assembled for 16-bit code)
    push edx
    push eax
.wait:
    mov dx, 0x3fd
    in al, dx
    test al, 0x20
    jz .wait
    pop eax
    mov dx, 0x3f8
    out dx, al
    pop edx
    ret

m16: db "r16=", 0
ms16: db " s16=", 0
m32: db "r32=", 0
ms32: db " s32=", 0

align 8
gdt:
    dq 0
    dq 0x00cf9b000000ffff   ; 0x08 code32
    dq 0x00cf93000000ffff   ; 0x10 data32
gdtr:
    dw gdtr - gdt - 1
    dd 0xf0000 + gdt

    times 0xfff0 - ($ - $$) db 0xff
bits 16
reset:                      ; F000:FFF0
    jmp 0xf000:start
    times 0x10000 - ($ - $$) db 0xff
