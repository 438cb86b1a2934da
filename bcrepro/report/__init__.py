"""Tables and figures of the runs (the optional workflow extra: pandas, seaborn). MLflow tracking is
``bcrepro.tracking``."""
