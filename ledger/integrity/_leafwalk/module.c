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

#include "leafwalk.h"

#include <dlfcn.h>
#include <stdio.h>

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
    if (!pgvalues_init()) return NULL;
    locale_init();
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
