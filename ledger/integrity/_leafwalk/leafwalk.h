/*
 * Shared by the parts of the native leaf walker, built as one extension module
 * (ledger.integrity._leafwalk; setup.py lists the sources, module.c describes the API):
 *
 *   text.c           byte buffer, UTF-8, JSON string escaping, base64
 *   floats.c         integers and floats as the Python path writes them, C locale
 *   json.c           JSON columns: parse, then write canonically
 *   specs.c          entry type specs from their Python tuples
 *   sqlite_reader.c  leaves from SQLite rows through the C API
 *   walker.c         the Walker type: leaf ranges on threads, compact range
 *   sealer.c         hash_rows: the sealer's leaf hashes on threads
 *   pgvalues.c       leaves from Python values (PostgreSQL through psycopg)
 *   module.c         module functions and initialisation
 *
 * Everything but PyInit__leafwalk is hidden (-fvisibility=hidden in setup.py).
 */

#ifndef LEAFWALK_H
#define LEAFWALK_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <locale.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdint.h>
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

int buf_grow(Buf *b, size_t extra);

static inline int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 1;
    return buf_grow(b, extra);
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

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Bytes a string scan must stop at: controls, '"', '\\' and the start of UTF-8 sequences. */
extern unsigned char SPECIAL[256];

typedef struct {
    locale_t previous;
} LocaleScope;

/* A REAL column value, through a small per-worker cache: columns such as CFG scales
 * and costs repeat a few values over millions of rows. */
typedef struct {
    uint64_t bits;
    unsigned char len; /* 0: empty */
    char text[40];
} FloatEntry;

#define FLOAT_CACHE 64

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

extern PyTypeObject WalkerType;
void locale_init(void);
int pgvalues_init(void);

/* text.c */
void buf_free(Buf *b);
int utf16_cmp(const unsigned char *a, size_t an, const unsigned char *b, size_t bn);
void special_init(void);
size_t utf8_sequence(const unsigned char *s, size_t n);
int put_text(Buf *b, const unsigned char *s, size_t n, int trusted);
void put_base64(Buf *b, const unsigned char *s, size_t n);

/* floats.c */
LocaleScope locale_enter(void);
void locale_leave(LocaleScope scope);
void put_u64(Buf *b, uint64_t v);
void put_i64(Buf *b, long long v);
int put_float(Buf *b, double x);
int float_token_is_canonical(const unsigned char *t, size_t n);
int put_float_cached(FloatEntry *cache, Buf *b, double x);

/* json.c */
int put_json_column(Json *j, Buf *out, const unsigned char *s, size_t n);

/* specs.c */
int parse_type(PyObject *spec, TypeSpec *t);
int spec_fits(const TypeSpec *t, int ncolumns);
int parse_types(PyObject *types, TypeSpec **out, int *count);
void free_types(TypeSpec *specs, int count);

/* sqlite_reader.c */
int leaf_hash(Worker *w, const TypeSpec *t, long long index, unsigned char *digest);
void walk_range(Worker *w, const WalkerObject *walker);
void worker_close(Worker *w);
int worker_open(Worker *w, const char *path, const char *sql, char *message, size_t size);

/* walker.c */
void node_hash(EVP_MD_CTX *md, const EVP_MD *sha256, const unsigned char *left, const unsigned char *right,
               unsigned char *out, int *failed);

/* sealer.c */
PyObject *hash_rows(PyObject *Py_UNUSED(module), PyObject *args);

/* pgvalues.c */
PyObject *confirm_rows(PyObject *Py_UNUSED(module), PyObject *args);
PyObject *hash_values(PyObject *Py_UNUSED(module), PyObject *args);

#endif
