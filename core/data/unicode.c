/* UTF-8 decoding with maximal-subpart error recovery and the class lookup (see unicode.h).
 * The tables themselves are generated: unicode_tables.c. */
#include "core/data/unicode.h"

uint32_t unicode_class(uint32_t cp) {
    size_t lo = 0, hi = unicode_n_ranges;
    while (lo < hi) { /* first range with hi >= cp */
        const size_t mid = lo + (hi - lo) / 2;
        if (unicode_ranges[mid].hi < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < unicode_n_ranges && unicode_ranges[lo].lo <= cp ? unicode_ranges[lo].flags : 0;
}

size_t unicode_next(const unsigned char *s, size_t n, uint32_t *cp) {
    const unsigned b = s[0];
    *cp = UNICODE_INVALID;
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t need;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    uint32_t v;
    if (b >= 0xC2 && b <= 0xDF) need = 1, v = b & 0x1F;
    else if (b >= 0xE0 && b <= 0xEF) need = 2, v = b & 0x0F;
    else if (b >= 0xF0 && b <= 0xF4) need = 3, v = b & 0x07;
    else return 1;
    if (b == 0xE0) lo = 0xA0;        /* no overlongs */
    else if (b == 0xED) hi = 0x9F;   /* no surrogates */
    else if (b == 0xF0) lo = 0x90;   /* no overlongs */
    else if (b == 0xF4) hi = 0x8F;   /* nothing above U+10FFFF */
    for (size_t k = 1; k <= need; k++) {
        if (k >= n || s[k] < lo || s[k] > hi) return k;
        v = (v << 6) | (s[k] & 0x3F);
        lo = 0x80, hi = 0xBF;
    }
    *cp = v;
    return need + 1;
}

size_t unicode_put(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}
