"""Shared by the scripts' tests: the fixture results (hand-written, schema 2 as docs/loadgen.md
documents it) and a scratch directory laid out as the scripts lay out theirs."""
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
SCRIPTS = TESTS.parent
for path in (SCRIPTS, SCRIPTS / "lib"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


class RunDir(unittest.TestCase):
    """A test with a scratch output directory, removed afterwards."""

    def setUp(self):
        self.out = Path(tempfile.mkdtemp(prefix="tickcast-scripts-test-"))
        self.addCleanup(shutil.rmtree, self.out)

    def put(self, fixture, name):
        """Copies fixture FIXTURE.json to NAME (a file name the script looks for)."""
        shutil.copy(FIXTURES / f"{fixture}.json", self.out / name)
        return self.out / name

    def write(self, name, text):
        (self.out / name).write_text(text)
        return self.out / name


def rows(markdown, first_cell):
    """The cells of the markdown table rows whose first cell is `first_cell`."""
    found = []
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            found.append(cells)
    return found
