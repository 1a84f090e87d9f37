"""The documents are true: every training line of README.md, TRAINING.md and docs/ parses with
today's flags, every ImageNet line trains the paper's recipe, every bench.py command of
BENCHMARKS.md is in bench.py's current form, docs/flags.md names every flag of the table and
exactly the flags a resume may give anew, and the README stays a page a newcomer reads."""
import os
import re
import shlex

import pytest

import cifar
import imagenet
from benchmarks.cli import parser as bench_parser
from benchmarks.step import model_settings as bench_model_settings
from builders import REPO
from utils.scripts import cifar_flags, imagenet_flags
from utils.session.stages import read_settings
from utils.settings.resume import applied_on_resume


DOCUMENTS = ("README.md", "TRAINING.md") + tuple(
    os.path.join("docs", name) for name in sorted(os.listdir(os.path.join(REPO, "docs")))
    if name.endswith(".md"))


def test_the_readme_is_short_and_sets_up_in_the_right_order():
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    assert len(text.splitlines()) < 250
    setup = text[text.index("## Set up and test"):text.index("## Quick start")]
    assert setup.index("--index-url https://download.pytorch.org/whl/cpu") < \
        setup.index("pip install -r requirements.txt")  # the CPU wheel comes first


def commands(document, script):
    """The ``script`` command lines of a markdown document (its code blocks, and inline code
    that starts with python or torchrun), with torchrun's launcher and a trailing comment
    removed."""
    with open(os.path.join(REPO, document)) as f:
        text = f.read()
    candidates, fenced, lines = [], False, text.replace("\\\n", " ").splitlines()
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        elif fenced and line.strip().startswith(("python ", "torchrun ")):
            candidates.append(line.strip())
    outside = re.sub(r"```.*?```", "", text, flags=re.S)  # inline code may span lines
    candidates += [" ".join(c.split()) for c in
                   re.findall(r"`((?:python|torchrun) [^`]*)`", outside)]
    found = []
    for candidate in candidates:
        words = shlex.split(candidate.split("  #")[0])
        if script in words and words[0] in ("python", "torchrun"):
            found.append(words[words.index(script) + 1:])
    return found


def lines_of(script):
    return [(doc, argv) for doc in DOCUMENTS for argv in commands(doc, script)
            if "--resume" not in argv and "$seed" not in " ".join(argv)]


@pytest.mark.parametrize("doc, argv", lines_of("cifar.py"),
                         ids=lambda v: v if isinstance(v, str) else " ".join(v)[:60])
def test_every_documented_cifar_line_parses(doc, argv):
    read_settings(cifar.cifar_flags(), argv)


IMAGENET_LINES = lines_of("imagenet.py")


@pytest.mark.parametrize("doc, argv", IMAGENET_LINES,
                         ids=lambda v: v if isinstance(v, str) else " ".join(v)[:60])
def test_every_documented_imagenet_line_trains_the_papers_recipe(doc, argv):
    settings, _ = read_settings(imagenet.imagenet_flags(), argv)
    schedule = settings.recipe.schedule
    if schedule.name == "step":
        assert all(m < schedule.epochs for m in schedule.milestones), (doc, argv)
        if schedule.epochs == 90:
            assert schedule.milestones == (30, 60), (doc, argv)


def test_the_imagenet_lines_are_found():
    assert len(IMAGENET_LINES) >= 10


def test_the_defaults_of_imagenet_py_are_the_papers_recipe():
    settings, _ = read_settings(imagenet.imagenet_flags(), ["--data", "."])
    assert settings.recipe.schedule.epochs == 90 and settings.recipe.schedule.milestones == (
        30, 60)
    assert settings.recipe.lr == 0.1 and settings.recipe.weight_decay == 1e-4


def bench_commands():
    """BENCHMARKS.md's bench.py commands, less those with a placeholder (ARCH, SETTINGS, B)."""
    return [argv for argv in commands("BENCHMARKS.md", "bench.py")
            if not {"ARCH", "SETTINGS", "B", "MODE"} & set(argv)]


@pytest.mark.parametrize("argv", bench_commands(), ids=lambda v: " ".join(v)[:60])
def test_every_bench_command_of_benchmarks_md_is_in_todays_form(argv):
    args, model_flags = bench_parser().parse_known_args(argv)
    if args.command in ("step", "ops", "fold"):
        bench_model_settings(model_flags)  # the scripts' own parsers take the model flags
    else:
        assert model_flags == [], model_flags


def test_the_bench_commands_are_found():
    assert len(bench_commands()) >= 15


def flags_section():
    with open(os.path.join(REPO, "docs", "flags.md")) as f:
        return f.read()


@pytest.mark.parametrize("make", [cifar_flags, imagenet_flags], ids=["cifar.py", "imagenet.py"])
def test_every_flag_of_the_table_is_in_the_flags_page(make):
    section = flags_section()
    missing = [flag.long for flag in make().flags.values()
               if not any(re.search(rf"`{re.escape(n)}[ `/]", section) for n in flag.names)]
    assert not missing, missing


def test_the_flags_pages_table_is_the_one_the_flag_entries_make():
    """docs/flags.md's table is made from the entries (python -m utils.scripts), so every
    documented default, range, choice and resume policy is the code's."""
    from utils.scripts import CIFAR, IMAGENET
    from utils.settings.page import flags_table, with_table
    page = flags_section()
    table = flags_table({CIFAR.script: cifar_flags(), IMAGENET.script: imagenet_flags()})
    assert with_table(page, table) == page, "run python -m utils.scripts to remake the table"


def test_the_flags_table_says_each_scripts_default():
    page = flags_section()
    assert "| `--gn-groups` | model | `8` | `32` |" in page
    assert "| `--decode` | data | (no such flag) | `cpu` |" in page
    assert "the run's, unless written" in page


def test_a_page_without_the_markers_is_refused():
    from utils.settings.page import with_table
    with pytest.raises(ValueError, match="markers"):
        with_table("# Flags\n", "| flag |")


def test_the_flags_a_resume_applies_are_marked_in_the_table():
    """Which recorded flags a --resume may give anew is said once, by the generated table."""
    from utils.settings.page import BEGIN, END
    flags = cifar_flags().flags
    page = flags_section()
    table = page.split(BEGIN, 1)[1].split(END, 1)[0].splitlines()
    for name in applied_on_resume(flags):
        row = next(line for line in table if line.startswith(f"| `{flags[name].names[0]}`"))
        assert row.endswith("| kept; may be given anew |"), row
    assert "`--epochs`, `--lr`, `--momentum`" not in page  # no hand-kept list beside it