"""Progress bars on the long loops without an accelerator: hashing evaluation data, checking examples, asking the
judge. Each is a tqdm with the loop's length as its total (the bar class is swapped for a recorder)."""

from pathlib import Path
from typing import Any, ClassVar

import pytest

from unlearning.data.examples import Example


class Bar:
    """Records how a bar was made and advanced; iterates like tqdm."""

    made: ClassVar[list["Bar"]] = []

    def __init__(self, iterable: Any = None, total: int | None = None, desc: str = "", **options: Any) -> None:
        self.iterable, self.total, self.desc, self.n, self.options = iterable, total, desc, 0, options
        Bar.made.append(self)

    def __iter__(self):
        for item in self.iterable:
            self.n += 1
            yield item

    def update(self, n: int = 1) -> None:
        self.n += n

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


@pytest.fixture()
def bars(monkeypatch) -> list[Bar]:
    import unlearning.runs.progress as progress

    Bar.made = []
    monkeypatch.setattr(progress, "tqdm", Bar)
    return Bar.made


def test_content_hash_counts_its_files_and_images(bars: list[Bar], tmp_path: Path):
    from PIL import Image

    from unlearning.runs.fingerprint import content_hash

    (tmp_path / "a.png").write_bytes(b"png")
    data = {"examples": [Example("q", "a", tmp_path / "a.png", uid="1"), Example("q", "a", b"raw", uid="2")],
            "image": Image.new("RGB", (2, 2)), "text": ["no file"]}
    assert content_hash(data, desc="hash forget") == content_hash(data)  # the bar changes nothing
    (bar,) = bars
    assert (bar.desc, bar.total, bar.n) == ("hash forget", 3, 3)


def test_validate_examples_shows_each_stream(bars: list[Bar], collator):
    from unlearning.data.streams import validate_examples

    examples = [Example(f"q{i}?", "a", uid=str(i)) for i in range(3)]
    validate_examples(collator, {"forget": examples, "retain": examples[:1]}, "benchmark 'b'")
    assert [(bar.desc, bar.total, bar.n) for bar in bars] == [("check forget", 3, 3), ("check retain", 1, 1)]


def test_judge_requests_show_progress(bars: list[Bar], tmp_path: Path, monkeypatch):
    from tests.fake_openai import fake_openai_server
    from unlearning.evaluation.judge.client import Judge
    from unlearning.evaluation.judge.settings import JudgeSettings

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with fake_openai_server() as url:
        replies = Judge(JudgeSettings(base_url=url, cache_dir=str(tmp_path))).complete_many(
            [f"score=0.{i}0" for i in range(3)])
    assert [reply.text.split()[0] for reply in replies] == ["0.00", "0.10", "0.20"]
    (bar,) = bars
    assert (bar.desc, bar.total, bar.n) == ("judge", 3, 3)


def test_bars_are_off_beside_the_main_process(monkeypatch):
    from unlearning.runs.progress import local_main, progress

    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not local_main() and progress(range(2), total=2, desc="x").disable
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert local_main()
