/* The ATAPI CD-ROM's command set (MMC-3 as a PIO CD-ROM drive answers it), apart from the IDE
 * transport that carries the 12-byte packets: atapi_parse takes a packet from the guest and says
 * what to do (nothing more, a reply of bytes, 2048-byte sectors to read, or an error with its
 * sense), updating the drive's sense, tray and media-change state. What QEMU's hw/ide/atapi.c
 * answers is the model: the same INQUIRY strings, mode pages, TOC and profile list, and the same
 * order of checks (unit attention, then media change, then "no medium"). Every field of a packet
 * is untrusted: lengths, addresses and counts are checked before use, and a reply never exceeds
 * the buffer it is given or the packet's allocation length. */
#ifndef QKVM_HW_ATAPI_H
#define QKVM_HW_ATAPI_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ATAPI_SECTOR      2048
#define ATAPI_PACKET_SIZE 12
#define ATAPI_REPLY_MAX   256   /* the longest reply atapi_parse builds (mode pages, TOC) */

/* sense keys (SPC-3 4.5.6) and the additional sense codes this drive uses */
#define SENSE_NONE            0x0
#define SENSE_NOT_READY       0x2
#define SENSE_MEDIUM_ERROR    0x3
#define SENSE_ILLEGAL_REQUEST 0x5
#define SENSE_UNIT_ATTENTION  0x6
#define SENSE_ABORTED_COMMAND 0xb
#define ASC_UNRECOVERED_READ          0x11
#define ASC_INVALID_OPCODE            0x20
#define ASC_LBA_OUT_OF_RANGE          0x21
#define ASC_INVALID_FIELD             0x24
#define ASC_MEDIUM_MAY_HAVE_CHANGED   0x28
#define ASC_SAVING_NOT_SUPPORTED      0x39
#define ASC_MEDIUM_NOT_PRESENT        0x3a
#define ASC_MEDIA_REMOVAL_PREVENTED   0x53

struct atapi_state {
    uint64_t sectors;          /* 2048-byte sectors of the medium; 0 when there is none */
    bool tray_open;
    bool locked;               /* PREVENT ALLOW MEDIUM REMOVAL: the guest holds the tray shut */
    uint8_t sense_key, asc, ascq;
    /* after a medium change the next data command fails NOT READY (1), the one after that
     * UNIT ATTENTION (2): how a guest sees the tray go out and come back (QEMU does the same) */
    uint8_t changed;
    bool unit_attention;       /* reported until REQUEST SENSE takes it */
    bool event_new_media, event_eject_request;   /* for GET EVENT STATUS NOTIFICATION */
};

enum atapi_action {
    ATAPI_OK,                  /* done, no data */
    ATAPI_DATA_IN,             /* reply bytes in buf, len of them */
    ATAPI_READ,                /* read count sectors from lba (count > 0, all on the medium) */
    ATAPI_ERROR,               /* CHECK CONDITION: the sense is in the state */
};

struct atapi_result {
    enum atapi_action action;
    unsigned len;              /* ATAPI_DATA_IN */
    uint64_t lba;              /* ATAPI_READ */
    uint32_t count;
    bool tray_moved;           /* START STOP UNIT opened or closed the tray */
};

/* true when a medium is in and the tray shut */
bool atapi_medium_present(const struct atapi_state *s);
/* A packet from the guest: what the transport does next. buf (at least ATAPI_REPLY_MAX bytes)
 * receives a reply. Never fails: nonsense is an ATAPI_ERROR with its sense. */
void atapi_parse(struct atapi_state *s, const uint8_t cdb[ATAPI_PACKET_SIZE], uint8_t *buf, struct atapi_result *r);
/* Records a CHECK CONDITION found by the transport (a sector that cannot be read). */
void atapi_set_sense(struct atapi_state *s, uint8_t key, uint8_t asc);
/* A medium of sectors (0: none) put in or taken out by the host (-cdrom, the monitor). The
 * tray ends closed when a medium goes in, open when one is taken out, as QEMU's change/eject. */
void atapi_change_medium(struct atapi_state *s, uint64_t sectors);

#endif
