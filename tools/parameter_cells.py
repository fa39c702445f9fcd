"""Write every study notebook's ``parameters`` cell from its study's declaration
(``SCHEMA`` in ``sagekit/studies/<study>.py``). ``--check``: only say which differ (exit 1).
tests/test_notebooks.py fails while a cell and its declaration differ."""

import sys

import nbformat

from sagekit.studies import STUDIES
from sagekit.studies.parameters import parameters_cell


def main(argv: list[str]) -> int:
    stale = []
    for study in STUDIES.values():
        nb = nbformat.read(study.path, as_version=4)
        cell = next(c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", []))
        want = parameters_cell(study.schema)
        if cell.source != want:
            stale.append(study.notebook)
            if "--check" not in argv:
                cell.source = want
                nbformat.write(nb, study.path)
    print("\n".join(f"{'stale' if '--check' in argv else 'wrote'}: {n}" for n in stale) or "every cell is current")
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
