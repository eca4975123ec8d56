/*
 * Native leaf recomputation for `seedledger verify` on SQLite.
 *
 * verify recomputes every sealed leaf from its stored row (ledger/integrity/verify.py).
 * In Python that costs tens of microseconds a leaf: one object per column, JSON columns
 * decoded and encoded again. This module does the same work on the SQLite C API: for a
 * range of leaf indexes it reads each log entry joined to its row, writes the row's
 * canonical leaf bytes (docs/integrity.md), hashes them, compares the hash with the
 * sealed leaf hash, and extends the compact range. The range is split between threads,
 * each with its own read-only connection.
 *
 * It is an accelerator, not an authority: it only *confirms* leaves. Whatever it cannot
 * render exactly the way the Python path does (a stored value of an unexpected storage
 * class, invalid UTF-8, a non-finite float, duplicate JSON keys, ...) stops the walk at
 * that leaf, and Python's exact path decides and names the divergence.
 *
 * Two properties, both tested against the Python path (tests/test_native_walk.py):
 * - faithful: bytes it produces parse to the very value the Python path reads from the
 *   row, so bytes that hash to the sealed leaf prove that the row is unchanged;
 * - exact: they are the Python path's bytes, not merely equivalent ones. verify would
 *   survive a difference (the hash would not match and Python would decide), but the
 *   sealer stores the hashes hash_rows() computes, and a leaf only this file could
 *   write could not be proven or verified in Python (seal.py checks one row a batch).
 *
 * Python API (used by ledger/integrity/_native.py only):
 *
 *   same_sqlite(path_of__sqlite3_module) -> bool
 *       True when the _sqlite3 module uses this very SQLite library (one copy of
 *       SQLite in the process; two copies would break each other's POSIX locks).
 *   Walker(path, sql, types, threads)
 *       sql: SELECT leaf_index, entry_type, leaf_hash, <row columns...> FROM log_entries
 *            LEFT JOIN <tables> ... WHERE leaf_index >= ?1 AND leaf_index < ?2
 *            ORDER BY leaf_index
 *       types: ((name, id_column, prefix, middle, suffix, ((key, kind, column), ...)), ...)
 *   Walker.walk(size, hashes, stop) -> (size, hashes, counts, problem)
 *       Confirms leaves size, size+1, ... < stop; returns the extended compact range,
 *       the number of confirmed leaves per type, and the first leaf index it could not
 *       confirm (None when it reached stop).
 *   Walker.close()
 *
 * Column kinds (the leaf form of each column; see ledger/integrity/leaves.py):
 *   'v'  the driver's value: INTEGER, REAL, TEXT or NULL
 *   'f'  a float column: REAL or NULL
 *   'S'  a seed: INTEGER holding seed - 2^63, written as the unsigned decimal string
 *   't'  a UTC time in SQLAlchemy's SQLite form "YYYY-MM-DD HH:MM:SS.ffffff"
 *   'j'  a JSON column: its text, canonicalized (keys sorted by UTF-16 code units)
 *   'b'  a binary column: standard padded base64
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>

#include <dlfcn.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_SIZE 32
#define MAX_THREADS 16
#define MAX_JSON_DEPTH 256
#define MAX_INT_DIGITS 640   /* Python refuses int strings above 4300 digits; stay well below */
#define MAX_FLOAT_TOKEN 400
#define MAX_WALK (1LL << 24) /* leaves per walk() call: bounds its hash buffer (512 MiB) */

/* -- growable byte buffer ------------------------------------------------------------ */

typedef struct {
    unsigned char *p;
    size_t len, cap;
    int failed; /* out of memory */
} Buf;

static int buf_grow(Buf *b, size_t extra);

static inline int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 1;
    return buf_grow(b, extra);
}

