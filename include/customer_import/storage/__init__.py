"""Where files rest: the data folders on local disk (`folders`: landing, processing, archive,
rejected, reports, quarantine, and the care taken with links and names) or on object storage
(`store`: the same layout on S3 and the like, mirrored on each worker). It may use the contract;
`store` is the one module here that imports Airflow (its ObjectStoragePath), and only lazily.
"""
