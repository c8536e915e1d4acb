; A tiny 64-bit "kernel" (bzImage) that finds the ivshmem-plain device (1af4:1110) on PCI bus 0,
; reads its BARs, prints IVPosition and a dword the host left in the shared memory, and writes a
; string at the start of BAR2 and a dword at its end (4 MiB), for tests/integration/ivshmem.sh.
; BAR2 is RAM: code written there runs (exec_bar2=), the memory follows the BAR when the guest
; moves it 256 MiB up (moved_word=, old_word= reads ones) and is gone while memory decoding is off
; (off_word=); then the BAR goes back. With the host's "PAIR" at 0x6000, two guests sharing the
; memory take turns: the first to arrive writes a ping, the second answers it (pair=1 on both).
; With ivshmem-doorbell (an MSI-X capability): rings itself on vector 0 and counts the interrupt
; (msix_self=), rings peer 0 on vector 1, prints ready=1 and waits for a ring of its vector 1
; (msix_host=).
; key=value lines on COM1, then ACPI poweroff.

%include "bzhead64.inc"

%define RINGS   0x300000                ; descriptors
%define AVAIL   0x301000
%define USED    0x302000
%define HDR     0x30f000
%define STATUS  0x30f100
%define DATA    0x310000
%define QSIZE   8
%define VECTOR  0x40

bits 64
entry64:
    lea rsp, [rel stack_top]
    cld

    ; --- find 1af4:1110 on bus 0
    xor ebx, ebx
    mov r13d, -1
.scan:
    xor ecx, ecx
    call cfg_read32
    cmp eax, 0x11101af4
    jne .next
    mov r13d, ebx
    jmp .found
.next:
    inc ebx
    cmp ebx, 32
    jb .scan
.found:
    mov eax, r13d
    lea rsi, [rel s_slot]
    call putkv
    test r13d, r13d
    js poweroff

    ; --- class (0x0500xx) and revision
    mov ecx, 0x08
    call cfg_read32
    lea rsi, [rel s_class_rev]
    call putkv

    ; --- BAR0 (registers) and BAR2 (64-bit memory)
    mov ecx, 0x10
    call cfg_read32
    and eax, ~0xf
    mov r9d, eax                        ; r9 = BAR0
    mov ecx, 0x18
    call cfg_read32
    mov r10d, eax
    and eax, 0xf
    lea rsi, [rel s_bar2_flags]         ; 0xc: 64-bit, prefetchable
    call putkv
    and r10d, ~0xf
    mov ecx, 0x1c
    call cfg_read32
    shl rax, 32
    mov r8, r10
    or r8, rax                          ; r8 = BAR2

    mov eax, [r9 + 8]                   ; IVPosition
    lea rsi, [rel s_ivpos]
    call putkv
    mov eax, [r8 + 4096]                ; what the host put there before the boot
    lea rsi, [rel s_host_word]
    call putkv

    ; --- the guest's message at the start of BAR2, and a dword at the end
    lea rsi, [rel msg]
    mov rdi, r8
.copy:
    lodsb
    mov [rdi], al
    inc rdi
    test al, al
    jnz .copy
    mov dword [r8 + 0x3ffffc], 0x51564b4d   ; last dword of a 4 MiB region: "MKVQ"
    mov eax, 1
    lea rsi, [rel s_written]
    call putkv

    ; --- BAR2 is RAM: run code from it
    mov rdi, r8
    add rdi, 0x2000
    mov dword [rdi], 0x00600db8         ; mov eax, 0x600d
    mov word [rdi + 4], 0xc300          ; (imm32 high byte), ret
    xor eax, eax
    call rdi
    lea rsi, [rel s_exec]
    call putkv

    ; --- move BAR2 256 MiB up: the memory is there, nothing is at the old place
    lea r12, [r8 + 0x10000000]
    mov ecx, 0x18
    mov eax, r12d
    call cfg_write32
    mov eax, [r12]                      ; "hell" of the message
    lea rsi, [rel s_moved]
    call putkv
    mov eax, [r8]
    lea rsi, [rel s_old]
    call putkv
    ; memory decoding off: gone; on again
    mov ecx, 0x04
    call cfg_read32
    mov r15d, eax
    and eax, ~2
    call cfg_write16
    mov eax, [r12]
    lea rsi, [rel s_off]
    call putkv
    mov eax, r15d
    call cfg_write16
    mov ecx, 0x18
    mov eax, r8d
    call cfg_write32                    ; back where it was

    ; --- two guests on one memory (the host asked for it with "PAIR" at 0x6000)
    cmp dword [r8 + 0x6000], 0x52494150
    jne .nopair
    mov eax, 1
    lock xadd [r8 + 0x6004], eax        ; 0: first here
    mov ecx, 0x40000000
    test eax, eax
    jnz .second
    mov dword [r8 + 0x6008], 0x676e6970     ; "ping"
.wait_pong:
    cmp dword [r8 + 0x600c], 0x676e6f70     ; "pong"
    je .paired
    pause
    dec ecx
    jnz .wait_pong
    jmp .unpaired