static int buf_grow(Buf *b, size_t extra) {
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

static inline void buf_put(Buf *b, const void *data, size_t n) {
    if (n == 0 || !buf_reserve(b, n)) return;
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static inline void buf_byte(Buf *b, unsigned char c) {
    if (!buf_reserve(b, 1)) return;
    b->p[b->len++] = c;
}

static void buf_free(Buf *b) {
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
static int utf16_cmp(const unsigned char *a, size_t an, const unsigned char *b, size_t bn) {
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

/* Number conversions (snprintf, strtod) run in the "C" locale on every thread that
 * renders, whatever LC_NUMERIC the process has: uselocale() is per thread. */
static locale_t C_LOCALE;

typedef struct {
    locale_t previous;
} LocaleScope;

static LocaleScope locale_enter(void) {
    LocaleScope scope = {C_LOCALE ? uselocale(C_LOCALE) : (locale_t)0};
    return scope;
}

static void locale_leave(LocaleScope scope) {
    if (C_LOCALE && scope.previous) uselocale(scope.previous);
}

/* Bytes a string scan must stop at: controls, '"', '\\' and the start of UTF-8 sequences. */
static unsigned char SPECIAL[256];

static void special_init(void) {
    for (int c = 0; c < 256; c++) SPECIAL[c] = (c < 0x20 || c == '"' || c == '\\' || c >= 0x80);
}

/* The length of the valid UTF-8 sequence at s, or 0: strict UTF-8 as Python's decoder
 * reads TEXT (no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_sequence(const unsigned char *s, size_t n) {
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
static int put_text(Buf *b, const unsigned char *s, size_t n, int trusted) {
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

/* -- numbers ---------------------------------------------------------------------------- */

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static void put_u64(Buf *b, uint64_t v) {
    char tmp[24];
    char *end = tmp + sizeof tmp, *p = end;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_put(b, p, (size_t)(end - p));
}

static void put_i64(Buf *b, long long v) {
    if (v < 0) {
        buf_byte(b, '-');
        put_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        put_u64(b, (uint64_t)v);
    }
}

/* Moves "[-]D.DDDe[+-]XX" (as "%.*e" writes it) one unit in its last digit, away from
 * zero for step 1 and towards it for -1, keeping the digit count. 0 if it cannot. */
static int decimal_step(char *t, size_t size, int step) {
    char *e = strchr(t, 'e');
    if (!e) return 0;
    char *first = t[0] == '-' ? t + 1 : t;
    int exponent = atoi(e + 1);
    char *d = e - 1;
    for (;;) {
        if (d < first) break;
        if (*d == '.') {
            d--;
            continue;
        }
        if (step > 0) {
            if (*d < '9') {
                (*d)++;
                break;
            }
            *d = '0';
        } else {
            if (*d > '0') {
                (*d)--;
                break;
            }
            *d = '9';
        }
        d--;
    }
    if (d < first) {
        if (step < 0) return 0; /* was zero */
        /* 9.99 + 1 unit = 10.00: write 1.00 and raise the exponent */
        *first = '1';
        exponent++;
    } else if (*first == '0') {
        /* 1.00 - 1 unit = 0.99: write 9.99 (same length) and lower the exponent */
        char *q = first;
        while (q < e) {
            if (*q != '.') *q = '9';
            q++;
        }
        exponent--;
    }
    if (exponent < -999 || exponent > 999) return 0;
    snprintf(e, size - (size_t)(e - t), "e%c%02d", exponent < 0 ? '-' : '+', abs(exponent));
    return 1;
}

/* A float as canonical_json writes it: integral values below 2^53 as integers, others
 * as Python's repr (shortest round-trip digits; exponent form when the decimal point
 * position is <= -4 or > 16). The digits come from the first of "%.14e", "%.15e",
 * "%.16e" that strtod reads back as the same double: when 15 digits do, they are the
 * shortest (DBL_DIG: no two 15-digit decimals read as one double), else the nearest 16
 * or 17 (subnormals, with fewer bits, try every length from one). At each length the
 * nearest decimal, or failing it the neighbour on the wide side of a lopsided interval
 * (next to a power of two), is the closest one that reads back, ties going to even as
 * in printf: the shortest-then-closest digits of David Gay's dtoa mode 0, which repr
 * uses. 0 for values JSON cannot hold. */
static int put_float(Buf *b, double x) {
    if (!isfinite(x)) return 0;
    if (x == floor(x) && fabs(x) < 9007199254740992.0) {
        put_i64(b, (long long)x);
        return 1;
    }
    char tmp[48];
    int prec, found = 0;
    /* Subnormals carry fewer than 53 bits, so fewer digits may do: search from one. */
    for (prec = fabs(x) < DBL_MIN ? 1 : 15; prec <= 17 && !found; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
        if (strtod(tmp, NULL) == x) {
            found = 1;
            break;
        }
        /* Next to a power of two the rounding interval is lopsided: the nearest decimal
         * of this length can miss while its neighbour on the wide side still reads back
         * (repr picks that one). At most one neighbour can, as the nearest did not. */
        for (int step = -1; step <= 1 && !found; step += 2) {
            char near[48];
            memcpy(near, tmp, sizeof near);
            if (decimal_step(near, sizeof near, step) && strtod(near, NULL) == x) {
                memcpy(tmp, near, sizeof tmp);
                found = 1;
            }
        }
    }
    if (!found) return 0;
    /* tmp: [-]D[.DDD]e[+-]XX */
    const char *p = tmp;
    int negative = 0;
    if (*p == '-') {
        negative = 1;
        p++;
    }
    char digits[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++) {
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
        else if (*p != '.') return 0; /* a locale's decimal comma: let Python decide */
    }
    if (*p != 'e') return 0;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    int decpt = exp10 + 1; /* value = 0.DIGITS x 10^decpt */
    char out[64];
    int o = 0;
    if (negative) out[o++] = '-';
    if (decpt <= -4 || decpt > 16) {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int k = 1; k < nd; k++) out[o++] = digits[k];
        }
        o += snprintf(out + o, sizeof out - (size_t)o, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    } else if (decpt <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int k = 0; k < -decpt; k++) out[o++] = '0';
        for (int k = 0; k < nd; k++) out[o++] = digits[k];
    } else if (decpt >= nd) {
        for (int k = 0; k < nd; k++) out[o++] = digits[k];
        for (int k = nd; k < decpt; k++) out[o++] = '0';
        out[o++] = '.';
        out[o++] = '0';
    } else {
        for (int k = 0; k < decpt; k++) out[o++] = digits[k];
        out[o++] = '.';
        for (int k = decpt; k < nd; k++) out[o++] = digits[k];
    }
    buf_put(b, out, (size_t)o);
    return 1;
}

/* Whether a JSON number token with a fraction and no exponent is already what
 * put_float writes for its value: at most 15 significant digits (then they are the
 * shortest, DBL_DIG), no trailing zero, and no more than three zeros after "0."
 * (repr switches to an exponent there). Saves a strtod and a printf per float. */
static int float_token_is_canonical(const unsigned char *t, size_t n) {
    size_t i = 0;
    if (i < n && t[i] == '-') i++;
    size_t int_start = i;
    while (i < n && is_digit(t[i])) i++;
    size_t int_digits = i - int_start;
    if (i >= n || t[i] != '.') return 0;
    i++;
    size_t frac_start = i;
    while (i < n && is_digit(t[i])) i++;
    if (i != n || i == frac_start || t[n - 1] == '0') return 0;
    size_t frac_digits = n - frac_start, significant;
    if (int_digits == 1 && t[int_start] == '0') {
        size_t zeros = 0;
        while (zeros < frac_digits && t[frac_start + zeros] == '0') zeros++;
        if (zeros > 3) return 0;
        significant = frac_digits - zeros;
    } else {
        significant = int_digits + frac_digits;
    }
    return significant <= 15;
}

/* A REAL column value, through a small per-worker cache: columns such as CFG scales
 * and costs repeat a few values over millions of rows. */
typedef struct {
    uint64_t bits;
    unsigned char len; /* 0: empty */
    char text[40];
} FloatEntry;

#define FLOAT_CACHE 64

static int put_float_cached(FloatEntry *cache, Buf *b, double x) {
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    FloatEntry *e = &cache[(bits ^ (bits >> 29) ^ (bits >> 47)) % FLOAT_CACHE];
    if (e->len && e->bits == bits) {
        buf_put(b, e->text, e->len);
        return 1;
    }
    size_t start = b->len;
    if (!put_float(b, x)) return 0;
    size_t len = b->len - start;
    if (!b->failed && len < sizeof e->text) {
        e->bits = bits;
        e->len = (unsigned char)len;
        memcpy(e->text, b->p + start, len);
    }
    return 1;
}

/* -- JSON columns: parse, then write canonically ----------------------------------------- */
/*
 * The parser accepts exactly what Python's json.loads accepts and the Python path can
 * encode; anything else (NaN, lone surrogates, duplicate keys, very deep nesting, huge
 * integers) fails, and the leaf goes to the Python path. While parsing it notes whether
 * the text is already canonical; then the text is copied as it is.
 */

enum { J_NULL, J_TRUE, J_FALSE, J_INT, J_FLOAT, J_STR, J_ARR, J_OBJ };

typedef struct {
    unsigned char type;
    size_t end;      /* index of the node after this subtree */
    size_t count;    /* members (objects) or items (arrays) */
    size_t off, len; /* J_STR: decoded bytes in Json.strings; J_INT, J_FLOAT: the token */
    int verbatim;    /* J_FLOAT: the token is canonical as it is */
    double value;    /* J_FLOAT, unless verbatim */
} Node;

typedef struct {
    const unsigned char *s;
    size_t n, i;
    int canonical;
    int depth;
    Node *nodes;
    size_t nn, cap;
    Buf strings;
    Buf scratch;
} Json;

typedef struct {
    size_t key, value;
} Member;

static int json_node(Json *j, unsigned char type, size_t *index) {
    if (j->nn == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 256;
        Node *nodes = realloc(j->nodes, cap * sizeof(Node));
        if (!nodes) return 0;
        j->nodes = nodes;
        j->cap = cap;
    }
    *index = j->nn++;
    Node *node = &j->nodes[*index];
    memset(node, 0, sizeof *node);
    node->type = type;
    return 1;
}

static inline void json_ws(Json *j) {
    while (j->i < j->n) {
        unsigned char c = j->s[j->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
        j->canonical = 0;
        j->i++;
    }
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int json_u16(Json *j, uint32_t *unit, int *lowercase) {
    /* at the 'u' of \uXXXX */
    if (j->i + 5 > j->n) return 0;
    uint32_t v = 0;
    *lowercase = 1;
    for (int k = 1; k <= 4; k++) {
        unsigned char c = j->s[j->i + k];
        int h = hexval(c);
        if (h < 0) return 0;
        if (c >= 'A' && c <= 'F') *lowercase = 0;
        v = (v << 4) | (uint32_t)h;
    }
    j->i += 5;
    *unit = v;
    return 1;
}

static void put_utf8(Buf *b, uint32_t cp) {
    unsigned char t[4];
    size_t n;
    if (cp < 0x80) {
        t[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        t[0] = (unsigned char)(0xC0 | (cp >> 6));
        t[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        t[0] = (unsigned char)(0xE0 | (cp >> 12));
        t[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        t[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        t[0] = (unsigned char)(0xF0 | (cp >> 18));
        t[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        t[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        t[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_put(b, t, n);
}

/* A string token (at its opening quote), decoded into j->strings. Outside strings only
 * ASCII is valid JSON, so checking UTF-8 here checks the whole text. */
static int json_string(Json *j, size_t *index) {
    if (!json_node(j, J_STR, index)) return 0;
    Buf *out = &j->strings;
    size_t start = out->len;
    j->i++; /* opening quote */
    size_t run = j->i;
    for (;;) {
        if (j->i >= j->n) return 0;
        unsigned char c = j->s[j->i];
        if (!SPECIAL[c]) {
            j->i++;
            continue;
        }
        if (c == '"') break;
        if (c < 0x20) return 0; /* json.loads is strict: raw controls are errors */
        if (c >= 0x80) {
            size_t k = utf8_sequence(j->s + j->i, j->n - j->i);
            if (!k) return 0;
            j->i += k;
            continue;
        }
        buf_put(out, j->s + run, j->i - run);
        if (j->i + 1 >= j->n) return 0;
        unsigned char e = j->s[j->i + 1];
        j->i += 1;
        switch (e) {
        case '"': buf_byte(out, '"'); j->i++; break;
        case '\\': buf_byte(out, '\\'); j->i++; break;
        case '/': buf_byte(out, '/'); j->i++; j->canonical = 0; break;
        case 'b': buf_byte(out, '\b'); j->i++; break;
        case 'f': buf_byte(out, '\f'); j->i++; break;
        case 'n': buf_byte(out, '\n'); j->i++; break;
        case 'r': buf_byte(out, '\r'); j->i++; break;
        case 't': buf_byte(out, '\t'); j->i++; break;
        case 'u': {
            uint32_t unit;
            int lower;
            if (!json_u16(j, &unit, &lower)) return 0;
            uint32_t cp = unit;
            if (unit >= 0xD800 && unit <= 0xDBFF) {
                /* a high surrogate must pair with a low one: Python keeps a lone
                 * surrogate in the str, which cannot be encoded as UTF-8 */
                uint32_t low;
                if (j->i + 1 >= j->n || j->s[j->i] != '\\' || j->s[j->i + 1] != 'u') return 0;
                j->i += 1;
                if (!json_u16(j, &low, &lower)) return 0;
                if (low < 0xDC00 || low > 0xDFFF) return 0;
                cp = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                j->canonical = 0;
            } else if (unit >= 0xDC00 && unit <= 0xDFFF) {
                return 0;
            } else if (!(unit < 0x20 && unit != '\b' && unit != '\f' && unit != '\n' && unit != '\r' &&
                         unit != '\t' && lower)) {
                j->canonical = 0; /* canonical text escapes only other controls, as \u00xx */
            }
            put_utf8(out, cp);
            break;
        }
        default:
            return 0;
        }
        run = j->i;
    }
    buf_put(out, j->s + run, j->i - run);
    j->i++; /* closing quote */
    if (out->failed) return 0;
    j->nodes[*index].off = start;
    j->nodes[*index].len = out->len - start;
    j->nodes[*index].end = j->nn;
    return 1;
}

/* A number token, with Python's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)? */
static int json_number(Json *j, size_t *index) {
    size_t start = j->i;
    const unsigned char *s = j->s;
    size_t i = j->i;
    if (i < j->n && s[i] == '-') i++;
    if (i >= j->n || !is_digit(s[i])) return 0;
    if (s[i] == '0') i++;
    else
        while (i < j->n && is_digit(s[i])) i++;
    int is_float = 0;
    if (i < j->n && s[i] == '.' && i + 1 < j->n && is_digit(s[i + 1])) {
        is_float = 1;
        i++;
        while (i < j->n && is_digit(s[i])) i++;
    }
    if (i < j->n && (s[i] == 'e' || s[i] == 'E')) {
        size_t k = i + 1;
        if (k < j->n && (s[k] == '+' || s[k] == '-')) k++;
        if (k < j->n && is_digit(s[k])) {
            is_float = 1;
            i = k;
            while (i < j->n && is_digit(s[i])) i++;
        }
    }
    size_t len = i - start;
    j->i = i;
    if (!is_float) {
        if (len > MAX_INT_DIGITS) return 0;
        if (!json_node(j, J_INT, index)) return 0;
        j->nodes[*index].off = start;
        j->nodes[*index].len = len;
        j->nodes[*index].end = j->nn;
        if (len == 2 && s[start] == '-' && s[start + 1] == '0') j->canonical = 0; /* -0 is 0 */
        return 1;
    }
    if (!json_node(j, J_FLOAT, index)) return 0;
    Node *node = &j->nodes[*index];
    node->off = start;
    node->len = len;
    node->end = j->nn;
    if (float_token_is_canonical(s + start, len)) {
        node->verbatim = 1;
        return 1;
    }
    if (len > MAX_FLOAT_TOKEN) return 0;
    char token[MAX_FLOAT_TOKEN + 1];
    memcpy(token, s + start, len);
    token[len] = 0;
    char *end;
    double value = strtod(token, &end); /* correctly rounded, as Python's float() */
    if (end != token + len || !isfinite(value)) return 0;
    node->value = value;
    if (j->canonical) {
        Buf *scratch = &j->scratch;
        scratch->len = 0;
        if (!put_float(scratch, value)) return 0;
        if (scratch->len != len || memcmp(scratch->p, token, len) != 0) j->canonical = 0;
    }
    return 1;
}

static int json_literal(Json *j, const char *word, unsigned char type, size_t *index) {
    size_t n = strlen(word);
    if (j->i + n > j->n || memcmp(j->s + j->i, word, n) != 0) return 0;
    j->i += n;
    if (!json_node(j, type, index)) return 0;
    j->nodes[*index].end = j->nn;
    return 1;
}

static int json_value(Json *j, size_t *index);

static int json_container(Json *j, size_t *index, int object) {
    if (++j->depth > MAX_JSON_DEPTH) return 0;
    if (!json_node(j, object ? J_OBJ : J_ARR, index)) return 0;
    size_t self = *index, count = 0, previous_key = (size_t)-1;
    unsigned char close = object ? '}' : ']';
    j->i++;
    json_ws(j);
    if (j->i < j->n && j->s[j->i] == close) {
        j->i++;
    } else {
        for (;;) {
            size_t child;
            if (object) {
                if (j->i >= j->n || j->s[j->i] != '"') return 0;
                if (!json_string(j, &child)) return 0;
                if (j->canonical && previous_key != (size_t)-1) {
                    Node *a = &j->nodes[previous_key], *b = &j->nodes[child];
                    if (utf16_cmp(j->strings.p + a->off, a->len, j->strings.p + b->off, b->len) >= 0)
                        j->canonical = 0; /* out of order, or a duplicate (found when sorting) */
                }
                previous_key = child;
                json_ws(j);
                if (j->i >= j->n || j->s[j->i] != ':') return 0;
                j->i++;
                json_ws(j);
            }
            if (!json_value(j, &child)) return 0;
            count++;
            json_ws(j);
            if (j->i >= j->n) return 0;
            if (j->s[j->i] == ',') {
                j->i++;
                json_ws(j);
                continue;
            }
            if (j->s[j->i] == close) {
                j->i++;
                break;
            }
            return 0;
        }
    }
    j->nodes[self].count = count;
    j->nodes[self].end = j->nn;
    j->depth--;
    return 1;
}

static int json_value(Json *j, size_t *index) {
    if (j->i >= j->n) return 0;
    switch (j->s[j->i]) {
    case '{': return json_container(j, index, 1);
    case '[': return json_container(j, index, 0);
    case '"': return json_string(j, index);
    case 't': return json_literal(j, "true", J_TRUE, index);
    case 'f': return json_literal(j, "false", J_FALSE, index);
    case 'n': return json_literal(j, "null", J_NULL, index);
    default: return json_number(j, index);
    }
}

static int member_cmp(const Json *j, const Member *a, const Member *b) {
    const Node *x = &j->nodes[a->key], *y = &j->nodes[b->key];
    return utf16_cmp(j->strings.p + x->off, x->len, j->strings.p + y->off, y->len);
}

/* Sorts members by key: insertion sort for the usual handful, a bottom-up merge sort
 * (O(k log k), stable) for large objects. 0 when out of memory. */
static int sort_members(const Json *j, Member *members, size_t count) {
    if (count <= 32) {
        for (size_t k = 1; k < count; k++) {
            Member m = members[k];
            size_t h = k;
            while (h > 0 && member_cmp(j, &members[h - 1], &m) > 0) {
                members[h] = members[h - 1];
                h--;
            }
            members[h] = m;
        }
        return 1;
    }
    Member *tmp = malloc(count * sizeof(Member));
    if (!tmp) return 0;
    for (size_t width = 1; width < count; width *= 2) {
        for (size_t lo = 0; lo < count; lo += 2 * width) {
            size_t mid = lo + width < count ? lo + width : count;
            size_t hi = lo + 2 * width < count ? lo + 2 * width : count;
            size_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi)
                tmp[o++] = member_cmp(j, &members[b], &members[a]) < 0 ? members[b++] : members[a++];
            while (a < mid) tmp[o++] = members[a++];
            while (b < hi) tmp[o++] = members[b++];
        }
        memcpy(members, tmp, count * sizeof(Member));
    }
    free(tmp);
    return 1;
}

static int json_write(Json *j, size_t index, Buf *out);

static int json_write_object(Json *j, size_t index, Buf *out) {
    Node *node = &j->nodes[index];
    size_t count = node->count;
    Member *members = count ? malloc(count * sizeof(Member)) : NULL;
    if (count && !members) return 0;
    size_t at = index + 1;
    for (size_t k = 0; k < count; k++) {
        members[k].key = at;
        members[k].value = at + 1;
        at = j->nodes[at + 1].end;
    }
    if (!sort_members(j, members, count)) {
        free(members);
        return 0;
    }
    int ok = 1;
    buf_byte(out, '{');
    for (size_t k = 0; k < count && ok; k++) {
        if (k > 0) {
            if (member_cmp(j, &members[k - 1], &members[k]) == 0) {
                ok = 0; /* duplicate key: json.loads keeps the last; leave it to Python */
                break;
            }
            buf_byte(out, ',');
        }
        Node *key = &j->nodes[members[k].key];
        put_text(out, j->strings.p + key->off, key->len, 1);
        buf_byte(out, ':');
        ok = json_write(j, members[k].value, out);
    }
    buf_byte(out, '}');
    free(members);
    return ok;
}

static int json_write(Json *j, size_t index, Buf *out) {
    Node *node = &j->nodes[index];
    switch (node->type) {
    case J_NULL: buf_put(out, "null", 4); return 1;
    case J_TRUE: buf_put(out, "true", 4); return 1;
    case J_FALSE: buf_put(out, "false", 5); return 1;
    case J_INT:
        if (node->len == 2 && j->s[node->off] == '-' && j->s[node->off + 1] == '0') buf_byte(out, '0');
        else buf_put(out, j->s + node->off, node->len);
        return 1;
    case J_FLOAT:
        if (node->verbatim) {
            buf_put(out, j->s + node->off, node->len);
            return 1;
        }
        return put_float(out, node->value);
    case J_STR: return put_text(out, j->strings.p + node->off, node->len, 1);
    case J_ARR: {
        buf_byte(out, '[');
        size_t at = index + 1;
        for (size_t k = 0; k < node->count; k++) {
            if (k > 0) buf_byte(out, ',');
            if (!json_write(j, at, out)) return 0;
            at = j->nodes[at].end;
        }
        buf_byte(out, ']');
        return 1;
    }
    case J_OBJ: return json_write_object(j, index, out);
    }
    return 0;
}

/* Where the string whose text starts at s[k] ends (its closing quote), when it is
 * valid and canonical: strict UTF-8, no raw controls, and only the escapes canonical
 * JSON writes (none at all unless escapes is set); 0 otherwise. */
static size_t canonical_string_end(const unsigned char *s, size_t n, size_t k, int escapes) {
    for (;;) {
        if (k >= n) return 0;
        unsigned char d = s[k];
        if (!SPECIAL[d]) {
            k++;
            continue;
        }
        if (d == '"') return k;
        if (d < 0x20) return 0; /* raw controls are invalid */
        if (d >= 0x80) {
            size_t len = utf8_sequence(s + k, n - k);
            if (!len) return 0;
            k += len;
            continue;
        }
        /* a backslash */
        if (!escapes || k + 1 >= n) return 0;
        unsigned char e = s[k + 1];
        if (e == '"' || e == '\\' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
            k += 2;
            continue;
        }
        if (e != 'u' || k + 6 > n || s[k + 2] != '0' || s[k + 3] != '0') return 0;
        int hi = hexval(s[k + 4]), lo = hexval(s[k + 5]);
        if (hi < 0 || hi > 1 || lo < 0 || (s[k + 5] >= 'A' && s[k + 5] <= 'F')) return 0;
        int unit = hi * 16 + lo;
        if (unit == '\b' || unit == '\f' || unit == '\n' || unit == '\r' || unit == '\t') return 0;
        k += 6;
    }
}

/* Whether s[0:n] is valid JSON already in canonical form, checked in one pass that
 * builds nothing: the common case for JSON columns written by seedledger itself. A 0
 * means only "not proven here": put_json_column then parses and decides. */
static int json_is_canonical(const unsigned char *s, size_t n) {
    struct {
        unsigned char object;
        const unsigned char *key; /* the previous key of an object, raw (no escapes) */
        size_t key_len;
    } stack[MAX_JSON_DEPTH];
    int depth = 0;
    size_t i = 0;
    /* expecting: a value (at the start, after ':' or ',' in an array, or after '[') */
    for (;;) {
        if (i >= n) return 0;
        unsigned char c = s[i];
        /* -- a value -- */
        if (c == '{' || c == '[') {
            if (depth == MAX_JSON_DEPTH) return 0;
            stack[depth].object = c == '{';
            stack[depth].key = NULL;
            depth++;
            i++;
            if (i < n && s[i] == (c == '{' ? '}' : ']')) {
                depth--;
                i++;
                goto after_value;
            }
            if (c == '[') continue;
            goto key;
        }
        if (c == '"') {
            size_t end = canonical_string_end(s, n, i + 1, 1);
            if (!end) return 0;
            i = end + 1;
            goto after_value;
        }
        if (c == 't' || c == 'f' || c == 'n') {
            const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
            size_t len = strlen(word);
            if (i + len > n || memcmp(s + i, word, len) != 0) return 0;
            i += len;
            goto after_value;
        }
        {
            size_t start = i, k = i;
            if (k < n && s[k] == '-') k++;
            if (k >= n || !is_digit(s[k])) return 0;
            if (s[k] == '0') k++;
            else
                while (k < n && is_digit(s[k])) k++;
            int is_float = 0;
            if (k < n && s[k] == '.') {
                is_float = 1;
                k++;
                while (k < n && is_digit(s[k])) k++;
            }
            if (k < n && (s[k] == 'e' || s[k] == 'E')) return 0; /* canonical floats here have none */
            if (is_float) {
                if (!float_token_is_canonical(s + start, k - start)) return 0;
            } else {
                if (k - start > MAX_INT_DIGITS) return 0;
                if (k - start == 2 && s[start] == '-' && s[start + 1] == '0') return 0;
            }
            i = k;
        }
    after_value:
        if (depth == 0) return i == n;
        if (i >= n) return 0;
        if (s[i] == ',') {
            i++;
            if (stack[depth - 1].object) goto key;
            continue;
        }
        if (s[i] == (stack[depth - 1].object ? '}' : ']')) {
            depth--;
            i++;
            goto after_value;
        }
        return 0;
    key: {
        /* an object key with no escapes, greater than the one before it */
        if (i >= n || s[i] != '"') return 0;
        size_t k = canonical_string_end(s, n, i + 1, 0);
        if (!k) return 0;
        const unsigned char *key = s + i + 1;
        size_t key_len = k - i - 1;
        if (stack[depth - 1].key && utf16_cmp(stack[depth - 1].key, stack[depth - 1].key_len, key, key_len) >= 0)
            return 0;
        stack[depth - 1].key = key;
        stack[depth - 1].key_len = key_len;
        i = k + 1;
        if (i >= n || s[i] != ':') return 0;
        i++;
        continue;
    }
    }
}

/* Writes the canonical form of the JSON text s[0:n]; 0 when the Python path must decide. */
static int put_json_column(Json *j, Buf *out, const unsigned char *s, size_t n) {
    if (json_is_canonical(s, n)) {
        buf_put(out, s, n);
        return !out->failed;
    }
    j->s = s;
    j->n = n;
    j->i = 0;
    j->canonical = 1;
    j->depth = 0;
    j->nn = 0;
    j->strings.len = 0;
    j->strings.failed = 0;
    j->scratch.failed = 0;
    size_t root;
    json_ws(j);
    if (!json_value(j, &root)) return 0;
    json_ws(j);
    if (j->i != j->n || j->strings.failed || j->scratch.failed) return 0;
    if (j->canonical) {
        /* Still sorted, but a duplicate key hides as "not strictly increasing", which
         * clears the flag: so a canonical text has none. */
        buf_put(out, s, n);
        return !out->failed;
    }
    return json_write(j, root, out) && !out->failed;
}

/* -- other column forms ------------------------------------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void put_base64(Buf *b, const unsigned char *s, size_t n) {
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

/* -- the walk ---------------------------------------------------------------------------------- */

typedef struct {
    const unsigned char *key; /* '"name":' with a leading ',' after the first column */
    size_t key_len;
    char kind;
    int column;
} ColumnSpec;

typedef struct {
    char *name;
    size_t name_len;
    int id_column;
    unsigned char *prefix, *middle, *suffix; /* leaf = prefix INDEX middle COLUMNS suffix */
    size_t prefix_len, middle_len, suffix_len;
    ColumnSpec *columns;
    int ncolumns;
    PyObject *keep; /* the Python tuple that owns the key bytes */
} TypeSpec;

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *stmt;
    EVP_MD_CTX *md;
    EVP_MD *sha256; /* fetched once: OpenSSL 3 looks a digest up on every init otherwise */
    Buf leaf;
    Json json;
    FloatEntry floats[FLOAT_CACHE];
    /* per walk */
    long long lo, hi;
    unsigned char *out; /* HASH_SIZE per leaf from lo */
    long long confirmed;
    long long problem; /* -1: none */
    long long *counts;
    int failed; /* SQLite or OpenSSL error: the Python path decides */
} Worker;

typedef struct {
    PyObject_HEAD
    Worker workers[MAX_THREADS];
    int nworkers;
    TypeSpec *types;
    int ntypes;
    int busy;
    int closed;
} WalkerObject;

static int put_column(Worker *w, const ColumnSpec *c) {
    sqlite3_stmt *st = w->stmt;
    Buf *b = &w->leaf;
    int type = sqlite3_column_type(st, c->column);
    if (type == SQLITE_NULL) {
        buf_put(b, "null", 4);
        return 1;
    }
    switch (c->kind) {
    case 'v':
        if (type == SQLITE_INTEGER) {
            put_i64(b, (long long)sqlite3_column_int64(st, c->column));
            return 1;
        }
        if (type == SQLITE_FLOAT) return put_float_cached(w->floats, b, sqlite3_column_double(st, c->column));
        if (type == SQLITE_TEXT) {
            const unsigned char *s = sqlite3_column_text(st, c->column);
            size_t n = (size_t)sqlite3_column_bytes(st, c->column);
            return s && put_text(b, s, n, 0);
        }
        return 0;
    case 'f':
        if (type != SQLITE_FLOAT) return 0;
        return put_float_cached(w->floats, b, sqlite3_column_double(st, c->column));
    case 'S': {
        if (type != SQLITE_INTEGER) return 0;
        /* stored = seed - 2^63, so seed = stored + 2^63: flip the top bit */
        uint64_t seed = (uint64_t)sqlite3_column_int64(st, c->column) ^ 0x8000000000000000ULL;
        buf_byte(b, '"');
        put_u64(b, seed);
        buf_byte(b, '"');
        return 1;
    }
    case 't': {
        if (type != SQLITE_TEXT) return 0;
        const unsigned char *s = sqlite3_column_text(st, c->column);
        size_t n = (size_t)sqlite3_column_bytes(st, c->column);
        if (!s || n != 26 || s[10] != ' ' || s[19] != '.') return 0;
        unsigned char t[27];
        for (size_t k = 0; k < 26; k++) {
            if (s[k] >= 0x80) return 0; /* Python counts characters, not bytes */
            t[k] = s[k];
        }
        t[10] = 'T';
        t[26] = 'Z';
        return put_text(b, t, 27, 1);
    }
    case 'j': {
        if (type != SQLITE_TEXT) return 0;
        const unsigned char *s = sqlite3_column_text(st, c->column);
        size_t n = (size_t)sqlite3_column_bytes(st, c->column);
        if (!s) return 0;
        return put_json_column(&w->json, b, s, n);
    }
    case 'b': {
        if (type != SQLITE_BLOB) return 0;
        const unsigned char *s = sqlite3_column_blob(st, c->column);
        size_t n = (size_t)sqlite3_column_bytes(st, c->column);
        put_base64(b, s ? s : (const unsigned char *)"", n);
        return 1;
    }
    }
    return 0;
}

/* The leaf hash of the current row; 0 when the Python path must decide. */
static int leaf_hash(Worker *w, const TypeSpec *t, long long index, unsigned char *digest) {
    Buf *b = &w->leaf;
    b->len = 0;
    b->failed = 0; /* one row too large to hold must not refuse every row after it */
    buf_byte(b, 0x00); /* RFC 6962 leaf prefix */
    buf_put(b, t->prefix, t->prefix_len);
    put_i64(b, index);
    buf_put(b, t->middle, t->middle_len);
    for (int k = 0; k < t->ncolumns; k++) {
        buf_put(b, t->columns[k].key, t->columns[k].key_len);
        if (!put_column(w, &t->columns[k])) return 0;
    }
    buf_put(b, t->suffix, t->suffix_len);
    if (b->failed) return 0;
    unsigned int size = 0;
    if (EVP_DigestInit_ex(w->md, w->sha256, NULL) != 1 || EVP_DigestUpdate(w->md, b->p, b->len) != 1 ||
        EVP_DigestFinal_ex(w->md, digest, &size) != 1 || size != HASH_SIZE) {
        w->failed = 1;
        return 0;
    }
    return 1;
}

static void *worker_run(void *arg);
static int worker_open(Worker *w, const char *path, const char *sql, char *message, size_t size);

typedef struct {
    Worker *worker;
    const WalkerObject *walker;
} Job;

static void walk_range(Worker *w, const WalkerObject *walker) {
    sqlite3_stmt *st = w->stmt;
    long long expected = w->lo;
    w->confirmed = 0;
    w->problem = -1;
    if (w->lo >= w->hi) return;
    if (sqlite3_reset(st) != SQLITE_OK || sqlite3_bind_int64(st, 1, w->lo) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, w->hi) != SQLITE_OK) {
        w->problem = expected;
        return;
    }
    for (;;) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) {
            w->problem = expected;
            break;
        }
        if (sqlite3_column_type(st, 0) != SQLITE_INTEGER || (long long)sqlite3_column_int64(st, 0) != expected) {
            w->problem = expected; /* a gap: Python names the missing leaf */
            break;
        }
        const unsigned char *name = sqlite3_column_text(st, 1);
        size_t name_len = (size_t)sqlite3_column_bytes(st, 1);
        const TypeSpec *t = NULL;
        int ti;
        for (ti = 0; name && ti < walker->ntypes; ti++) {
            if (walker->types[ti].name_len == name_len && memcmp(walker->types[ti].name, name, name_len) == 0) {
                t = &walker->types[ti];
                break;
            }
        }
        unsigned char *digest = w->out + (size_t)(expected - w->lo) * HASH_SIZE;
        if (!t || sqlite3_column_type(st, t->id_column) == SQLITE_NULL || !leaf_hash(w, t, expected, digest)) {
            w->problem = expected;
            break;
        }
        if (sqlite3_column_type(st, 2) != SQLITE_BLOB || sqlite3_column_bytes(st, 2) != HASH_SIZE ||
            memcmp(sqlite3_column_blob(st, 2), digest, HASH_SIZE) != 0) {
            w->problem = expected;
            break;
        }
        w->counts[ti]++;
        w->confirmed++;
        expected++;
    }
    sqlite3_reset(st);
    if (w->problem < 0 && expected < w->hi) w->problem = expected; /* leaves missing at the end */
}

static void *worker_run(void *arg) {
    Job *job = arg;
    LocaleScope scope = locale_enter();
    walk_range(job->worker, job->walker);
    locale_leave(scope);
    return NULL;
}

/* -- the Python type -------------------------------------------------------------------------- */

static void worker_close(Worker *w) {
    if (w->stmt) sqlite3_finalize(w->stmt);
    if (w->db) sqlite3_close_v2(w->db);
    if (w->md) EVP_MD_CTX_free(w->md);
    if (w->sha256) EVP_MD_free(w->sha256);
    buf_free(&w->leaf);
    free(w->json.nodes);
    buf_free(&w->json.strings);
    buf_free(&w->json.scratch);
    memset(w, 0, sizeof *w);
}

static void walker_release(WalkerObject *self) {
    for (int k = 0; k < self->nworkers; k++) worker_close(&self->workers[k]);
    self->nworkers = 0;
    if (self->types) {
        for (int k = 0; k < self->ntypes; k++) {
            free(self->types[k].columns);
            Py_XDECREF(self->types[k].keep);
        }
        free(self->types);
        self->types = NULL;
    }
    self->ntypes = 0;
    self->closed = 1;
}

static void Walker_dealloc(WalkerObject *self) {
    walker_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int bytes_field(PyObject *item, unsigned char **data, size_t *len) {
    if (!PyBytes_Check(item)) {
        PyErr_SetString(PyExc_TypeError, "expected bytes");
        return 0;
    }
    *data = (unsigned char *)PyBytes_AS_STRING(item);
    *len = (size_t)PyBytes_GET_SIZE(item);
    return 1;
}

static int parse_type(PyObject *spec, TypeSpec *t) {
    /* (name, id_column, prefix, middle, suffix, ((key, kind, column), ...)) */
    PyObject *name, *prefix, *middle, *suffix, *columns;
    int id_column;
    if (!PyArg_ParseTuple(spec, "SiSSSO!", &name, &id_column, &prefix, &middle, &suffix, &PyTuple_Type, &columns))
        return 0;
    Py_INCREF(spec);
    t->keep = spec;
    unsigned char *n;
    if (!bytes_field(name, &n, &t->name_len)) return 0;
    t->name = (char *)n;
    t->id_column = id_column;
    if (!bytes_field(prefix, &t->prefix, &t->prefix_len) || !bytes_field(middle, &t->middle, &t->middle_len) ||
        !bytes_field(suffix, &t->suffix, &t->suffix_len))
        return 0;
    Py_ssize_t count = PyTuple_GET_SIZE(columns);
    t->columns = calloc((size_t)(count ? count : 1), sizeof(ColumnSpec));
    if (!t->columns) {
        PyErr_NoMemory();
        return 0;
    }
    t->ncolumns = (int)count;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *key;
        int kind, column;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(columns, k), "SCi", &key, &kind, &column)) return 0;
        unsigned char *data;
        if (!bytes_field(key, &data, &t->columns[k].key_len)) return 0;
        t->columns[k].key = data;
        if (kind <= 0 || kind >= 128 || !strchr("vfStjb", kind)) {
            PyErr_Format(PyExc_ValueError, "unknown column kind %c", kind);
            return 0;
        }
        t->columns[k].kind = (char)kind;
        t->columns[k].column = column;
    }
    return 1;
}

/* Every position a spec names must be a column of the statement. */
static int spec_fits(const TypeSpec *t, int ncolumns) {
    if (t->id_column < 0 || t->id_column >= ncolumns) return 0;
    for (int k = 0; k < t->ncolumns; k++)
        if (t->columns[k].column < 0 || t->columns[k].column >= ncolumns) return 0;
    return 1;
}

static int check_columns(WalkerObject *self, char *message, size_t size) {
    int ncolumns = sqlite3_column_count(self->workers[0].stmt);
    if (ncolumns < 3) {
        snprintf(message, size, "the walk statement needs leaf_index, entry_type and leaf_hash first");
        return 0;
    }
    for (int k = 0; k < self->ntypes; k++) {
        if (!spec_fits(&self->types[k], ncolumns)) {
            snprintf(message, size, "entry type %d names a column the statement does not have", k);
            return 0;
        }
    }
    return 1;
}

static int Walker_init(WalkerObject *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"path", "sql", "types", "threads", NULL};
    const char *path, *sql;
    PyObject *types;
    int threads;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ssO!i", names, &path, &sql, &PyTuple_Type, &types, &threads))
        return -1;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the walker is walking");
        return -1;
    }
    walker_release(self);
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    Py_ssize_t ntypes = PyTuple_GET_SIZE(types);
    self->types = calloc((size_t)(ntypes ? ntypes : 1), sizeof(TypeSpec));
    if (!self->types) {
        PyErr_NoMemory();
        return -1;
    }
    self->ntypes = (int)ntypes;
    for (Py_ssize_t k = 0; k < ntypes; k++) {
        if (!parse_type(PyTuple_GET_ITEM(types, k), &self->types[k])) {
            walker_release(self);
            return -1;
        }
    }
    int ok = 1;
    char message[512] = "";
    self->busy = 1; /* no walk() or close() while the connections open without the GIL */
    Py_BEGIN_ALLOW_THREADS;
    for (int k = 0; k < threads && ok; k++) {
        Worker *w = &self->workers[k];
        self->nworkers = k + 1;
        ok = worker_open(w, path, sql, message, sizeof message);
        /* One read transaction per connection, its snapshot taken now (a deferred BEGIN
         * alone would take it at the first step of the first walk): every later walk
         * reads that same state. Sealed leaves are append-only and verify never walks
         * past the head it read in its own, earlier snapshot. */
        if (ok && sqlite3_exec(w->db, "BEGIN; SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(message, sizeof message, "cannot begin a read: %s", sqlite3_errmsg(w->db));
            ok = 0;
        }
    }
    Py_END_ALLOW_THREADS;
    self->busy = 0;
    if (ok) ok = check_columns(self, message, sizeof message);
    if (!ok) {
        walker_release(self);
        PyErr_SetString(PyExc_RuntimeError, message);
        return -1;
    }
    self->closed = 0;
    return 0;
}

static void node_hash(EVP_MD_CTX *md, const EVP_MD *sha256, const unsigned char *left, const unsigned char *right, unsigned char *out,
                      int *failed) {
    static const unsigned char prefix = 0x01;
    unsigned int size = 0;
    if (EVP_DigestInit_ex(md, sha256, NULL) != 1 || EVP_DigestUpdate(md, &prefix, 1) != 1 ||
        EVP_DigestUpdate(md, left, HASH_SIZE) != 1 || EVP_DigestUpdate(md, right, HASH_SIZE) != 1 ||
        EVP_DigestFinal_ex(md, out, &size) != 1 || size != HASH_SIZE)
        *failed = 1;
}

static PyObject *Walker_walk(WalkerObject *self, PyObject *args) {
    long long size, stop;
    PyObject *hashes;
    if (!PyArg_ParseTuple(args, "LO!L", &size, &PyList_Type, &hashes, &stop)) return NULL;
    if (self->closed || self->nworkers < 1) {
        PyErr_SetString(PyExc_RuntimeError, "the walker is closed");
        return NULL;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the walker is already walking");
        return NULL;
    }
    if (size < 0 || stop < size) {
        PyErr_SetString(PyExc_ValueError, "need 0 <= size <= stop");
        return NULL;
    }
    if (stop - size > MAX_WALK) {
        PyErr_SetString(PyExc_ValueError, "walk at most 2^24 leaves a call");
        return NULL;
    }
    Py_ssize_t nh = PyList_GET_SIZE(hashes);
    if (nh != __builtin_popcountll((unsigned long long)size)) {
        PyErr_SetString(PyExc_ValueError, "the compact range does not match its size");
        return NULL;
    }
    /* the compact range: one hash per set bit of size, largest subtree first, plus room
     * for the carries of appending */
    unsigned char *range = malloc((size_t)(nh + 70) * HASH_SIZE);
    long long total = stop - size;
    unsigned char *out = malloc((size_t)(total ? total : 1) * HASH_SIZE);
    long long *counts = calloc((size_t)self->nworkers * (size_t)(self->ntypes ? self->ntypes : 1), sizeof(long long));
    if (!range || !out || !counts) {
        free(range);
        free(out);
        free(counts);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < nh; k++) {
        PyObject *h = PyList_GET_ITEM(hashes, k);
        if (!PyBytes_Check(h) || PyBytes_GET_SIZE(h) != HASH_SIZE) {
            free(range);
            free(out);
            free(counts);
            PyErr_SetString(PyExc_ValueError, "compact range hashes must be 32 bytes");
            return NULL;
        }
        memcpy(range + (size_t)k * HASH_SIZE, PyBytes_AS_STRING(h), HASH_SIZE);
    }
    self->busy = 1;
    long long confirmed = 0, problem = -1;
    Py_ssize_t depth = nh;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS;
    /* Small ranges are not worth a thread. */
    int nthreads = self->nworkers;
    if (total < 2048LL * nthreads) nthreads = 1;
    long long share = nthreads ? (total + nthreads - 1) / nthreads : total;
    pthread_t tids[MAX_THREADS];
    Job jobs[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int k = 0; k < nthreads; k++) {
        Worker *w = &self->workers[k];
        w->lo = size + share * k;
        w->hi = w->lo + share < stop ? w->lo + share : stop;
        if (w->lo > stop) w->lo = stop;
        w->out = out + (size_t)(w->lo - size) * HASH_SIZE;
        w->counts = counts + (size_t)k * (size_t)self->ntypes;
        w->failed = 0;
        jobs[k].worker = w;
        jobs[k].walker = self;
        if (k > 0 && pthread_create(&tids[k], NULL, worker_run, &jobs[k]) == 0) started[k] = 1;
    }
    worker_run(&jobs[0]);
    for (int k = 1; k < nthreads; k++) {
        if (started[k]) pthread_join(tids[k], NULL);
        else worker_run(&jobs[k]); /* no thread: walk it here */
    }
    /* Leaves are confirmed in order up to the first worker that stopped early. */
    for (int k = 0; k < nthreads; k++) {
        Worker *w = &self->workers[k];
        confirmed += w->confirmed;
        if (w->problem >= 0) {
            problem = w->problem;
            for (int later = k + 1; later < nthreads; later++)
                memset(self->workers[later].counts, 0, (size_t)self->ntypes * sizeof(long long));
            break;
        }
    }
    /* Extend the compact range with the confirmed leaves (merlke.CompactRange.append). */
    EVP_MD_CTX *md = self->workers[0].md;
    const EVP_MD *sha256 = self->workers[0].sha256;
    unsigned long long n = (unsigned long long)size;
    for (long long k = 0; k < confirmed && !failed; k++) {
        memcpy(range + (size_t)depth * HASH_SIZE, out + (size_t)k * HASH_SIZE, HASH_SIZE);
        depth++;
        unsigned long long s = n;
        while (s & 1) {
            node_hash(md, sha256, range + (size_t)(depth - 2) * HASH_SIZE, range + (size_t)(depth - 1) * HASH_SIZE,
                      range + (size_t)(depth - 2) * HASH_SIZE, &failed);
            depth--;
            s >>= 1;
        }
        n++;
    }
    Py_END_ALLOW_THREADS;
    self->busy = 0;
    PyObject *result = NULL, *list = NULL, *count_tuple = NULL;
    if (failed) {
        PyErr_SetString(PyExc_RuntimeError, "SHA-256 failed");
        goto done;
    }
    list = PyList_New(depth);
    count_tuple = PyTuple_New(self->ntypes);
    if (!list || !count_tuple) goto done;
    for (Py_ssize_t k = 0; k < depth; k++) {
        PyObject *h = PyBytes_FromStringAndSize((const char *)range + (size_t)k * HASH_SIZE, HASH_SIZE);
        if (!h) goto done;
        PyList_SET_ITEM(list, k, h);
    }
    for (int t = 0; t < self->ntypes; t++) {
        long long c = 0;
        for (int k = 0; k < self->nworkers; k++) c += counts[(size_t)k * (size_t)self->ntypes + (size_t)t];
        PyObject *v = PyLong_FromLongLong(c);
        if (!v) goto done;
        PyTuple_SET_ITEM(count_tuple, t, v);
    }
    if (problem >= 0) result = Py_BuildValue("LOOL", size + confirmed, list, count_tuple, problem);
    else result = Py_BuildValue("LOOO", size + confirmed, list, count_tuple, Py_None);
done:
    Py_XDECREF(list);
    Py_XDECREF(count_tuple);
    free(range);
    free(out);
    free(counts);
    return result;
}

static PyObject *Walker_close(WalkerObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the walker is walking");
        return NULL;
    }
    walker_release(self);
    Py_RETURN_NONE;
}

static PyObject *Walker_enter(WalkerObject *self, PyObject *Py_UNUSED(ignored)) {
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *Walker_exit(WalkerObject *self, PyObject *Py_UNUSED(args)) {
    return Walker_close(self, NULL);
}

static PyMethodDef Walker_methods[] = {
    {"walk", (PyCFunction)Walker_walk, METH_VARARGS,
     "walk(size, hashes, stop) -> (size, hashes, counts, problem)"},
    {"close", (PyCFunction)Walker_close, METH_NOARGS, "Close the connections."},
    {"__enter__", (PyCFunction)Walker_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Walker_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WalkerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ledger.integrity._leafwalk.Walker",
    .tp_basicsize = sizeof(WalkerObject),
    .tp_dealloc = (destructor)Walker_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Confirms sealed leaves of a SQLite ledger from their rows (see the module docstring).",
    .tp_methods = Walker_methods,
    .tp_init = (initproc)Walker_init,
    .tp_new = PyType_GenericNew,
};

/* -- module functions ------------------------------------------------------------------------ */

/* -- hashing rows for the sealer -------------------------------------------------------------- */

typedef struct {
    Worker worker;
    const TypeSpec *type;
    const long long *ids;
    size_t from, to;   /* this thread's share of ids */
    long long start;   /* the leaf index of ids[0] */
    unsigned char *out;
    unsigned char *done; /* 1: out holds the leaf hash of ids[k] */
    const char *path, *sql;
    int failed;
} HashJob;

static int worker_open(Worker *w, const char *path, const char *sql, char *message, size_t size) {
    if (sqlite3_open_v2(path, &w->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(message, size, "cannot open the ledger: %s", w->db ? sqlite3_errmsg(w->db) : "?");
        return 0;
    }
    sqlite3_busy_timeout(w->db, 30000);
    if (sqlite3_prepare_v2(w->db, sql, -1, &w->stmt, NULL) != SQLITE_OK) {
        snprintf(message, size, "cannot prepare: %s", sqlite3_errmsg(w->db));
        return 0;
    }
    w->md = EVP_MD_CTX_new();
    w->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!w->md || !w->sha256) {
        snprintf(message, size, "cannot create a SHA-256 context");
        return 0;
    }
    return 1;
}

static void *hash_job_run(void *arg) {
    HashJob *job = arg;
    Worker *w = &job->worker;
    char message[256];
    if (!worker_open(w, job->path, job->sql, message, sizeof message) ||
        !spec_fits(job->type, sqlite3_column_count(w->stmt))) {
        job->failed = 1; /* every id of this share stays None: the Python path hashes it */
        return NULL;
    }
    LocaleScope scope = locale_enter();
    for (size_t k = job->from; k < job->to; k++) {
        sqlite3_stmt *st = w->stmt;
        sqlite3_reset(st);
        if (sqlite3_bind_int64(st, 1, job->ids[k]) != SQLITE_OK) continue;
        if (sqlite3_step(st) != SQLITE_ROW) continue; /* gone: the Python path decides */
        if (sqlite3_column_type(st, job->type->id_column) != SQLITE_INTEGER ||
            sqlite3_column_int64(st, job->type->id_column) != job->ids[k])
            continue;
        if (leaf_hash(w, job->type, job->start + (long long)k, job->out + k * HASH_SIZE)) job->done[k] = 1;
    }
    sqlite3_reset(w->stmt);
    locale_leave(scope);
    return NULL;
}

/* hash_rows(path, sql, type, ids, start, threads) -> list[bytes | None]
 * The leaf hash of each row ids[k] at leaf index start + k, read with sql (one row
 * for ?1 = the id; the type's column positions refer to its columns), each thread on
 * its own read-only connection, fresh, so it sees every committed row. None where the
 * Python path must compute the leaf. */
static PyObject *hash_rows(PyObject *Py_UNUSED(module), PyObject *args) {
    const char *path, *sql;
    PyObject *spec, *ids_list;
    long long start;
    int threads;
    if (!PyArg_ParseTuple(args, "ssO!O!Li", &path, &sql, &PyTuple_Type, &spec, &PyList_Type, &ids_list, &start,
                          &threads))
        return NULL;
    TypeSpec type;
    memset(&type, 0, sizeof type);
    if (!parse_type(spec, &type)) {
        free(type.columns);
        Py_XDECREF(type.keep);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(ids_list);
    long long *ids = malloc((size_t)(n ? n : 1) * sizeof(long long));
    unsigned char *out = malloc((size_t)(n ? n : 1) * HASH_SIZE);
    unsigned char *done = calloc((size_t)(n ? n : 1), 1);
    HashJob *jobs = calloc(MAX_THREADS, sizeof(HashJob));
    PyObject *result = NULL;
    if (!ids || !out || !done || !jobs) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *item = PyList_GET_ITEM(ids_list, k);
        if (!PyLong_Check(item)) { /* no __index__ callback that could change the list */
            PyErr_SetString(PyExc_TypeError, "ids must be ints");
            goto done;
        }
        ids[k] = PyLong_AsLongLong(item);
        if (ids[k] == -1 && PyErr_Occurred()) goto done;
    }
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (n < 1024 * threads) threads = 1;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS;
    size_t share = ((size_t)n + (size_t)threads - 1) / (size_t)threads;
    pthread_t tids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int k = 0; k < threads; k++) {
        HashJob *job = &jobs[k];
        job->type = &type;
        job->ids = ids;
        job->from = share * (size_t)k < (size_t)n ? share * (size_t)k : (size_t)n;
        job->to = job->from + share < (size_t)n ? job->from + share : (size_t)n;
        job->start = start;
        job->out = out;
        job->done = done;
        job->path = path;
        job->sql = sql;
        if (k > 0 && pthread_create(&tids[k], NULL, hash_job_run, job) == 0) started[k] = 1;
    }
    hash_job_run(&jobs[0]);
    for (int k = 1; k < threads; k++) {
        if (started[k]) pthread_join(tids[k], NULL);
        else hash_job_run(&jobs[k]);
    }
    for (int k = 0; k < threads; k++) {
        failed |= jobs[k].failed;
        worker_close(&jobs[k].worker);
    }
    Py_END_ALLOW_THREADS;
    (void)failed; /* rows a failed thread did not hash stay None: the Python path computes them */
    result = PyList_New(n);
    if (!result) goto done;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *item = done[k] ? PyBytes_FromStringAndSize((const char *)out + k * HASH_SIZE, HASH_SIZE)
                                 : Py_NewRef(Py_None);
        if (!item) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, k, item);
    }
done:
    free(ids);
    free(out);
    free(done);
    free(jobs);
    free(type.columns);
    Py_XDECREF(type.keep);
    return result;
}

/* -- rows as Python values (PostgreSQL, through psycopg) --------------------------------------- */
/*
 * On PostgreSQL there is no SQLite C API to read rows with: Python fetches them (JSON
 * columns cast to text, times in a UTC session) and these functions write and hash the
 * leaves from the values, with the GIL held. The forms are the same as above, read
 * from the Python objects the Python path would see:
 *   'v'  None, str, int (not bool), float        'f'  None, float
 *   'S'  int (seed - 2^63)                        't'  datetime, naive or in UTC
 *   'j'  str: the JSON text                       'b'  bytes
 * Anything else (a datetime in another zone, a bool, a Decimal, ...) is refused.
 */

typedef struct {
    Buf leaf;
    Json json;
    FloatEntry floats[FLOAT_CACHE];
    EVP_MD_CTX *md;
    EVP_MD *sha256;
} Encoder;

static void encoder_close(Encoder *e);

static int encoder_open(Encoder *e) {
    memset(e, 0, sizeof *e);
    e->md = EVP_MD_CTX_new();
    e->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!e->md || !e->sha256) {
        encoder_close(e);
        PyErr_SetString(PyExc_RuntimeError, "cannot create a SHA-256 context");
        return 0;
    }
    return 1;
}

static void encoder_close(Encoder *e) {
    if (e->md) EVP_MD_CTX_free(e->md);
    if (e->sha256) EVP_MD_free(e->sha256);
    e->md = NULL;
    e->sha256 = NULL;
    buf_free(&e->leaf);
    free(e->json.nodes);
    buf_free(&e->json.strings);
    buf_free(&e->json.scratch);
}

/* An int as json.dumps writes it (int.__repr__). */
static int put_pylong(Buf *b, PyObject *v) {
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (!overflow) {
        if (x == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        put_i64(b, x);
        return 1;
    }
    PyObject *text = PyLong_Type.tp_repr(v);
    if (!text) {
        PyErr_Clear(); /* e.g. more digits than int_max_str_digits: the Python path fails too */
        return 0;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    int ok = s && n <= MAX_INT_DIGITS;
    if (ok) buf_put(b, s, (size_t)n);
    Py_DECREF(text);
    if (!s) PyErr_Clear();
    return ok;
}

static int put_pytext(Buf *b, PyObject *v) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n); /* fails on lone surrogates, as .encode() does */
    if (!s) {
        PyErr_Clear();
        return 0;
    }
    return put_text(b, (const unsigned char *)s, (size_t)n, 1);
}

static int put_py_value(Encoder *e, char kind, PyObject *v) {
    Buf *b = &e->leaf;
    if (v == Py_None) {
        buf_put(b, "null", 4);
        return 1;
    }
    switch (kind) {
    case 'v':
        if (PyUnicode_Check(v)) return put_pytext(b, v);
        if (PyLong_Check(v) && !PyBool_Check(v)) return put_pylong(b, v);
        if (PyFloat_Check(v)) return put_float_cached(e->floats, b, PyFloat_AS_DOUBLE(v));
        return 0;
    case 'f':
        if (!PyFloat_Check(v)) return 0;
        return put_float_cached(e->floats, b, PyFloat_AS_DOUBLE(v));
    case 'S': {
        if (!PyLong_Check(v) || PyBool_Check(v)) return 0;
        int overflow = 0;
        long long stored = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (stored == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 0;
        }
        buf_byte(b, '"');
        put_u64(b, (uint64_t)stored ^ 0x8000000000000000ULL);
        buf_byte(b, '"');
        return 1;
    }
    case 't': {
        if (!PyDateTime_Check(v)) return 0;
        PyObject *tz = PyDateTime_DATE_GET_TZINFO(v);
        if (tz != Py_None && tz != PyDateTime_TimeZone_UTC) return 0; /* Python converts; leave it */
        char t[32];
        int n = snprintf(t, sizeof t, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", PyDateTime_GET_YEAR(v),
                         PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v), PyDateTime_DATE_GET_HOUR(v),
                         PyDateTime_DATE_GET_MINUTE(v), PyDateTime_DATE_GET_SECOND(v),
                         PyDateTime_DATE_GET_MICROSECOND(v));
        if (n != 27) return 0;
        return put_text(b, (const unsigned char *)t, 27, 1);
    }
    case 'j': {
        if (!PyUnicode_Check(v)) return 0;
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        if (!s) {
            PyErr_Clear();
            return 0;
        }
        return put_json_column(&e->json, b, (const unsigned char *)s, (size_t)n);
    }
    case 'b':
        if (!PyBytes_Check(v)) return 0;
        put_base64(b, (const unsigned char *)PyBytes_AS_STRING(v), (size_t)PyBytes_GET_SIZE(v));
        return 1;
    }
    return 0;
}

