; A tiny 64-bit bzImage guest for the vCPU state in migration and savevm (tests/integration/
; cpu-state.sh), under tcg and KVM alike: it fills general registers, XMM0-15, the x87 stack and
; control word, MXCSR, syscall/segment-base/TSC_AUX MSRs and DR0-DR3 with values nobody else
; would have, prints "cst: ready" and waits for a byte on COM1. The test saves the machine there,
; restores it in another qkvm and sends the byte; the guest then checks every one of them (and
; that the TSC went on), prints "cst: ok" or "cst: FAIL what", and powers off.
%define XLOADFLAGS 1

section setup start=0 vstart=0
bits 16
    times 0x1f1 - ($ - $$) db 0
hdr:
setup_sects:    db 1
root_flags:     dw 0
syssize:        dd (pm_end - pm_start + 15) / 16
ram_size:       dw 0
vid_mode:       dw 0xffff
root_dev:       dw 0
boot_flag:      dw 0xaa55
jump:           db 0xeb, hdr_end - 0x202
header:         db "HdrS"
version:        dw 0x020f
realmode_swtch: dd 0
start_sys_seg:  dw 0x1000
kernel_version: dw 0
type_of_loader: db 0
loadflags:      db 0x01                 ; LOADED_HIGH
setup_move_size: dw 0x8000
code32_start:   dd 0x100000
ramdisk_image:  dd 0
ramdisk_size:   dd 0
bootsect_kludge: dd 0
heap_end_ptr:   dw 0
ext_loader_ver: db 0
ext_loader_type: db 0
cmd_line_ptr:   dd 0
initrd_addr_max: dd 0x7fffffff
kernel_alignment: dd 0x200000
relocatable_kernel: db 0
min_alignment:  db 0
xloadflags:     dw XLOADFLAGS
cmdline_size:   dd 4095
hardware_subarch: dd 0
hardware_subarch_data: dq 0
payload_offset: dd 0
payload_length: dd 0
setup_data:     dq 0
pref_address:   dq 0x100000
init_size:      dd 0x20000
handover_offset: dd 0
kernel_info_offset: dd 0
hdr_end:
    times 1024 - ($ - $$) db 0          ; boot sector + one setup sector

section pm start=1024 vstart=0x100000
pm_start:
bits 32
entry32:                                ; only the 64-bit entry is used (XLF_KERNEL_64)
    hlt
    jmp entry32
    times 0x200 - ($ - $$) db 0x90
bits 64
entry64:                                ; long mode, identity mapped
    lea rsp, [rel stack_top]
    mov rax, cr0                        ; x87 and SSE on, as a kernel turns them on
    and eax, ~4                         ; EM
    or eax, 2                           ; MP
    mov cr0, rax
    mov rax, cr4
    or eax, 0x600                       ; OSFXSR, OSXMMEXCPT
    mov cr4, rax
    ; ---- a CPU state nobody else would have ----
    mov ecx, 0xc0000081                 ; STAR, LSTAR, CSTAR, SFMASK, FS, GS, KERNEL_GS, TSC_AUX
    lea rsi, [rel msr_vals]
.wm: mov eax, [rsi]
    mov edx, [rsi + 4]
    mov ecx, [rsi + 8]
    test ecx, ecx
    jz .wmd
    wrmsr
    add rsi, 12
    jmp .wm
