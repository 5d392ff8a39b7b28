"""The evaluation runner's smoke check (``eval.limit``) and prompt record (``eval.write_prompts``), through the real
evaluation command on the small model and the built-in FIUBench: a model by path, no reference run."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from eval.release import Drawn, Subset
from unlearning.compat import Compat
from unlearning.evaluation.runner import EvalSettings, first
from unlearning.recipes.common import CONFIG_DIR
from unlearning.recipes.evaluate import evaluate

FAST = ("eval.general=null", "eval.bootstrap.resamples=20", "eval.batch_size=8", "eval.max_new_tokens=8")


def eval_config(root: Path, fiu_dir: Path, tiny_dir: Path, *overrides: str):
    """The evaluation command's config: the small model by path on the built-in FIUBench (no reference run)."""
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose("eval", overrides=[f"run_root={root}", f"data_dir={fiu_dir}", f"model.path={tiny_dir}",
                                          f"model_path={tiny_dir}", *FAST, *overrides])


def external_run(root: Path) -> Path:
    (run,) = (root / "fiubench" / "tiny").glob("external_tiny-llava-*")
    return run


def files_of(folder: Path, leave_out: str) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file() and leave_out not in path.parts}


@pytest.mark.parametrize("limit", [0, -1, "x", 1.5, True])
def test_a_bad_limit_names_the_setting(limit):
    base = {"batch_size": 2, "max_new_tokens": 4}
    with pytest.raises(ValueError, match="eval.limit must be a positive whole number or null"):
        EvalSettings.from_config({**base, "limit": limit}, Compat.of("fiubench", "default"))


def test_a_bad_limit_stops_the_command_before_any_model(tmp_path: Path, fiu_dir: Path, tiny_dir: Path):
    with pytest.raises(ValueError, match="eval.limit"):
        evaluate(eval_config(tmp_path / "runs", fiu_dir, tiny_dir, "eval.limit=x"))
    assert not (tmp_path / "runs").exists()


def test_first_keeps_a_release_list_and_its_notes():
    drawn = Drawn([1, 2, 3])
    drawn.subset = Subset(3, 9, 0)
    cut = first(drawn, 2)
    assert isinstance(cut, Drawn) and list(cut) == [1, 2] and cut.subset == drawn.subset and list(drawn) == [1, 2, 3]
    assert first(drawn, None) is drawn and first((1, 2, 3), 1) == (1,)


def test_limit_evaluates_the_first_items_apart_and_the_table_marks_it(tmp_path: Path, fiu_dir: Path,
                                                                      tiny_dir: Path, monkeypatch):
    from results_collect import collect

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    root = tmp_path / "runs"
    (full,) = evaluate(eval_config(root, fiu_dir, tiny_dir))
    run = external_run(root)
    before = files_of(run / "eval", "limit_2")
    collect(root, tmp_path / "before")
    table_before = json.loads((tmp_path / "before" / "fiubench.json").read_text())["rows"]

    (smoke,) = evaluate(eval_config(root, fiu_dir, tiny_dir, "eval.limit=2"))
    assert files_of(run / "eval", "limit_2") == before  # the full evaluation's files untouched
    limited = run / "eval" / "limit_2"
    assert smoke["limit"] == 2 and "limit" not in full
    assert smoke["forget"]["n"] == 2 and smoke["retain"]["n"] == 2 and full["forget"]["n"] == 6
    for name in ("forget10", "retain15", "holdout"):
        stored = json.loads((limited / f"{name}.json").read_text())
        assert len(stored["samples"]) == 2 and stored["fingerprint"]["limit"] == 2
        assert "limit" not in json.loads((run / "eval" / f"{name}.json").read_text())["fingerprint"]
    assert json.loads((limited / "summary.json").read_text()) == smoke
    assert not (limited / "metrics.jsonl").exists() and not (limited / "prompts").exists()

    again = (limited / "forget10.json").stat().st_mtime_ns
    evaluate(eval_config(root, fiu_dir, tiny_dir, "eval.limit=2"))
    assert (limited / "forget10.json").stat().st_mtime_ns == again  # cached like any part

    rows = collect(root, tmp_path / "results")["fiubench"]
    assert [row["run"] for row in rows] == [run.name]  # what other readers get: the full evaluation only
    table = json.loads((tmp_path / "results" / "fiubench.json").read_text())["rows"]
    assert table[0] == table_before[0]  # the full row as it was, first
    assert table[1]["run"] == f"{run.name} (first 2)" and table[1]["limit"] == 2
    assert f"| {run.name} (first 2) |" in (tmp_path / "results" / "fiubench.md").read_text()
    assert f"{run.name} (first 2)" in (tmp_path / "results" / "fiubench.csv").read_text()


