/* tokensift.refine._words: len(text.split()) without building the words, for the refine executor's word counts.

   Why C: the executor counts the words of every document it refines (its stats and ProX's result rules need
   them), and in Python that count is the largest cost of running a program on a document. str.split() builds
   a string per word (~12 us for a 2 kB C4 document); the pure-Python counter in word_count.py (bytes.translate
   and big-integer bit operations) takes ~2.7 us on ASCII text and ~9 us on UCS-2 text, and no well-kept library
   counts a str's words without building them at a lower per-call cost (numpy and pyarrow cost more per call
   than the whole count here, measured). This loop reads the str's own buffer (PEP 393: 1, 2 or 4 bytes per
   character) once: ~1.2 us per C4 document.

   Words are str.split()'s exactly: maximal runs of characters for which Py_UNICODE_ISSPACE (str.isspace) is
   false. The module is optional: word_count.py falls back to the pure-Python counter when it is absent (a
   build without a C compiler), with the same results. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static unsigned char ascii_space[128]; /* str.isspace of each ASCII character, filled at import */

/* Words of `text` into *words; *plain = 1 when it holds no non-ASCII whitespace. */
static int count_words(PyObject *text, Py_ssize_t *words, int *plain) {
  if (!PyUnicode_Check(text)) {
    PyErr_Format(PyExc_TypeError, "expected a str, got %.100s", Py_TYPE(text)->tp_name);
    return -1;
  }
  Py_ssize_t n = PyUnicode_GET_LENGTH(text), w = 0;
  int kind = PyUnicode_KIND(text), prev_space = 1, p = 1;
  const void *data = PyUnicode_DATA(text);
#define COUNT_LOOP(T)                                             \
  {                                                               \
    const T *s = (const T *)data;                                 \
    for (Py_ssize_t i = 0; i < n; i++) {                          \
      Py_UCS4 c = s[i];                                           \
      int sp = c < 128 ? ascii_space[c] : Py_UNICODE_ISSPACE(c);  \
      w += prev_space & !sp; /* a word starts after a space */    \
      prev_space = sp;                                            \
      p &= !(sp & (c >= 128));                                    \
    }                                                             \
  }
  if (kind == PyUnicode_1BYTE_KIND)
    COUNT_LOOP(Py_UCS1)
  else if (kind == PyUnicode_2BYTE_KIND)
    COUNT_LOOP(Py_UCS2)
  else
    COUNT_LOOP(Py_UCS4)
#undef COUNT_LOOP
  *words = w;
  *plain = p;
  return 0;
}

static PyObject *words_count(PyObject *self, PyObject *text) {
  Py_ssize_t words;
  int plain;
  if (count_words(text, &words, &plain) < 0) return NULL;
  return PyLong_FromSsize_t(words);
}

static PyObject *words_count_plain(PyObject *self, PyObject *text) {
  Py_ssize_t words;
  int plain;
  if (count_words(text, &words, &plain) < 0) return NULL;
  return Py_BuildValue("(nO)", words, plain ? Py_True : Py_False);
}

static PyMethodDef methods[] = {
    {"count", words_count, METH_O, "count(text) -> len(text.split())"},
    {"count_plain", words_count_plain, METH_O,
     "count_plain(text) -> (len(text.split()), whether text holds no non-ASCII whitespace)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_words",
                                    "len(text.split()) without building the words (see _words.c)", -1, methods};

PyMODINIT_FUNC PyInit__words(void) {
  for (int c = 0; c < 128; c++) ascii_space[c] = Py_UNICODE_ISSPACE(c) ? 1 : 0;
  return PyModule_Create(&module);
}
