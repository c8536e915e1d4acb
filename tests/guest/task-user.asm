; Hardware task switches taken from user mode (CPL 3) with paging on, for
; tests/integration/tcg-exceptions.sh: the GDT and both TSSs are on supervisor pages, the user
; code and its stack on user pages. An INT 0x40 from CPL 3 through a task gate of DPL 3, and a
; #UD in user mode through a task gate at vector 6, each switch to a second task, which saves
; the user state into the first TSS and sets busy bits in the GDT: implicit supervisor accesses
; (SDM vol. 3 7.3), which must not fault for want of user rights. The task IRETs back to user
; mode. Before that, from CPL 0, a far CALL to a 16-bit TSS (type 1, the 80286's layout) and
; the IRET back from it, which saves that task's state in the 16-bit layout.
; Prints key=value lines (hex) on COM1, then leaves through isa-debug-exit (status 85).
bits 32
    org 0x200000
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
    mov esp, kstack_top
    mov al, 0xff                        ; the 8259s masked
    out 0x21, al
    out 0xa1, al
    ; page table for the first 4 MiB: supervisor, but the user code and stack pages
    xor ecx, ecx
.pt:
    mov eax, ecx
    shl eax, 12
    or eax, 3                           ; present, writable, supervisor
    mov [ptab + ecx * 4], eax
    inc ecx
    cmp ecx, 1024
    jb .pt
    mov eax, user_code
    shr eax, 12
    or dword [ptab + eax * 4], 4
    mov eax, ustack
    shr eax, 12
    or dword [ptab + eax * 4], 4
    mov dword [pdir], ptab + 7          ; the PDE lets the PTE decide
    mov eax, pdir
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000                  ; PG, WP
    mov cr0, eax
    ; IDT: #UD (6) -> task gate, 0x40 -> task gate DPL 3, 0x41 -> the end (DPL 3), #PF (14)
    ; and every other vector -> unexpected
    xor ecx, ecx
.idt:
    mov eax, h_unexpected
    call set_gate
    inc ecx
    cmp ecx, 256
    jb .idt
    mov ecx, 14
    mov eax, h_pf
    call set_gate
    mov ecx, 0x41
    mov eax, h_end
    call set_gate
    or byte [idt + 0x41 * 8 + 5], 0x60  ; DPL 3
    mov word [idt + 6 * 8 + 2], 0x30    ; task gates: TSS 0x30, type 5, present
    mov word [idt + 6 * 8 + 4], 0x8500
    mov word [idt + 0x40 * 8 + 2], 0x30
    mov word [idt + 0x40 * 8 + 4], 0xe500  ; DPL 3
    lidt [idtr]
    ; two TSSs: 0x28 this task (its ring-0 stack for h_end), 0x30 the task behind the gates
    mov eax, tss_main
    mov edi, gdt + 0x28
    call set_tss_desc
    mov eax, tss_task
    mov edi, gdt + 0x30
    call set_tss_desc
    mov dword [tss_main + 4], kstack_top        ; ESP0
    mov dword [tss_main + 8], 0x10              ; SS0
    mov dword [tss_main + 0x1c], pdir           ; CR3: a switch back loads it, none saves it
    mov dword [tss_task + 0x1c], pdir           ; CR3
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
    mov ax, 0x28
    ltr ax
    ; a 16-bit TSS at 0x38: its IP and SP are 16-bit, so its CS (0x40) and SS (0x48) are based
    ; at the image; AX = 0x1234 goes in through it
    mov eax, tss16
    mov edi, gdt + 0x38
    call set_tss_desc
    mov word [gdt + 0x38], 0x2b                 ; limit: the 16-bit TSS's 44 bytes
    mov byte [gdt + 0x38 + 5], 0x81             ; present, type 1: 16-bit, available
    mov word [tss16 + 0x0e], task16_entry - 0x200000    ; IP
    mov word [tss16 + 0x10], 2                  ; FLAGS
    mov word [tss16 + 0x12], 0x1234             ; AX
    mov word [tss16 + 0x1a], task16_stack_top - 0x200000 ; SP
    mov word [tss16 + 0x22], 0x10               ; ES
    mov word [tss16 + 0x24], 0x40               ; CS
    mov word [tss16 + 0x26], 0x48               ; SS
    mov word [tss16 + 0x28], 0x10               ; DS
    call 0x38:0
    str ax
    movzx eax, ax
    mov [task16_back_tr], eax
    ; to user mode
    mov ax, 0x23
    mov ds, ax
    mov es, ax
    push 0x23                           ; SS
    push ustack_top                     ; ESP
    push 2                              ; EFLAGS
    push 0x1b                           ; CS
    push user_code                      ; EIP
    iretd

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

; the task behind both gates: records what it sees and IRETs (NT set) to the user's task; the
; next switch resumes after that IRET. The second switch is the #UD: the user's EIP, saved in
; the first TSS, goes past the UD2.
task_entry:
    inc dword [task_ran]
    movzx eax, word [tss_task]          ; the back link
    mov [task_link], eax
    mov eax, [tss_main + 0x4c]          ; the CS the switch saved: the user's
    mov [saved_cs], eax
    pushfd
    pop eax
    shr eax, 14
    and eax, 1
    mov [task_nt], eax
    cmp dword [task_ran], 2
    jne .back
    add dword [tss_main + 0x20], 2      ; past the UD2
.back:
    iretd
    jmp task_entry

; the 16-bit TSS's task (32-bit code in a segment based at the image)
task16_entry:
    movzx esp, sp                       ; the upper half is undefined after the switch
    mov [task16_ax], ax
    str bx
    movzx ebx, bx
    shl ebx, 16
    movzx ecx, word [tss16]             ; the back link
    shl ecx, 4
    or ebx, ecx
    pushfd
    pop ecx
    shr ecx, 14
    and ecx, 1
    or ebx, ecx
    mov [task16_str_link_nt], ebx
    iretd
task16_after:
    jmp task16_entry

h_pf:
    inc dword [pf_count]
    mov eax, cr2
    mov [pf_cr2], eax
    jmp h_end

h_unexpected:
    mov dword [unexpected], 1
h_end:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov esi, k_int
    mov eax, [task_ran]
    shl eax, 16
    or eax, [task_link]
    call putkv                          ; user_task_ran_link = 20028
    mov esi, k_nt_cs
    mov eax, [task_nt]
    shl eax, 16
    or eax, [saved_cs]
    call putkv                          ; user_task_nt_saved_cs = 1001b
    mov esi, k_user
    mov eax, [user_cs1]
    shl eax, 16
    or eax, [user_cs2]
    call putkv                          ; user_back_cs = 1b001b
    mov esi, k_t16
    mov eax, [task16_str_link_nt]
    call putkv                          ; task16_str_link_nt = 380281
    mov esi, k_t16ax
    mov eax, [task16_ax]
    shl eax, 16
    or eax, [task16_back_tr]
    call putkv                          ; task16_ax_back_tr = 12340028
    mov esi, k_t16ip
    movzx eax, word [tss16 + 0x0e]      ; IP saved by the IRET out of the 16-bit task
    cmp eax, task16_after - 0x200000
    sete al
    movzx eax, al
    call putkv                          ; task16_saved_ip_ok = 1
    mov esi, k_pf
    mov eax, [pf_count]
    call putkv                          ; user_task_pf = 0
    mov esi, k_pf_cr2
    mov eax, [pf_cr2]
    call putkv
    mov esi, k_unexp
    mov eax, [unexpected]
    call putkv                          ; user_task_unexpected = 0
    mov dx, 0x501
    mov al, 42
    out dx, al
    cli
    hlt

k_int: db "user_task_ran_link=", 0
k_nt_cs: db "user_task_nt_saved_cs=", 0
k_user: db "user_back_cs=", 0
k_pf: db "user_task_pf=", 0
k_t16: db "task16_str_link_nt=", 0
k_t16ax: db "task16_ax_back_tr=", 0
k_t16ip: db "task16_saved_ip_ok=", 0
k_pf_cr2: db "user_task_pf_cr2=", 0
k_unexp: db "user_task_unexpected=", 0

    align 8
gdt:
    dq 0
    dq 0x00cf9a000000ffff                   ; 0x08: code, flat, 32-bit
    dq 0x00cf92000000ffff                   ; 0x10: data, flat
    dq 0x00cffa000000ffff                   ; 0x18: user code (0x1b)
    dq 0x00cff2000000ffff                   ; 0x20: user data (0x23)
    dq 0                                    ; 0x28: TSS of the main task
    dq 0                                    ; 0x30: TSS of the gates' task
    dq 0                                    ; 0x38: a 16-bit TSS
    dq 0x00cf9a200000ffff                   ; 0x40: code, 32-bit, based at 0x200000
    dq 0x00cf92200000ffff                   ; 0x48: data, based at 0x200000
gdtr:
    dw gdtr - gdt - 1
    dd gdt
idtr:
    dw 256 * 8 - 1
    dd idt

    align 4096, db 0
user_code:                              ; CPL 3, on the only user page of code
    int 0x40
    mov eax, cs
    mov [user_cs1], eax
    ud2
    mov eax, cs
    mov [user_cs2], eax
    int 0x41
    jmp $
    align 4096, db 0
ustack: times 4096 - 64 db 0            ; the user stack page, and the results it writes
ustack_top:
user_cs1: dd 0
user_cs2: dd 0
    align 64, db 0
image_end:

absolute image_end
    alignb 4096
pdir: resb 4096
ptab: resb 4096
idt: resb 256 * 8
tss_main: resb 104
tss_task: resb 104
tss16: resb 44
task16_ax: resd 1
task16_str_link_nt: resd 1
task16_back_tr: resd 1
task_ran: resd 1
task_link: resd 1
task_nt: resd 1
saved_cs: resd 1
pf_count: resd 1
pf_cr2: resd 1
unexpected: resd 1
    alignb 16
kstack: resb 1024
kstack_top:
task_stack: resb 1024
task_stack_top:
task16_stack: resb 512
task16_stack_top:
bss_end:
