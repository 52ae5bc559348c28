"""The CRM sources of `sources.yaml`: each export's columns, formats, defaults and options
(`profiles`), whether its files come in time (`freshness`), and the alerts sent when an import or a
file fails to come (`alerts`). It may use the database, the storage and the contract; `alerts` reads
Airflow's configuration (its base URL and SMTP connection), lazily.
"""
