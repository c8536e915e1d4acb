; The local APIC as the CPU reaches it (tests/integration/apic-msr.sh): a multiboot (a.out) kernel,
; 32-bit, paging off. Prints key=value lines on COM1 (values as 8 hex digits), then leaves through
; isa-debug-exit (status 85). What it checks, with the SDM's answers in apic-msr.sh:
;   x2apic_cpuid tscdl_cpuid    CPUID.1:ECX bits 21 and 24
;   apic_cpuid_off apic_cpuid_on  CPUID.1:EDX.APIC with IA32_APIC_BASE.EN clear, then set again
;   base_rsvd_gp                a base above the 40 physical address bits is #GP
;   nmi_count nmi_nested        a self-NMI whose handler sends three more: they collapse into one,
;                               taken after the IRET, never inside the handler
;   without x2APIC: extd_gp     EXTD set is #GP
;   with x2APIC: x2apic_on_gp x2apic_id id_write_gp selfipi_read_gp xapic_page self_ipi
;                x2apic_to_xapic_gp
;   without TSC-deadline: tscdl_gp    IA32_TSC_DEADLINE (0x6e0) is #GP
;   with it: tscdl_past tscdl_after tscdl_early tscdl_late  (a deadline passed fires before the
;            next instruction and reads 0 after; one 50 ms ahead does not fire at once, but fires)
bits 32
    org 0x200000
header:
    dd 0x1badb002, 0x00010000, -(0x1badb002 + 0x00010000)
    dd header, 0x200000, image_end, bss_end, entry

%define APIC 0xfee00000
%define V_TIMER 0xef
%define V_IPI 0xf1

entry:
    mov esp, stack_top
    ; interrupt gates for #NMI, #GP, the timer and the IPI vector
    mov eax, nmi_handler
    mov ecx, 2
    call set_gate
    mov eax, gp_handler
    mov ecx, 13
    call set_gate
    mov eax, timer_handler
    mov ecx, V_TIMER
    call set_gate
    mov eax, ipi_handler
    mov ecx, V_IPI
    call set_gate
    lidt [idtr]

    mov eax, 1
    cpuid
    mov [feat_ecx], ecx
    mov eax, ecx
    shr eax, 21
    and eax, 1
    mov esi, k_x2apic_cpuid
    call putkv
    mov eax, [feat_ecx]
    shr eax, 24
    and eax, 1
    mov esi, k_tscdl_cpuid
    call putkv

    ; CPUID.1:EDX.APIC follows IA32_APIC_BASE.EN
    mov ecx, 0x1b
    rdmsr
    mov [base], eax
    and eax, ~0x800
    wrmsr
    mov esi, k_apic_cpuid_off
    call put_apic_cpuid
    mov ecx, 0x1b
    mov eax, [base]
    xor edx, edx
    wrmsr
    mov esi, k_apic_cpuid_on
    call put_apic_cpuid
    mov dword [APIC + 0xf0], 0x1ff          ; software enable

    ; bit 40 of the base is past the physical address width
    mov ecx, 0x1b
    mov eax, [base]
    mov edx, 0x100
    call wrmsr_gp
    mov esi, k_base_rsvd_gp
    call putkv

    ; NMI to self (shorthand self, NMI, assert)
    mov dword [APIC + 0x300], 0x44400
    mov ecx, 10000000
.nmi_wait:
    cmp dword [nmi_count], 2
    jae .nmi_done
    pause
    loop .nmi_wait
.nmi_done:
    mov eax, [nmi_count]
    mov esi, k_nmi_count
    call putkv
    mov eax, [nmi_nested]
    mov esi, k_nmi_nested
    call putkv

    test dword [feat_ecx], 1 << 21
    jnz x2apic_tests
    mov ecx, 0x1b
    mov eax, [base]
    or eax, 0xc00
    xor edx, edx
    call wrmsr_gp
    mov esi, k_extd_gp
    call putkv
    jmp tscdl_tests

x2apic_tests:
    mov ecx, 0x1b
    mov eax, [base]
    or eax, 0xc00
    xor edx, edx
    call wrmsr_gp
    mov esi, k_x2apic_on_gp
    call putkv
    mov byte [x2], 1
    mov ecx, 0x802
    rdmsr
    mov esi, k_x2apic_id
    call putkv
    mov ecx, 0x802
    mov eax, 5
    xor edx, edx
    call wrmsr_gp
    mov esi, k_id_write_gp
    call putkv
    mov ecx, 0x83f
    call rdmsr_gp
    mov esi, k_selfipi_read_gp
    call putkv
    mov eax, [APIC + 0x30]                  ; the page is gone in x2APIC mode
    mov esi, k_xapic_page
    call putkv
    mov ecx, 0x80f
    mov eax, 0x1ff
    xor edx, edx
    wrmsr
    sti
    mov ecx, 0x83f
    mov eax, V_IPI
    wrmsr
    nop
    cli
    mov eax, [ipi_count]
    mov esi, k_self_ipi
    call putkv
    mov ecx, 0x1b
    mov eax, [base]
    or eax, 0x800
    xor edx, edx
    call wrmsr_gp
    mov esi, k_x2apic_to_xapic_gp
    call putkv

