; A guest for the PC machine's state in savevm/loadvm and migration (tests/integration/pc-state.sh).
; SeaBIOS boots it from the first IDE disk; it loads the rest of itself through INT 13h and then
; loops, each turn leaving every PC device halfway through something:
; - the disk (primary master, PIO): READ SECTORS of two patterned sectors, the first read whole
;   and the second half read;
; - the CD (secondary master, ATAPI PIO): READ(10) of two 2048-byte sectors, likewise;
; - fw_cfg: the signature item selected and two of its four bytes read;
; - the i8042: the keyboard's IDENTIFY answered with three bytes, one of them read.
; It prints "pcst: mid N" and waits for a byte on COM1: the test saves or migrates the machine
; there, restores it and sends the byte. The guest then reads the rest of everything and checks
; every word (the disk's sector L holds word i = L << 8 ^ i, the CD's sector S word
; i = S << 10 ^ i ^ 0x5555), writes a sector and reads it back, reads a sector through SeaBIOS's
; INT 13h (its code runs from the PAM-shadowed BIOS area), checks the sum of 0xf0000-0xfffff
; against the one taken at start, and prints "pcst: ok N". A wrong word prints "pcst: FAIL what N"
; and exits through isa-debug-exit (status 3).
bits 16
org 0x7c00

%define DISK 0x1f0
%define DISK_CTL 0x3f6
%define CD 0x170
%define CD_CTL 0x376
%define BUF 0x1000          ; 4 KiB scratch (the program is at 0x7c00-0x9bff)
%define DLBA_FIRST 64       ; the disk's patterned sectors: 64..127
%define CD_SECTORS 30       ; the CD's patterned sectors used: 0..30

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    mov [drive], dl
    mov si, dap
    mov ah, 0x42                ; LBA 1..15 to 0x7e00: the rest of this program
    int 0x13
    jc fail_load
    jmp main

fail_load:
    mov al, 1
    mov dx, 0xf4
    out dx, al
    hlt

drive: db 0
align 4
dap:
    db 16, 0
    dw 15
    dw 0x7e00, 0
    dq 1

    times 510 - ($ - $$) db 0
    dw 0xaa55

; ---------------------------------------------------------------- sector 1 on
main:
    ; IRQ 1 (the keyboard's bytes are this program's), 12, 14, 15 masked at the PICs: SeaBIOS's
    ; handlers would take them otherwise
    in al, 0x21
    or al, 0x02
    out 0x21, al
    in al, 0xa1
    or al, 0xd0
    out 0xa1, al
    mov al, 0x02                ; nIEN on both channels: polled
    mov dx, DISK_CTL
    out dx, al
    mov dx, CD_CTL
    out dx, al
    ; the i8042's command byte as this program wants it (keyboard interrupt, system flag,
    ; translation: IDENTIFY then answers 0xab 0x41), and nothing left queued by the BIOS
    mov al, 0x60
    out 0x64, al
    mov al, 0x45
    out 0x60, al
.drain:
    in al, 0x64
    test al, 1
    jz .drained
    in al, 0x60
    jmp .drain
.drained:
    call bios_sum
    mov [sum0], eax
    call cd_ready
    mov si, msg_start
    call puts

