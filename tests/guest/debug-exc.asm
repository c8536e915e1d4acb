; Exact exceptions of the software CPU, as a multiboot (a.out kludge) kernel in 32-bit protected
; mode: single-step (TF), RF in the flags a fault pushes, an instruction breakpoint (DR0) left
; with RF, a data write breakpoint (DR1), DR4 aliasing DR6 and #UD for it under CR4.DE, general
; detect (DR7.GD), the interrupt shadow of STI (a self-IPI is taken after exactly one
; instruction; after a POPF that sets IF, at once) and of MOV SS (single-step skips the instruction after it), NMI blocking until
; IRET, and DAS's borrow into CF. Every check runs ROUNDS times, so that the code around it is
; translated after the first rounds (jit=on) or never (jit=off); the values of the last round
; are printed one key=value a line on COM1 with rounds_agree=1 when every round saw the same,
; then the kernel leaves through isa-debug-exit (port 0x501, status 85).
; tests/integration/tcg-exceptions.sh holds the values the SDM gives.
bits 32
    org 0x200000
%define ROUNDS 20
%define APIC 0xfee00000
%define NRES 26
header:
    dd 0x1badb002, 0x00010000, -(0x1badb002 + 0x00010000)
    dd header, 0x200000, image_end, bss_end, entry

%include "uart.inc"
%include "print32.inc"

entry:
    lgdt [gdtr]
    jmp 0x08:.cs
.cs:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    mov esp, stack_top
    mov al, 0xff                        ; the 8259s masked: only the local APIC interrupts
    out 0x21, al
    out 0xa1, al
    ; every vector to "unexpected", then the ones the checks use
    xor ecx, ecx
.idt:
    mov eax, h_unexpected
    call set_gate
    inc ecx
    cmp ecx, 256
    jb .idt
    mov ecx, 1
    mov eax, h_db
    call set_gate
    mov ecx, 2
    mov eax, h_nmi
    call set_gate
    mov ecx, 6
    mov eax, h_ud
    call set_gate
    mov ecx, 0x30
    mov eax, h_irq
    call set_gate
    ; two TSSs: 0x18 this task, 0x20 the one a task gate at vector 0x40 switches to
    mov eax, tss_main
    mov edi, gdt + 0x18
    call set_tss_desc
    mov eax, tss_task
    mov edi, gdt + 0x20
    call set_tss_desc
    mov dword [tss_task + 0x20], task_entry     ; EIP
    mov dword [tss_task + 0x24], 2              ; EFLAGS
    mov dword [tss_task + 0x38], task_stack_top ; ESP
    mov dword [tss_task + 0x4c], 0x08           ; CS
    mov eax, 0x10
    mov [tss_task + 0x48], eax                  ; ES
    mov [tss_task + 0x50], eax                  ; SS
    mov [tss_task + 0x54], eax                  ; DS
    mov [tss_task + 0x58], eax                  ; FS
    mov [tss_task + 0x5c], eax                  ; GS
    mov word [idt + 0x40 * 8 + 2], 0x20         ; task gate: TSS selector, type 5, present
    mov word [idt + 0x40 * 8 + 4], 0x8500
    mov ax, 0x18
    ltr ax
    lidt [idtr]
    mov dword [APIC + 0xf0], 0x1ff      ; local APIC software-enabled

    mov dword [round], 0
.round:
    call checks
    cmp dword [round], 0
    jne .compare
    mov esi, res
    mov edi, first
    mov ecx, NRES
    rep movsd
    jmp .next
.compare:
    mov esi, res
    mov edi, first
    mov ecx, NRES
    repe cmpsd
    je .next
    mov dword [disagree], 1
.next:
    inc dword [round]
    cmp dword [round], ROUNDS
    jb .round

    ; print res[k] under names[k]
    xor ebx, ebx
.print:
    mov esi, [names + ebx * 4]
    test esi, esi
    jz .done
    call puts
    mov eax, [res + ebx * 4]
    call puthex
    inc ebx
    jmp .print
.done:
    mov esi, k_agree
    call puts
    mov eax, [disagree]
    xor eax, 1
    call puthex
    mov dx, 0x501
    mov al, 42
    out dx, al
    cli
    hlt

