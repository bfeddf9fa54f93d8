"""The package's layers (README's Architecture): each folder imports only the ones before it."""
import ast
import pathlib

ORDER = ["model", "host", "kernel", "engine", "service", "client"]
PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "prisond"


def imported_layers(path: pathlib.Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "prisond" and len(parts) > 1:
                out.add(parts[1])
    return out


def test_no_layer_imports_a_later_one():
    wrong = []
    for layer in ORDER:
        for path in sorted((PACKAGE / layer).glob("*.py")):
            later = {m for m in imported_layers(path) if m in ORDER and ORDER.index(m) > ORDER.index(layer)}
            if later:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {sorted(later)}")
    assert not wrong, wrong
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(ORDER)