/* The leaf hash of a row given as Python values; 0 when the Python path must decide. */
static int leaf_hash_values(Encoder *e, const TypeSpec *t, long long index, PyObject *const *items,
                            Py_ssize_t nitems, unsigned char *digest) {
    Buf *b = &e->leaf;
    b->len = 0;
    b->failed = 0;
    buf_byte(b, 0x00);
    buf_put(b, t->prefix, t->prefix_len);
    put_i64(b, index);
    buf_put(b, t->middle, t->middle_len);
    for (int k = 0; k < t->ncolumns; k++) {
        const ColumnSpec *c = &t->columns[k];
        if (c->column < 0 || c->column >= nitems) return 0;
        buf_put(b, c->key, c->key_len);
        if (!put_py_value(e, c->kind, items[c->column])) return 0;
    }
    buf_put(b, t->suffix, t->suffix_len);
    if (b->failed) return 0;
    unsigned int size = 0;
    return EVP_DigestInit_ex(e->md, e->sha256, NULL) == 1 && EVP_DigestUpdate(e->md, b->p, b->len) == 1 &&
           EVP_DigestFinal_ex(e->md, digest, &size) == 1 && size == HASH_SIZE;
}

static int parse_types(PyObject *types, TypeSpec **out, int *count) {
    Py_ssize_t n = PyTuple_GET_SIZE(types);
    TypeSpec *specs = calloc((size_t)(n ? n : 1), sizeof(TypeSpec));
    if (!specs) {
        PyErr_NoMemory();
        return 0;
    }
    *out = specs;
    *count = (int)n;
    for (Py_ssize_t k = 0; k < n; k++)
        if (!parse_type(PyTuple_GET_ITEM(types, k), &specs[k])) return 0;
    return 1;
}

static void free_types(TypeSpec *specs, int count) {
    if (!specs) return;
    for (int k = 0; k < count; k++) {
        free(specs[k].columns);
        Py_XDECREF(specs[k].keep);
    }
    free(specs);
}

/* confirm_rows(types, rows, size, hashes) -> (size, hashes, counts, problem)
 * The Python-values twin of Walker.walk: rows are (leaf_index, entry_type, leaf_hash,
 * <columns...>) in leaf order from leaf `size` on; each is confirmed in turn until the
 * first that is not (problem: its expected leaf index), or the rows run out (None). */
static PyObject *confirm_rows(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *types_arg, *rows, *hashes;
    long long size;
    if (!PyArg_ParseTuple(args, "O!OLO!", &PyTuple_Type, &types_arg, &rows, &size, &PyList_Type, &hashes))
        return NULL;
    Py_ssize_t nh = PyList_GET_SIZE(hashes);
    if (size < 0 || nh != __builtin_popcountll((unsigned long long)size)) {
        PyErr_SetString(PyExc_ValueError, "the compact range does not match its size");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(rows, "rows must be a sequence");
    if (!seq) return NULL;
    TypeSpec *types = NULL;
    int ntypes = 0;
    Encoder e;
    int opened = 0;
    unsigned char *range = NULL;
    long long *counts = NULL;
    PyObject *result = NULL;
    if (!parse_types(types_arg, &types, &ntypes) || !(opened = encoder_open(&e))) goto done;
    range = malloc((size_t)(nh + 70) * HASH_SIZE);
    counts = calloc((size_t)(ntypes ? ntypes : 1), sizeof(long long));
    if (!range || !counts) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < nh; k++) {
        PyObject *h = PyList_GET_ITEM(hashes, k);
        if (!PyBytes_Check(h) || PyBytes_GET_SIZE(h) != HASH_SIZE) {
            PyErr_SetString(PyExc_ValueError, "compact range hashes must be 32 bytes");
            goto done;
        }
        memcpy(range + (size_t)k * HASH_SIZE, PyBytes_AS_STRING(h), HASH_SIZE);
    }
    Py_ssize_t depth = nh, nrows = PySequence_Fast_GET_SIZE(seq);
    long long expected = size, problem = -1;
    int failed = 0;
    LocaleScope scope = locale_enter();
    for (Py_ssize_t r = 0; r < nrows && problem < 0 && !failed; r++) {
        PyObject *row = PySequence_Fast(PySequence_Fast_GET_ITEM(seq, r), "a row must be a sequence");
        if (!row) {
            failed = 1;
            break;
        }
        Py_ssize_t ncols = PySequence_Fast_GET_SIZE(row);
        PyObject **items = PySequence_Fast_ITEMS(row);
        const TypeSpec *t = NULL;
        int ti = -1;
        unsigned char digest[HASH_SIZE];
        int ok = ncols >= 3 && PyLong_Check(items[0]) && PyLong_AsLongLong(items[0]) == expected &&
                 PyUnicode_Check(items[1]) && PyBytes_Check(items[2]) && PyBytes_GET_SIZE(items[2]) == HASH_SIZE;
        if (PyErr_Occurred()) PyErr_Clear();
        if (ok) {
            Py_ssize_t name_len;
            const char *name = PyUnicode_AsUTF8AndSize(items[1], &name_len);
            if (!name) PyErr_Clear();
            for (int k = 0; name && k < ntypes; k++) {
                if (types[k].name_len == (size_t)name_len && memcmp(types[k].name, name, (size_t)name_len) == 0) {
                    t = &types[k];
                    ti = k;
                    break;
                }
            }
        }
        ok = ok && t && t->id_column >= 0 && t->id_column < ncols && items[t->id_column] != Py_None &&
             leaf_hash_values(&e, t, expected, (PyObject *const *)items, ncols, digest) &&
             memcmp(PyBytes_AS_STRING(items[2]), digest, HASH_SIZE) == 0;
        Py_DECREF(row);
        if (!ok) {
            problem = expected;
            break;
        }
        memcpy(range + (size_t)depth * HASH_SIZE, digest, HASH_SIZE);
        depth++;
        for (unsigned long long s2 = (unsigned long long)expected; s2 & 1; s2 >>= 1) {
            node_hash(e.md, e.sha256, range + (size_t)(depth - 2) * HASH_SIZE, range + (size_t)(depth - 1) * HASH_SIZE,
                      range + (size_t)(depth - 2) * HASH_SIZE, &failed);
            depth--;
        }
        counts[ti]++;
        expected++;
    }
    locale_leave(scope);
    if (failed) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "SHA-256 failed");
        goto done;
    }
    PyObject *list = PyList_New(depth), *count_tuple = PyTuple_New(ntypes);
    if (!list || !count_tuple) {
        Py_XDECREF(list);
        Py_XDECREF(count_tuple);
        goto done;
    }
    for (Py_ssize_t k = 0; k < depth; k++)
        PyList_SET_ITEM(list, k, PyBytes_FromStringAndSize((const char *)range + (size_t)k * HASH_SIZE, HASH_SIZE));
    for (int k = 0; k < ntypes; k++) PyTuple_SET_ITEM(count_tuple, k, PyLong_FromLongLong(counts[k]));
    if (PyErr_Occurred()) {
        Py_DECREF(list);
        Py_DECREF(count_tuple);
        goto done;
    }
    if (problem >= 0) result = Py_BuildValue("LNNL", expected, list, count_tuple, problem);
    else result = Py_BuildValue("LNNO", expected, list, count_tuple, Py_None);
