"""notebooks/ugradsl_walkthrough.ipynb runs top to bottom and shows forgetting.

Executes the notebook with nbclient in notebooks/ (as a reader would), with the
shared CIFAR-10 copy and a temporary workdir passed through the environment.
Takes a minute or two on the 2-core CPU machine.
"""

import json
import re

import pytest

from conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "ugradsl_walkthrough.ipynb"
CELL_TIMEOUT_S = 900


def _text(output) -> str:
  if output.get("output_type") == "stream":
    return output.get("text", "")
  data = output.get("data", {})
  return data.get("text/markdown", "") + data.get("text/plain", "")


@pytest.fixture(scope="module")
def executed(shared_tar, tmp_path_factory):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  workdir = tmp_path_factory.mktemp("notebook_workdir")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("UGRADSL_DATA_DIR", str(shared_tar))
    mp.setenv("UGRADSL_NOTEBOOK_WORKDIR", str(workdir))
    mp.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell
  return nb, workdir


def _committed():
  nbformat = pytest.importorskip("nbformat")
  return nbformat.read(NOTEBOOK, as_version=4)


def test_committed_with_the_outputs_of_one_clean_run():
  """A reader sees results without running anything: every code cell holds
  outputs from one top-to-bottom run (execution counts 1, 2, ...), none an
  error, with the figures and the own-model result the run must produce."""
  code = [c for c in _committed().cells if c.cell_type == "code"]
  assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), \
      "rerun the notebook top to bottom in a fresh kernel before committing it"
  outputs = [o for c in code for o in c.outputs]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
  text = "\n".join(_text(o) for o in outputs)
  own = json.loads(re.search(r"YOUR_MODEL (\{.*\})", text).group(1))
  assert own["before"]["UA"] < 40 and own["after"]["UA"] > 90, own
  # No path of the machine that ran it (a user's checkout is elsewhere).
  assert "/work/" not in text and "/tmp/" not in text


def test_says_how_to_point_it_at_data():
  """Without a local copy the notebook names the variable to set; it does
  not look for data outside the repository."""
  first = "".join(c.source for c in _committed().cells[:2])
  assert "UGRADSL_DATA_DIR" in first and "docs/data.md" in first
  assert "shared" not in first


def test_runs_and_forgets(executed):
  nb, workdir = executed
  code = [c for c in nb.cells if c.cell_type == "code"]
  outputs = [o for c in code for o in c.outputs]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  text = "\n".join(_text(o) for o in outputs)

  # Section 0: the user's own CNN, unlearned through the public API, forgets
  # its class (UA and MIA up to near 100) and keeps most of the rest.
  m = re.search(r"YOUR_MODEL (\{.*\})", text)
  assert m, "the notebook's YOUR_MODEL line is missing"
  own = json.loads(m.group(1))
  assert own["before"]["UA"] < 40 and own["after"]["UA"] > 90, own
  assert own["after"]["RA"] > own["before"]["RA"] - 10, own

  # Section 1: the NLS targets for alpha = -1 put 1.90 on the true class.
  assert "| -1.0 | 1.90 | -0.10 | 1.00 |" in text

  # Section 2: the protocol table has the three method rows and ran in WORKDIR.
  for row in ("| Retrain |", "| GA |", "| UGradSL |"):
    assert row in text, f"results table lacks {row}"
  assert (workdir / "results.json").exists()

  # Section 3: the histograms were drawn, and unlearning lowered the forget
  # set's mean true-label confidence.
  assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
  m = re.search(r"SUMMARY (\{.*\})", text)
  assert m, "the notebook's SUMMARY line is missing"
  summary = json.loads(m.group(1))
  assert set(summary) == {"original", "ugradsl", "retrain"}
  for s in summary.values():
    assert all(0.0 <= s[k] <= 1.0 for k in ("forget", "retain", "test"))
  assert summary["ugradsl"]["forget"] < summary["original"]["forget"], summary
