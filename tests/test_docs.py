"""Every document the code, configs and docs cite exists in the repository."""
import re
import subprocess
from conftest import REPO

CITED_DOC = re.compile(r"(?<![\w/.:-])((?:[\w-]+/)*[\w-]+\.md)\b")
WRITTEN_BY_THE_PIPELINE = {"table.md", "architectures.md", "ablation.md", "screen.md", "study.md"}  # outputs


def tracked_text_files():
    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return [REPO / n for n in names if n.endswith((".py", ".md", ".yaml", ".smk", ".sh", ".toml")) or n == "Snakefile"]


def test_every_cited_markdown_file_exists():
    missing = []
    for path in tracked_text_files():
        for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "http" in line:  # a link to another site names its own files
                continue
            for cited in CITED_DOC.findall(line):
                if cited not in WRITTEN_BY_THE_PIPELINE and not ((REPO / cited).exists() or (path.parent / cited).exists()):
                    missing.append(f"{path.relative_to(REPO)}:{line_number}: {cited}")
    assert not missing, "cited documents that the repository does not have:\n" + "\n".join(missing)


def test_the_readme_stays_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 150


def test_every_hyperparameter_the_paper_config_writes_equals_the_methods_default():
    """config/config.yaml restates the library's defaults with their sources; the two must not drift apart."""
    import yaml

    from bcrepro.methods import get_method

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    drift = []
    for method, per_arch in config["hyperparameters"].items():
        for arch, values in per_arch.items():
            defaults = get_method(method).params_for(arch)
            drift += [f"{method}/{arch}/{key}: config {value!r}, bcrepro/methods {defaults.get(key)!r}"
                      for key, value in values.items() if defaults.get(key) != value]
    assert not drift, "config/config.yaml and the methods' defaults disagree:\n" + "\n".join(drift)
