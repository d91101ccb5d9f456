"""Papercuts a newcomer meets in the first ten minutes (issue 17), through the command line."""

from __future__ import annotations

import re

from fewgen.cli import main


def test_data_list_is_uniform_with_one_example_per_source(capsys):
    from fewgen.tasks.mix import parse_mixture
    from fewgen.tasks.spec import SOURCES, parse_spec

    assert main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(SOURCES) + 1  # every source, then the mixture syntax
    starts = [line.split()[0].split(":")[0] for line in lines]
    assert starts[:-1] == sorted(SOURCES) and starts[-1] == "SPEC+SPEC"  # every line starts with its spec name
    for line in lines:
        syntax, example = re.fullmatch(r"  (\S.*?)  +\S.*?  +e\.g\. (\S+)", line).groups()
        name = syntax.split()[0].split(":")[0]
        for src, _ in parse_mixture(example):  # the example is a valid spec of this source
            assert parse_spec(src)[0] == name or name == "SPEC+SPEC"
    assert len({line.index("e.g.") for line in lines}) == 1  # aligned columns
