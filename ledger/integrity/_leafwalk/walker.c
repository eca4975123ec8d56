/* The Walker type: a leaf range split between threads, then the compact range extended. */

#include "leafwalk.h"

#include <pthread.h>
#include <stdio.h>

typedef struct {
    Worker *worker;
    const WalkerObject *walker;
} Job;


static void *worker_run(void *arg) {
    Job *job = arg;
    LocaleScope scope = locale_enter();
    walk_range(job->worker, job->walker);
    locale_leave(scope);
    return NULL;
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

void node_hash(EVP_MD_CTX *md, const EVP_MD *sha256, const unsigned char *left, const unsigned char *right, unsigned char *out,
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

PyTypeObject WalkerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ledger.integrity._leafwalk.Walker",
    .tp_basicsize = sizeof(WalkerObject),
    .tp_dealloc = (destructor)Walker_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Confirms sealed leaves of a SQLite ledger from their rows (see the module docstring).",
    .tp_methods = Walker_methods,
    .tp_init = (initproc)Walker_init,
    .tp_new = PyType_GenericNew,
};
