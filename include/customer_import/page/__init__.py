"""The Imports page inside Airflow: a FastAPI app of its routes (`app`), what it gets from Airflow and
reads through it (`host`), its forms (`forms`), its HTML (`rendering`, `templates/`) and its guard
against cross-site requests (`guard`). It may use every core part below the page; nothing imports
it but the plugin.
"""
