; A 64 KiB firmware image that floods qkvm with guest errors: it enters 32-bit protected mode
; with flat segments, reads and writes one dword in each of 2048 pages of unmapped guest-physical
; space above RAM (0x20000000, the vCPU loop's unmapped path) and 2048 pages of the PCI window
; where no BAR is (0xd0000000, the PCI host's), then 10,000 more times at one address, checks
; that every read returned all ones, and leaves through isa-debug-exit (port 0xf4): value 0
; (status 1) when every read was ones, 1 (status 3) when not; ACPI poweroff where the device
; is absent. Run with -m below 512M. tests/integration/guest-errors.sh counts stderr's lines.
%define PAGES 2048
%define REPEATS 10000
bits 16
org 0                       ; CS base 0xf0000 after the reset jump: the ROM's alias below 1 MiB
%define LIN(x) (0xf0000 + (x))

start:
    cli
    mov ax, cs
    mov ds, ax
    o32 lgdt [gdt_desc]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp 0x08:pm32                       ; the code segment's base is the ROM's, 0xf0000

bits 32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7000
    xor ebx, ebx                        ; reads that were not all ones
    mov esi, 0x20000000
    call sweep
    mov esi, 0xd0000000
    call sweep
    mov ecx, REPEATS
.again:
    mov eax, [0x20000000]
    not eax
    or ebx, eax
    mov dword [0x20000000], 0
    dec ecx
    jnz .again
    test ebx, ebx
    setnz al
    out 0xf4, al
    mov dx, 0x604                       ; PM1a_CNT: SLP_TYP=5 (S5), SLP_EN
    mov ax, 0x3400
    out dx, ax
.halt:
    hlt
    jmp .halt

; a read and a write in each of PAGES pages from esi; ebx collects bits of reads that were not ones
sweep:
    mov ecx, PAGES
.page:
    mov eax, [esi]
    not eax
    or ebx, eax
    mov dword [esi], 0x12345678
    add esi, 4096
    dec ecx
    jnz .page
    ret

align 8
gdt:
    dq 0
    dq 0x00cf9a0f0000ffff               ; 0x08: code, base 0xf0000, 32-bit
    dq 0x00cf92000000ffff               ; 0x10: data, base 0, limit 4 GiB
gdt_desc:
    dw gdt_desc - gdt - 1
    dd LIN(gdt)

    times 0xfff0 - ($ - $$) db 0xff
bits 16
reset:                      ; F000:FFF0
    jmp 0xf000:start
    times 0x10000 - ($ - $$) db 0xff