; eax = TSS base, edi = its GDT slot: a 32-bit available TSS, limit 0x67
set_tss_desc:
    mov word [edi], 0x67
    mov [edi + 2], ax
    shr eax, 16
    mov [edi + 4], al
    mov byte [edi + 5], 0x89
    mov byte [edi + 6], 0
    mov [edi + 7], ah
    ret

; the task behind the task gate: records what it sees, IRET (NT set) returns to the caller's
; task, and the next switch resumes after that IRET
task_entry:
    inc dword [task_ran]
    str ax
    movzx eax, ax
    mov [task_str], eax
    pushfd
    pop eax
    shr eax, 14
    and eax, 1
    mov [task_nt], eax
    movzx eax, word [tss_task]               ; the back link
    mov [task_link], eax
    iretd
    jmp task_entry

%macro tf_on 0
    pushfd
    or dword [esp], 0x100
    popfd
%endmacro
%macro tf_off 0
    pushfd
    and dword [esp], ~0x100
    popfd
%endmacro
; EAX = the ECX of the first three #DBs, a nibble each (first highest)
%macro pack_db_ecx 0
    mov eax, [db_ecx]
    shl eax, 4
    or eax, [db_ecx + 4]
    shl eax, 4
    or eax, [db_ecx + 8]
%endmacro

%macro reset_db 0
    mov dword [db_count], 0
    mov dword [db_mode], 0
    xor eax, eax
    mov dr6, eax
%endmacro

checks:
    ; 0-3: single-step. POPF sets TF: a trap after each following instruction, the POPF that
    ; clears TF included (TF was set when it began); DR6.BS set.
    reset_db
    tf_on
    nop
.ss1:
    nop
    tf_off
.ss_end:
    mov eax, [db_count]
    mov [res + 0], eax                      ; ss_count = 5
    cmp dword [db_eip + 0], .ss1
    sete al
    cmp dword [db_eip + 16], .ss_end
    sete ah
    and al, ah
    movzx eax, al
    mov [res + 4], eax                      ; ss_eip_ok = 1
    mov eax, [db_dr6 + 0]
    mov [res + 8], eax                      ; ss_dr6 = ffff4ff0

    ; 3: a fault pushes RFLAGS with RF set
    mov dword [ud_skip], 2
    ud2
    mov eax, [ud_flags]
    shr eax, 16
    and eax, 1
    mov [res + 12], eax                     ; rf_on_fault = 1

    ; 4-6: instruction breakpoint: a fault before the instruction; the handler sets RF in the
    ; pushed flags, so the instruction then runs once
    reset_db
    mov dword [db_mode], 1
    mov dword [ibp_ran], 0
    mov eax, .ibp
    mov dr0, eax
    mov eax, 0x401                          ; L0, execute, 1 byte
    mov dr7, eax
.ibp:
    inc dword [ibp_ran]
    mov eax, 0x400
    mov dr7, eax
    mov eax, [db_count]
    shl eax, 4
    or eax, [ibp_ran]
    mov [res + 16], eax                     ; ibp_count_ran = 11
    cmp dword [db_eip], .ibp
    sete al
    movzx eax, al
    mov [res + 20], eax                     ; ibp_eip_ok = 1
    mov eax, [db_dr6]
    mov [res + 24], eax                     ; ibp_dr6 = ffff0ff1

    ; 7-8: data write breakpoint on DR1: a trap after the write, none for the read after it
    reset_db
    mov eax, wvar
    mov dr1, eax
    mov eax, 0x00d00404                     ; L1, R/W1 = 01 (writes), LEN1 = 11 (4 bytes)
    mov dr7, eax
    mov dword [wvar], 5