tscdl_tests:
    test dword [feat_ecx], 1 << 24
    jnz .have
    mov ecx, 0x6e0
    call rdmsr_gp
    mov esi, k_tscdl_gp
    call putkv
    jmp done
.have:
    mov eax, (2 << 17) | V_TIMER            ; LVT timer: TSC-deadline mode (bits 18:17 = 2)
    call lvt_timer_write
    sti
    rdtsc
    mov ecx, 0x6e0
    wrmsr                                   ; a deadline already passed
    cli
    mov eax, [timer_count]
    mov esi, k_tscdl_past
    call putkv
    mov ecx, 0x6e0
    rdmsr
    or eax, edx
    mov esi, k_tscdl_after
    call putkv
    rdtsc
    add eax, 50000000                       ; 50 ms at the 1 GHz TSC
    adc edx, 0
    mov ecx, 0x6e0
    sti
    wrmsr
    nop
    cli
    mov eax, [timer_count]
    dec eax
    mov esi, k_tscdl_early
    call putkv
    sti
    hlt                                     ; only the timer can end this
    cli
    mov eax, [timer_count]
    dec eax
    mov esi, k_tscdl_late
    call putkv

done:
    mov dx, 0x501
    mov al, 42
    out dx, al
    cli
    hlt

; the key at esi, then CPUID.1:EDX.APIC
put_apic_cpuid:
    mov eax, 1
    cpuid
    mov eax, edx
    shr eax, 9
    and eax, 1
    jmp putkv

; eax: the LVT timer value, through the page or the MSR
lvt_timer_write:
    cmp byte [x2], 0
    je .page
    mov ecx, 0x832
    xor edx, edx
    wrmsr
    ret
.page:
    mov [APIC + 0x320], eax
    ret

eoi:
    cmp byte [x2], 0
    je .page
    push eax
    push ecx
    push edx
    mov ecx, 0x80b
    xor eax, eax
    xor edx, edx
    wrmsr
    pop edx
    pop ecx
    pop eax
    ret
.page:
    mov dword [APIC + 0xb0], 0
    ret

; wrmsr_gp / rdmsr_gp: the access; eax = 1 if it raised #GP, else 0
wrmsr_gp:
    mov byte [gp], 0
    wrmsr
    movzx eax, byte [gp]
    ret
rdmsr_gp:
    mov byte [gp], 0
    rdmsr
    movzx eax, byte [gp]
    ret

; #GP from RDMSR/WRMSR: note it, skip the 2-byte instruction
gp_handler:
    add esp, 4
    mov byte [gp], 1
    add dword [esp], 2
    iretd

nmi_handler:
    cmp byte [in_nmi], 0
    je .first
    inc dword [nmi_nested]
.first:
    mov byte [in_nmi], 1
    inc dword [nmi_count]
    cmp dword [nmi_count], 1
    jne .out
    mov dword [APIC + 0x300], 0x44400       ; three more while this one runs
    mov dword [APIC + 0x300], 0x44400
    mov dword [APIC + 0x300], 0x44400
    push ecx
    mov ecx, 100000
.spin:
    loop .spin
    pop ecx
.out:
    mov byte [in_nmi], 0
    iretd

timer_handler:
    inc dword [timer_count]
    call eoi
    iretd

ipi_handler:
    inc dword [ipi_count]
    call eoi
    iretd

%include "uart.inc"
%include "print32.inc"

    align 4
idtr: dw 256 * 8 - 1
      dd idt
k_x2apic_cpuid:     db "x2apic_cpuid=", 0
k_tscdl_cpuid:      db "tscdl_cpuid=", 0
k_apic_cpuid_off:   db "apic_cpuid_off=", 0
k_apic_cpuid_on:    db "apic_cpuid_on=", 0
k_base_rsvd_gp:     db "base_rsvd_gp=", 0
k_nmi_count:        db "nmi_count=", 0
k_nmi_nested:       db "nmi_nested=", 0
k_extd_gp:          db "extd_gp=", 0
k_x2apic_on_gp:     db "x2apic_on_gp=", 0
k_x2apic_id:        db "x2apic_id=", 0
k_id_write_gp:      db "id_write_gp=", 0
k_selfipi_read_gp:  db "selfipi_read_gp=", 0
k_xapic_page:       db "xapic_page=", 0
k_self_ipi:         db "self_ipi=", 0
k_x2apic_to_xapic_gp: db "x2apic_to_xapic_gp=", 0
k_tscdl_gp:         db "tscdl_gp=", 0
k_tscdl_past:       db "tscdl_past=", 0
k_tscdl_after:      db "tscdl_after=", 0
k_tscdl_early:      db "tscdl_early=", 0
k_tscdl_late:       db "tscdl_late=", 0
image_end:
gp:          equ image_end
in_nmi:      equ image_end + 1
x2:          equ image_end + 2
feat_ecx:    equ image_end + 4
base:        equ image_end + 8
nmi_count:   equ image_end + 12
nmi_nested:  equ image_end + 16
timer_count: equ image_end + 20
ipi_count:   equ image_end + 24
idt:         equ image_end + 64
stack_top:   equ idt + 256 * 8 + 4096
bss_end:     equ stack_top
