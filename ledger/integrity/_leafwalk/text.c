/* Byte buffer growth, UTF-8, JSON string escaping and base64. */

#include "leafwalk.h"

int buf_grow(Buf *b, size_t extra) {
    if (b->failed) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    unsigned char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = 1;
        return 0;
    }
    b->p = p;
    b->cap = cap;
    return 1;
}

void buf_free(Buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

/* -- UTF-8 and JSON strings ------------------------------------------------------------ */

/* The next code point of valid UTF-8 at *i. */
static uint32_t utf8_next(const unsigned char *s, size_t *i) {
    unsigned char c = s[*i];
    if (c < 0x80) {
        (*i)++;
        return c;
    }
    size_t need = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
    uint32_t cp = c & (need == 3 ? 0x07 : need == 2 ? 0x0F : 0x1F);
    for (size_t k = 1; k <= need; k++) cp = (cp << 6) | (s[*i + k] & 0x3F);
    *i += need + 1;
    return cp;
}

/* Order of two valid UTF-8 strings by UTF-16 code units (RFC 8785 key order), the
 * order of Python's str.encode("utf-16-be"). */
int utf16_cmp(const unsigned char *a, size_t an, const unsigned char *b, size_t bn) {
    size_t i = 0, j = 0;
    while (i < an && j < bn) {
        if (a[i] < 0x80 && b[j] < 0x80) {
            if (a[i] != b[j]) return a[i] < b[j] ? -1 : 1;
            i++;
            j++;
            continue;
        }
        uint32_t x = utf8_next(a, &i), y = utf8_next(b, &j);
        if (x == y) continue;
        if (x >= 0x10000 && y >= 0x10000) return x < y ? -1 : 1;
        /* One side outside the BMP: compare its high surrogate with the other unit. */
        uint32_t ux = x >= 0x10000 ? 0xD800 + ((x - 0x10000) >> 10) : x;
        uint32_t uy = y >= 0x10000 ? 0xD800 + ((y - 0x10000) >> 10) : y;
        return ux < uy ? -1 : 1;
    }
    if (i < an) return 1;
    if (j < bn) return -1;
    return 0;
}

/* Bytes a string scan must stop at: controls, '"', '\\' and the start of UTF-8 sequences. */
unsigned char SPECIAL[256];

void special_init(void) {
    for (int c = 0; c < 256; c++) SPECIAL[c] = (c < 0x20 || c == '"' || c == '\\' || c >= 0x80);
}

/* The length of the valid UTF-8 sequence at s, or 0: strict UTF-8 as Python's decoder
 * reads TEXT (no overlong forms, no surrogates, nothing above U+10FFFF). */
size_t utf8_sequence(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t need;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (need >= n) return 0;
    for (size_t k = 1; k <= need; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000)) return 0;
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return 0;
    return need + 1;
}

static const char HEX[] = "0123456789abcdef";

static void put_escape(Buf *b, unsigned char c) {
    switch (c) {
    case '"': buf_put(b, "\\\"", 2); break;
    case '\\': buf_put(b, "\\\\", 2); break;
    case '\b': buf_put(b, "\\b", 2); break;
    case '\f': buf_put(b, "\\f", 2); break;
    case '\n': buf_put(b, "\\n", 2); break;
    case '\r': buf_put(b, "\\r", 2); break;
    case '\t': buf_put(b, "\\t", 2); break;
    default: {
        char esc[6] = {'\\', 'u', '0', '0', HEX[c >> 4], HEX[c & 15]};
        buf_put(b, esc, 6);
    }
    }
}

/* A JSON string, escaped as Python's json.dumps(ensure_ascii=False) does: '"' and '\\',
 * the short forms \b \f \n \r \t, other controls as \u00xx; everything else as it is.
 * 0 when s is not strict UTF-8 (Python could not have read it as str). With trusted
 * set, s is known to be valid UTF-8 already. */
int put_text(Buf *b, const unsigned char *s, size_t n, int trusted) {
    if (!buf_reserve(b, n + 2)) return 0;
    b->p[b->len++] = '"';
    size_t run = 0, i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (!SPECIAL[c]) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t k = trusted ? 1 : utf8_sequence(s + i, n - i);
            if (!k) return 0;
            i += k;
            continue;
        }
        buf_put(b, s + run, i - run);
        put_escape(b, c);
        run = ++i;
    }
    buf_put(b, s + run, n - run);
    buf_byte(b, '"');
    return !b->failed;
}


/* -- other column forms ------------------------------------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void put_base64(Buf *b, const unsigned char *s, size_t n) {
    if (!buf_reserve(b, 4 * ((n + 2) / 3) + 2)) return;
    unsigned char *o = b->p + b->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        *o++ = B64[v >> 18];
        *o++ = B64[(v >> 12) & 63];
        *o++ = B64[(v >> 6) & 63];
        *o++ = B64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        *o++ = B64[v >> 18];
        *o++ = B64[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8);
        *o++ = B64[v >> 18];
        *o++ = B64[(v >> 12) & 63];
        *o++ = B64[(v >> 6) & 63];
        *o++ = '=';
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
}
