"""``daprforge new`` and ``daprforge kinds`` from the outside: what is written, what is
refused (exit code 2, a message saying what to type instead, nothing written), prompts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from daprforge.cli import app
from daprforge.generator import KINDS, GeneratorError, NewRequest, option_infos, prepare
from daprforge.generator.kinds import Kind, OptionInfo


def new(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["new", *args], catch_exceptions=False)


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_new_writes_the_project_and_says_what_next(cwd: Path) -> None:
    result = new(cwd, "crud-api", "exercise-service", "--resource", "exercise", "--defaults")
    assert result.exit_code == 0, result.output
    root = cwd / "exercise-service"
    assert (root / "app" / "main.py").is_file()
    assert (root / "tests" / "test_exercises.py").is_file()
    assert "resource: exercise" in (root / ".daprforge.yml").read_text()
    for step in ("cd exercise-service", "daprforge run", "pytest"):
        assert step in result.output


def test_dir_and_set(cwd: Path) -> None:
    result = new(
        cwd, "event-processor", "progress", "--dir", "services/progress",
        "--set", "topic=progress.v1", "--set", "max-retries=5", "--defaults",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    answers = (cwd / "services" / "progress" / ".daprforge.yml").read_text()
    assert "topic: progress.v1" in answers
    assert "max_retries: 5" in answers


BAD_INPUTS = [
    pytest.param(["crud-api", "Exercise_Service"], "exercise-service", id="uppercase-name"),
    pytest.param(["crud-api", "1st-service"], "st-service", id="name-starts-with-digit"),
    pytest.param(["crud-api", "x" * 64], "at most 63", id="name-too-long"),
    pytest.param(["crud-api", "class"], "class-service", id="python-keyword"),
    pytest.param(["crud-api", "fastapi"], "fastapi-service", id="dependency-name"),
    pytest.param(["crud-api"], "Try: daprforge new", id="no-name"),
    pytest.param(["crud-apx", "svc"], "Did you mean crud-api", id="unknown-kind"),
    pytest.param(["crud-api", "svc", "--set", "resource"], "key=value", id="set-without-equals"),
    pytest.param(["crud-api", "svc", "--set", "=x"], "key=value", id="set-without-key"),
    pytest.param(["crud-api", "svc", "--set", "colour=red"], "unknown option", id="unknown-set"),
    pytest.param(["crud-api", "svc", "--topic", "x"], "option of event-processor", id="other-kind"),
    pytest.param(["crud-api", "svc", "--resourse", "x"], "Did you mean --resource", id="typo"),
    pytest.param(["crud-api", "svc", "--resource"], "needs a value", id="flag-without-value"),
    pytest.param(["crud-api", "svc", "--resource", "Exer cise"], "--resource", id="bad-resource"),
    pytest.param(["crud-api", "svc", "--resource", "metric"], "/metrics", id="reserved-route"),
    pytest.param(["crud-api", "svc", "--port", "80"], "1024 to 65535", id="privileged-port"),
    pytest.param(["crud-api", "svc", "--port", "70000"], "1024 to 65535", id="port-too-high"),
    pytest.param(["crud-api", "svc", "--port", "3500"], "Dapr sidecar", id="dapr-port"),
    pytest.param(["crud-api", "svc", "--set", "port=abc"], "valid integer", id="port-not-int"),
    pytest.param(
        ["crud-api", "svc", "--port", "8080", "--set", "port=8081"], "contradicts", id="twice"
    ),
    pytest.param(["crud-api", "svc", "--replicas", "0"], "--replicas", id="replicas"),
    pytest.param(["crud-api", "svc", "--image", "svc:latest"], ":latest", id="latest-image"),
    pytest.param(["crud-api", "svc", "--image", "svc"], "version tag", id="untagged-image"),
    pytest.param(
        ["event-processor", "svc", "--topic", "a", "--dead-letter-topic", "a"],
        "must differ",
        id="dead-letter-is-topic",
    ),
    pytest.param(["event-processor", "svc", "--topic", "bad topic!"], "Kafka", id="bad-topic"),
    pytest.param(["ai-agent", "svc", "--temperature", "3"], "--temperature", id="temperature"),
    pytest.param(["code-executor", "svc", "--timeout", "0"], "--timeout", id="timeout"),
]


@pytest.mark.parametrize(("args", "says"), BAD_INPUTS)
def test_bad_input_is_refused_and_nothing_is_written(cwd: Path, args: list[str], says: str) -> None:
    result = new(cwd, *args, "--defaults")
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Nothing was written." in result.output
    assert list(cwd.iterdir()) == []


def test_a_non_empty_folder_needs_force(cwd: Path) -> None:
    target = cwd / "svc"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    result = new(cwd, "code-executor", "svc", "--defaults")
    assert result.exit_code == 2
    assert "--force" in result.output
    assert [path.name for path in target.iterdir()] == ["notes.txt"]

    result = new(cwd, "code-executor", "svc", "--defaults", "--force")
    assert result.exit_code == 0, result.output
    assert (target / "notes.txt").read_text() == "mine"  # other files are kept
    assert (target / "app" / "main.py").is_file()


def test_a_file_in_the_way_is_refused(cwd: Path) -> None:
    (cwd / "svc").write_text("a file")
    result = new(cwd, "code-executor", "svc", "--defaults", "--force")
    assert result.exit_code == 2
    assert "not a folder" in result.output


def test_kinds_lists_every_kind_and_option() -> None:
    result = CliRunner().invoke(app, ["kinds"], terminal_width=250)
    assert result.exit_code == 0
    for kind in KINDS.values():
        assert kind.name in result.output
        for info in option_infos(kind):
            assert info.flag in result.output


def test_help_of_new_names_every_kind_option() -> None:
    result = CliRunner().invoke(app, ["new", "--help"], terminal_width=250)
    text = " ".join(result.output.split())
    for kind in KINDS.values():
        for info in option_infos(kind):
            if info.flag != "--port":
                assert info.flag in text, info.flag


class ScriptedPrompter:
    """Answers prompts from a script, recording what was asked and why."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, str | None]] = []

    def choose_kind(self) -> str:
        self.asked.append(("kind", None))
        return self.answers.pop(0)

    def ask_name(self, kind: Kind, problem: str | None) -> str:
        self.asked.append(("name", problem))
        return self.answers.pop(0)

    def ask_option(self, info: OptionInfo, default: str, problem: str | None) -> str:
        self.asked.append((info.key, problem))
        return self.answers.pop(0)


def test_prompts_ask_for_what_is_missing_and_again_after_a_bad_answer(tmp_path: Path) -> None:
    prompter = ScriptedPrompter("crud-api", "Bad Name", "exercises", "class", "")
    project = prepare(NewRequest(), cwd=tmp_path, prompter=prompter)
    assert project.names.name == "exercises"
    assert project.options.model_dump()["resource"] == "item"  # Enter: the default
    assert [key for key, _ in prompter.asked] == ["kind", "name", "name", "resource", "resource"]
    problems = [problem or "" for _, problem in prompter.asked]
    assert "not a valid Kubernetes" in problems[2]
    assert "keyword" in problems[4]


def test_given_values_are_not_asked_for(tmp_path: Path) -> None:
    prompter = ScriptedPrompter()
    request = NewRequest(kind="event-processor", name="svc", flags=("--topic", "t"))
    prepare(request, cwd=tmp_path, prompter=prompter)
    assert prompter.asked == []


def test_without_a_terminal_nothing_is_asked(tmp_path: Path) -> None:
    with pytest.raises(GeneratorError, match="say which kind"):
        prepare(NewRequest(), cwd=tmp_path, prompter=None)
