"""The one Markdown table writer the results files share."""

from asrprune.results.markdown import markdown_table


def test_names_left_numbers_right_unless_told():
    table = markdown_table(("model", "sparsity", "WER"), [("omp", "50%", "1.00")], left=2)
    assert table == "| model | sparsity | WER |\n| --- | --- | ---: |\n| omp | 50% | 1.00 |\n"
    custom = markdown_table(("a", "b"), [], align=("---:", "---"))
    assert custom.splitlines() == ["| a | b |", "| ---: | --- |"]
