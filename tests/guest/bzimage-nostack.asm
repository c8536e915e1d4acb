; A bzImage whose 64-bit entry calls a function before it sets a stack of its own, as some small
; kernels do: with RSP 0 at entry the call pushes at 0xfffffffffffffff8, which the loader's
; identity map (4 GiB) does not cover, and the CPU triple-faults. With the stack qkvm hands over
; (RSP 0x8ff0, as Firecracker) it prints "stack-ok" on COM1 and leaves through isa-debug-exit
; (port 0x501, value 42: status 85).
section setup start=0 vstart=0
bits 16
    times 0x1f1 - ($ - $$) db 0
    db 1                                ; setup_sects
    dw 0, 0, 0, 0, 0xffff, 0            ; root_flags, syssize (2 words), ram_size, vid_mode, root_dev
    dw 0xaa55                           ; boot_flag
    db 0xeb, 0x66                       ; jump
    db "HdrS"
    dw 0x020c                           ; version: xloadflags exist
    dd 0
    dw 0x1000, 0
    db 0, 0x01                          ; type_of_loader, loadflags: LOADED_HIGH
    dw 0x8000
    dd 0x100000, 0, 0, 0
    dw 0
    db 0, 0
    dd 0, 0x7fffffff, 0x200000
    db 0, 0
    dw 1                                ; xloadflags: XLF_KERNEL_64
    dd 255                              ; cmdline_size
    times 1024 - ($ - $$) db 0

section pm start=1024 vstart=0x100000
bits 32
    hlt                                 ; the 32-bit entry: unused
    times 0x200 - ($ - $$) db 0
bits 64
entry64:
    call say_ok                         ; before any stack set-up: uses the loader's RSP
    mov dx, 0x501
    mov al, 42
    out dx, al
    cli
    hlt
say_ok:
    lea rsi, [rel msg]
.l: lodsb
    test al, al
    jz .e
    mov ah, al
    mov dx, 0x3fd
.w: in al, dx
    test al, 0x20
    jz .w
    mov al, ah
    mov dx, 0x3f8
    out dx, al
    jmp .l
.e: ret
msg: db "stack-ok", 10, 0
    times 4096 - ($ - $$) db 0