.wnext:
    mov eax, [wvar]
    mov eax, 0x400
    mov dr7, eax
    mov eax, [db_count]
    cmp dword [db_eip], .wnext
    sete ah
    mov [res + 28], eax                     ; wbp_count_eipok = 101
    mov eax, [db_dr6]
    mov [res + 32], eax                     ; wbp_dr6 = ffff0ff2

    ; 9-10: DR4 is DR6 while CR4.DE is clear, #UD once it is set
    xor eax, eax
    mov dr6, eax
    mov eax, dr4
    mov [res + 36], eax                     ; dr4_is_dr6 = ffff0ff0
    mov dword [ud_count], 0
    mov dword [ud_skip], 3
    mov eax, cr4
    or eax, 8
    mov cr4, eax
    mov eax, dr4
    mov eax, cr4
    and eax, ~8
    mov cr4, eax
    mov eax, [ud_count]
    mov [res + 40], eax                     ; dr4_de_ud = 1

    ; 11-12: general detect: MOV DR faults with DR6.BD, the CPU clears GD, the MOV then runs
    reset_db
    mov eax, 0x2400
    mov dr7, eax
.gd:
    mov eax, dr0
    mov eax, [db_count]
    cmp dword [db_eip], .gd
    sete ah
    mov [res + 44], eax                     ; gd_count_eipok = 101
    mov eax, [db_dr6]
    mov [res + 48], eax                     ; gd_dr6 = ffff2ff0

    ; 13: the STI shadow: a self-IPI pending while IF=0 is taken after exactly one instruction
    cli
    mov dword [irq_count], 0
    mov dword [irq_ecx], 0xff
    mov dword [APIC + 0x300], 0x40030       ; fixed, vector 0x30, to self
    xor ecx, ecx
    sti
    inc ecx
    inc ecx
    inc ecx
    cli
    mov eax, [irq_count]
    shl eax, 4
    or eax, [irq_ecx]
    mov [res + 52], eax                     ; sti_count_ecx = 11

    ; 25: POPF setting IF has no shadow: a self-IPI held while IF=0 is taken right after it
    mov dword [irq_count], 0
    mov dword [irq_ecx], 0xff
    mov dword [APIC + 0x300], 0x40030       ; fixed, vector 0x30, to self
    xor ecx, ecx
    pushfd
    or dword [esp], 0x200
    popfd
    inc ecx
    inc ecx
    inc ecx
    cli
    mov eax, [irq_count]
    shl eax, 4
    or eax, [irq_ecx]
    mov [res + 100], eax                    ; popf_count_ecx = 10

    ; 14: the MOV SS shadow: single-step's trap after MOV SS waits for the next instruction
    reset_db
    mov ax, ss
    tf_on
    mov ss, ax
    nop
.ss_after:
    tf_off
    cmp dword [db_eip], .ss_after
    sete al
    movzx eax, al
    shl eax, 4
    or eax, [db_count]
    mov [res + 56], eax                     ; movss_eipok_count = 14

    ; 15: NMI: a second NMI sent from the handler waits for its IRET
    mov dword [nmi_count], 0
    mov dword [nmi_seen], 0xff
    mov dword [APIC + 0x310], 0             ; to APIC ID 0
    mov dword [APIC + 0x300], 0x4400        ; NMI
    nop
    nop
    mov eax, [nmi_count]
    shl eax, 4
    or eax, [nmi_seen]
    mov [res + 60], eax                     ; nmi_count_seen = 21

    ; 16: DAS: AL - 6 borrows, so CF is set although AL < 0x9a and CF was clear
    mov eax, 0x1003                         ; AH: AF set, CF clear; AL = 3
    sahf
    das
    setc ah
    mov [res + 64], eax                     ; das_cf_al = 1fd (AH = CF, AL)
    and dword [res + 64], 0xffff

    ; 17-18: INT through a task gate: a switch to the TSS at 0x20 with this task as its back
    ; link and NT set, and IRET back to this task (TR 0x18 again, NT clear)
    mov dword [task_ran], 0
    int 0x40
    mov eax, [task_str]
    shl eax, 16
    mov ebx, [task_link]
    shl ebx, 4
    or eax, ebx
    or eax, [task_nt]
    shl eax, 4
    or eax, [task_ran]
    mov [res + 68], eax                     ; task_str_link_nt_ran = 2001811
    str ax
    movzx eax, ax
    shl eax, 4
    pushfd
    pop ebx
    shr ebx, 14
    and ebx, 1
    or eax, ebx
    mov [res + 72], eax                     ; task_back_str_nt = 180

    ; 19-20: REP MOVSB of 3 bytes under single-step: a trap after each iteration, RIP on the
    ; REP while ECX > 0 (with RF set in the pushed flags: it has begun), then after the last
    ; one at the next instruction; then the 3 of tf_off
    reset_db
    mov esi, rep_src
    mov edi, rep_dst
    mov dword [rep_dst], 0
    mov ecx, 3
    tf_on
