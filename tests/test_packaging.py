"""What hosting (a Hugging Face Space) and installing need from the repository's files."""

import ast
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _front_matter() -> dict:
    text = (REPO / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_space_front_matter():
    meta = _front_matter()
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert meta["license"] and (REPO / meta["license_link"]).is_file()
    assert 0 < len(meta["short_description"]) <= 60 and meta["tags"]
    assert "Apache License" in (REPO / "LICENSE").read_text()[:200]


def test_weights_go_through_lfs():
    rules = [line.split() for line in (REPO / ".gitattributes").read_text().splitlines() if line and line[0] != "#"]
    assert ["*.safetensors", "filter=lfs", "diff=lfs", "merge=lfs", "-text"] in rules


def test_runtime_requirements_are_lean():
    names = [line.split("==")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert "opencv-python-headless" in names and "opencv-python" not in names
    assert not {"scikit-image", "face-alignment", "dlib-bin"} & set(names)


def test_spaces_is_imported_before_torch():
    tree = ast.parse((REPO / "app.py").read_text())
    order = []
    for node in tree.body:
        if isinstance(node, ast.Try):
            node = node.body[0]
        if isinstance(node, ast.Import):
            order += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            order.append(node.module or "")
    first_heavy = min(i for i, name in enumerate(order) if name.split(".")[0] in ("torch", "gradio", "pipeline"))
    assert order.index("spaces") < first_heavy
