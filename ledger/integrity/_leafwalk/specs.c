/* Entry type specs (leaf layout and column kinds) read from their Python tuples. */

#include "leafwalk.h"

static int bytes_field(PyObject *item, unsigned char **data, size_t *len) {
    if (!PyBytes_Check(item)) {
        PyErr_SetString(PyExc_TypeError, "expected bytes");
        return 0;
    }
    *data = (unsigned char *)PyBytes_AS_STRING(item);
    *len = (size_t)PyBytes_GET_SIZE(item);
    return 1;
}

int parse_type(PyObject *spec, TypeSpec *t) {
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
int spec_fits(const TypeSpec *t, int ncolumns) {
    if (t->id_column < 0 || t->id_column >= ncolumns) return 0;
    for (int k = 0; k < t->ncolumns; k++)
        if (t->columns[k].column < 0 || t->columns[k].column >= ncolumns) return 0;
    return 1;
}

int parse_types(PyObject *types, TypeSpec **out, int *count) {
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

void free_types(TypeSpec *specs, int count) {
    if (!specs) return;
    for (int k = 0; k < count; k++) {
        free(specs[k].columns);
        Py_XDECREF(specs[k].keep);
    }
    free(specs);
}