.rm:
    rep movsb
.rm_end:
    tf_off
    mov eax, .rm
    mov ebx, .rm_end
    call rep_result
    mov [res + 76], eax                     ; rep_movs_count_eips = 67
    pack_db_ecx
    shl eax, 4
    or eax, [db_rf]
    mov ebx, [rep_dst]
    mov edx, [rep_src]
    and edx, 0xffffff                       ; the 3 bytes copied, the fourth still 0
    cmp ebx, edx
    sete bl
    movzx ebx, bl
    shl ebx, 16
    or eax, ebx
    mov [res + 80], eax                     ; rep_movs_copied_ecx_rf = 12103

    ; 21-22: REPE CMPSB of 4 bytes that differ at the third: traps after the first two
    ; iterations on the REP, the third (ZF clear ends it) at the next instruction
    reset_db
    mov esi, rep_src
    mov edi, rep_cmp
    mov ecx, 4
    tf_on
.rc:
    repe cmpsb
.rc_end:
    tf_off
    mov eax, .rc
    mov ebx, .rc_end
    call rep_result
    mov [res + 84], eax                     ; repe_cmps_count_eips = 67
    pack_db_ecx
    mov [res + 88], eax                     ; repe_cmps_ecx = 321

    ; 23: REP STOSB with ECX = 0: no iteration, one trap at the next instruction
    reset_db
    mov edi, rep_dst
    xor ecx, ecx
    tf_on
    rep stosb
.rz_end:
    tf_off
    mov eax, [db_count]
    shl eax, 4
    cmp dword [db_eip], .rz_end
    sete bl
    movzx ebx, bl
    or eax, ebx
    mov [res + 92], eax                     ; rep_zero_count_eip = 41

    ; 24: REP STOSD over a DR1 write breakpoint on its third dword: a trap after that
    ; iteration, RIP on the REP and ECX 1; the fourth then runs, no second trap
    reset_db
    mov eax, rep_buf + 8
    mov dr1, eax
    mov eax, 0x00d00404                     ; L1, R/W1 = 01 (writes), LEN1 = 11 (4 bytes)
    mov dr7, eax
    mov edi, rep_buf
    mov ecx, 4
    mov eax, 0x5a5a5a5a
.rs:
    rep stosd
    mov eax, 0x400
    mov dr7, eax
    mov eax, [db_count]
    shl eax, 4
    cmp dword [db_eip], .rs
    sete bl
    or al, bl
    shl eax, 4
    or eax, [db_ecx]
    shl eax, 4
    cmp dword [rep_buf + 12], 0x5a5a5a5a
    sete bl
    or al, bl
    mov [res + 96], eax                     ; rep_wbp_count_eip_ecx_done = 1111
    ret

; eax = the REP instruction, ebx = the one after it: db_count << 4 | (the first two traps at
; eax, the third at ebx: a bit each)
rep_result:
    xor edx, edx
    cmp [db_eip], eax
    jne .r1
    or edx, 1
.r1:
    cmp [db_eip + 4], eax
    jne .r2
    or edx, 2
.r2:
    cmp [db_eip + 8], ebx
    jne .r3
    or edx, 4
.r3:
    mov eax, [db_count]
    shl eax, 4
    or eax, edx
    ret

h_db:
    push eax
    push ebx
    mov ebx, [db_count]
    cmp ebx, 8
    jae .full
    mov eax, [esp + 8]
    mov [db_eip + ebx * 4], eax
    mov [db_ecx + ebx * 4], ecx
    test ebx, ebx
    jnz .not_first
    mov eax, [esp + 16]                     ; the first trap's pushed EFLAGS.RF
    shr eax, 16
    and eax, 1
    mov [db_rf], eax
.not_first:
    mov eax, dr6
    mov [db_dr6 + ebx * 4], eax
