/* Reads a plain records body, {"records": [{"name": number, ...}, ...]}, into float64 rows
 * (/batch-predict's layout; /invocations' dataframe_records, instances and inputs are the same
 * shape under another top-level key).
 *
 * Why it is compiled: msgspec turns each of a 1000-record body's 30,000 values into a Python
 * float and numpy then copies them into the array; that is 1.35 ms of a 1.9 ms request. Scanning
 * the bytes straight into the array takes a fraction of that, and no object is made per value.
 *
 * What it decides: only whether a body is plain. read_records() fills rows and returns how many
 * when the body is exactly that shape: one top-level key of those given, an array of one or more
 * objects, each holding every feature name exactly once (any order) and nothing else, each value
 * a JSON number. For anything else (an escape or control character in a key, a missing, unknown
 * or repeated key, a value that is not a number, more records than allowed, trailing bytes) it
 * returns -1 and the caller reads the body with its general readers, which name the problem. So
 * no error message and no rule of the API lives here; the Python side keeps them all.
 *
 * Numbers: JSON's grammar is checked here. A number with at most 19 significant digits and a
 * decimal exponent within 22 is converted exactly (Clinger's fast path: one correctly rounded
 * multiplication or division of two exact doubles); any other goes through CPython's own
 * correctly rounded PyOS_string_to_double. Integers convert as Python's float(int) does ("-0"
 * is 0.0). Not plain: integers of more than 19 digits and numbers beyond a double, which msgspec
 * (the reader this one stands in front of) does not read as doubles either, and any number
 * longer than MAX_NUMBER_CHARS.
 *
 * Safety: every read is bounded by the body's length and every write by the output buffer's,
 * which must be an aligned, C-contiguous float64 buffer of whole rows; the body is never written
 * and needs no terminating NUL (a slow-path number is copied into a bounded, terminated buffer
 * first). The caller passes feature names that are distinct and need no escapes (no quote,
 * backslash or control character): `PlainRecordsReader` checks that once per model.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#define NOT_PLAIN (-1)
/* Longer numbers are legal JSON but not plain: the general readers take them. */
#define MAX_NUMBER_CHARS 400
#define FAST_MAX_DIGITS 19
#define FAST_MAX_MANTISSA (UINT64_C(1) << 53)

static const double POWERS_OF_TEN[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

typedef struct {
    const char *p;
    const char *end;
} Cursor;

typedef struct {
    const char *text;
    Py_ssize_t length;
} Name;

static inline void skip_space(Cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) {
        c->p++;
    }
}

