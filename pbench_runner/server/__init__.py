"""The results server: ``pbench server``, where results are uploaded, browsed and compared.

::

    app.py       the CherryPy process: configuration, mounting, start and stop
    api.py       the JSON API under /api/v1 (upload, datasets, files, compare)
    receive.py   an upload: streamed to a temporary file, hashed, moved into place
    archive.py   what a tarball holds: the metadata, results and tool data the index keeps
    storage.py   the index of datasets and users (SQLite; the SQL stays portable)
    auth.py      users and their tokens (stored hashed)
    views.py     the web pages (server-rendered HTML)
    templates.py the page layout, its style sheet, and the SVG plots
    process.py   ``pbench server`` as a child process (tests, benchmarks, scripts)
"""
