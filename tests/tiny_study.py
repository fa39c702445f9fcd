"""A tiny study (a two-cell notebook, no model) to test how `sagekit run` runs, fails and
cleans up, in a kernel that starts in seconds. Run as a script, it registers the study and
calls the CLI: python tiny_study.py FOLDER [sagekit run arguments after the study id]."""

import sys
from pathlib import Path

import nbformat

from sagekit import studies
from sagekit.studies import Study
from sagekit.studies.parameters import Choice, Float, Parameter, Schema

ID = "tiny-test-study"
SCHEMA = Schema({"sleep": Parameter(Float(0, 600), 0.0), "fail": Parameter(Choice((True, False)), False)}, lambda p: 1)


def register(folder, monkeypatch=None) -> Study:
    """Write the notebook into ``folder`` and register it as study ``tiny-test-study``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"},
                                            "language_info": {"name": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("sleep = 0.0\nfail = False", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import time\nfrom pathlib import Path\n\n"
                                          "Path('sleeping').touch()  # a test waits for this cell to run\n"
                                          "time.sleep(sleep)"),
                nbformat.v4.new_code_cell("if fail:\n    raise ValueError('boom from the notebook')\nprint('done')")]
    nbformat.write(nb, folder / "tiny.ipynb")
    study = Study(ID, "tiny.ipynb", "Does the runner run?", ready=True, folder=folder, module=__name__)
    if monkeypatch is None:
        studies.STUDIES[ID] = study
    else:
        monkeypatch.setitem(studies.STUDIES, ID, study)
    return study


if __name__ == "__main__":
    from sagekit.cli import main

    register(sys.argv[1])
    sys.exit(main(["run", ID, *sys.argv[2:]]))
