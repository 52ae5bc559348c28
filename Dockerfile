# The Airflow image with this project's requirements; the code itself is mounted (docker-compose.yaml).
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /requirements.txt
