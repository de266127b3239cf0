"""The compiled modules: the plain-records reader (`server/codecs/_records_reader.c`) and the
prediction log's keyed rows (`server/observe/prediction_log/_keyed_rows.c`).

Everything else about the distribution is declared in setup.cfg; setuptools reads extension
modules from here only.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "server.codecs._records_reader",
            sources=["server/codecs/_records_reader.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
        ),
        Extension(
            "server.observe.prediction_log._keyed_rows",
            sources=["server/observe/prediction_log/_keyed_rows.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
        ),
    ]
)
