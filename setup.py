"Packaging for kdbook: every setting comes from settings.ini (nbdev 2 convention)."
from configparser import ConfigParser
from pathlib import Path
import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=Path("README.md").read_text(encoding="utf-8") if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    author=cfg["author"],
    author_email=cfg["author_email"],
    license="Apache-2.0",
    url=cfg["git_url"],
    python_requires=">=" + cfg["min_python"],
    packages=setuptools.find_packages(include=["kdbook", "kdbook.*"]),
    include_package_data=True,
    install_requires=cfg["requirements"].split(),
    extras_require={"dev": cfg["dev_requirements"].split(), "clip": ["open_clip_torch"], "slurm": ["submitit"],
                    "tensorboard": ["tensorboard"], "timm": ["timm"]},
    # The experiment notebooks travel with non-editable installs too (kdbook.runner looks here).
    data_files=[("share/kdbook/experiments", [str(p) for p in sorted(Path("nbs/experiments").glob("*.ipynb"))])]
               + [(f"share/kdbook/data/{d}", [str(p) for p in sorted(Path("data", d).glob("*")) if p.is_file()])
                  for d in ("experiments", "paper_tables", "teachers", "samples")],
    entry_points={"console_scripts": cfg["console_scripts"].split(), "nbdev": ["kdbook=kdbook._modidx:d"]},
    zip_safe=False,
)