.second:
    cmp dword [r8 + 0x6008], 0x676e6970
    je .answer
    pause
    dec ecx
    jnz .second
    jmp .unpaired
.answer:
    mov dword [r8 + 0x600c], 0x676e6f70
.paired:
    mov eax, 1
    jmp .pair_out
.unpaired:
    xor eax, eax
.pair_out:
    lea rsi, [rel s_pair]
    call putkv
.nopair:

    ; --- ivshmem-doorbell only: the MSI-X capability
    mov ecx, 0x34
    call cfg_read32
    movzx ecx, al
.cap:
    test ecx, ecx
    jz poweroff                         ; ivshmem-plain: no interrupts
    mov r11d, ecx
    call cfg_read32
    cmp al, 0x11
    je .msix
    movzx ecx, ah
    jmp .cap
.msix:
    lea ecx, [r11 + 4]
    call cfg_read32                     ; table offset | BIR (BAR1 here)
    mov r14d, eax
    and r14d, ~7
    mov ecx, 0x14
    call cfg_read32
    and eax, ~0xf
    add r14, rax                        ; r14 = the vector table
    mov dword [r14 + 0], 0xfee00000     ; vector 0 -> APIC vector 0x40
    mov dword [r14 + 4], 0
    mov dword [r14 + 8], 0x40
    mov dword [r14 + 12], 0
    mov dword [r14 + 16], 0xfee00000    ; vector 1 -> 0x41
    mov dword [r14 + 20], 0
    mov dword [r14 + 24], 0x41
    mov dword [r14 + 28], 0
    lea rax, [rel irq0]
    lea rdi, [rel idt + 0x40 * 16]
    call set_gate
    lea rax, [rel irq1]
    lea rdi, [rel idt + 0x41 * 16]
    call set_gate
    lidt [rel idt_ptr]
    mov edi, 0xfee00000
    mov dword [rdi + 0xf0], 0x1ff       ; APIC software enable, spurious vector 0xff
    mov dword [rdi + 0x80], 0           ; TPR: accept everything
    lea ecx, [r11 + 2]
    mov eax, 0x8000                     ; MSI-X enable
    call cfg_write16

    ; --- ring ourselves on vector 0: the server gave us our own eventfds too
    mov eax, [r9 + 8]
    shl eax, 16
    mov [r9 + 12], eax
    mov ecx, 100
.wait0:
    cmp dword [rel irqs0], 0
    jne .got0
    sti
    hlt
    cli
    dec ecx
    jnz .wait0
.got0:
    mov eax, [rel irqs0]
    lea rsi, [rel s_self]
    call putkv

    ; --- ring peer 0 (the host client) on vector 1, a peer that is not there, then wait for the
    ; host to ring our vector 1
    mov dword [r9 + 12], (0 << 16) | 1
    mov dword [r9 + 12], (999 << 16) | 0
    mov eax, 1
    lea rsi, [rel s_ready]
    call putkv
    mov ecx, 1000
.wait1:
    cmp dword [rel irqs1], 0
    jne .got1
    sti
    hlt
    cli
    dec ecx
    jnz .wait1
.got1:
    mov eax, [rel irqs1]
    lea rsi, [rel s_host]
    call putkv

poweroff:
    mov dx, 0x604
    mov ax, 0x3400                      ; SLP_TYP 5 | SLP_EN
    out dx, ax
.h: hlt
    jmp .h
; set_gate: interrupt gate in the IDT slot at rdi for the handler at rax
set_gate:
    mov [rdi], ax
    mov word [rdi + 2], cs
    mov word [rdi + 4], 0x8e00          ; present, interrupt gate
    shr rax, 16
    mov [rdi + 6], ax
    shr rax, 16
    mov [rdi + 8], eax
    ret

irq0:
    push rax
    inc dword [rel irqs0]
    mov eax, 0xfee000b0
    mov dword [rax], 0                  ; EOI
    pop rax
    iretq

irq1:
    push rax
    inc dword [rel irqs1]
    mov eax, 0xfee000b0
    mov dword [rax], 0
    pop rax
    iretq

%include "uart.inc"
%include "print64.inc"
%include "pci64.inc"
s_slot: db "ivshmem_slot=", 0
s_class_rev: db "class_rev=", 0
s_bar2_flags: db "bar2_flags=", 0
s_ivpos: db "iv_position=", 0
s_host_word: db "host_word=", 0
s_written: db "written=", 0
s_exec: db "exec_bar2=", 0
s_moved: db "moved_word=", 0
s_old: db "old_word=", 0
s_off: db "off_word=", 0
s_pair: db "pair=", 0
s_self: db "msix_self=", 0
s_ready: db "ready=", 0
s_host: db "msix_host=", 0
msg: db "hello from a qkvm guest", 0
    align 8, db 0
irqs0: dd 0
irqs1: dd 0
    align 16, db 0
idt_ptr: dw 256 * 16 - 1
         dq idt
    align 16, db 0
idt: times 256 * 16 db 0
stack: times 1024 db 0
stack_top:
    align 512, db 0
pm_end:
