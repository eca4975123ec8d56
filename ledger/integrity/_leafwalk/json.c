#include "leafwalk.h"

#include <math.h>
#include <stdio.h>

/* -- JSON columns: parse, then write canonically ----------------------------------------- */
/*
 * The parser accepts exactly what Python's json.loads accepts and the Python path can
 * encode; anything else (NaN, lone surrogates, duplicate keys, very deep nesting, huge
 * integers) fails, and the leaf goes to the Python path. While parsing it notes whether
 * the text is already canonical; then the text is copied as it is.
 */

enum { J_NULL, J_TRUE, J_FALSE, J_INT, J_FLOAT, J_STR, J_ARR, J_OBJ };

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
int put_json_column(Json *j, Buf *out, const unsigned char *s, size_t n) {
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