done:
    if (opened) encoder_close(&e);
    free_types(types, ntypes);
    free(range);
    free(counts);
    Py_DECREF(seq);
    return result;
}

/* hash_values(type, rows, first) -> list[bytes | None]
 * The Python-values twin of hash_rows: the leaf hash of each row (a sequence of the
 * type's columns, by the spec's positions) at leaf index first + k. */
static PyObject *hash_values(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *spec, *rows;
    long long first;
    if (!PyArg_ParseTuple(args, "O!OL", &PyTuple_Type, &spec, &rows, &first)) return NULL;
    PyObject *seq = PySequence_Fast(rows, "rows must be a sequence");
    if (!seq) return NULL;
    TypeSpec type;
    memset(&type, 0, sizeof type);
    Encoder e;
    int opened = 0;
    PyObject *result = NULL;
    if (!parse_type(spec, &type) || !(opened = encoder_open(&e))) goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    result = PyList_New(n);
    if (!result) goto done;
    LocaleScope scope = locale_enter();
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *row = PySequence_Fast(PySequence_Fast_GET_ITEM(seq, k), "a row must be a sequence");
        if (!row) {
            Py_CLEAR(result);
            break;
        }
        unsigned char digest[HASH_SIZE];
        Py_ssize_t ncols = PySequence_Fast_GET_SIZE(row);
        int ok = type.id_column >= 0 && type.id_column < ncols &&
                 leaf_hash_values(&e, &type, first + k, PySequence_Fast_ITEMS(row), ncols, digest);
        Py_DECREF(row);
        PyObject *item = ok ? PyBytes_FromStringAndSize((const char *)digest, HASH_SIZE) : Py_NewRef(Py_None);
        if (!item) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, k, item);
    }
    locale_leave(scope);
