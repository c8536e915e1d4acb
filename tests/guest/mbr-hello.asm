; A master boot record for the PC machine (-M pc): SeaBIOS loads it from the first IDE disk at
; 0x7c00 ("Booting from Hard Disk..."). It prints a line on COM1, reads the disk's second sector
; through INT 13h's extended read (so SeaBIOS's ATA driver reads the disk again), prints the
; line found there, and exits through isa-debug-exit at 0xf4: 0x2a (qkvm's status 85) when the
; sector held what this file put there, 1 (status 3) when the read failed or returned other bytes.
; Assembled to two sectors: the MBR (with 0x55AA) and the sector it reads.
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
    mov [drive], dl             ; the BIOS's number for the disk it booted from
    ; SeaBIOS's serial console sends the end of "Booting from Hard Disk..." on its timer ticks:
    ; three ticks (~0.16 s) let it finish, so the lines do not interleave
    mov cx, 3
.tick:
    hlt
    loop .tick
    mov si, msg_hello
    call puts
    mov si, dap
    mov ah, 0x42                ; extended read: LBA 1, one sector, to 0x7e00
    mov dl, [drive]
    int 0x13
    jc .fail
    cmp dword [0x7e00], 'qkvm'
    jne .fail
    mov si, 0x7e00
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
msg_hello: db "qkvm-mbr: hello from the boot sector", 13, 10, 0
msg_fail: db "qkvm-mbr: INT 13h could not read sector 1", 13, 10, 0
align 4
dap:                            ; disk address packet
    db 16, 0
    dw 1                        ; sectors
    dw 0x7e00, 0                ; buffer offset, segment
    dq 1                        ; LBA

    times 510 - ($ - $$) db 0
    dw 0xaa55

sector1:
    db "qkvm-mbr: sector 1 read through INT 13h", 13, 10, 0
    times 1024 - ($ - $$) db 0
