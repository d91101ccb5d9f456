"""Papercuts a newcomer meets in the first ten minutes (issue 17), through the command line."""

from __future__ import annotations

import re

import pytest

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


@pytest.mark.parametrize("command", [
    ["train", "--data", "toy", "--steps", "1", "--quiet"],
    ["adapt", "CKPT", "--support", "x.png"],
    ["bench", "--data", "toy", "--quiet"],
    ["demo", "--seconds", "1", "--quiet"],
])
@pytest.mark.parametrize("where", ["afile", "afile/run"])
def test_out_that_is_a_file_says_out_must_be_a_folder(tmp_path, capsys, command, where):
    (tmp_path / "afile").write_text("not a folder")
    out = str(tmp_path / where)
    assert main([*command, "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fewgen: error: --out {out} ") and len(err.splitlines()) == 1
    assert err.endswith("--out must be a folder (a new one, or a fewgen run folder)")
    assert not (tmp_path / "afile").is_dir() and (tmp_path / "afile").read_text() == "not a folder"


@pytest.mark.parametrize("command", [["sample", "CKPT"], ["data", "show", "glyphs"], ["eval", "CKPT"]])
def test_file_output_that_is_a_folder_says_so(tmp_path, capsys, command):
    flag = "--json" if command[0] == "eval" else "--out"
    assert main([*command, flag, str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fewgen: error: {flag} {tmp_path} is a folder; {flag} must be a file name, e.g. {tmp_path}/")
