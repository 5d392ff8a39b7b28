"""A training run's identity: what it holds, and settings added later that keep earlier runs' names."""

from unlearning.runs import identity_hash, training_identity


def test_settings_at_their_old_behaviour_keep_the_identity():
    before = {"lr": 1e-4, "epochs": 3, "method": {"name": "ga"}}
    with_defaults = {**before, "shuffle": True, "decay_exempt": "1d"}
    assert identity_hash(training_identity(with_defaults, "base")) == identity_hash(training_identity(before, "base"))
    for changed in ({"shuffle": False}, {"decay_exempt": "bias"}):
        other = training_identity({**with_defaults, **changed}, "base")
        assert identity_hash(other) != identity_hash(training_identity(before, "base"))
    assert "compat" not in training_identity({**before, "compat": "official"}, "base")  # acts through the values


def test_method_and_benchmark_settings_added_later_keep_the_identity():
    before = {"lr": 1e-4, "method": {"name": "kl_pd", "retain_weight": 1.0, "base": {"name": "kl"}},
              "benchmark": {"name": "fiubench", "options": {"seed": 0}}}
    added = {"lr": 1e-4, "method": {"name": "kl_pd", "retain_weight": 1.0, "reduction": "answer_tokens",
                                    "retain_nll": 0.0, "base": {"name": "kl", "reduction": "answer_tokens"}},
             "benchmark": {"name": "fiubench", "options": {"seed": 0, "capitalize": False}}}
    assert identity_hash(training_identity(added, "b")) == identity_hash(training_identity(before, "b"))
    official = {**added, "benchmark": {"name": "fiubench", "options": {"seed": 0, "capitalize": True}}}
    assert identity_hash(training_identity(official, "b")) != identity_hash(training_identity(before, "b"))