done:
    if (opened) encoder_close(&e);
    free(type.columns);
    Py_XDECREF(type.keep);
    Py_DECREF(seq);
    return result;
}

static PyObject *same_sqlite(PyObject *Py_UNUSED(module), PyObject *args) {
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path)) return NULL;
    void *handle = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
    if (!handle) Py_RETURN_FALSE;
    void *theirs = dlsym(handle, "sqlite3_libversion_number");
    dlclose(handle);
    if (theirs != (void *)&sqlite3_libversion_number) Py_RETURN_FALSE;
    if (!sqlite3_threadsafe()) Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

/* The canonical text of one JSON document, or None where the Python path must decide:
 * what the walk writes for a JSON column (tests compare it with canonical_json). */
static PyObject *canonical_json_text(PyObject *Py_UNUSED(module), PyObject *args) {
    const char *text;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y#", &text, &n)) return NULL;
    Json j;
    Buf out;
    memset(&j, 0, sizeof j);
    memset(&out, 0, sizeof out);
    LocaleScope scope = locale_enter();
    int ok = put_json_column(&j, &out, (const unsigned char *)text, (size_t)n);
    locale_leave(scope);
    PyObject *result = ok ? PyBytes_FromStringAndSize((const char *)out.p, (Py_ssize_t)out.len) : Py_NewRef(Py_None);
    free(j.nodes);
    buf_free(&j.strings);
    buf_free(&j.scratch);
    buf_free(&out);
    return result;
}

/* The canonical text of one float, or None: what the walk writes for a REAL value. */
static PyObject *canonical_float_text(PyObject *Py_UNUSED(module), PyObject *args) {
    double x;
    if (!PyArg_ParseTuple(args, "d", &x)) return NULL;
    Buf out;
    memset(&out, 0, sizeof out);
    LocaleScope scope = locale_enter();
    int ok = put_float(&out, x);
    locale_leave(scope);
    PyObject *result = ok ? PyBytes_FromStringAndSize((const char *)out.p, (Py_ssize_t)out.len) : Py_NewRef(Py_None);
    buf_free(&out);
    return result;
}

static PyMethodDef module_methods[] = {
    {"hash_rows", hash_rows, METH_VARARGS,
     "hash_rows(path, sql, type, ids, start, threads) -> list[bytes | None]: leaf hashes for the sealer"},
    {"confirm_rows", confirm_rows, METH_VARARGS,
     "confirm_rows(types, rows, size, hashes) -> (size, hashes, counts, problem): verify from Python values"},
    {"hash_values", hash_values, METH_VARARGS,
     "hash_values(type, rows, first) -> list[bytes | None]: leaf hashes from Python values"},
    {"same_sqlite", same_sqlite, METH_VARARGS,
     "same_sqlite(path) -> bool: the module at path uses this process's copy of SQLite"},
    {"canonical_json_text", canonical_json_text, METH_VARARGS,
     "canonical_json_text(text: bytes) -> bytes | None"},
    {"canonical_float_text", canonical_float_text, METH_VARARGS, "canonical_float_text(x) -> bytes | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_leafwalk", "Native leaf recomputation for seedledger verify on SQLite.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__leafwalk(void) {
    special_init();
    PyDateTime_IMPORT;
    if (!PyDateTimeAPI) return NULL;
    if (!C_LOCALE) C_LOCALE = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (PyType_Ready(&WalkerType) < 0) return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (!module) return NULL;
    Py_INCREF(&WalkerType);
    if (PyModule_AddObject(module, "Walker", (PyObject *)&WalkerType) < 0) {
        Py_DECREF(&WalkerType);
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddStringConstant(module, "sqlite_version", sqlite3_libversion()) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
