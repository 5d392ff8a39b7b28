"""Machine unlearning for vision-language models: FIUBench, MLLMU-Bench, SafeEraser and EFUF on one engine."""

from pathlib import Path

from setuptools import find_packages, setup

requirements = [
    line.split("#", 1)[0].strip()  # a requirement, without its comment
    for line in Path(__file__).with_name("requirements.txt").read_text().splitlines()
    if line.split("#", 1)[0].strip()
]

setup(
    name="vlm-unlearning",
    version="0.1.0",
    description=__doc__,
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["unlearning*", "fiubench*", "mllmu*", "safeeraser*", "efuf*", "clear*", "umu*",
                                    "eval*"]),
    package_data={"fiubench": ["*.json", "*.txt", "*.csv"], "mllmu": ["*.txt", "*.csv"],
                  "safeeraser": ["*.json", "*.csv"], "efuf": ["*.txt", "*.csv"],  # *.csv: published.csv
                  "unlearning.reporting": ["templates/*.html", "static/*"]},  # the HTML report's pages and assets
    install_requires=requirements,
    extras_require={
        "flash": ["flash-attn>=2.5"],  # CUDA only; never on CPU machines
        "dev": ["pytest>=8", "ruff>=0.5"],
    },
)
