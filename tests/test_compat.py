"""The compat mechanism: one declaration per original behaviour, every switch with its docs/fidelity.md row and
every compat row with its switches; the modes and single switches; values set before validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from unlearning.benchmarks import benchmark_names
from unlearning.compat import Compat, Switch, apply_switches, declare, declared, resolve

FIDELITY = Path(__file__).resolve().parents[1] / "docs" / "fidelity.md"
SECTIONS = {  # docs/fidelity.md section title -> benchmark
    "FIUBench": "fiubench",
    "MLLMU-Bench": "mllmu",
    "SafeEraser": "safeeraser",
    "EFUF": "efuf",
    "CLEAR": "clear",
    "UMU-Bench": "umu",
}


def fidelity_rows() -> dict[str, dict[str, str]]:
    """benchmark -> row id -> its compat=official cell."""
    rows: dict[str, dict[str, str]] = {}
    benchmark = None
    for line in FIDELITY.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            benchmark = next((b for title, b in SECTIONS.items() if line[3:].startswith(title)), None)
        match = re.match(r"^\| ([A-Z]?\d+b?) \| ", line)
        if benchmark and match:
            rows.setdefault(benchmark, {})[match.group(1)] = line.rstrip().rsplit(" | ", 1)[1].rstrip(" |")
    return rows


def test_every_benchmark_section_is_read():
    assert set(fidelity_rows()) == set(SECTIONS.values()) == set(benchmark_names())


@pytest.mark.parametrize("benchmark", sorted(SECTIONS.values()))
def test_every_switch_has_its_fidelity_rows_and_every_compat_row_its_switches(benchmark: str):
    rows = fidelity_rows()[benchmark]
    switches = declared(benchmark)
    assert switches, f"{benchmark} declares no compat switch"
    for switch in switches:
        for row in switch.fidelity:
            assert row in rows, f"{benchmark} switch {switch.name}: docs/fidelity.md has no row {row}"
            assert f"`{switch.name}`" in rows[row], f"row {row} does not name the switch {switch.name}"
    for row, cell in rows.items():
        named = set(re.findall(r"`([a-z_0-9]+)`", cell.split(":")[0]))
        if cell.startswith("yes"):
            owners = {s.name for s in switches if row in s.fidelity}
            assert owners and named == owners, f"{benchmark} row {row}: names {named}, switches {owners}"
        else:
            assert not named & {s.name for s in switches}, f"{benchmark} row {row} names a switch but says no"


def test_modes_and_single_switches():
    assert Compat.of("fiubench").on == frozenset()
    official = Compat.of("fiubench", "official")
    assert official.on == {s.name for s in declared("fiubench")} and official.mode == "official"
    assert official.cut_at_first_period and not Compat.of("fiubench").cut_at_first_period
    one = resolve({"mode": "default", "cut_at_first_period": True}, "fiubench")
    assert one.on == {"cut_at_first_period"} and one.mode == "custom"
    all_but_one = resolve({"mode": "official", "file_order": False}, "fiubench")
    assert "file_order" not in all_but_one.on and len(all_but_one.on) == len(declared("fiubench")) - 1
    assert official.at("train") == sorted(s.name for s in declared("fiubench") if "train" in s.stages)
    assert "cut_at_first_period" in official.at("eval") and "file_order" not in official.at("eval")


def test_bad_values_name_the_setting():
    with pytest.raises(ValueError, match="compat.file_order must be true, false or null"):
        resolve({"mode": "default", "file_order": "yes"}, "fiubench")
    with pytest.raises(ValueError, match="compat must be one of"):
        resolve({"mode": "paper"}, "fiubench")
    with pytest.raises(ValueError, match="has no such switch"):
        resolve({"mode": "default", "beam_search_captions": True}, "fiubench")  # EFUF's, not FIUBench's


def test_switch_values_are_set_only_where_they_apply_and_never_over_the_command_line():
    cfg = OmegaConf.create({"shuffle": True, "method": {"name": "gd_pd", "params": {"pd_weight": 1.0,
                                                                                   "retain_weight": 1.0}}})
    assert apply_switches(cfg, Compat.of("safeeraser", "official"), "train") == [
        "shuffle", "method.params.pd_weight", "method.params.retain_weight"]  # keys absent from cfg are left alone
    assert cfg.method.params.pd_weight == 0.5 and cfg.shuffle is False
    assert apply_switches(OmegaConf.create({"shuffle": True}), Compat.of("mllmu", "official"), "train") == []
    kl_pd = OmegaConf.create({"method": {"name": "kl_pd", "params": {"pd_weight": 1.0}, "base": {"reduction": "x"}}})
    apply_switches(kl_pd, Compat.of("safeeraser", "official"), "train")
    assert kl_pd.method.params.pd_weight == 1.0 and kl_pd.method.base.reduction == "all_positions"
    assert apply_switches(OmegaConf.create({"shuffle": True}), Compat.of("fiubench", "official"), "eval") == []
    with pytest.raises(ValueError, match="pass compat.file_order=false to keep your value"):
        apply_switches(OmegaConf.create({"shuffle": True}), Compat.of("fiubench", "official"), "train", ["shuffle"])


def test_a_declaration_is_checked():
    with pytest.raises(ValueError, match="names no docs/fidelity.md row"):
        Switch("x", "what", (), ("eval",))
    with pytest.raises(ValueError, match="stages must be among"):
        Switch("x", "what", ("1",), ("test",))
    with pytest.raises(ValueError, match="twice"):
        declare("zz_benchmark", Switch("x", "a", ("1",), ("eval",)), Switch("x", "b", ("2",), ("eval",)))


def test_idefics2_splits_images_at_evaluation_under_compat():
    """MLLMU-Bench's eval.py:856 loaded idefics2-8b's processor as it is (splitting on); its training did not split."""
    def cfg(model: str):
        return OmegaConf.create({"model": {"name": model, "image_processor_overrides": {"do_image_splitting": False}}})

    official = Compat.of("mllmu", "official")
    idefics2 = cfg("idefics2_8b")
    assert apply_switches(idefics2, official, "eval") == ["model.image_processor_overrides.do_image_splitting"]
    assert idefics2.model.image_processor_overrides.do_image_splitting is True
    training = cfg("idefics2_8b")
    apply_switches(training, official, "train")
    assert training.model.image_processor_overrides.do_image_splitting is False
    other = cfg("tiny_idefics2")
    apply_switches(other, official, "eval")
    assert other.model.image_processor_overrides.do_image_splitting is False


def test_fiubench_compat_forgets_forget5_unless_told():
    cfg = OmegaConf.create({"benchmark": {"forget_split": "forget10"}})
    assert "benchmark.forget_split" in apply_switches(cfg, Compat.of("fiubench", "official"), "train")
    assert cfg.benchmark.forget_split == "forget5"
    with pytest.raises(ValueError, match="pass compat.forget5=false to keep your value"):
        apply_switches(OmegaConf.create({"benchmark": {"forget_split": "forget10"}}),
                       Compat.of("fiubench", "official"), "eval", ["benchmark.forget_split"])