/* Consumes `ch` (after any whitespace) when it comes next. */
static inline int take(Cursor *c, char ch) {
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

static inline int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* A string with no escape and no control character; `text` and `length` locate it in the body. */
static int read_key(Cursor *c, const char **text, Py_ssize_t *length) {
    skip_space(c);
    if (c->p >= c->end || *c->p != '"') {
        return 0;
    }
    const char *start = ++c->p;
    const char *q = start;
    while (q < c->end && *q != '"') {
        if (*q == '\\' || (unsigned char)*q < 0x20) {
            return 0;
        }
        q++;
    }
    if (q >= c->end) {
        return 0;
    }
    *text = start;
    *length = q - start;
    c->p = q + 1;
    return 1;
}

/* The correctly rounded double of the number text [start, stop), by CPython's dtoa. */
static int convert_slowly(const char *start, const char *stop, double *out) {
    char buffer[MAX_NUMBER_CHARS + 1];
    Py_ssize_t length = stop - start;
    if (length > MAX_NUMBER_CHARS) {
        return 0;
    }
    memcpy(buffer, start, (size_t)length);
    buffer[length] = '\0';
    char *parsed_to = NULL;
    double value = PyOS_string_to_double(buffer, &parsed_to, NULL); /* NULL: overflow gives inf */
    if (value == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (parsed_to != buffer + length) {
        return 0;
    }
    *out = value;
    return 1;
}

/* One JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int read_number(Cursor *c, double *out) {
    skip_space(c);
    const char *start = c->p, *p = c->p, *end = c->end;
    int negative = 0, digits = 0, integer = 1, exact = 1;
    uint64_t mantissa = 0;
    long exponent = 0; /* the decimal exponent of the digits kept in `mantissa` */

    if (p < end && *p == '-') {
        negative = 1;
        p++;
    }
    if (p >= end || !is_digit(*p)) {
        return 0;
    }
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p)) {
            return 0; /* JSON allows no leading zero */
        }
    } else {
        for (; p < end && is_digit(*p); p++) {
            if (digits < FAST_MAX_DIGITS) {
                mantissa = mantissa * 10 + (uint64_t)(*p - '0');
                digits++;
            } else {
                exact = 0;
            }
        }
    }
    if (p < end && *p == '.') {
        integer = 0;
        p++;
        if (p >= end || !is_digit(*p)) {
            return 0;
        }
        if (mantissa == 0) {
            for (; p < end && *p == '0'; p++) {
                exponent--; /* a leading zero of the fraction is no significant digit */
            }
        }
        for (; p < end && is_digit(*p); p++) {
            if (digits < FAST_MAX_DIGITS) {
                mantissa = mantissa * 10 + (uint64_t)(*p - '0');
                digits++;
                exponent--;
            } else {
                exact = 0;
            }
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integer = 0;
        p++;
        int exponent_negative = 0;
        if (p < end && (*p == '+' || *p == '-')) {
            exponent_negative = *p == '-';
            p++;
        }
        if (p >= end || !is_digit(*p)) {
            return 0;
        }
        long written = 0;
        for (; p < end && is_digit(*p); p++) {
            if (written < 100000) {
                written = written * 10 + (*p - '0');
            }
        }
        exponent += exponent_negative ? -written : written;
    }
    c->p = p;
    if (p - start > MAX_NUMBER_CHARS) {
        /* Not only for the copy below: a long run of fraction zeros would also cancel against a
         * huge exponent, whose digits are counted only up to a cap, and fake a small one. */
        return 0;
    }
    if (integer && !exact) {
        return 0; /* more than 19 digits */
    }

    if (exact && mantissa <= FAST_MAX_MANTISSA && exponent >= -22 && exponent <= 22) {
        /* Finite by construction (at most 2**53 * 1e22). */
        double value = (double)mantissa;
        value = exponent < 0 ? value / POWERS_OF_TEN[-exponent] : value * POWERS_OF_TEN[exponent];
        *out = negative && !(integer && mantissa == 0) ? -value : value; /* float(int("-0")) is 0.0 */
        return 1;
    }
    /* An integer gets here only above 2**53, so no zero needs its sign fixed. */
    double value;
    if (!convert_slowly(start, p, &value) || !isfinite(value)) {
        return 0;
    }
    *out = value;
    return 1;
}

/* memcmp for short names, eight bytes a step (memcpy compiles to one unaligned load). */
static inline int same_bytes(const char *a, const char *b, Py_ssize_t length) {
    for (; length >= 8; a += 8, b += 8, length -= 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) {
            return 0;
        }
    }
    for (; length > 0; a++, b++, length--) {
        if (*a != *b) {
            return 0;
        }
    }
    return 1;
}

/* The column whose key comes next. Records usually list the features in order, so the key is
 * first compared in place with `guess`'s name (right because names hold no quote, backslash or
 * control character); any other key is read as a string and looked up. */
static Py_ssize_t read_column(Cursor *c, const Name *names, Py_ssize_t width, Py_ssize_t guess) {
    skip_space(c);
    if (guess < width) {
        const Name *name = &names[guess];
        if (c->end - c->p > name->length + 1 && c->p[0] == '"' && c->p[name->length + 1] == '"' &&
            same_bytes(c->p + 1, name->text, name->length)) {
            c->p += name->length + 2;
            return guess;
        }
    }
    const char *text;
    Py_ssize_t length;
    if (!read_key(c, &text, &length)) {
        return -1;
    }
    for (Py_ssize_t column = 0; column < width; column++) {
        if (names[column].length == length && same_bytes(names[column].text, text, length)) {
            return column;
        }
    }
    return -1;
}

