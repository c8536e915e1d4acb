; A tiny multiboot kernel that enters 64-bit mode, for tests/integration/tcg-noncanon.sh: memory
; accesses at non-canonical addresses. Through SS (a push, pop, CALL, RET or LEAVE, an
; operand based on RSP or RBP, an SS prefix) the fault is #SS(0); through any other segment it
; is #GP(0) (SDM vol. 3 6.15, "Interrupt 12" and "Interrupt 13"). A near JMP, CALL or RET to a
; non-canonical address is #GP(0) at the branch, with RSP as it was (SDM vol. 2). The handlers
; run on an IST stack, since the faulting code's RSP may be the bad address itself.
; Each case runs ROUNDS times (with jit=on its code is translated after the first rounds) and
; prints NAME=V, V = vector * 256 + error code, plus 0x10000 when the pushed RIP is not the
; faulting instruction and 0x20000 when the pushed RSP is not what it was before it (the
; instruction changed RSP before faulting); then NAME_rounds=N, how many rounds saw the same V
; as the first one. "done=1" at the end, then an exit through isa-debug-exit.
%define ROUNDS 24
%define BAD 0x8000000000001000          ; non-canonical: bit 63 set, bits 62:47 clear

bits 32
    org 0x200000
header:                                 ; multiboot, a.out kludge: qkvm and QEMU load it alike
    dd 0x1badb002, 0x00010000, -(0x1badb002 + 0x00010000)
    dd header, 0x200000, image_end, image_end, entry32

; CASE NAME, {INSN}, SETUP: runs INSN ROUNDS times with r15 = BAD, after SETUP points the
; register under test at it (every other address register is good), and prints the results.
%macro CASE 3
    xor r12d, r12d                      ; rounds that agree with the first
    mov r13d, -1                        ; the first round's value
    mov r14d, ROUNDS
%%round:
    lea rax, [rel %%after]
    mov [rel resume], rax
    mov [rel good_rsp], rsp
    mov [rel good_rbp], rbp
    lea rax, [rel %%insn]
    mov [rel expect_rip], rax
    lea rsi, [rel scratch]
    lea rdi, [rel scratch + 64]
    lea rbx, [rel scratch]
    lea rbp, [rel scratch]
    mov r15, BAD
    mov dword [rel result], 0xffff      ; no fault at all
    %3
    mov [rel fault_rsp_want], rsp
%%insn:
    %2
    mov rsp, [rel good_rsp]             ; it did not fault: put the stack back
%%after:
    mov rbp, [rel good_rbp]
    mov eax, [rel result]
    cmp r13d, -1
    jne %%cmp
    mov r13d, eax
%%cmp:
    cmp eax, r13d
    jne %%next
    inc r12d
%%next:
    dec r14d
    jnz %%round
    lea rsi, [rel %%name]
    mov eax, r13d
    call putkv
    lea rsi, [rel %%rname]
    mov eax, r12d
    call putkv
    jmp %%end
%%name: db %str(%1), "=", 0
%%rname: db %str(%1), "_rounds=", 0
%%end:
%endmacro

; The multiboot entry: flat protected mode, paging off. Identity map the first GiB with 2 MiB
; pages at PT_BASE and enter long mode.
%define PT_BASE 0x300000
entry32:
    cli
    mov edi, PT_BASE
    mov ecx, 3 * 4096 / 4
    xor eax, eax
    rep stosd
    mov dword [PT_BASE], PT_BASE + 0x1003          ; PML4[0] -> PDPT
    mov dword [PT_BASE + 0x1000], PT_BASE + 0x2003 ; PDPT[0] -> PD
    mov edi, PT_BASE + 0x2000
    mov eax, 0x83                       ; present, writable, 2 MiB
    mov ecx, 512
.pd:
    mov [edi], eax
    add eax, 0x200000
    add edi, 8
    dec ecx
    jnz .pd
    mov eax, cr4
    or eax, 0x20                        ; PAE
    mov cr4, eax
    mov eax, PT_BASE
    mov cr3, eax
    mov ecx, 0xc0000080                 ; EFER.LME
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000001                  ; PG, PE
    mov cr0, eax
    lgdt [gdtr]
    jmp 0x08:entry64

