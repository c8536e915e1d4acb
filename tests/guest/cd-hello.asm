; An El Torito no-emulation boot image for the PC machine (-M pc -cdrom): SeaBIOS finds it through
; the ISO's boot catalog on the ATAPI CD-ROM ("Booting from DVD/CD..."), loads its four 512-byte
; sectors at 0x7c00 and jumps there with the CD's drive number in DL. It prints a line on COM1,
; reads the ISO's sector 16 (its primary volume descriptor, 2048 bytes) through INT 13h's
; extended read (SeaBIOS's ATAPI READ(10) again) and exits through isa-debug-exit at 0xf4:
; 0x2a (qkvm's status 85) when the sector holds the ISO 9660 signature "CD001", 1 (status 3)
; when the read failed or returned other bytes.
bits 16
org 0x7c00

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    sti
    mov [drive], dl
    ; let SeaBIOS's serial console finish "Booting from DVD/CD..." on its timer ticks first
    mov cx, 3
.tick:
    hlt
    loop .tick
    mov si, msg_hello
    call puts
    mov si, dap
    mov ah, 0x42                ; extended read: CD sector 16, one 2048-byte sector, to 0x8000
    mov dl, [drive]
    int 0x13
    jc .fail
    cmp dword [0x8001], 'CD00'
    jne .fail
    cmp byte [0x8005], '1'
    jne .fail
    mov si, msg_pvd
    call puts
    mov al, 0x2a
    jmp exit
.fail:
    mov si, msg_fail
    call puts
    mov al, 1
exit:
    mov dx, 0xf4
    out dx, al
.halt:
    hlt
    jmp .halt

%include "uart.inc"
%include "print16.inc"

drive: db 0
msg_hello: db "qkvm-cd: hello from the El Torito boot image", 13, 10, 0
msg_pvd: db "qkvm-cd: sector 16 read through INT 13h holds CD001", 13, 10, 0
msg_fail: db "qkvm-cd: INT 13h could not read sector 16", 13, 10, 0
align 4
dap:                            ; disk address packet
    db 16, 0
    dw 1                        ; sectors (2048 bytes each on a CD)
    dw 0x8000, 0                ; buffer offset, segment
    dq 16                       ; LBA

    times 2048 - ($ - $$) db 0
