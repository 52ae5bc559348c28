"""Reading and checking one file: its bytes and encoding (`charsets`), the precise reader (`csvfile`:
dialect and header, with `header` for which fields the header names and `records` for splitting the
lines into records) and the columnar one on Arrow (`columnar`), the few characters reading changes
(`cleaning`), the GX suite and its run (`expectations`), and the pass that ties them together
(`validation`). It may use the sources' profiles (an export's columns and formats), the database's
staging format, the storage and the contract; never Airflow, the page or the commands.
"""
