/* Turns the JSON text of a 2-D numeric array into one JSON object per row, keyed by name: the
 * prediction log's `features` and `probabilities` columns, {"feature_1": 17.99, ...}.
 *
 * Why it is compiled: the log writes one such object per answered row, on the thread that shares
 * Python's lock with the event loop. Made in Python (a dict per row, then orjson) that is several
 * microseconds a row, a few per cent of a single-row request. orjson writes a whole batch's array
 * in one call (shortest round-trip digits, NaN and infinities as null); this module then only
 * copies that text's values between the keys, with no Python object per value.
 *
 * Input: `text` as orjson.dumps(array, option=OPT_SERIALIZE_NUMPY) writes a C-contiguous 2-D array
 * of numbers or booleans: "[" row ("," row)* "]" or "[]", each row "[" value ("," value)* "]",
 * no whitespace, each value a non-empty run of ASCII bytes holding none of `[ ] , "`. `keys` holds
 * one bytes object per column: the key's JSON text, quotes included (orjson.dumps(name)), in UTF-8.
 * A row of another width or any other text raises ValueError (naming neither the text nor a value):
 * the caller then makes that batch's rows one request at a time.
 *
 * Safety: every read is bounded by the text's length, every write by the row's length computed
 * from the same spans first; the text is never written and needs no terminating NUL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

typedef struct {
    const char *text;
    Py_ssize_t length;
} Span;

/* VALUE_BYTE[ch]: whether `ch` may be part of a value (printable ASCII but `[ ] , "`). */
static unsigned char VALUE_BYTE[256];

static void init_value_bytes(void) {
    for (int ch = 0x21; ch < 0x7f; ch++) {
        VALUE_BYTE[ch] = ch != '[' && ch != ']' && ch != ',' && ch != '"';
    }
}

/* Reads one row "[v,...,v]" of `width` values from `*p` into `values`; 0 when it is not one. */
static int read_row(const char **p, const char *end, Span *values, Py_ssize_t width) {
    const char *c = *p;
    if (c >= end || *c != '[') {
        return 0;
    }
    c++;
    for (Py_ssize_t i = 0; i < width; i++) {
        const char *start = c;
        while (c < end && VALUE_BYTE[(unsigned char)*c]) {
            c++;
        }
        if (c == start || c >= end) {
            return 0;
        }
        values[i].text = start;
        values[i].length = c - start;
        if (*c != (i + 1 < width ? ',' : ']')) {
            return 0; /* a row of another width, or a byte no value holds */
        }
        c++;
    }
    *p = c;
    return 1;
}

/* One row's object as a str: `{k0:v0,k1:v1,...}`. `ascii`: every key is ASCII (values always are). */
static PyObject *row_object(const Span *keys, const Span *values, Py_ssize_t width, Py_ssize_t keys_length,
                            int ascii) {
    Py_ssize_t length = 2 + keys_length + width /* colons */ + (width - 1) /* commas */;
    for (Py_ssize_t i = 0; i < width; i++) {
        length += values[i].length;
    }
    char *buffer;
    PyObject *text = NULL;
    if (ascii) {
        text = PyUnicode_New(length, 127);
        if (text == NULL) {
            return NULL;
        }
        buffer = (char *)PyUnicode_1BYTE_DATA(text);
    } else {
        buffer = PyMem_Malloc((size_t)length);
        if (buffer == NULL) {
            return PyErr_NoMemory();
        }
    }
    char *out = buffer;
    *out++ = '{';
    for (Py_ssize_t i = 0; i < width; i++) {
        if (i > 0) {
            *out++ = ',';
        }
        memcpy(out, keys[i].text, (size_t)keys[i].length);
        out += keys[i].length;
        *out++ = ':';
        memcpy(out, values[i].text, (size_t)values[i].length);
        out += values[i].length;
    }
    *out++ = '}';
    if (!ascii) {
        text = PyUnicode_DecodeUTF8(buffer, length, "strict");
        PyMem_Free(buffer);
    }
    return text;
}

PyDoc_STRVAR(keyed_rows_doc,
             "keyed_rows(text, keys, /) -> list[str]\n\n"
             "One JSON object per row of `text` (orjson's JSON of a 2-D numeric array), its values "
             "under `keys` (a tuple of bytes, each a key's JSON text with its quotes), in order. "
             "ValueError when `text` is not such an array of len(keys) columns.");

static PyObject *keyed_rows(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer text;
    PyObject *keys;
    if (!PyArg_ParseTuple(args, "y*O!:keyed_rows", &text, &PyTuple_Type, &keys)) {
        return NULL;
    }
    Py_ssize_t width = PyTuple_GET_SIZE(keys), keys_length = 0;
    Span *key_spans = NULL, *values = NULL;
    PyObject *rows = NULL;
    int ascii = 1;
    if (width == 0) {
        PyErr_SetString(PyExc_ValueError, "keys must not be empty");
        goto done;
    }
    key_spans = PyMem_Malloc(sizeof(Span) * (size_t)width);
    values = PyMem_Malloc(sizeof(Span) * (size_t)width);
    if (key_spans == NULL || values == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < width; i++) {
        PyObject *key = PyTuple_GET_ITEM(keys, i);
        if (!PyBytes_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "keys must be bytes");
            goto done;
        }
        key_spans[i].text = PyBytes_AS_STRING(key);
        key_spans[i].length = PyBytes_GET_SIZE(key);
        if (key_spans[i].length > PY_SSIZE_T_MAX / 4 - keys_length) {
            PyErr_SetString(PyExc_OverflowError, "keys too long");
            goto done;
        }
        keys_length += key_spans[i].length;
        for (Py_ssize_t j = 0; j < key_spans[i].length; j++) {
            if ((unsigned char)key_spans[i].text[j] >= 0x80) {
                ascii = 0;
            }
        }
    }
    rows = PyList_New(0);
    if (rows == NULL) {
        goto done;
    }
    const char *p = (const char *)text.buf, *end = p + text.len;
    if (p >= end || *p++ != '[') {
        goto not_an_array;
    }
    if (p < end && *p == ']') {
        p++; /* no rows */
    } else {
        for (;;) {
            if (!read_row(&p, end, values, width)) {
                goto not_an_array;
            }
            PyObject *row = row_object(key_spans, values, width, keys_length, ascii);
            if (row == NULL) {
                goto fail;
            }
            int appended = PyList_Append(rows, row);
            Py_DECREF(row);
            if (appended < 0) {
                goto fail;
            }
            if (p < end && *p == ',') {
                p++;
                continue;
            }
            if (p < end && *p == ']') {
                p++;
                break;
            }
            goto not_an_array;
        }
    }
    if (p == end) {
        goto done;
    }
not_an_array:
    PyErr_Format(PyExc_ValueError, "not the JSON of a 2-D array of %zd columns", width);
fail:
    Py_CLEAR(rows);
done:
    PyMem_Free(key_spans);
    PyMem_Free(values);
    PyBuffer_Release(&text);
    return rows;
}

static PyMethodDef methods[] = {
    {"keyed_rows", keyed_rows, METH_VARARGS, keyed_rows_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_keyed_rows",
    .m_doc = "The JSON of a 2-D array as one JSON object per row, keyed by name.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__keyed_rows(void) {
    init_value_bytes();
    return PyModule_Create(&module_def);
}
