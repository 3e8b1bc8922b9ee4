"""The research notebooks run top to bottom offline (on their default synthetic data) and are committed clean.

Each ``notebooks/*.ipynb`` is executed with nbclient in a fresh kernel running this interpreter; any cell
error fails the test. The committed files must have no outputs and no execution counts, and every notebook
must have the cell that switches it to the user's own data (``MY_CSV = None``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
SWITCH = "MY_CSV = None"

pytestmark = pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks")


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


@pytest.fixture(scope="session")
def kernel_env(tmp_path_factory):
    """Make kernel "python3" start this interpreter (the venv's): if the installed kernelspec does not
    resolve to ``sys.executable``, install one into a temporary prefix and put it first on JUPYTER_PATH."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def resolves() -> bool:
        try:
            spec = KernelSpecManager().get_kernel_spec("python3")
        except NoSuchKernel:
            return False
        exe = spec.argv[0]
        # jupyter_client replaces a bare "python"/"python3"/"python3.X" with sys.executable
        bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
        return exe in bare or os.path.realpath(exe) == os.path.realpath(sys.executable)

    saved = os.environ.get("JUPYTER_PATH")
    if not resolves():
        from ipykernel.kernelspec import install

        prefix = tmp_path_factory.mktemp("kernel")
        install(prefix=str(prefix), kernel_name="python3")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(prefix / "share" / "jupyter"), saved]))
        assert resolves(), "could not point kernel 'python3' at this interpreter"
    yield
    if saved is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = saved


def _code_cells(path: Path) -> list[dict]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_clean(path):
    """No outputs or execution counts in the repository copy (strip them before committing)."""
    dirty = [i for i, c in enumerate(_code_cells(path)) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs or execution counts; strip them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_has_own_data_switch(path):
    """A cell switches the notebook to the researcher's own data."""
    assert any(SWITCH in _source(c) for c in _code_cells(path)), f"{path.name}: no '{SWITCH}' cell"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_runs_top_to_bottom(path, kernel_env):
    """Execute every cell in a fresh kernel, in the notebooks folder, offline; any error fails."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name} failed:\n{err}", pytrace=False)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
