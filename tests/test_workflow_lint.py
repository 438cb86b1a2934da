"""`snakemake --lint` finds nothing to say of the workflow: full paths in the rules, no globals in shell commands,
functions apart from rules, a conda environment per rule (as the snakemake-workflows catalogue asks)."""
import subprocess
import sys

import yaml
from conftest import REPO



def test_the_workflow_is_lint_clean(tmp_path):
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--snakefile", str(REPO / "Snakefile"),
                             "--directory", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_the_jobs_conda_environment_pins_what_pyproject_pins():
    """The environment the rules name holds the same pinned torch, torchvision and MLflow as the package."""
    env = yaml.safe_load((REPO / "workflow" / "envs" / "bcrepro.yaml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    pyproject = (REPO / "pyproject.toml").read_text()
    for pinned in ("torch==", "torchvision==", "mlflow=="):
        ours = next(p for p in pip if p.startswith(pinned))
        assert f'"{ours}"' in pyproject, f"{ours} in workflow/envs/bcrepro.yaml is not what pyproject.toml pins"
