"""Tables, figures and MLflow tracking of the runs (the optional workflow extra: mlflow, pandas, seaborn)."""
