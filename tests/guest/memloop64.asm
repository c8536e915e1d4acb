; A tiny 64-bit "kernel" (bzImage) that keeps rewriting 32 MiB of its RAM (16 MiB to 48 MiB) and
; checks every qword before it overwrites it, for tests/integration/mapped-ram.sh and
; bench/restore. Round r writes qword i as i * K xor salt(r), salt(r) read from the TSC when the
; round starts, after checking that the qword holds what round r-1 wrote (zero before round 1).
; After each round: "round=R" on COM1. On a mismatch: "bad=ADDR" and it stops (hlt, interrupts
; off). Its state is its registers and that memory, so a guest saved and restored mid-round goes
; on checking what it wrote before the save, every byte of it; two guests restored from one save
; take new salts of their own, and one that saw the other's writes would stop with bad=.

bits 16
section setup start=0 vstart=0
    times 0x1f1 - ($ - $$) db 0
    db 1                                ; setup_sects
    dw 0                                ; root_flags
    dd (pm_end - pm_start + 15) / 16    ; syssize
    dw 0, 0xffff, 0                     ; ram_size, vid_mode, root_dev
    dw 0xaa55                           ; boot_flag
    db 0xeb, hdr_end - 0x202            ; jump
    db "HdrS"
    dw 0x020f                           ; version
    dd 0                                ; realmode_swtch
    dw 0x1000, 0                        ; start_sys_seg, kernel_version
    db 0, 0x01                          ; type_of_loader, loadflags: LOADED_HIGH
    dw 0x8000                           ; setup_move_size
    dd 0x100000, 0, 0, 0                ; code32_start, ramdisk_image, ramdisk_size, bootsect_kludge
    dw 0                                ; heap_end_ptr
    db 0, 0                             ; ext_loader_ver, ext_loader_type
    dd 0, 0x7fffffff, 0x200000          ; cmd_line_ptr, initrd_addr_max, kernel_alignment
    db 0, 0                             ; relocatable_kernel, min_alignment
    dw 1                                ; xloadflags: XLF_KERNEL_64
    dd 4095, 0                          ; cmdline_size, hardware_subarch
    dq 0                                ; hardware_subarch_data
    dd 0, 0                             ; payload_offset, payload_length
    dq 0, 0x100000                      ; setup_data, pref_address
    dd 0x20000, 0, 0                    ; init_size, handover_offset, kernel_info_offset
hdr_end:
    times 1024 - ($ - $$) db 0

section pm start=1024 vstart=0x100000
pm_start:
bits 32
    hlt                                 ; the 32-bit entry is never used
    jmp pm_start
    times 0x200 - ($ - $$) db 0x90

%define REGION  0x1000000               ; 16 MiB
%define QWORDS  (32 << 20) / 8

bits 64
entry64:                                ; long mode, identity mapped (4 GiB), interrupts off
    lea rsp, [rel stack_top]
    mov r10, 0x9e3779b97f4a7c15         ; K
    xor r12, r12                        ; the salt of the last round
    xor r13, r13                        ; rounds done
    xor r14, r14                        ; 0 until a round has written: expect zeros
.round:
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r11, rax                        ; this round's salt
    mov rdi, REGION
    xor ecx, ecx
.loop:
    mov rax, rcx
    imul rax, r10
    mov rbx, rax
    xor rax, r12
    test r14, r14
    cmovz rax, r14                      ; round 1 expects zeros
    cmp [rdi + rcx * 8], rax
    jne .bad
    xor rbx, r11
    mov [rdi + rcx * 8], rbx
    inc rcx
    cmp rcx, QWORDS
    jb .loop
    mov r12, r11
    mov r14d, 1
    inc r13
    lea rsi, [rel s_round]
    mov eax, r13d
    call putkv
    jmp .round
.bad:
    lea rax, [rdi + rcx * 8]
    lea rsi, [rel s_bad]
    call putkv
.stop:
    cli
    hlt
    jmp .stop

%include "uart.inc"
%include "print64.inc"

s_round: db "round=", 0
s_bad: db "bad=", 0
    align 16, db 0
stack: times 1024 db 0
stack_top:
    align 512, db 0
pm_end:
