"""Airflow DAG: one clientele run per day, with the logical date as the as-of date."""
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG(
    dag_id="clientele_nightly",
    start_date=datetime(2025, 1, 1),
    schedule="30 2 * * *",
    catchup=False,
    max_active_runs=1,  # clientele's warehouse lock refuses overlapping runs anyway
    default_args={"retries": 1, "retry_delay": timedelta(minutes=15)},
) as dag:
    BashOperator(
        task_id="run",
        bash_command="clientele --log-format json run /opt/clientele/jobs/nightly.toml --as-of {{ ds }}",
        env={"CLIENTELE_WAREHOUSE": "s3://warehouse/clientele", "CLIENTELE_SOURCES": "/data/incoming"},
        append_env=True,
    )
