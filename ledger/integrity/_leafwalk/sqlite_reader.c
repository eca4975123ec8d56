/* Leaves from SQLite rows, read through the SQLite C API on a worker's own connection. */

#include "leafwalk.h"

#include <stdio.h>

/* -- the walk ---------------------------------------------------------------------------------- */


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
int leaf_hash(Worker *w, const TypeSpec *t, long long index, unsigned char *digest) {
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

void walk_range(Worker *w, const WalkerObject *walker) {
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

void worker_close(Worker *w) {
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

int worker_open(Worker *w, const char *path, const char *sql, char *message, size_t size) {
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