turn:
    ; --- the disk: READ SECTORS, 2 from dlba ---
    mov ax, [iter]
    and ax, 31
    shl ax, 1
    add ax, DLBA_FIRST
    mov [dlba], ax
    mov dx, DISK + 6
    mov al, 0xe0
    out dx, al
    mov dx, DISK + 2
    mov al, 2
    out dx, al
    mov ax, [dlba]
    mov dx, DISK + 3
    out dx, al
    mov al, ah
    mov dx, DISK + 4
    out dx, al
    xor al, al
    mov dx, DISK + 5
    out dx, al
    mov dx, DISK + 7
    mov al, 0x20
    out dx, al
    call disk_drq
    mov bx, [dlba]
    xor cx, cx
    mov bp, 256
    call disk_words             ; the first sector whole
    call disk_drq
    mov bx, [dlba]
    inc bx
    xor cx, cx
    mov bp, 128
    call disk_words             ; half of the second

    ; --- the CD: READ(10), 2 sectors from clba ---
    mov ax, [iter]
    xor dx, dx
    mov cx, CD_SECTORS
    div cx
    mov [clba], dx
    mov [cdb_read + 5], dl
    mov si, cdb_read
    call cd_packet
    jc .cdfail
    call cd_drq
    jc .cdfail
    mov bx, [clba]
    xor cx, cx
    mov bp, 1024
    call cd_words
    call cd_drq
    jc .cdfail
    mov bx, [clba]
    inc bx
    xor cx, cx
    mov bp, 512
    call cd_words

    ; --- fw_cfg: the signature, two bytes of four ---
    mov dx, 0x510
    xor ax, ax
    out dx, ax
    mov dx, 0x511
    in al, dx
    mov ah, al
    in al, dx
    cmp ax, 'QE' >> 8 | ('QE' & 0xff) << 8
    jne .fwfail

    ; --- the keyboard: IDENTIFY, 0xfa read, 0xab 0x41 left queued ---
    mov al, 0xf2
    out 0x60, al
    call kbd_byte
    cmp al, 0xfa
    jne .kbdfail

    ; --- wait here for the test ---
    mov si, msg_mid
    call puts
    mov ax, [iter]
    call putdec
    call crlf
    call uart_getc

    ; --- the rest of everything ---
    mov bx, [dlba]
    inc bx
    mov cx, 128
    mov bp, 256
    call disk_words
    mov dx, DISK + 7
    in al, dx
    test al, 0x89               ; BSY, DRQ, ERR: all clear at the end
    jnz .dfail
    mov bx, [clba]
    inc bx
    mov cx, 512
    mov bp, 1024
    call cd_words
    mov dx, CD + 7
    in al, dx
    test al, 0x89
    jnz .cdfail
    mov dx, 0x511
    in al, dx
    mov ah, al
    in al, dx
    cmp ax, 'MU' >> 8 | ('MU' & 0xff) << 8
    jne .fwfail
    call kbd_byte
    cmp al, 0xab
    jne .kbdfail
    call kbd_byte
    cmp al, 0x41
    jne .kbdfail
    in al, 0x64                 ; nothing more queued
    test al, 1
    jnz .kbdfail

    ; --- a write and its read back: sector 32 + iter % 8, word i = iter ^ i ---
    call disk_write_check
    jc .wfail
    ; --- SeaBIOS's INT 13h from the shadowed BIOS: a patterned sector ---
    mov ax, [dlba]
    mov [dap2 + 8], ax
    mov si, dap2
    mov ah, 0x42
    mov dl, [drive]
    int 0x13
    jc .i13fail
    mov si, BUF
    mov bx, [dlba]
    xor cx, cx
.i13w:
    mov ax, bx
    shl ax, 8
    xor ax, cx
    cmp ax, [si]
    jne .i13fail
    add si, 2
    inc cx
    cmp cx, 256
    jb .i13w
    ; --- the BIOS area reads as it did at start ---
    call bios_sum
    cmp eax, [sum0]
    jne .pamfail

    mov si, msg_ok
    call puts
    mov ax, [iter]
    call putdec
    call crlf
    inc word [iter]
    jmp turn

.dfail:   mov si, what_disk
    jmp fail
.cdfail:  mov si, what_cd
    jmp fail
.fwfail:  mov si, what_fw
    jmp fail
.kbdfail: mov si, what_kbd
    jmp fail
.wfail:   mov si, what_write
    jmp fail
.i13fail: mov si, what_int13
    jmp fail
.pamfail: mov si, what_pam
    jmp fail

; si: what failed
fail:
    push si
    mov si, msg_fail
    call puts
    pop si
    call puts
    mov al, ' '
    call uart_putc
    mov ax, [iter]
    call putdec
    call crlf
    mov al, 1
    mov dx, 0xf4
    out dx, al
.h: hlt
    jmp .h

; disk_words: reads words cx..bp-1 of disk sector bx from the data port and checks them
disk_words:
    mov dx, DISK
.l: in ax, dx
    mov di, bx
    shl di, 8
    xor di, cx
    cmp ax, di
    jne word_fail_disk
    inc cx
    cmp cx, bp
    jb .l
    ret
word_fail_disk:
    add sp, 2
    mov si, what_disk
    jmp fail

; cd_words: words cx..bp-1 of CD sector bx
cd_words:
    mov dx, CD
.l: in ax, dx
    mov di, bx
    shl di, 10
    xor di, cx
    xor di, 0x5555
    cmp ax, di
    jne word_fail_cd
    inc cx
    cmp cx, bp
    jb .l
    ret
word_fail_cd:
    add sp, 2
    mov si, what_cd
    jmp fail

; disk_drq: waits for the disk's data (DRQ without BSY); ERR fails
disk_drq:
    mov dx, DISK + 7
.l: in al, dx
    test al, 0x80
    jnz .l
    test al, 0x01
    jnz word_fail_disk
    test al, 0x08
    jz .l
    ret

; cd_drq: the CD's next data block; CF on ERR
cd_drq:
    mov dx, CD + 7
.l: in al, dx
    test al, 0x80
    jnz .l
    test al, 0x01
    jnz .err
    test al, 0x08
    jz .l
    clc
    ret
.err:
    stc
    ret

