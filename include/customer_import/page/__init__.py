"""The Imports page inside Airflow: a FastAPI app (`app`), its templates and static files
(`templates/`). It may use every core part below the page; nothing imports it but the plugin.
"""