.wmd:
    mov rax, 0x100040
    mov dr0, rax
    mov rax, 0x100080
    mov dr1, rax
    mov rax, 0x1000c0
    mov dr2, rax
    mov rax, 0x100100
    mov dr3, rax
    fninit
    fldcw [rel fcw_val]
    fldpi
    fld1
    fldl2e
    ldmxcsr [rel mxcsr_val]
    lea rsi, [rel xmm_vals]
    movdqu xmm0, [rsi + 0 * 16]
    movdqu xmm1, [rsi + 1 * 16]
    movdqu xmm2, [rsi + 2 * 16]
    movdqu xmm3, [rsi + 3 * 16]
    movdqu xmm4, [rsi + 4 * 16]
    movdqu xmm5, [rsi + 5 * 16]
    movdqu xmm6, [rsi + 6 * 16]
    movdqu xmm7, [rsi + 7 * 16]
    movdqu xmm8, [rsi + 8 * 16]
    movdqu xmm9, [rsi + 9 * 16]
    movdqu xmm10, [rsi + 10 * 16]
    movdqu xmm11, [rsi + 11 * 16]
    movdqu xmm12, [rsi + 12 * 16]
    movdqu xmm13, [rsi + 13 * 16]
    movdqu xmm14, [rsi + 14 * 16]
    movdqu xmm15, [rsi + 15 * 16]
    rdtsc
    mov [rel tsc0], eax
    mov [rel tsc0 + 4], edx
    mov rbx, 0x1111222233334444
    mov rbp, 0x5555666677778888
    mov r8, 0x0808080808080808
    mov r9, 0x0909090909090909
    mov r10, 0x1010101010101010
    mov r11, 0x1111111111111111
    mov r12, 0x1212121212121212
    mov r13, 0x1313131313131313
    mov r14, 0x1414141414141414
    mov r15, 0x1515151515151515
    lea rsi, [rel s_ready]
    call puts
    ; ---- the test saves and restores the machine here, then sends a byte ----
    call uart_getc
    ; ---- everything as it was ----
    lea rdi, [rel s_gpr]
    mov rax, 0x1111222233334444
    cmp rbx, rax
    jne fail
    mov rax, 0x5555666677778888
    cmp rbp, rax
    jne fail
    mov rax, 0x0808080808080808
    cmp r8, rax
    jne fail
    mov rax, 0x0909090909090909
    cmp r9, rax
    jne fail
    mov rax, 0x1010101010101010
    cmp r10, rax
    jne fail
    mov rax, 0x1111111111111111
    cmp r11, rax
    jne fail
    mov rax, 0x1212121212121212
    cmp r12, rax
    jne fail
    mov rax, 0x1313131313131313
    cmp r13, rax
    jne fail
    mov rax, 0x1414141414141414
    cmp r14, rax
    jne fail
    mov rax, 0x1515151515151515
    cmp r15, rax
    jne fail
    lea rdi, [rel s_xmm]
    lea rsi, [rel xmm_got]
    movdqu [rsi + 0 * 16], xmm0
    movdqu [rsi + 1 * 16], xmm1
    movdqu [rsi + 2 * 16], xmm2
    movdqu [rsi + 3 * 16], xmm3
    movdqu [rsi + 4 * 16], xmm4
    movdqu [rsi + 5 * 16], xmm5
    movdqu [rsi + 6 * 16], xmm6
    movdqu [rsi + 7 * 16], xmm7
    movdqu [rsi + 8 * 16], xmm8
    movdqu [rsi + 9 * 16], xmm9
    movdqu [rsi + 10 * 16], xmm10
    movdqu [rsi + 11 * 16], xmm11
    movdqu [rsi + 12 * 16], xmm12
    movdqu [rsi + 13 * 16], xmm13
    movdqu [rsi + 14 * 16], xmm14
    movdqu [rsi + 15 * 16], xmm15
    lea rdx, [rel xmm_vals]
    mov ecx, 32
