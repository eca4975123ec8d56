#include "leafwalk.h"

#include <pthread.h>
#include <stdio.h>

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
PyObject *hash_rows(PyObject *Py_UNUSED(module), PyObject *args) {
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
