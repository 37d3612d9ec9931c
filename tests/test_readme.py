"""README.md is made from nbs/index.ipynb, and CI runs the README's test command.

Regenerate the README after editing the notebook:  python tests/test_readme.py
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def render_readme() -> str:
    import nbformat
    from nbconvert import MarkdownExporter
    nb = nbformat.read(ROOT / "nbs" / "index.ipynb", as_version=4)
    from kdbook.distill import methods_table
    body, _ = MarkdownExporter().from_notebook_node(nb)
    body = body.replace("<!-- methods table -->", methods_table())   # from the method registry: the README cannot drift from it
    return "<!-- made from nbs/index.ipynb: edit the notebook, then run `python tests/test_readme.py` -->\n\n" + body.strip() + "\n"


def test_the_methods_table_lists_every_registered_method():
    from kdbook.distill import METHODS
    readme = (ROOT / "README.md").read_text()
    listed = re.findall(r"^\| `(\w+)` \|", readme.split("## Methods")[1].split("\n## ")[0], re.M)
    assert sorted(listed) == sorted(n for n in METHODS.names() if METHODS.get(n).distiller is None
                                    or METHODS.get(n).distiller.__module__.startswith("kdbook."))


def readme_test_command(readme: str) -> str:
    return re.search(r"<!-- test command -->\s*```bash\n(.*?)\n```", readme, re.S).group(1).strip()


def test_readme_is_rendered_from_index_notebook():
    assert (ROOT / "README.md").read_text() == render_readme(), "README.md is stale: run `python tests/test_readme.py`"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    cmd = readme_test_command(readme)
    assert "nbdev_test" in cmd and "pytest" in cmd
    assert "test command" in (ROOT / ".ci" / "run").read_text()


if __name__ == "__main__":
    (ROOT / "README.md").write_text(render_readme())
    print("README.md written from nbs/index.ipynb", file=sys.stderr)
