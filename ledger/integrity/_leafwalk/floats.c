/* Integers and floats written as the Python path writes them, in the C locale. */

#include "leafwalk.h"

#include <float.h>
#include <math.h>
#include <stdio.h>

/* Number conversions (snprintf, strtod) run in the "C" locale on every thread that
 * renders, whatever LC_NUMERIC the process has: uselocale() is per thread. */
static locale_t C_LOCALE;

LocaleScope locale_enter(void) {
    LocaleScope scope = {C_LOCALE ? uselocale(C_LOCALE) : (locale_t)0};
    return scope;
}

void locale_leave(LocaleScope scope) {
    if (C_LOCALE && scope.previous) uselocale(scope.previous);
}

void locale_init(void) {
    if (!C_LOCALE) C_LOCALE = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* -- numbers ---------------------------------------------------------------------------- */

void put_u64(Buf *b, uint64_t v) {
    char tmp[24];
    char *end = tmp + sizeof tmp, *p = end;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_put(b, p, (size_t)(end - p));
}

void put_i64(Buf *b, long long v) {
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
int put_float(Buf *b, double x) {
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
int float_token_is_canonical(const unsigned char *t, size_t n) {
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

int put_float_cached(FloatEntry *cache, Buf *b, double x) {
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
