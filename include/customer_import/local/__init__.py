"""The local developer commands behind `make`: the command line (`cli`), a local Airflow
(`airflow_server`) or Celery cluster (`celery_cluster`), the embedded PostgreSQL (`embedded_db`), the
files generated from the contract (`generated`) and the benchmark (`bench`). They may use every core
part; nothing in the core imports them.
"""