.cx: mov rax, [rsi + rcx * 8 - 8]
    cmp rax, [rdx + rcx * 8 - 8]
    jne fail
    loop .cx
    lea rdi, [rel s_mxcsr]
    stmxcsr [rel scratch]
    mov eax, [rel scratch]
    cmp eax, [rel mxcsr_val]
    jne fail
    lea rdi, [rel s_fcw]
    fnstcw [rel scratch]
    mov ax, [rel scratch]
    cmp ax, [rel fcw_val]
    jne fail
    lea rdi, [rel s_x87]
    fnstsw ax                           ; three values pushed: TOP = 5
    shr ax, 11
    and ax, 7
    cmp ax, 5
    jne fail
    fstp tword [rel scratch]            ; log2(e), 1, pi: compared with fresh loads
    fldl2e
    fstp tword [rel scratch + 16]
    call cmp_tword
    fstp tword [rel scratch]
    fld1
    fstp tword [rel scratch + 16]
    call cmp_tword
    fstp tword [rel scratch]
    fldpi
    fstp tword [rel scratch + 16]
    call cmp_tword
    lea rdi, [rel s_msr]
    lea rsi, [rel msr_vals]
.rm: mov ecx, [rsi + 8]
    test ecx, ecx
    jz .rmd
    rdmsr
    cmp eax, [rsi]
    jne fail
    cmp edx, [rsi + 4]
    jne fail
    add rsi, 12
    jmp .rm
.rmd:
    lea rdi, [rel s_dr]
    mov rax, dr0
    cmp rax, 0x100040
    jne fail
    mov rax, dr1
    cmp rax, 0x100080
    jne fail
    mov rax, dr2
    cmp rax, 0x1000c0
    jne fail
    mov rax, dr3
    cmp rax, 0x100100
    jne fail
    lea rdi, [rel s_tsc]
    rdtsc
    shl rdx, 32
    or rax, rdx
    cmp rax, [rel tsc0]
    jbe fail                            ; the TSC went on, never back
    lea rsi, [rel s_ok]
    call puts
    jmp off

cmp_tword:                              ; scratch[0..9] against scratch[16..25]
    mov rax, [rel scratch]
    cmp rax, [rel scratch + 16]
    jne .bad
    mov ax, [rel scratch + 8]
    cmp ax, [rel scratch + 24]
    jne .bad
    ret
.bad:
    add rsp, 8
    jmp fail

fail:                                   ; rdi: what
    lea rsi, [rel s_fail]
    call puts
    mov rsi, rdi
    call puts
    mov al, 10
    call uart_putc
off:
    mov dx, 0x604
    mov ax, 0x3400
    out dx, ax
.h: hlt
    jmp .h

%include "print64.inc"
%include "uart.inc"

align 16
msr_vals:                               ; low, high, index (0 ends)
    dd 0x00000000, 0x00230010, 0xc0000081   ; STAR
    dd 0x12345000, 0xffffffff, 0xc0000082   ; LSTAR
    dd 0x23456000, 0xffffffff, 0xc0000083   ; CSTAR
    dd 0x00047700, 0x00000000, 0xc0000084   ; SFMASK
    dd 0x0badc000, 0x00007f00, 0xc0000100   ; FS_BASE
    dd 0x0cafe000, 0x00007f00, 0xc0000101   ; GS_BASE
    dd 0x0beef000, 0xffff8000, 0xc0000102   ; KERNEL_GS_BASE
    dd 0x00000007, 0x00000000, 0xc0000103   ; TSC_AUX
    dd 0, 0, 0
mxcsr_val: dd 0x3f80                    ; every exception masked, rounding down
fcw_val: dw 0x027f                      ; 53-bit precision
align 16
xmm_vals:
%assign i 0
%rep 32
    dq 0x0123456789abcdef ^ (i * 0x1111111111111111)
%assign i i + 1
%endrep
xmm_got: times 256 db 0
scratch: times 32 db 0
tsc0: dq 0
s_ready: db "cst: ready", 10, 0
s_ok: db "cst: ok", 10, 0
s_fail: db "cst: FAIL ", 0
s_gpr: db "general registers", 0
s_xmm: db "xmm", 0
s_mxcsr: db "mxcsr", 0
s_fcw: db "x87 control word", 0
s_x87: db "x87 stack", 0
s_msr: db "msr", 0
s_dr: db "debug registers", 0
s_tsc: db "tsc", 0
    align 16, db 0
stack: times 512 db 0
stack_top:
    align 512, db 0
pm_end:
