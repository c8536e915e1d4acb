; A tiny 64-bit "kernel" (bzImage) that keeps rewriting 32 MiB of its RAM (16 MiB to 48 MiB) and
; checks every qword before it overwrites it, for tests/integration/mapped-ram.sh and
; bench/restore. Round r writes qword i as i * K xor salt(r), salt(r) read from the TSC when the
; round starts, after checking that the qword holds what round r-1 wrote (zero before round 1).
; After each round: "round=R" on COM1. On a mismatch: "bad=ADDR" and it stops (hlt, interrupts
; off). Its state is its registers and that memory, so a guest saved and restored mid-round goes
; on checking what it wrote before the save, every byte of it; two guests restored from one save
; take new salts of their own, and one that saw the other's writes would stop with bad=.

%include "bzhead64.inc"

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