; cd_packet: sends the 12-byte packet at si (PIO, byte count limit 2048); CF when the drive
; reports an error before asking for the packet
cd_packet:
    mov dx, CD + 6
    mov al, 0xa0
    out dx, al
    mov dx, CD + 1
    xor al, al
    out dx, al
    mov dx, CD + 4
    out dx, al
    mov dx, CD + 5
    mov al, 0x08
    out dx, al
    mov dx, CD + 7
    mov al, 0xa0
    out dx, al
    call cd_drq
    jc .r
    mov cx, 6
    mov dx, CD
.w: lodsw
    out dx, ax
    loop .w
    clc
.r: ret

; cd_ready: TEST UNIT READY until it passes (a fresh drive reports its medium change first),
; each failure's sense taken by REQUEST SENSE
cd_ready:
    mov byte [tries], 10
.again:
    mov si, cdb_tur
    call cd_packet
    jc .sense
    mov dx, CD + 7
.w: in al, dx
    test al, 0x80
    jnz .w
    test al, 0x01
    jz .ok
.sense:
    mov si, cdb_sense
    call cd_packet
    jc .next
    call cd_drq
    jc .next
    mov cx, 9
    mov dx, CD
.s: in ax, dx
    loop .s
.next:
    dec byte [tries]
    jnz .again
    mov si, what_cdready
    jmp fail
.ok:
    ret

; kbd_byte: the next byte of the i8042's output buffer (waits for it)
kbd_byte:
    mov cx, 0xffff
.l: in al, 0x64
    test al, 1
    jnz .r
    loop .l
    mov si, what_kbd
    jmp fail
.r: in al, 0x60
    ret

; disk_write_check: WRITE SECTORS of one sector at 32 + iter % 8, then READ SECTORS of it; CF
; when a word differs
disk_write_check:
    mov ax, [iter]
    and ax, 7
    add ax, 32
    mov [wlba], ax
    mov al, 0x30
    call disk_cmd1
    call disk_drq
    mov dx, DISK
    xor cx, cx
.w: mov ax, [iter]
    xor ax, cx
    out dx, ax
    inc cx
    cmp cx, 256
    jb .w
    mov dx, DISK + 7
.b: in al, dx
    test al, 0x80
    jnz .b
    test al, 0x09
    jnz .bad
    mov al, 0x20
    call disk_cmd1
    call disk_drq
    mov dx, DISK
    xor cx, cx
.r: in ax, dx
    mov bx, [iter]
    xor bx, cx
    cmp ax, bx
    jne .bad
    inc cx
    cmp cx, 256
    jb .r
    clc
    ret
.bad:
    stc
    ret

; disk_cmd1: command al for one sector at [wlba]
disk_cmd1:
    push ax
    mov dx, DISK + 6
    mov al, 0xe0
    out dx, al
    mov dx, DISK + 2
    mov al, 1
    out dx, al
    mov ax, [wlba]
    mov dx, DISK + 3
    out dx, al
    mov dx, DISK + 4
    xor al, al
    out dx, al
    mov dx, DISK + 5
    out dx, al
    pop ax
    mov dx, DISK + 7
    out dx, al
    ret

; bios_sum: eax = the sum of the dwords of 0xf0000-0xfffff
bios_sum:
    push ds
    push si
    mov ax, 0xf000
    mov ds, ax
    xor si, si
    xor eax, eax
.l: add eax, [si]
    add si, 4
    jnz .l
    pop si
    pop ds
    ret

%include "print16.inc"

crlf:
    mov al, 13
    call uart_putc
    mov al, 10
    jmp uart_putc

; putdec: ax in decimal
putdec:
    xor cx, cx
    mov bx, 10
.d: xor dx, dx
    div bx
    push dx
    inc cx
    test ax, ax
    jnz .d
.p: pop ax
    add al, '0'
    call uart_putc
    loop .p
    ret

%include "uart.inc"

iter: dw 0
dlba: dw 0
clba: dw 0
wlba: dw 0
tries: db 0
align 4
sum0: dd 0
dap2:
    db 16, 0
    dw 1
    dw BUF, 0
    dq 0
cdb_read: db 0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0
cdb_tur: db 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
cdb_sense: db 0x03, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0
msg_start: db "pcst: start", 13, 10, 0
msg_mid: db "pcst: mid ", 0
msg_ok: db "pcst: ok ", 0
msg_fail: db "pcst: FAIL ", 0
what_disk: db "disk", 0
what_cd: db "cd", 0
what_cdready: db "cd-ready", 0
what_fw: db "fw_cfg", 0
what_kbd: db "i8042", 0
what_write: db "disk-write", 0
what_int13: db "int13", 0
what_pam: db "bios-area", 0

    times 16 * 512 - ($ - $$) db 0