/* Fills rows of `width` doubles; the number of records, or NOT_PLAIN. */
static Py_ssize_t scan(Cursor *c, const Name *keys, Py_ssize_t key_count, const Name *names, Py_ssize_t width,
                       unsigned char *seen, double *out, Py_ssize_t capacity) {
    const char *key;
    Py_ssize_t key_length, rows = 0;
    int known = 0;

    if (!take(c, '{') || !read_key(c, &key, &key_length)) {
        return NOT_PLAIN;
    }
    for (Py_ssize_t k = 0; k < key_count && !known; k++) {
        known = keys[k].length == key_length && same_bytes(keys[k].text, key, key_length);
    }
    if (!known || !take(c, ':') || !take(c, '[')) {
        return NOT_PLAIN;
    }
    do {
        if (rows >= capacity || !take(c, '{')) {
            return NOT_PLAIN;
        }
        double *row = out + rows * width;
        Py_ssize_t guess = 0;
        memset(seen, 0, (size_t)width);
        for (Py_ssize_t field = 0; field < width; field++) {
            if (field > 0 && !take(c, ',')) {
                return NOT_PLAIN;
            }
            Py_ssize_t column = read_column(c, names, width, guess);
            if (column < 0 || seen[column] || !take(c, ':') || !read_number(c, &row[column])) {
                return NOT_PLAIN;
            }
            seen[column] = 1;
            guess = column + 1;
        }
        if (!take(c, '}')) {
            return NOT_PLAIN; /* an extra key, or not an object's end */
        }
        rows++;
    } while (take(c, ','));
    if (!take(c, ']') || !take(c, '}')) {
        return NOT_PLAIN;
    }
    skip_space(c);
    return c->p == c->end ? rows : NOT_PLAIN;
}

/* Points `out[i]` at the i-th bytes object of `tuple`; 0 (TypeError set) when one is not bytes. */
static int borrow_names(PyObject *tuple, Name *out) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(tuple); i++) {
        PyObject *name = PyTuple_GET_ITEM(tuple, i);
        if (!PyBytes_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "keys and names must be bytes");
            return 0;
        }
        out[i].text = PyBytes_AS_STRING(name);
        out[i].length = PyBytes_GET_SIZE(name);
    }
    return 1;
}

PyDoc_STRVAR(read_records_doc,
             "read_records(body, keys, names, out, /) -> int\n\n"
             "Fill `out` (a writable C-contiguous float64 buffer of rows of len(names) values) from a "
             "plain records body under one of the top-level `keys`; return the number of records, or -1 "
             "when the body is not plain (or has more records than `out` holds). `keys` and `names` are "
             "tuples of UTF-8 bytes; the names distinct, with no quote, backslash or control character.");

static PyObject *read_records(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer body, out;
    PyObject *keys, *names, *out_object;
    if (!PyArg_ParseTuple(args, "y*O!O!O:read_records", &body, &PyTuple_Type, &keys, &PyTuple_Type, &names,
                          &out_object)) {
        return NULL;
    }
    if (PyObject_GetBuffer(out_object, &out, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&body);
        return NULL;
    }
    Py_ssize_t key_count = PyTuple_GET_SIZE(keys), width = PyTuple_GET_SIZE(names), rows = NOT_PLAIN;
    Name *top_keys = NULL, *columns = NULL;
    unsigned char *seen = NULL;
    const char *format = out.format != NULL ? out.format : "B";
    if (format[0] == '=' || format[0] == '@' || (format[0] == '<' && PY_LITTLE_ENDIAN)) {
        format++; /* native doubles, however the exporter spells their byte order */
    }
    if (key_count == 0 || width == 0 || strcmp(format, "d") != 0 || out.itemsize != (Py_ssize_t)sizeof(double) ||
        out.len % ((Py_ssize_t)sizeof(double) * width) != 0 || (uintptr_t)out.buf % _Alignof(double) != 0) {
        PyErr_SetString(PyExc_ValueError, "keys, names and an aligned float64 buffer of whole rows are required");
        goto done;
    }
    top_keys = PyMem_Malloc(sizeof(Name) * (size_t)key_count);
    columns = PyMem_Malloc(sizeof(Name) * (size_t)width);
    seen = PyMem_Malloc((size_t)width);
    if (top_keys == NULL || columns == NULL || seen == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (!borrow_names(keys, top_keys) || !borrow_names(names, columns)) {
        goto done;
    }
    Cursor cursor = {(const char *)body.buf, (const char *)body.buf + body.len};
    Py_ssize_t capacity = out.len / ((Py_ssize_t)sizeof(double) * width);
    rows = scan(&cursor, top_keys, key_count, columns, width, seen, (double *)out.buf, capacity);
done:
    PyMem_Free(top_keys);
    PyMem_Free(columns);
    PyMem_Free(seen);
    PyBuffer_Release(&body);
    PyBuffer_Release(&out);
    return PyErr_Occurred() ? NULL : PyLong_FromSsize_t(rows);
}

static PyMethodDef methods[] = {
    {"read_records", read_records, METH_VARARGS, read_records_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_records_reader",
    .m_doc = "Plain records bodies straight into float64 rows.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__records_reader(void) { return PyModule_Create(&module_def); }
