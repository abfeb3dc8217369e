"""The DDL files (``mysql.sql``, ``sqlite.sql``), shipped as package data.

A package only so that the files travel inside the wheel and are read with
``importlib.resources.files("sql")`` (``adapters/stores/ddl.py``) from a
checkout, an editable install and site-packages alike. No code lives here.
"""
