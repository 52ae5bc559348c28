# The Airflow image with this project's requirements; the code itself is mounted (docker-compose.yaml).
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /requirements.txt
# --compile (pip's default, said here): the packages' bytecode is written now, so no process compiles
# GX or Airflow again at start, whatever PYTHONDONTWRITEBYTECODE says
RUN pip install --no-cache-dir --compile "apache-airflow==3.3.2" -r /requirements.txt