def test_write_prompts_records_what_the_model_and_the_judge_were_sent(tmp_path: Path, fiu_dir: Path,
                                                                      tiny_dir: Path, monkeypatch):
    from fiubench.data import FiuBench
    from tests.fake_openai import FakeOpenAI, fake_openai_server
    from unlearning.models.loading import load_model, load_processor
    from unlearning.recipes.common import make_collator
    from unlearning.recipes.slices import EvalConfig

    root, secret = tmp_path / "runs", "sk-secret-never-on-disk"
    with fake_openai_server() as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        monkeypatch.setenv("OPENAI_API_KEY", secret)
        cfg = eval_config(root, fiu_dir, tiny_dir, "eval.limit=1", "eval.write_prompts=true",
                          f"eval.judge.cache_dir={tmp_path}/cache")
        (summary,) = evaluate(cfg)
    assert summary["judge"]["status"] == "scored"
    folder = external_run(root) / "eval" / "limit_1" / "prompts"
    sent = [json.loads(line) for line in (folder / "forget10.jsonl").read_text().splitlines()]
    assert {record["kind"] for record in sent} == {"generate", "score"}
    assert {record["uid"] for record in sent} == {FiuBench(fiu_dir).qas("forget10")[0].uid}

    example = FiuBench(fiu_dir).qas("forget10")[0].example()
    collator = make_collator(load_processor(tiny_dir), load_model(tiny_dir).generation_config,
                             EvalConfig.from_config(cfg).prompt.system_prompt)
    generated = next(r for r in sent if r["kind"] == "generate")
    scored = next(r for r in sent if r["kind"] == "score")  # the answer's own scoring comes first
    assert generated["text"] == collator.generation_text(example) and generated["images"] == 1
    assert scored["text"] == collator.target_text(example)[0]

    asked = [json.loads(line) for line in (folder / "forget10.judge.jsonl").read_text().splitlines()]
    assert asked and all(record["model"] == "gpt-4o-mini" and "max_tokens" in record for record in asked)
    bodies = [request["body"]["messages"] for request in FakeOpenAI.requests]
    assert all(record["messages"] in bodies for record in asked if not record["cached"])
    assert (folder / "retain15.jsonl").is_file() and (folder / "holdout.jsonl").is_file()
    assert secret not in "".join(path.read_text() for path in (root).rglob("*") if path.is_file()
                                 and path.suffix in (".json", ".jsonl"))


def _benchmark_data(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str, str | None]:
    """(data folder, forget split, retain split) of a benchmark's built-in data."""
    if name == "efuf":
        from efuf.synthetic import write_efuf

        write_efuf(tmp_path / "efuf", n_pretrain=4, n_images=6, image_size=56, seed=3)
        return tmp_path / "efuf", "curated", None
    fixture, forget, retain = {"fiubench": ("fiu_dir", "forget10", "retain15"), "mllmu": ("mllmu_dir", "forget_15",
                                                                                         None),
                               "safeeraser": ("safe_dir", "train", None)}[name]
    return request.getfixturevalue(fixture), forget, retain


@pytest.mark.parametrize("name", ["fiubench", "mllmu", "safeeraser", "efuf"])
def test_every_builder_cuts_its_parts_through_the_engine(name: str, request: pytest.FixtureRequest, tmp_path: Path):
    """Each benchmark passes the lists it scores through ``EvalSettings.limited``: every part scores other data (its
    first items), and the engine knows the limit was applied (a builder that ignores it is refused)."""
    from unlearning.benchmarks import benchmark_class

    data_dir, forget, retain = _benchmark_data(name, request, tmp_path)
    benchmark = benchmark_class(name)(data_dir)
    base = {"batch_size": 2, "max_new_tokens": 4, "judge": {"enabled": "false"}}
    compat = Compat.of(name, "default")
    full = benchmark.evaluation(EvalSettings.from_config(base, compat), forget, retain)
    settings = EvalSettings.from_config({**base, "limit": 1}, compat)
    limited = benchmark.evaluation(settings, forget, retain)
    assert settings.limit_applied and set(limited.parts) == set(full.parts)
    for key, part in limited.parts.items():
        assert part.data_hash != full.parts[key].data_hash, key
        assert part.key(compat, None, settings.limit)["limit"] == 1 and "limit" not in full.parts[key].key(compat, None)


def test_a_benchmark_that_ignores_the_limit_is_refused():
    """CLEAR or UMU-Bench before their builders call ``EvalSettings.limited``: no full evaluation filed as a smoke
    check."""
    from types import SimpleNamespace

    from unlearning.evaluation.runner import Evaluation
    from unlearning.recipes.evaluate import build_evaluation

    class Ignores:
        name = "ignores"

        def evaluation(self, settings, forget_split, retain_split, **options):
            return Evaluation({}, lambda results, reference: {})

    config = SimpleNamespace(forget_split="forget", retain_split=None, eval_options={}, general_evals=[], general=None)
    settings = EvalSettings.from_config({"batch_size": 2, "max_new_tokens": 4, "limit": 3},
                                        Compat.of("fiubench", "default"))
    with pytest.raises(ValueError, match="eval.limit: benchmark 'ignores' does not apply it"):
        build_evaluation(config, Ignores(), settings, None)


def test_limit_with_an_attack_is_refused_before_any_model(tmp_path: Path, fiu_dir: Path, tiny_dir: Path):
    with pytest.raises(ValueError, match="eval.limit: an attacked evaluation"):
        evaluate(eval_config(tmp_path / "runs", fiu_dir, tiny_dir, "eval.limit=2", "attack=quantize_8bit"))
