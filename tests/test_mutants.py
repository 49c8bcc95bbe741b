"""The mutation check (tests/mutants.py, `make mutants`): every mutant applies to the tree as it is, and
one runs end to end in a temporary copy and is killed."""

from pathlib import Path

import mutants
import pytest


@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=lambda m: m.name)
def test_each_mutant_line_occurs_once(mutant, tmp_path):
    source = mutants.ROOT / mutant.path
    (tmp_path / Path(mutant.path).parent).mkdir(parents=True)
    (tmp_path / mutant.path).write_text(source.read_text())
    mutants.apply(mutant, tmp_path)
    changed = (tmp_path / mutant.path).read_text()
    assert changed != source.read_text() and mutant.new in changed


def test_a_mutant_in_a_copy_is_killed_and_the_tree_is_untouched():
    score_table = mutants.MUTANTS[0]
    before = (mutants.ROOT / score_table.path).read_bytes()
    status, test = mutants.run_mutant(score_table, ["tests/test_answers.py"])
    assert (status, test) == ("killed", "tests/test_answers.py::test_score_and_weight_tables_hand_values")
    assert (mutants.ROOT / score_table.path).read_bytes() == before