.full:
    inc dword [db_count]
    cmp dword [db_mode], 1
    jne .out
    or dword [esp + 16], 0x10000            ; RF: the breakpoint does not fire again
.out:
    pop ebx
    pop eax
    iretd

h_ud:
    push eax
    mov eax, [esp + 12]
    mov [ud_flags], eax
    inc dword [ud_count]
    mov eax, [ud_skip]
    add [esp + 4], eax
    pop eax
    iretd

h_irq:
    inc dword [irq_count]
    mov [irq_ecx], ecx
    mov dword [APIC + 0xb0], 0              ; EOI
    iretd

h_nmi:
    inc dword [nmi_count]
    cmp dword [nmi_count], 1
    jne .out
    mov dword [APIC + 0x300], 0x4400        ; a second NMI, held until this handler's IRET
    nop
    nop
    mov eax, [nmi_count]
    mov [nmi_seen], eax
.out:
    iretd

h_unexpected:
    mov esi, k_unexpected
    call puts
    mov eax, [esp]
    call puthex
    mov dx, 0x501
    mov al, 1
    out dx, al
    cli
    hlt

    align 8
gdt:
    dq 0
    dq 0x00cf9a000000ffff                   ; 0x08: code, flat, 32-bit
    dq 0x00cf92000000ffff                   ; 0x10: data, flat
    dq 0                                    ; 0x18: TSS of the main task (set_tss_desc)
    dq 0                                    ; 0x20: TSS of the task gate's task
gdtr:
    dw gdtr - gdt - 1
    dd gdt
idtr:
    dw 256 * 8 - 1
    dd idt

k_agree: db "rounds_agree=", 0
k_unexpected: db "unexpected exception at eip=", 0
n0: db "ss_count=", 0
n1: db "ss_eip_ok=", 0
n2: db "ss_dr6=", 0
n3: db "rf_on_fault=", 0
n4: db "ibp_count_ran=", 0
n5: db "ibp_eip_ok=", 0
n6: db "ibp_dr6=", 0
n7: db "wbp_count_eipok=", 0
n8: db "wbp_dr6=", 0
n9: db "dr4_is_dr6=", 0
n10: db "dr4_de_ud=", 0
n11: db "gd_count_eipok=", 0
n12: db "gd_dr6=", 0
n13: db "sti_count_ecx=", 0
n14: db "movss_eipok_count=", 0
n15: db "nmi_count_seen=", 0
n16: db "das_cf_al=", 0
n17: db "task_str_link_nt_ran=", 0
n18: db "task_back_str_nt=", 0
n25: db "popf_count_ecx=", 0
n19: db "rep_movs_count_eips=", 0
n20: db "rep_movs_copied_ecx_rf=", 0
n21: db "repe_cmps_count_eips=", 0
n22: db "repe_cmps_ecx=", 0
n23: db "rep_zero_count_eip=", 0
n24: db "rep_wbp_count_eip_ecx_done=", 0
rep_src: db "abcd"
rep_cmp: db "abXd"
    align 4
names: dd n0, n1, n2, n3, n4, n5, n6, n7, n8, n9, n10, n11, n12, n13, n14, n15, n16, n17, n18
       dd n19, n20, n21, n22, n23, n24, n25, 0
image_end:

absolute image_end + 16 - (image_end - $$) % 16   ; what follows: zeroed by the loader (bss_end)
idt: resb 256 * 8
res: resd NRES
first: resd NRES
disagree: resd 1
round: resd 1
db_count: resd 1
db_mode: resd 1
db_eip: resd 8
db_dr6: resd 8
db_ecx: resd 8
db_rf: resd 1
rep_dst: resd 1
rep_buf: resd 4
ud_flags: resd 1
ud_count: resd 1
ud_skip: resd 1
ibp_ran: resd 1
wvar: resd 1
irq_count: resd 1
irq_ecx: resd 1
nmi_count: resd 1
nmi_seen: resd 1
task_ran: resd 1
task_str: resd 1
task_nt: resd 1
task_link: resd 1
tss_main: resb 104
tss_task: resb 104
    alignb 16
task_stack: resb 1024
task_stack_top:
    alignb 16
stack: resb 4096
stack_top:
bss_end:
