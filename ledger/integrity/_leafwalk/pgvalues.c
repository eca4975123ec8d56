#include "leafwalk.h"

#include <datetime.h>
#include <stdio.h>

/* datetime.h keeps its C API in a static of each file that includes it: this one's. */
int pgvalues_init(void) {
    PyDateTime_IMPORT;
    return PyDateTimeAPI != NULL;
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


/* confirm_rows(types, rows, size, hashes) -> (size, hashes, counts, problem)
 * The Python-values twin of Walker.walk: rows are (leaf_index, entry_type, leaf_hash,
 * <columns...>) in leaf order from leaf `size` on; each is confirmed in turn until the
 * first that is not (problem: its expected leaf index), or the rows run out (None). */
PyObject *confirm_rows(PyObject *Py_UNUSED(module), PyObject *args) {
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
PyObject *hash_values(PyObject *Py_UNUSED(module), PyObject *args) {
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