bits 64
entry64:
    lea rsp, [rel stack_top]
    mov eax, 0x10
    mov ds, eax
    mov es, eax
    mov ss, eax
    lea rax, [rel tss]                  ; the TSS descriptor's base
    mov [rel gdt_tss + 2], ax
    shr rax, 16
    mov [rel gdt_tss + 4], al
    mov [rel gdt_tss + 7], ah
    shr rax, 16
    mov [rel gdt_tss + 8], eax
    lea rax, [rel ist_top]
    mov [rel tss + 36], rax             ; IST1
    mov ax, 0x18
    ltr ax
    lea rax, [rel exc_ss]
    mov ecx, 12
    call set_gate
    lea rax, [rel exc_gp]
    mov ecx, 13
    call set_gate
    lea rax, [rel exc_pf]
    mov ecx, 14
    call set_gate
    lidt [rel idtr]

    CASE push_ss, {push rax}, {mov rsp, r15}
    CASE pop_ss, {pop rax}, {mov rsp, r15}
    CASE call_ss, {call $+5}, {mov rsp, r15}
    CASE ret_ss, {ret}, {mov rsp, r15}
    CASE rsp_operand_ss, {mov rax, [rsp + 8]}, {mov rsp, r15}
    CASE rbp_operand_ss, {mov rax, [rbp]}, {mov rbp, r15}
    CASE rbp_store_ss, {mov [rbp + 16], eax}, {mov rbp, r15}
    CASE rbp_add_ss, {add [rbp], eax}, {mov rbp, r15}
    CASE ss_prefix_ss, {db 0x36, 0x48, 0x8b, 0x03}, {mov rbx, r15}   ; mov rax, ss:[rbx]
    CASE leave_ss, {leave}, {mov rbp, r15}
    CASE enter_ss, {enter 16, 0}, {mov rsp, r15}
    CASE ds_load_gp, {mov rax, [rbx]}, {mov rbx, r15}
    CASE ds_store_gp, {mov [rbx], eax}, {mov rbx, r15}
    CASE push_mem_gp, {push qword [rbx]}, {mov rbx, r15}
    CASE pop_mem_gp, {pop qword [rbx]}, {mov rbx, r15}
    CASE stos_ss_prefix_gp, {db 0x36, 0xaa}, {mov rdi, r15}   ; ss stosb
    CASE movs_ss_src_ss, {db 0x36, 0xa4}, {mov rsi, r15}   ; ss movsb
    CASE jmp_reg_gp, {jmp r15}, {nop}
    CASE jmp_mem_gp, {jmp [rbx]}, {mov [rbx], r15}
    CASE call_reg_gp, {call r15}, {nop}
    CASE call_mem_gp, {call [rbx]}, {mov [rbx], r15}
    CASE ret_to_gp, {ret}, {push r15}

    lea rsi, [rel s_done]
    mov eax, 1
    call putkv
    mov dx, 0x501                       ; isa-debug-exit: the process exits with 85
    mov al, 42
    out dx, al
.halt:
    cli
    hlt
    jmp .halt


; set_gate: IDT entry ecx -> rax, a 64-bit interrupt gate on IST1
set_gate:
    shl ecx, 4
    lea rdi, [rel idt]
    add rdi, rcx
    mov [rdi], ax
    mov word [rdi + 2], 0x08
    mov byte [rdi + 4], 1               ; IST1
    mov byte [rdi + 5], 0x8e
    shr rax, 16
    mov [rdi + 6], ax
    shr rax, 16
    mov [rdi + 8], eax
    ret

exc_ss:
    push 12
    jmp exc_common
exc_gp:
    push 13
    jmp exc_common
exc_pf:
    push 14
; [rsp] vector, then error code, RIP, CS, RFLAGS, RSP, SS
exc_common:
    mov rax, [rsp]
    shl eax, 8
    or eax, [rsp + 8]
    mov rcx, [rsp + 16]
    cmp rcx, [rel expect_rip]
    je .rip_ok
    or eax, 0x10000
.rip_ok:
    mov rcx, [rsp + 40]
    cmp rcx, [rel fault_rsp_want]
    je .rsp_ok
    or eax, 0x20000
.rsp_ok:
    mov [rel result], eax
    mov rax, [rel resume]
    mov [rsp + 16], rax
    mov rax, [rel good_rsp]
    mov [rsp + 40], rax
    add rsp, 16                         ; the vector and the error code
    iretq

%include "uart.inc"
%include "print64.inc"

s_done: db "done=", 0
    align 4096, db 0                    ; data the cases write: not in a page with code, which
resume: dq 0                            ; would keep the translator from it
good_rsp: dq 0
good_rbp: dq 0
expect_rip: dq 0
fault_rsp_want: dq 0
result: dd 0
    align 16, db 0
gdt: dq 0
    dq 0x00af9a000000ffff               ; 0x08: 64-bit code
    dq 0x00cf92000000ffff               ; 0x10: data
gdt_tss: dq 0x0000890000000067          ; 0x18: 64-bit TSS, 104 bytes (base filled in)
    dq 0
gdt_end:
gdtr: dw gdt_end - gdt - 1
    dq gdt
    align 16, db 0
idt: times 16 * 16 db 0
idtr: dw 16 * 16 - 1
    dq idt
    align 16, db 0
tss: times 104 db 0
scratch: times 128 db 0
    align 16, db 0
stack: times 1024 db 0
stack_top:
ist: times 1024 db 0
ist_top:
image_end:
