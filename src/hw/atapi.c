/* ATAPI CD-ROM commands (hw/atapi.h). The table's flags follow QEMU's atapi_cmd_table: which
 * commands go through while a unit attention is pending (ALLOW_UA), which ones move no data and
 * so do not consume a media-change report (NONDATA), and which need a medium (CHECK_READY). */
#include "hw/atapi.h"

#include <string.h>

#define ALLOW_UA    1
#define CHECK_READY 2
#define NONDATA     4

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)), put16(p + 2, (uint16_t)v); }

/* INQUIRY's ASCII fields: space-padded, no terminator */
static void pad_string(uint8_t *p, size_t n, const char *s)
{
    size_t len = strlen(s);
    memset(p, ' ', n);
    memcpy(p, s, len < n ? len : n);
}

bool atapi_medium_present(const struct atapi_state *s)
{
    return !s->tray_open && s->sectors > 0;
}

void atapi_set_sense(struct atapi_state *s, uint8_t key, uint8_t asc)
{
    s->sense_key = key, s->asc = asc, s->ascq = 0;
}

void atapi_change_medium(struct atapi_state *s, uint64_t sectors)
{
    s->sectors = sectors;
    s->tray_open = sectors == 0;
    s->changed = 1;
    s->event_new_media = sectors > 0;
    s->event_eject_request = false;
}

static void fail(struct atapi_state *s, struct atapi_result *r, uint8_t key, uint8_t asc)
{
    atapi_set_sense(s, key, asc);
    r->action = ATAPI_ERROR;
}

/* A reply of len bytes cut to the packet's allocation length; an empty one moves no data. */
static void reply(struct atapi_result *r, unsigned len, unsigned alloc)
{
    r->len = len < alloc ? len : alloc;
    r->action = r->len ? ATAPI_DATA_IN : ATAPI_OK;
}

/* CD addresses in minutes/seconds/frames, 150 frames of lead-in before LBA 0 (MMC-3 table 21) */
static void lba_to_msf(uint8_t *p, uint64_t lba)
{
    lba += 150;
    p[0] = (uint8_t)(lba / (75 * 60)), p[1] = (uint8_t)(lba / 75 % 60), p[2] = (uint8_t)(lba % 75);
}

static void put_addr(uint8_t *p, uint64_t lba, bool msf)
{
    if (msf) {
        p[0] = 0;
        lba_to_msf(p + 1, lba);
    } else {
        put32(p, lba > UINT32_MAX ? UINT32_MAX : (uint32_t)lba);
    }
}

/* READ TOC format 0: one data track and the lead-out, as a pressed single-session disc; -1 for
 * a start track past both. */
static int read_toc(const struct atapi_state *s, uint8_t *buf, bool msf, unsigned start)
{
    uint8_t *q = buf + 2;
    if (start > 1 && start != 0xaa)
        return -1;
    *q++ = 1, *q++ = 1;                 /* first and last track */
    if (start <= 1) {
        *q++ = 0, *q++ = 0x14, *q++ = 1, *q++ = 0;   /* data track 1, digital copy permitted */
        put_addr(q, 0, msf);
        q += 4;
    }
    *q++ = 0, *q++ = 0x16, *q++ = 0xaa, *q++ = 0;     /* the lead-out */
    put_addr(q, s->sectors, msf);
    q += 4;
    put16(buf, (uint16_t)(q - buf - 2));
    return (int)(q - buf);
}

/* MODE SENSE(10) pages: read/write error recovery (0x01) and the CD capabilities (0x2a) */
static unsigned mode_page(const struct atapi_state *s, unsigned page, uint8_t *p)
{
    if (page == 0x01) {
        memset(p, 0, 8);
        p[0] = 0x01, p[1] = 6, p[3] = 5;   /* read retry count 5 */
        return 8;
    }
    memset(p, 0, 20);
    p[0] = 0x2a, p[1] = 0x12;
    p[2] = 0x3b;                        /* reads CD-R, CD-RW, DVD-ROM, DVD-R, DVD-RAM */
    p[4] = 0x71;                        /* audio play (Linux's automount looks for it), multisession */
    p[5] = 3 << 5;
    p[6] = 1 | 1 << 3 | 1 << 5 | (s->locked ? 2 : 0);   /* lock, eject, tray loader, locked now */
    put16(p + 8, 704);                  /* 4x */
    p[11] = 2;                          /* volume levels */
    put16(p + 12, 512);                 /* buffer KiB */
    put16(p + 14, 704);
    return 20;
}

static void mode_sense(struct atapi_state *s, const uint8_t *cdb, uint8_t *buf, struct atapi_result *r)
{
    unsigned control = cdb[2] >> 6, page = cdb[2] & 0x3f, alloc = be16(cdb + 7), len = 8;
    if (control == 3) {
        fail(s, r, SENSE_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED);
        return;
    }
    if (control != 0 || (page != 0x01 && page != 0x2a && page != 0x3f)) {
        fail(s, r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
        return;
    }
    memset(buf, 0, 8);
    buf[2] = 0x70;                      /* medium type: no disc or door closed (as QEMU) */
    if (page == 0x01 || page == 0x3f)
        len += mode_page(s, 0x01, buf + len);
    if (page == 0x2a || page == 0x3f)
        len += mode_page(s, 0x2a, buf + len);
    put16(buf, (uint16_t)(len - 2));
    reply(r, len, alloc);
}

/* GET CONFIGURATION: the profile list (DVD-ROM, CD-ROM; the current one by size, as QEMU
 * decides it), the core feature (ATAPI) and the removable-medium feature. */
static void get_configuration(struct atapi_state *s, const uint8_t *cdb, uint8_t *buf, struct atapi_result *r)
{
    unsigned rt = cdb[1] & 3, alloc = be16(cdb + 7);
    if (rt == 3) {
        fail(s, r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
        return;
    }
    /* a CD holds at most 80 minutes of 75 frames a second */
    uint16_t cur = !atapi_medium_present(s) ? 0 : s->sectors > 80 * 60 * 75 ? 0x10 : 0x08;
    memset(buf, 0, 40);
    put16(buf + 6, cur);
    uint8_t *p = buf + 8;
    p[3] = 8, p[2] = 3;                 /* feature 0: profile list, persistent and current */
    put16(p + 4, 0x10), p[6] = cur == 0x10;
    put16(p + 8, 0x08), p[10] = cur == 0x08;
    p += 12;
    put16(p, 1), p[2] = 0x0b, p[3] = 8; /* core feature, version 2 */
    put32(p + 4, 2);                    /* physical interface: ATAPI */
    p[8] = 1;                           /* DBE */
    p += 12;
    put16(p, 3), p[2] = 0x03, p[3] = 4; /* removable medium: tray, eject, lock */
    p[4] = 1 << 5 | 1 << 3 | 1 | (s->locked ? 2 : 0);
    p += 8;
    put32(buf, (uint32_t)(p - buf - 4));
    reply(r, (unsigned)(p - buf), alloc);
}

static void event_status(struct atapi_state *s, const uint8_t *cdb, uint8_t *buf, struct atapi_result *r)
{
    unsigned alloc = be16(cdb + 7), len = 4;
    if (!(cdb[1] & 1)) {                /* asynchronous notification is not offered */
        fail(s, r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
        return;
    }
    memset(buf, 0, 8);
    buf[3] = 1 << 4;                    /* the media class is the one supported */
    if (cdb[4] & (1 << 4)) {
        uint8_t status = s->tray_open ? 1 : atapi_medium_present(s) ? 2 : 0, code = 0;
        if (!s->tray_open && s->event_new_media)
            code = 2, s->event_new_media = false;
        else if (!s->tray_open && s->event_eject_request)
            code = 1, s->event_eject_request = false;
        buf[2] = 4;
        buf[4] = code, buf[5] = status;
        len = 8;
    } else {
        buf[2] = 0x80;                  /* no event of a class asked for */
    }
    put16(buf, (uint16_t)(len - 4));
    reply(r, len, alloc);
}

static void start_stop(struct atapi_state *s, const uint8_t *cdb, struct atapi_result *r)
{
    bool start = cdb[4] & 1, loej = cdb[4] & 2;
    r->action = ATAPI_OK;
    if (!loej || s->tray_open == !start)
        return;
    if (!start && s->locked) {
        fail(s, r, SENSE_NOT_READY, ASC_MEDIA_REMOVAL_PREVENTED);
        s->ascq = 2;
        return;
    }
    s->tray_open = !start;
    r->tray_moved = true;
}

/* READ(10), READ(12), READ CD (user data only): the whole range on the medium, or nothing */
static void read_sectors(struct atapi_state *s, uint64_t lba, uint32_t count, struct atapi_result *r)
{
    if (lba >= s->sectors || count > s->sectors - lba) {
        fail(s, r, SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
        return;
    }
    r->action = count ? ATAPI_READ : ATAPI_OK;
    r->lba = lba, r->count = count;
}

static uint8_t cmd_flags(uint8_t op)
{
    switch (op) {
    case 0x00: return CHECK_READY | NONDATA;   /* TEST UNIT READY */
    case 0x03: case 0x12: case 0x46: case 0x4a: return ALLOW_UA;   /* REQUEST SENSE, INQUIRY, GET CONFIGURATION, GESN */
    case 0x1b: case 0x1e: case 0xbb: return NONDATA;   /* START STOP, PREVENT ALLOW, SET SPEED */
    case 0x2b: return CHECK_READY | NONDATA;   /* SEEK(10) */
    case 0x25: case 0x28: case 0xa8: case 0x43: case 0x51: case 0xbe: return CHECK_READY;
    default: return 0;
    }
}

void atapi_parse(struct atapi_state *s, const uint8_t cdb[ATAPI_PACKET_SIZE], uint8_t *buf, struct atapi_result *r)
{
    uint8_t op = cdb[0], flags = cmd_flags(op);
    memset(r, 0, sizeof(*r));
    if (s->unit_attention && !(flags & ALLOW_UA)) {
        fail(s, r, SENSE_UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED);
        return;
    }
    if (!(flags & (NONDATA | ALLOW_UA)) && s->changed) {
        if (s->changed == 1) {
            s->changed = 2;
            fail(s, r, SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT);
        } else {
            s->changed = 0;
            s->unit_attention = true;
            fail(s, r, SENSE_UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED);
        }
        return;
    }
    if ((flags & CHECK_READY) && !atapi_medium_present(s)) {
        fail(s, r, SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT);
        return;
    }
    if (op != 0x03)
        atapi_set_sense(s, SENSE_NONE, 0);
    switch (op) {
    case 0x00:                          /* TEST UNIT READY */
    case 0x2b:                          /* SEEK(10): nothing moves */
    case 0xbb:                          /* SET CD SPEED */
        r->action = ATAPI_OK;
        return;
    case 0x03:                          /* REQUEST SENSE: fixed format, then the sense is spent */
        memset(buf, 0, 18);
        buf[0] = 0x80 | 0x70;
        buf[2] = s->sense_key, buf[7] = 10, buf[12] = s->asc, buf[13] = s->ascq;
        if (s->unit_attention) {
            buf[2] = SENSE_UNIT_ATTENTION, buf[12] = ASC_MEDIUM_MAY_HAVE_CHANGED, buf[13] = 0;
            s->unit_attention = false;
        }
        atapi_set_sense(s, SENSE_NONE, 0);
        reply(r, 18, cdb[4]);
        return;
    case 0x12:                          /* INQUIRY: standard data only (no vital product pages) */
        if (cdb[1] & 1) {
            fail(s, r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
            return;
        }
        memset(buf, 0, 36);
        buf[0] = 0x05, buf[1] = 0x80;   /* CD/DVD, removable */
        buf[3] = 0x21, buf[4] = 31;
        pad_string(buf + 8, 8, "QEMU");
        pad_string(buf + 16, 16, "QEMU DVD-ROM");
        pad_string(buf + 32, 4, "2.5+");
        reply(r, 36, be16(cdb + 3));
        return;
    case 0x1b:
        start_stop(s, cdb, r);
        return;
    case 0x1e:                          /* PREVENT ALLOW MEDIUM REMOVAL */
        s->locked = cdb[4] & 1;
        r->action = ATAPI_OK;
        return;
    case 0x25: {                        /* READ CAPACITY: the last LBA and the block size */
        uint64_t last = s->sectors - 1;
        put32(buf, last > UINT32_MAX ? UINT32_MAX : (uint32_t)last);
        put32(buf + 4, ATAPI_SECTOR);
        reply(r, 8, 8);
        return;
    }
    case 0x28:                          /* READ(10) */
        read_sectors(s, be32(cdb + 2), be16(cdb + 7), r);
        return;
    case 0xa8:                          /* READ(12) */
        read_sectors(s, be32(cdb + 2), be32(cdb + 6), r);
        return;
    case 0xbe: {                        /* READ CD: 2048-byte user data, or nothing */
        uint32_t count = (uint32_t)cdb[6] << 16 | (uint32_t)cdb[7] << 8 | cdb[8];
        uint8_t fields = cdb[9] & 0xf8;
        if (fields == 0)
            r->action = ATAPI_OK;
        else if (fields == 0x10 && (cdb[1] & 0x1c) <= 0x08)   /* any type, or mode 1 */
            read_sectors(s, be32(cdb + 2), count, r);
        else
            fail(s, r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
        return;
    }
    case 0x43: {                        /* READ TOC/PMA/ATIP */
        unsigned format = (cdb[2] & 0xf) ? cdb[2] & 0xf : cdb[9] >> 6, alloc = be16(cdb + 7);
        bool msf = cdb[1] & 2;
        int len;
        if (format == 0 && (len = read_toc(s, buf, msf, cdb[6])) > 0) {
            reply(r, (unsigned)len, alloc);
        } else if (format == 1) {       /* session info: one session, its first track at 0 */
            memset(buf, 0, 12);
            buf[1] = 10, buf[2] = 1, buf[3] = 1, buf[5] = 0x14, buf[6] = 1;
            put_addr(buf + 8, 0, msf);
            reply(r, 12, alloc);
        } else {
            fail(s, r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
        }
        return;
    }
    case 0x46:
        get_configuration(s, cdb, buf, r);
        return;
    case 0x4a:
        event_status(s, cdb, buf, r);
        return;
    case 0x51:                          /* READ DISC INFORMATION: a finalized one-session disc */
        if (cdb[1] & 7) {
            fail(s, r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
            return;
        }
        memset(buf, 0, 34);
        buf[1] = 32, buf[2] = 0xe, buf[3] = 1, buf[4] = 1, buf[5] = 1, buf[6] = 1, buf[7] = 0x20;
        reply(r, 34, be16(cdb + 7));
        return;
    case 0x5a:
        mode_sense(s, cdb, buf, r);
        return;
    case 0xbd:                          /* MECHANISM STATUS: no changer, one slot */
        memset(buf, 0, 8);
        buf[5] = 1;
        reply(r, 8, be16(cdb + 8));
        return;
    }
    fail(s, r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
}
