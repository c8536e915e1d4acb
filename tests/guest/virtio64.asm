; A tiny 64-bit "kernel" (bzImage) that drives PCI and a virtio-blk disk the way a driver does,
; printing key=value lines on COM1 for tests/integration/virtio-tiny.sh:
;   pci_devices=   functions answering on bus 0 (configuration mechanism #1)
;   blk_slot=      the first virtio-blk (1af4:1042); ecam_id= its IDs read through ECAM
;   blk_capacity=  sectors, from the device configuration
;   features_ok=   FEATURES_OK read back after accepting VERSION_1 only
;   read_status= read_sum=    sector 0 read into RAM, and the byte sum of it
;   write_status=  sector 1 written with bytes (i * 3) & 0xff
;   serial=        the GET_ID string
;   msix_irqs=     MSI-X interrupts taken for a flush request (vector 0x40 through the local APIC)
;   zero_status=   WRITE_ZEROES status (the feature is offered)
; then powers off through ACPI. Polling has a bound, so a dead device prints a timeout line.

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

    ; --- bus 0 through 0xcf8/0xcfc
    xor ebx, ebx
    xor r12d, r12d                      ; functions found
    mov r13d, -1                        ; virtio-blk slot
.scan:
    xor ecx, ecx
    call cfg_read32
    cmp ax, 0xffff
    je .next
    inc r12d
    cmp eax, 0x10421af4
    jne .next
    test r13d, r13d
    jns .next
    mov r13d, ebx
.next:
    inc ebx
    cmp ebx, 32
    jb .scan
    mov eax, r12d
    lea rsi, [rel s_devices]
    call putkv
    mov eax, r13d
    lea rsi, [rel s_slot]
    call putkv
    test r13d, r13d
    js poweroff
    mov ebx, r13d                       ; ebx = the disk's slot from here on

    ; --- the same function through ECAM (0xe0000000, bus 0): the device ID
    mov eax, ebx
    shl eax, 15
    add eax, 0xe0000000
    mov eax, [rax]
    shr eax, 16
    lea rsi, [rel s_ecam]
    call putkv

    ; --- BAR4 (64-bit) and BAR1 (MSI-X table)
    mov ecx, 0x20
    call cfg_read32
    and eax, ~0xf
    mov r8d, eax
    mov ecx, 0x24
    call cfg_read32
    shl rax, 32
    or r8, rax                          ; r8 = BAR4
    mov ecx, 0x14
    call cfg_read32
    and eax, ~0xf
    mov [rel msix_table], rax

    ; --- capabilities: virtio's (vendor, 9) say where each region is in BAR4
    mov ecx, 0x34
    call cfg_read32
    movzx ecx, al
.cap:
    test ecx, ecx
    jz .caps_done
    mov r9d, ecx
    call cfg_read32                     ; id, next, len, cfg_type
    mov r10d, eax
    cmp al, 0x11
    jne .not_msix
    mov [rel msix_cap], r9d
.not_msix:
    cmp al, 0x09
    jne .cap_next
    lea ecx, [r9 + 8]
    call cfg_read32                     ; offset in the BAR
    mov edx, r10d
    shr edx, 24                         ; cfg_type
    lea rdi, [r8 + rax]
    cmp edx, 1
    jne .c2
    mov [rel cfg_common], rdi
.c2:
    cmp edx, 2
    jne .c3
    mov [rel notify], rdi
    lea ecx, [r9 + 16]
    call cfg_read32
    mov [rel notify_mult], eax
.c3:
    cmp edx, 4
    jne .cap_next
    mov [rel devcfg], rdi
.cap_next:
    mov eax, r10d
    movzx ecx, ah
    jmp .cap
.caps_done:
    mov rdi, [rel devcfg]
    mov eax, [rdi]                      ; capacity (low half)
    lea rsi, [rel s_capacity]
    call putkv

    ; --- MSI-X: the queue's vector 1 to the local APIC's vector 0x40, then enable
    mov rdi, [rel msix_table]
    mov dword [rdi + 16], 0xfee00000
    mov dword [rdi + 20], 0
    mov dword [rdi + 24], VECTOR
    mov dword [rdi + 28], 0
    mov ecx, [rel msix_cap]
    add ecx, 2
    mov eax, 0x8000
    call cfg_write16

    ; --- virtio initialisation (3.1.1)
    mov rdi, [rel cfg_common]
    mov byte [rdi + 20], 0              ; reset
    mov byte [rdi + 20], 1              ; ACKNOWLEDGE
    mov byte [rdi + 20], 3              ; DRIVER
    mov dword [rdi + 8], 1              ; driver features, high half: VERSION_1
    mov dword [rdi + 12], 1
    mov dword [rdi + 8], 0
    mov dword [rdi + 12], 0
    mov byte [rdi + 20], 11             ; FEATURES_OK
    movzx eax, byte [rdi + 20]
    shr eax, 3
    and eax, 1
    lea rsi, [rel s_features]
    call putkv

    mov rdi, RINGS                      ; zero the rings
    xor eax, eax
    mov ecx, 0x3000 / 8
    rep stosq
    mov rdi, [rel cfg_common]
    mov word [rdi + 22], 0              ; queue_select
    mov word [rdi + 24], QSIZE
    mov word [rdi + 26], 1              ; queue_msix_vector
    mov qword [rdi + 32], RINGS
    mov qword [rdi + 40], AVAIL
    mov qword [rdi + 48], USED
    movzx eax, word [rdi + 30]          ; queue_notify_off
    imul eax, [rel notify_mult]
    add [rel notify], rax
    mov word [rdi + 28], 1              ; queue_enable
    mov byte [rdi + 20], 15             ; DRIVER_OK

    ; --- read sector 0
    mov eax, 0                          ; VIRTIO_BLK_T_IN
    xor edx, edx
    mov ecx, 512
    mov r9d, 2                          ; device-writable data
    call request
    lea rsi, [rel s_read_status]
    call putkv
    mov rsi, DATA
    xor eax, eax
    mov ecx, 512
.sum:
    movzx edx, byte [rsi]
    add eax, edx
    inc rsi
    dec ecx
    jnz .sum
    lea rsi, [rel s_read_sum]
    call putkv

    ; --- write sector 1: bytes (i * 3) & 0xff
    mov rdi, DATA
    xor ecx, ecx
.fill:
    lea eax, [rcx + rcx * 2]
    mov [rdi + rcx], al
    inc ecx
    cmp ecx, 512
    jb .fill
    mov eax, 1                          ; VIRTIO_BLK_T_OUT
    mov edx, 1
    mov ecx, 512
    xor r9d, r9d
    call request
    lea rsi, [rel s_write_status]
    call putkv

    ; --- GET_ID: 20 bytes, printed as a string
    mov rdi, DATA
    xor eax, eax
    mov ecx, 4
    rep stosq
    mov eax, 8
    xor edx, edx
    mov ecx, 20
    mov r9d, 2
    call request
    lea rsi, [rel s_serial]
    call puts
    mov byte [DATA + 20], 0
    mov rsi, DATA
    call puts
    call newline

    ; --- WRITE_ZEROES of sectors 2-3: one range {sector, num_sectors, flags}
    mov qword [DATA], 2
    mov dword [DATA + 8], 2
    mov dword [DATA + 12], 0
    mov eax, 13
    xor edx, edx
    mov ecx, 16
    xor r9d, r9d
    call request
    lea rsi, [rel s_zero_status]
    call putkv

    ; --- an interrupt: IDT entry for VECTOR, local APIC on, a flush, wait in HLT
    lea rax, [rel irq_handler]
    lea rdi, [rel idt + VECTOR * 16]
    mov [rdi], ax
    mov word [rdi + 2], cs
    mov word [rdi + 4], 0x8e00          ; present, interrupt gate
    shr rax, 16
    mov [rdi + 6], ax
    shr rax, 16
    mov [rdi + 8], eax
    lidt [rel idt_ptr]
    mov edi, 0xfee00000                 ; (a register: a 32-bit displacement would sign-extend)
    mov dword [rdi + 0xf0], 0x1ff       ; APIC software enable, spurious vector 0xff
    mov dword [rdi + 0x80], 0           ; TPR: accept everything
    mov dword [rel irqs], 0
    mov byte [rel wait_irq], 1
    mov eax, 4                          ; VIRTIO_BLK_T_FLUSH
    xor edx, edx
    xor ecx, ecx
    xor r9d, r9d
    call request
    mov ecx, 100
.wait_irq:
    cmp dword [rel irqs], 0
    jne .got_irq
    sti
    hlt                                 ; woken by the interrupt (or spins the bound down)
    cli
    dec ecx
    jnz .wait_irq
.got_irq:
    mov eax, [rel irqs]
    lea rsi, [rel s_msix]
    call putkv

poweroff:
    mov dx, 0x604
    mov ax, 0x3400                      ; SLP_TYP 5 | SLP_EN
    out dx, ax
.h: hlt
    jmp .h

irq_handler:
    push rax
    inc dword [rel irqs]
    mov eax, 0xfee000b0
    mov dword [rax], 0                  ; EOI
    pop rax
    iretq

; request: type eax, sector rdx, data length ecx at DATA (r9d = 2 when the device writes it,
; 0 when it reads it; no data descriptor when ecx is 0). Waits for the used ring (polling, unless
; wait_irq is set: then it returns at once). Returns the status byte in eax, or -1 on timeout.
request:
    mov dword [HDR], eax
    mov dword [HDR + 4], 0
    mov [HDR + 8], rdx
    mov byte [STATUS], 0xee
    mov rdi, RINGS
    mov qword [rdi], HDR                ; desc 0: header
    mov dword [rdi + 8], 16
    mov word [rdi + 12], 1              ; NEXT
    mov word [rdi + 14], 1
    test ecx, ecx
    jz .no_data
    mov qword [rdi + 16], DATA          ; desc 1: data
    mov [rdi + 24], ecx
    mov eax, r9d
    or eax, 1
    mov [rdi + 28], ax
    mov word [rdi + 30], 2
    add rdi, 16
.no_data:
    mov qword [rdi + 16], STATUS        ; last: the status byte
    mov dword [rdi + 24], 1
    mov word [rdi + 28], 2              ; WRITE
    movzx eax, word [AVAIL + 2]         ; avail->ring[idx % QSIZE] = 0, then idx + 1
    mov r10d, eax
    and eax, QSIZE - 1
    mov word [AVAIL + 4 + rax * 2], 0
    inc r10d
    mfence
    mov [AVAIL + 2], r10w
    mfence
    mov rdi, [rel notify]
    mov word [rdi], 0                   ; the doorbell: queue 0
    cmp byte [rel wait_irq], 0
    jne .no_wait
    mov ecx, 10000000
.poll:
    cmp [USED + 2], r10w
    je .done
    pause
    dec ecx
    jnz .poll
    mov eax, -1
    ret
.done:
    movzx eax, byte [STATUS]
    ret
.no_wait:
    xor eax, eax
    ret

%include "uart.inc"
%include "print64.inc"
%include "pci64.inc"

s_devices: db "pci_devices=", 0
s_slot: db "blk_slot=", 0
s_ecam: db "ecam_id=", 0
s_capacity: db "blk_capacity=", 0
s_features: db "features_ok=", 0
s_read_status: db "read_status=", 0
s_read_sum: db "read_sum=", 0
s_write_status: db "write_status=", 0
s_serial: db "serial=", 0
s_zero_status: db "zero_status=", 0
s_msix: db "msix_irqs=", 0
    align 8, db 0
cfg_common: dq 0
notify: dq 0
devcfg: dq 0
msix_table: dq 0
notify_mult: dd 0
msix_cap: dd 0
irqs: dd 0
wait_irq: db 0
    align 16, db 0
idt_ptr: dw 256 * 16 - 1
         dq idt
    align 16, db 0
idt: times 256 * 16 db 0
stack: times 1024 db 0
stack_top:
    align 512, db 0
pm_end:
